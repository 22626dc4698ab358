"""Pictures of a fitted detector (needs the ``plot`` extra: ``pip install 'aae-anomaly[plot]'``).

Three kinds, each written to a PNG file of a known size (``figsize`` inches times ``dpi``):

``map``
    the latent codes of the rows, coloured by their anomaly score or by a label (0/1
    labels read "normal" and "anomaly"), over samples of the prior (grey). Codes of more
    than two dimensions are projected on the first two principal axes of the codes (the
    prior's samples with the same projection), and the title says so.
``histogram``
    the anomaly scores, split into normal rows and anomalies when there are labels, with
    the model's threshold.
``samples``
    a grid of images decoded from prior samples, for image models, on the grey scale of
    the training data's range (black is its smallest value, white its largest).

Made to be read at a glance when a few rows are extreme, as anomalies are:

- a map's frame holds the bulk of the points (Tukey's far-out fences, three
  interquartile ranges beyond the quartiles, of the codes and of the prior's samples);
  the rows beyond it are drawn on its edge as triangles pointing their way, and the
  legend counts them;
- scores whose tail reaches far beyond their bulk (more than twenty interquartile ranges
  from the median) get a logarithmic colour scale and histogram under ``scale="auto"``
  (symmetric-logarithmic when scores are zero or negative: linear near zero, up to the
  power of ten below the interquartile range); ``"linear"``, ``"log"`` and, for maps,
  ``"rank"`` (colours by the score's rank, the colour bar labelled in scores) choose one;
  a map's colour bar marks the threshold in red.

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
SCALES = ("auto", "linear", "log", "rank")
HISTOGRAM_SCALES = ("auto", "linear", "log")
# Tukey's far-out fences: values beyond the quartiles by this many interquartile ranges
FENCE = 3.0
# A tail reaching this many interquartile ranges from the median is heavy: the bulk
# would get under 5% of a linear scale.
HEAVY_TAIL = 20.0
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


# -- robust ranges -------------------------------------------------------------------------
def bulk_range(values: np.ndarray) -> tuple[float, float]:
    """The smallest and largest of ``values`` within Tukey's far-out fences (three
    interquartile ranges beyond the quartiles): where the bulk lies, whatever a few
    extreme values do."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    q1, q3 = np.quantile(values, [0.25, 0.75])
    if q3 - q1 <= 0:  # over half the values are equal: the quartiles say nothing of the rest
        q1, q3 = np.quantile(values, [0.01, 0.99])
    inside = values[(values >= q1 - FENCE * (q3 - q1)) & (values <= q3 + FENCE * (q3 - q1))]
    return float(inside.min()), float(inside.max())


def frame_limits(*point_sets: np.ndarray) -> np.ndarray:
    """Axis limits ``[[x0, x1], [y0, y1]]`` that hold the bulk of every set of 2-D
    points, with a margin of 5% of each side."""
    limits = np.empty((2, 2))
    for axis in range(2):
        ranges = [bulk_range(points[:, axis]) for points in point_sets if len(points)]
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        margin = 0.05 * (high - low) if high > low else max(0.5, 0.05 * abs(low))
        limits[axis] = low - margin, high + margin
    return limits


