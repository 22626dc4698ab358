"""Anomaly detection with adversarial autoencoders.

>>> from aae_anomaly import AAEDetector
>>> detector = AAEDetector(random_state=0).fit(X_normal)      # doctest: +SKIP
>>> scores = -detector.score_samples(X_new)                    # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .architectures import Architecture
from .datasets import Dataset, load_dataset
from .errors import (
    AAEAnomalyError,
    DensityUnavailableError,
    PluginError,
    TrainingDivergedError,
    UnknownPluginError,
)
from .estimator import AAEDetector
from .hookspecs import hookimpl
from .plugins import get_plugin_manager
from .priors import Prior

try:
    __version__ = version("aae-anomaly")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AAEAnomalyError",
    "AAEDetector",
    "Architecture",
    "Dataset",
    "DensityUnavailableError",
    "PluginError",
    "Prior",
    "TrainingDivergedError",
    "UnknownPluginError",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "load_dataset",
]
