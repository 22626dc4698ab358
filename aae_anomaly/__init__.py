"""Anomaly detection with adversarial autoencoders.

>>> from aae_anomaly import AAEDetector
>>> detector = AAEDetector(random_state=0).fit(X_normal)      # doctest: +SKIP
>>> scores = -detector.score_samples(X_new)                    # doctest: +SKIP
>>> detector.save("model.aae")                                 # doctest: +SKIP
>>> detector = aae_anomaly.load("model.aae")                   # doctest: +SKIP
"""

from . import _moved
from ._version import __version__
from .errors import (
    AAEAnomalyError,
    CheckpointError,
    DensityUnavailableError,
    ExtremeValueWarning,
    MissingDependencyError,
    ModelFileError,
    ModelPluginMissingError,
    PartitionError,
    PluginError,
    RowKeyWarning,
    TrainingDivergedError,
    TrainingWarning,
    UnknownPluginError,
)
from .estimators import AAEClassifier, AAEClustering, AAEDetector, SupervisedAAE
from .estimators.loading import load_model as load
from .plugin_system import Architecture, Dataset, Prior, get_plugin_manager, hookimpl, load_dataset

_moved.install()  # the modules' names before 0.2 (aae_anomaly.estimator, ...) still import

__all__ = [
    "AAEAnomalyError",
    "AAEClassifier",
    "AAEClustering",
    "AAEDetector",
    "Architecture",
    "CheckpointError",
    "Dataset",
    "DensityUnavailableError",
    "ExtremeValueWarning",
    "RowKeyWarning",
    "MissingDependencyError",
    "ModelFileError",
    "ModelPluginMissingError",
    "PartitionError",
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
