"""Anomaly detection with adversarial autoencoders.

>>> from aae_anomaly import AAEDetector
>>> detector = AAEDetector(random_state=0).fit(X_normal)      # doctest: +SKIP
>>> scores = -detector.score_samples(X_new)                    # doctest: +SKIP
>>> detector.save("model.aae")                                 # doctest: +SKIP
>>> detector = aae_anomaly.load("model.aae")                   # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .architectures import Architecture
from .datasets import Dataset, load_dataset
from .errors import (
    AAEAnomalyError,
    CheckpointError,
    DensityUnavailableError,
    MissingDependencyError,
    ModelFileError,
    ModelPluginMissingError,
    PluginError,
    TrainingDivergedError,
    TrainingWarning,
    UnknownPluginError,
)
from .estimator import AAEDetector
from .family import AAEClassifier, AAEClustering, SupervisedAAE
from .hookspecs import hookimpl
from .modelfile import load_model as load
from .plugins import get_plugin_manager
from .priors import Prior

try:
    __version__ = version("aae-anomaly")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AAEAnomalyError",
    "AAEClassifier",
    "AAEClustering",
    "AAEDetector",
    "Architecture",
    "CheckpointError",
    "Dataset",
    "DensityUnavailableError",
    "MissingDependencyError",
    "ModelFileError",
    "ModelPluginMissingError",
    "PluginError",
    "Prior",
    "SupervisedAAE",
    "TrainingDivergedError",
    "TrainingWarning",
    "UnknownPluginError",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "load",
    "load_dataset",
]
