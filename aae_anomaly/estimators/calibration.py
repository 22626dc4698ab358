"""Where the detector's threshold comes from: normal rows held back from training
normalize the score components, and put the threshold at a quantile of their scores."""

from __future__ import annotations

import numbers

import numpy as np

from ..scoring import COMPONENTS, ScoreCalibration, default_weights

# With fewer calibration rows than this, calibrate on the training rows instead.
MIN_CALIBRATION_ROWS = 5
# contamination="auto" flags rows scoring above this quantile of held-out normal rows.
AUTO_QUANTILE = 0.99


def check_contamination(contamination) -> None:
    if contamination != "auto" and not (
        isinstance(contamination, numbers.Real) and 0 < contamination <= 0.5
    ):
        raise ValueError(
            f"contamination must be 'auto' or a float in (0, 0.5], got {contamination!r}"
        )


def split_calibration(n_rows: int, fraction: float, rng: np.random.RandomState):
    """Indices (or a slice) of the training rows and of the calibration rows."""
    n_calibration = int(round(fraction * n_rows))
    if n_calibration < MIN_CALIBRATION_ROWS or n_rows - n_calibration < 2:
        # too few rows to hold any back: calibrate on the training rows
        return slice(None), slice(None)
    order = rng.permutation(n_rows)
    return order[n_calibration:], order[:n_calibration]


def checked_weights(score_weights: dict | None, names: tuple[str, ...]) -> dict[str, float]:
    """The weight of each of the model's components ``names``: ``score_weights`` checked,
    or the default combination when it is None."""
    if score_weights is None:
        return default_weights(names)
    unknown = set(score_weights) - set(COMPONENTS)
    if unknown:
        raise ValueError(
            f"score_weights has unknown components {sorted(unknown)}; "
            f"expected some of {list(COMPONENTS)}"
        )
    weights = {name: float(score_weights.get(name, 0.0)) for name in names}
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(
            f"score_weights must be non-negative with a positive sum over the "
            f"components this model has ({', '.join(names)}), got {score_weights}"
        )
    return weights


def threshold_offset(
    calibration: ScoreCalibration,
    held_out: dict[str, np.ndarray],
    training: dict[str, np.ndarray] | None,
    contamination,
) -> float:
    """The offset of ``decision_function``: ``contamination="auto"`` puts the threshold at
    :data:`AUTO_QUANTILE` of the held-out rows' scores, a share ``c`` at that quantile of
    the training rows' scores (``training``: their weighted components)."""
    if contamination == "auto":
        return -float(np.quantile(calibration.combine(held_out), AUTO_QUANTILE))
    scores = calibration.combine(training)
    return float(np.percentile(-scores, 100.0 * contamination))
