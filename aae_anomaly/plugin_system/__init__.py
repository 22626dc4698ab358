"""The plugin system: the hooks a plugin implements (:mod:`.hookspecs`), the manager that
finds plugins through the ``aae_anomaly`` entry-point group (:mod:`.manager`), and the
interfaces plugins provide: :class:`Prior`, :class:`Architecture` and :class:`Dataset`.

The built-in priors, encoders and datasets are plugins too: the ``aae_anomaly_builtins``
package in the repository's top-level ``plugins/`` folder.
"""

from .architectures import Architecture
from .datasets import Dataset, load_dataset
from .hookspecs import hookimpl
from .manager import get_plugin_manager
from .priors import Prior

__all__ = ["Architecture", "Dataset", "Prior", "get_plugin_manager", "hookimpl", "load_dataset"]
