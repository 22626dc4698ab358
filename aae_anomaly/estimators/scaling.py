"""Input scaling: the centre and scale that map a user's rows to the networks' units."""

from __future__ import annotations

import numpy as np
import torch

from ..engine.model import standardize_samples

SCALINGS = ("auto", "per_feature", "shared", "per_sample")
# The AAE family (classifier, clustering, supervised generation) keeps image intensities
# as they are: its decoded images are read in the data's units.
FAMILY_SCALINGS = ("auto", "per_feature", "shared")


def check_scaling(scaling, allowed: tuple[str, ...] = SCALINGS) -> None:
    if scaling not in allowed:
        raise ValueError(f"scaling must be one of {allowed}, got {scaling!r}")


def scales_samples(scaling: str, input_shape: tuple[int, ...]) -> bool:
    """Whether each sample is first standardized by its own mean and standard deviation
    (contrast normalization, per channel of an image): under ``per_sample``, and under
    ``auto`` for images."""
    return scaling == "per_sample" or (scaling == "auto" and len(input_shape) > 1)


def _n_channels(input_shape: tuple[int, ...]) -> int:
    return input_shape[0] if len(input_shape) > 1 else 1


def sample_statistics(rows: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """The typical row's mean and standard deviation per channel (the means of the rows'
    own), shape ``(2, channels)``: they map standardized outputs such as generated
    samples back to the data's units."""
    values = rows.astype(np.float64, copy=False).reshape(len(rows), _n_channels(input_shape), -1)
    return np.stack([values.mean(axis=2).mean(axis=0), values.std(axis=2).mean(axis=0)]).astype(
        np.float32
    )


def scaling_groups(scaling: str, input_shape: tuple[int, ...]) -> int | None:
    """How many groups of columns share a centre and scale under ``scaling``: ``None``
    for one per column, else the number of channels (1 for flat rows). ``auto`` shares
    within each channel of images (an input shape of several dimensions)."""
    images = len(input_shape) > 1
    if scaling == "per_feature" or (scaling == "auto" and not images):
        return None
    # per_sample: after each sample's own standardization, one centre and scale per
    # channel (images) or for all columns
    return _n_channels(input_shape)


def input_scaling(
    rows: np.ndarray,
    loss: str,
    groups: int | None = None,
    sample_shape: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale, one per column, that map the training rows to the network's units.

    Standardization for mse and l1, [0, 1] for bce. With ``groups``, the columns fall into
    that many consecutive equal groups (the channels of an image) and each group shares
    the statistics of all its values. Statistics are taken in float64; a constant column
    (or group) gets scale 1, so it maps to zero instead of NaN. With ``sample_shape``
    (per-sample scaling), the statistics are those of the rows after
    :func:`~aae_anomaly.engine.model.standardize_samples` with that shape's channels.
    """
    values = rows.astype(np.float64, copy=False)
    if sample_shape is not None:
        # the networks' own map (in float64 here), so the statistics are of what they see
        values = standardize_samples(torch.tensor(values), _n_channels(sample_shape)).numpy()
    n_columns = values.shape[1]
    axes: int | tuple[int, int] = 0
    if groups is not None:
        values, axes = values.reshape(len(values), groups, -1), (0, 2)
    if loss == "bce":
        center = values.min(axis=axes)
        scale = values.max(axis=axes) - center
    else:
        center = values.mean(axis=axes)
        scale = values.std(axis=axes)
    # below float32's resolution of the centre, the variation is rounding noise
    varies = (scale > 1e-6 * np.abs(center)) & (scale > 1e-30)
    scale = np.where(varies, scale, 1.0)
    if groups is not None:
        center = np.repeat(center, n_columns // groups)
        scale = np.repeat(scale, n_columns // groups)
    return center.astype(np.float32), scale.astype(np.float32)


def channel_range(rows: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray | None:
    """The smallest and largest training value of each channel of image rows (an input
    shape of several dimensions), shape ``(2, channels)``; None for flat rows, whose
    columns have no common unit. Pictures of decoded images use it as their grey scale."""
    if len(input_shape) < 2:
        return None
    values = rows.astype(np.float64, copy=False).reshape(len(rows), input_shape[0], -1)
    return np.stack([np.nanmin(values, axis=(0, 2)), np.nanmax(values, axis=(0, 2))])
