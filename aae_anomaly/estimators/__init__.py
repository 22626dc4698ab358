"""The scikit-learn estimators: :class:`AAEDetector` (:mod:`.detector`) and the AAE family,
:class:`SupervisedAAE`, :class:`AAEClassifier` and :class:`AAEClustering`
(:mod:`.family`)."""

from .detector import AAEDetector
from .family import AAEClassifier, AAEClustering, SupervisedAAE

__all__ = ["AAEClassifier", "AAEClustering", "AAEDetector", "SupervisedAAE"]