def is_heavy_tailed(values: np.ndarray) -> bool:
    """Whether a linear scale over ``values`` would squeeze their bulk into a corner: the
    most extreme one lies more than twenty interquartile ranges from the median."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    spread = q3 - q1
    reach = max(values.max() - median, median - values.min())
    return bool(reach > HEAVY_TAIL * spread) if spread > 0 else bool(reach > 0)


def _check_scale(scale: str, choices: tuple[str, ...]) -> None:
    if scale not in choices:
        raise ValueError(f"scale must be one of {choices}, got {scale!r}")


def resolved_scale(values: np.ndarray, scale: str) -> str:
    """``scale``, with ``auto`` made ``log`` for heavy-tailed values, else ``linear``."""
    if scale != "auto":
        return scale
    return "log" if is_heavy_tailed(values) else "linear"


def _linear_width(values: np.ndarray) -> float:
    # A symmetric-log scale is linear near zero, up to the power of ten below the
    # interquartile range: the bulk of the scores, below and above zero, keeps its shape,
    # and the linear part ends on a tick of the log part (no "0" and "1" on top of each other).
    q1, q3 = np.quantile(values, [0.25, 0.75])
    spread = float(q3 - q1) if q3 > q1 else max(float(np.abs(values).max()), 1.0) * 1e-3
    return float(10.0 ** np.floor(np.log10(spread)))


def score_norm(values: np.ndarray, scale: str):
    """The matplotlib colour norm of a resolved ``scale`` over ``values``: ``Normalize``,
    ``LogNorm`` (all values positive) or ``SymLogNorm``, or for ``rank`` a ``FuncNorm``
    that maps each score to its rank among ``values``."""
    from matplotlib import colors

    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        high = low + 1.0
    if scale == "linear":
        return colors.Normalize(low, high)
    if scale == "log":
        if low > 0:
            return colors.LogNorm(low, high)
        return colors.SymLogNorm(_linear_width(values), linscale=1.0, vmin=low, vmax=high, base=10)
    sorted_values, counts = np.unique(values, return_counts=True)
    if len(sorted_values) < 2:
        return colors.Normalize(low, high)
    # each distinct value at the mid-rank of its ties, so that the median row is mid-scale
    # however many rows share a value
    middle = np.cumsum(counts) - (counts + 1) / 2
    ranks = (middle - middle[0]) / (middle[-1] - middle[0])

    def forward(x):
        return np.interp(x, sorted_values, ranks)

    def inverse(r):
        return np.interp(r, ranks, sorted_values)

    return colors.FuncNorm((forward, inverse), vmin=sorted_values[0], vmax=sorted_values[-1])


def _score_colorbar(
    figure, mappable, axes, values: np.ndarray, scale: str, threshold: float
) -> None:
    label = {"linear": "anomaly score", "log": "anomaly score (log scale)",
             "rank": "anomaly score (colour by rank)"}[scale]
    marked = bool(values.min() <= threshold <= values.max())
    if marked:
        label += ", red: threshold"
    colorbar = figure.colorbar(mappable, ax=axes, label=label)
    if marked:
        colorbar.ax.axhline(threshold, color="red", linewidth=2)
    if scale == "log":
        _plain_numbers(colorbar.ax.yaxis)
    if scale == "rank":
        # ticks at quantiles: evenly spaced along the bar, labelled in scores
        ticks = np.unique(np.quantile(values, [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]))
        colorbar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])


def _plain_numbers(axis) -> None:
    # 1000 rather than 10^3, and -1 rather than -10^0: scores read as numbers
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def is_binary_labels(labels: np.ndarray) -> bool:
    """Whether ``labels`` are anomaly labels: booleans, or numbers that are all 0 or 1."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return True
    return bool(np.issubdtype(labels.dtype, np.number) and np.isin(labels, (0, 1)).all())


def _prior_samples(detector, n: int, random_state: int) -> np.ndarray:
    import torch

    from .engine.runtime import seeded

    with seeded(random_state, detector.device_) as generator, torch.inference_mode():
        return detector.prior_.sample(n, generator).double().cpu().numpy()


# Where a point beyond the frame lies, as the marker drawn for it on the edge.
_EDGE_MARKERS = {(0, 0): "<", (0, 1): ">", (1, 0): "v", (1, 1): "^"}


def _beyond_the_frame(points: np.ndarray, limits: np.ndarray):
    """Which points lie outside the frame, their places on its edge, and the marker of
    each: a triangle pointing the way of the axis they overshoot the most."""
    low, high = limits[:, 0], limits[:, 1]
    outside = ((points < low) | (points > high)).any(axis=1)
    edge = np.clip(points, low, high)
    width = high - low
    overshoot = np.maximum(low - points, points - high) / width
    axis = np.argmax(overshoot, axis=1)
    upper = points[np.arange(len(points)), axis] > high[axis]
    markers = np.array([_EDGE_MARKERS[(a, int(u))] for a, u in zip(axis, upper, strict=True)])
    return outside, edge, markers


