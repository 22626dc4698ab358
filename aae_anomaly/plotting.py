"""Pictures of a fitted detector (needs the ``plot`` extra: ``pip install 'aae-anomaly[plot]'``).

Three kinds, each written to a PNG file of a known size (``figsize`` inches times ``dpi``):

``map``
    the latent codes of the rows, coloured by their anomaly score or by a label, over
    samples of the prior (grey). Codes of more than two dimensions are projected on the
    first two principal axes of the codes (the prior's samples with the same projection),
    and the title says so.
``histogram``
    the anomaly scores, split by label when there are labels, with the model's threshold.
``samples``
    a grid of images decoded from prior samples, for image models.

Figures are drawn with matplotlib's Agg renderer, without pyplot: nothing global changes
and no display is needed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import MissingDependencyError
from .io.atomic import atomic_path

KINDS = ("map", "histogram", "samples")
COLORS = ("score", "label")
DEFAULT_SIZE = (6.4, 4.8)  # inches
DEFAULT_DPI = 100
# Prior samples drawn behind the codes on a map.
PRIOR_POINTS = 2000


def require_matplotlib():
    """matplotlib's Figure class, or :class:`MissingDependencyError` naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            "plotting needs matplotlib: pip install 'aae-anomaly[plot]'"
        ) from None
    return Figure, FigureCanvasAgg


def _figure(size: tuple[float, float], dpi: int):
    Figure, FigureCanvasAgg = require_matplotlib()
    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike, dpi: int) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        figure.savefig(handle, format="png", dpi=dpi)


