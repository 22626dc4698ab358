"""Anomaly scores from a fitted AAE: the score components (:mod:`.components`), their
calibration and combination (:mod:`.calibration`), the exact neighbour search behind the
default score (:mod:`.neighbors`, with its compiled selection :mod:`.selection_kernel`),
and label-conditioned scoring (:mod:`.conditioning`)."""

from .calibration import ScoreCalibration
from .components import (
    COMPONENTS,
    available_components,
    default_weights,
    joint_coordinates,
    raw_components,
    scoring_flops_per_row,
    with_known_anomalies,
)

__all__ = [
    "COMPONENTS",
    "ScoreCalibration",
    "available_components",
    "default_weights",
    "joint_coordinates",
    "raw_components",
    "scoring_flops_per_row",
    "with_known_anomalies",
]