def plot_map(
    detector,
    X,
    path: str | os.PathLike,
    *,
    color: str = "score",
    labels=None,
    scale: str = "auto",
    prior_points: int = PRIOR_POINTS,
    size: tuple[float, float] = DEFAULT_SIZE,
    dpi: int = DEFAULT_DPI,
    random_state: int = 0,
) -> dict[str, Any]:
    """Draw the latent map of ``X`` to ``path`` (PNG); return what was drawn: the 2-D
    coordinates of the rows (``points``) and of the prior samples (``prior``), the
    axis ``limits`` (``[[x0, x1], [y0, y1]]``), the rows drawn on the frame's edge
    (``clipped``, a boolean mask), the colour ``scale`` used (``None`` for labels), the
    ``title`` and the matplotlib ``figure``.

    ``scale`` colours by score: ``auto`` (``log`` for heavy-tailed scores, else
    ``linear``), ``linear``, ``log`` or ``rank``.
    """
    if color not in COLORS:
        raise ValueError(f"color must be one of {COLORS}, got {color!r}")
    _check_scale(scale, SCALES)
    _check_size(size, dpi)
    figure = _figure(size, dpi)  # fails first when matplotlib is missing
    if color == "label":
        if labels is None:
            raise ValueError("color='label' needs labels, one per row")
        labels = np.asarray(labels)
    codes = detector.transform(X)
    if labels is not None and labels.shape != (len(codes),):
        raise ValueError(f"expected {len(codes)} labels, got shape {labels.shape}")
    prior = _prior_samples(detector, prior_points, random_state) if prior_points else codes[:0]
    points, prior_points_2d, how = project_codes(codes, prior)
    limits = frame_limits(points, prior_points_2d)
    clipped, edge, markers = _beyond_the_frame(points, limits)
    axes = figure.add_subplot()
    axes.set_xlim(*limits[0])
    axes.set_ylim(*limits[1])
    if len(prior_points_2d):
        axes.scatter(*prior_points_2d.T, s=4, c="0.82", label="prior samples", rasterized=True)
    # triangles on the frame's edge: drawn over it (clip_on=False), outlined in black
    edge_style = dict(s=40, edgecolors="black", linewidths=0.6, clip_on=False, zorder=3)
    used_scale = None
    if color == "score":
        values = -detector.score_samples(X)
        used_scale = resolved_scale(values, scale)
        norm = score_norm(values, used_scale)
        order = np.argsort(values, kind="stable")  # the highest scores on top
        inside = order[~clipped[order]]
        drawn = axes.scatter(
            *points[inside].T, s=6, c=values[inside], cmap="viridis", norm=norm, rasterized=True
        )
        for marker in np.unique(markers[clipped]):
            chosen = order[clipped[order] & (markers[order] == marker)]
            axes.scatter(*edge[chosen].T, marker=marker, c=values[chosen], cmap="viridis",
                         norm=norm, **edge_style)
        _score_colorbar(figure, drawn, axes, values, used_scale, -float(detector.offset_))
    else:
        binary = is_binary_labels(labels)
        classes = np.unique(labels)
        colormap = "tab10" if len(classes) <= 10 else "tab20"
        for index, value in enumerate(classes):
            chosen = labels == value
            if binary:
                # normal rows blue, anomalies red, whatever the other colours are
                shade, text = ("tab:red", "anomaly") if value else ("tab:blue", "normal")
                text = f"{text} ({int(chosen.sum())})"
            else:
                shade, text = _palette(colormap, index), _label_text(value)
            axes.scatter(
                *points[chosen & ~clipped].T, s=6, color=shade, label=text, rasterized=True,
                zorder=2 + bool(binary and value),
            )
            for marker in np.unique(markers[chosen & clipped]):
                group = chosen & clipped & (markers == marker)
                axes.scatter(*edge[group].T, marker=marker, color=shade, **edge_style)
    if clipped.any():
        _legend_proxy(axes, f"{int(clipped.sum())} beyond the frame (on its edge)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(markerscale=2, fontsize="small", loc="best")
    title = f"{how} of {len(points)} rows, {detector.prior} prior"
    normal_classes = getattr(detector, "normal_classes_", None)
    if normal_classes is not None:
        title += f", {len(normal_classes)} classes"
    axes.set_title(title)
    axes.set_xlabel("axis 1" if how.startswith("PCA") else "z0")
    axes.set_ylabel("axis 2" if how.startswith("PCA") else ("z1" if codes.shape[1] > 1 else ""))
    _save(figure, path, dpi)
    return {
        "points": points,
        "prior": prior_points_2d,
        "limits": limits,
        "clipped": clipped,
        "scale": used_scale,
        "title": title,
        "figure": figure,
    }


def _legend_proxy(axes, text: str) -> None:
    # an empty scatter: a legend entry for the edge triangles whatever their colours
    axes.scatter([], [], marker=">", s=20, facecolors="white", edgecolors="black", label=text)


def _palette(colormap: str, index: int):
    import matplotlib

    return matplotlib.colormaps[colormap](index % matplotlib.colormaps[colormap].N)


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def histogram_edges(values: np.ndarray, bins: int, scale: str) -> np.ndarray:
    """``bins + 1`` bin edges over ``values``: evenly spaced for ``linear``; for ``log``,
    evenly spaced in the logarithm (symmetric-logarithm when values are zero or
    negative), so every decade of a heavy tail gets as many bins."""
    if scale == "linear":
        return np.histogram_bin_edges(values, bins=bins)
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.histogram_bin_edges(values, bins=bins)
    if low > 0:
        return np.geomspace(low, high, bins + 1)
    from matplotlib.scale import SymmetricalLogTransform

    transform = SymmetricalLogTransform(10, _linear_width(values), 1.0)
    ends = transform.transform(np.array([low, high]))
    edges = transform.inverted().transform(np.linspace(ends[0], ends[1], bins + 1))
    edges[[0, -1]] = low, high  # exactly, whatever rounding the round trip did
    return edges


def plot_histogram(
    detector,
    X,
    path: str | os.PathLike,
    *,
    labels=None,
    bins: int = 50,
    scale: str = "auto",
    size: tuple[float, float] = DEFAULT_SIZE,
    dpi: int = DEFAULT_DPI,
) -> dict[str, Any]:
    """Draw the histogram of the anomaly scores of ``X`` with the model's threshold;
    with ``labels`` (1 = anomaly), normal rows and anomalies in two colours. ``scale``:
    ``auto`` (``log`` for heavy-tailed scores, else ``linear``), ``linear`` or ``log``
    (log-spaced bins on a log axis). Returns the ``scores``, the ``threshold``, the bin
    ``edges``, the ``scale`` used and the matplotlib ``figure``."""
    _check_scale(scale, HISTOGRAM_SCALES)
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 1000:
        raise ValueError(f"bins must be an integer from 1 to 1000, got {bins!r}")
    _check_size(size, dpi)
    figure = _figure(size, dpi)
    scores = -detector.score_samples(X)
    threshold = -float(detector.offset_)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != scores.shape:
            raise ValueError(f"expected {len(scores)} labels, got shape {labels.shape}")
    both = np.append(scores, threshold)
    used_scale = resolved_scale(both, scale)
    edges = histogram_edges(both, bins, used_scale)
    axes = figure.add_subplot()
    if used_scale == "log":
        if edges[0] > 0:
            axes.set_xscale("log")
        else:
            axes.set_xscale("symlog", linthresh=_linear_width(both))
        _plain_numbers(axes.xaxis)
    if labels is None:
        axes.hist(scores, bins=edges, color="tab:blue", label=f"{len(scores)} rows")
    else:
        anomalous = labels.astype(bool)
        for chosen, shade, text in ((~anomalous, "tab:blue", "normal"),
                                    (anomalous, "tab:red", "anomaly")):
            axes.hist(scores[chosen], bins=edges, color=shade, histtype="stepfilled", alpha=0.6,
                      label=f"{text} ({int(chosen.sum())})")
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    axes.set_xlabel("anomaly score" + (" (log scale)" if used_scale == "log" else ""))
    axes.set_ylabel("rows")
    axes.set_title(f"scores of {len(scores)} rows, {int((scores > threshold).sum())} flagged")
    axes.legend(fontsize="small")
    _save(figure, path, dpi)
    return {
        "scores": scores,
        "threshold": threshold,
        "edges": edges,
        "scale": used_scale,
        "figure": figure,
    }


def training_range(detector) -> tuple[np.ndarray, np.ndarray] | None:
    """The smallest and largest value of each channel in an image model's training data,
    in the data's units: stored at fit (``input_range_``), or for a model file from
    before that, the bce loss's scaling (its training minimum and maximum); else None."""
    stored = getattr(detector, "input_range_", None)
    if stored is not None:
        return np.asarray(stored[0], dtype=np.float64), np.asarray(stored[1], dtype=np.float64)
    if detector.reconstruction_loss != "bce":
        return None  # mean and standard deviation tell nothing of the range
    channels = detector.input_shape_[0]
    center = detector.module_.center.double().cpu().numpy().reshape(channels, -1)
    scale = detector.module_.scale.double().cpu().numpy().reshape(channels, -1)
    return center.min(axis=1), (center + scale).max(axis=1)


def plot_samples(
    detector,
    path: str | os.PathLike,
    *,
    rows: int = 8,
    columns: int = 8,
    size: tuple[float, float] = (6.0, 6.0),
    dpi: int = DEFAULT_DPI,
    random_state: int = 0,
) -> dict[str, Any]:
    """Draw a ``rows`` x ``columns`` grid of images decoded from prior samples (image
    models only), on the grey scale of the training data's range. Returns the
    ``images`` in the data's units, shape ``(rows * columns, height, width)`` (or with
    3 channels first for colour), the ``range`` drawn (per channel smallest and largest
    value), where it came from (``range_source``: ``"training data"`` or, for an mse
    model file saved before models kept their training range, ``"samples"``) and the
    matplotlib ``figure``."""
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
    known = training_range(detector)
    source = "training data"
    if known is None:
        # the best the file allows: the samples' own range, without their extreme 1%
        flat = images.reshape(len(images), shape[0], -1)
        known = (np.quantile(flat, 0.005, axis=(0, 2)), np.quantile(flat, 0.995, axis=(0, 2)))
        source = "samples"
    low, high = known
    high = np.where(high > low, high, low + 1.0)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        image = images[index]
        if shape[0] == 1:
            drawn = axes.imshow(image[0], cmap="gray", vmin=low[0], vmax=high[0])
        else:
            # colour images: each channel's range to [0, 1] (imshow has no vmin for RGB)
            unit = (image - low[:, None, None]) / (high - low)[:, None, None]
            axes.imshow(np.moveaxis(np.clip(unit, 0.0, 1.0), 0, -1))
        axes.set_axis_off()
    if shape[0] == 1:
        where = "the training data's range" if source == "training data" else "the samples' range"
        figure.colorbar(drawn, ax=grid, shrink=0.5, label=f"value ({where})")
    figure.suptitle(f"{rows * columns} samples decoded from the {detector.prior} prior")
    _save(figure, path, dpi)
    return {
        "images": images.reshape(len(images), *shape[1:]) if shape[0] == 1 else images,
        "range": (low, high),
        "range_source": source,
        "figure": figure,
    }