def _check_size(size, dpi) -> None:
    if not (len(size) == 2 and all(s > 0 for s in size)):
        raise ValueError(f"size must be two positive numbers of inches, got {size!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 1000:
        raise ValueError(f"dpi must be an integer from 10 to 1000, got {dpi!r}")


def project_codes(codes: np.ndarray, prior_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Both sets of codes in two dimensions, and how they were made two-dimensional.

    Codes of more than two dimensions are projected on the first two principal axes of
    ``codes``; one-dimensional codes are drawn against zero.
    """
    width = codes.shape[1]
    if width == 2:
        return codes, prior_codes, "latent code"
    if width == 1:
        return (
            np.column_stack([codes[:, 0], np.zeros(len(codes))]),
            np.column_stack([prior_codes[:, 0], np.zeros(len(prior_codes))]),
            "1-D latent code",
        )
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(codes)
    return pca.transform(codes), pca.transform(prior_codes), f"PCA of the {width}-D latent codes"


def _prior_samples(detector, n: int, random_state: int) -> np.ndarray:
    import torch

    from .engine.runtime import seeded

    with seeded(random_state, detector.device_) as generator, torch.inference_mode():
        return detector.prior_.sample(n, generator).double().cpu().numpy()


def plot_map(
    detector,
    X,
    path: str | os.PathLike,
    *,
    color: str = "score",
    labels=None,
    prior_points: int = PRIOR_POINTS,
    size: tuple[float, float] = DEFAULT_SIZE,
    dpi: int = DEFAULT_DPI,
    random_state: int = 0,
) -> dict[str, Any]:
    """Draw the latent map of ``X`` to ``path`` (PNG); return what was drawn: the 2-D
    coordinates of the rows (``points``) and of the prior samples (``prior``), and the
    ``title``."""
    if color not in COLORS:
        raise ValueError(f"color must be one of {COLORS}, got {color!r}")
    _check_size(size, dpi)
    figure = _figure(size, dpi)  # fails first when matplotlib is missing
    codes = detector.transform(X)
    prior = _prior_samples(detector, prior_points, random_state) if prior_points else codes[:0]
    points, prior_points_2d, how = project_codes(codes, prior)
    axes = figure.add_subplot()
    if len(prior_points_2d):
        axes.scatter(*prior_points_2d.T, s=4, c="0.82", label="prior samples", rasterized=True)
    if color == "score":
        values = -detector.score_samples(X)
        drawn = axes.scatter(*points.T, s=6, c=values, cmap="viridis", rasterized=True)
        figure.colorbar(drawn, ax=axes, label="anomaly score")
    else:
        if labels is None:
            raise ValueError("color='label' needs labels, one per row")
        labels = np.asarray(labels)
        if labels.shape != (len(points),):
            raise ValueError(f"expected {len(points)} labels, got shape {labels.shape}")
        classes = np.unique(labels)
        colormap = "tab10" if len(classes) <= 10 else "tab20"
        for index, value in enumerate(classes):
            chosen = labels == value
            axes.scatter(
                *points[chosen].T,
                s=6,
                color=_palette(colormap, index),
                label=_label_text(value),
                rasterized=True,
            )
        axes.legend(markerscale=2, fontsize="small", loc="best")
    title = f"{how} of {len(points)} rows, {detector.prior} prior"
    normal_classes = getattr(detector, "normal_classes_", None)
    if normal_classes is not None:
        title += f", {len(normal_classes)} classes"
    axes.set_title(title)
    axes.set_xlabel("axis 1" if how.startswith("PCA") else "z0")
    axes.set_ylabel("axis 2" if how.startswith("PCA") else ("z1" if codes.shape[1] > 1 else ""))
    _save(figure, path, dpi)
    return {"points": points, "prior": prior_points_2d, "title": title}


def _palette(colormap: str, index: int):
    import matplotlib

    return matplotlib.colormaps[colormap](index % matplotlib.colormaps[colormap].N)


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def plot_histogram(
    detector,
    X,
    path: str | os.PathLike,
    *,
    labels=None,
    bins: int = 50,
    size: tuple[float, float] = DEFAULT_SIZE,
    dpi: int = DEFAULT_DPI,
) -> dict[str, Any]:
    """Draw the histogram of the anomaly scores of ``X`` with the model's threshold;
    with ``labels`` (1 = anomaly), normal rows and anomalies in two colours. Returns the
    ``scores`` and the ``threshold``."""
    _check_size(size, dpi)
    figure = _figure(size, dpi)
    scores = -detector.score_samples(X)
    threshold = -float(detector.offset_)
    axes = figure.add_subplot()
    edges = np.histogram_bin_edges(np.append(scores, threshold), bins=bins)
    if labels is None:
        axes.hist(scores, bins=edges, color="tab:blue", label=f"{len(scores)} rows")
    else:
        labels = np.asarray(labels)
        if labels.shape != scores.shape:
            raise ValueError(f"expected {len(scores)} labels, got shape {labels.shape}")
        anomalous = labels.astype(bool)
        axes.hist(
            [scores[~anomalous], scores[anomalous]],
            bins=edges,
            color=["tab:blue", "tab:red"],
            label=[f"normal ({int((~anomalous).sum())})", f"anomaly ({int(anomalous.sum())})"],
            histtype="stepfilled",
            alpha=0.6,
        )
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    axes.set_xlabel("anomaly score")
    axes.set_ylabel("rows")
    axes.set_title(f"scores of {len(scores)} rows, {int((scores > threshold).sum())} flagged")
    axes.legend(fontsize="small")
    _save(figure, path, dpi)
    return {"scores": scores, "threshold": threshold}


def plot_samples(
    detector,
    path: str | os.PathLike,
    *,
    rows: int = 8,
    columns: int = 8,
    size: tuple[float, float] = (6.0, 6.0),
    dpi: int = DEFAULT_DPI,
    random_state: int = 0,
) -> np.ndarray:
    """Draw a ``rows`` x ``columns`` grid of images decoded from prior samples (image
    models only); return the images, shape ``(rows * columns, height, width)``."""
    _check_size(size, dpi)
    shape = tuple(detector.input_shape_)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(
            f"a grid of samples needs an image model (input shape (1 or 3, height, width)); "
            f"this model's input shape is {shape}"
        )
    for name, value in (("rows", rows), ("columns", columns)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
            raise ValueError(f"{name} must be an integer from 1 to 32, got {value!r}")
    figure = _figure(size, dpi)
    images = detector.sample(rows * columns, random_state=random_state).reshape(-1, *shape)
    # each image scaled to the training data's range, so the grid has one grey scale
    center = detector.module_.center.double().cpu().numpy()
    scale = detector.module_.scale.double().cpu().numpy()
    if detector.reconstruction_loss == "bce":
        low, high = center.min(), (center + scale).max()
    else:
        low, high = (center - 2 * scale).min(), (center + 2 * scale).max()
    images = np.clip((images - low) / max(high - low, 1e-12), 0.0, 1.0)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        image = images[index]
        if shape[0] == 1:
            axes.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            axes.imshow(np.moveaxis(image, 0, -1))
        axes.set_axis_off()
    figure.suptitle(f"{rows * columns} samples decoded from the {detector.prior} prior")
    _save(figure, path, dpi)
    return images.reshape(len(images), *shape[1:]) if shape[0] == 1 else images
