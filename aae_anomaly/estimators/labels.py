"""Labels users give with their rows: classes of normal rows (label-conditioned
detection), known anomalies (semi-supervised detection), and the targets of the AAE
family (a class per row, ``-1`` for an unlabelled one)."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ..engine.categorical import UNLABELLED


def _class_values(classes, n_rows: int) -> np.ndarray:
    """``classes`` as a 1-D array of one plain value per row, or ValueError."""
    values = np.asarray(classes)
    if values.ndim != 1 or len(values) != n_rows:
        raise ValueError(
            f"classes must hold one class label per row of X ({n_rows}), got shape "
            f"{values.shape}"
        )
    return _plain(values)


def encode_classes(classes, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct class values (sorted) and each row's index among them.

    ``classes`` is one value per row: integers or strings (floats only when whole
    numbers, as a CSV column of class numbers is read).
    """
    values = _class_values(classes, n_rows)
    distinct, index = np.unique(values, return_inverse=True)
    return distinct, index.astype(np.int64)


def class_indices(known: np.ndarray, classes, n_rows: int) -> np.ndarray:
    """Each row's index among the ``known`` classes of a fitted model; an unknown class is
    an error."""
    values = _class_values(classes, n_rows)
    if values.dtype.kind != known.dtype.kind and not (
        values.dtype.kind in "iuf" and known.dtype.kind in "iuf"
    ):
        raise ValueError(
            f"classes are {values.dtype} values but the model was fitted on classes "
            f"{known.tolist()}"
        )
    index, unknown = _positions(known, values)
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} rows have classes the model was not fitted on (the "
            f"first: {values[np.flatnonzero(unknown)[0]].item()!r}); known classes: "
            f"{known.tolist()}"
        )
    return index.astype(np.int64)


def _positions(known: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each value sits among the sorted ``known`` classes, and which values are not
    among them."""
    index = np.clip(np.searchsorted(known, values), 0, len(known) - 1)
    return index, np.asarray(known[index] != values, dtype=bool)


def _plain(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "US":
        return values.astype(str)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or not (values == np.round(values)).all():
            raise ValueError(
                "class labels must be integers or strings; got non-integer numbers"
            )
        return values.astype(np.int64)
    if values.dtype.kind == "O" and all(isinstance(v, str) for v in values):
        return values.astype(str)
    raise ValueError(f"class labels must be integers or strings, got {values.dtype} values")



def targets(X: np.ndarray, y, check: bool = True) -> np.ndarray:
    """``y`` as a 1-D array of one class per row of ``X``, checked to hold classes unless
    ``check`` is off."""
    if y is None:
        raise ValueError(
            "this estimator requires y to be passed, but the target y is None: give the "
            "class of each row"
        )
    y = column_or_1d(y, warn=True)
    if len(y) != len(X):
        raise ValueError(f"y has {len(y)} entries but X has {len(X)} rows")
    if check:
        check_classification_targets(y)
    return y


def unlabelled_rows(y: np.ndarray) -> np.ndarray:
    """Rows marked -1, scikit-learn's mark of an unlabelled row (never a string)."""
    if y.dtype.kind in "iuf":
        return y == UNLABELLED
    if y.dtype.kind == "O":
        return np.array(
            [isinstance(v, numbers.Real) and not isinstance(v, bool) and v == UNLABELLED
             for v in y],
            dtype=bool,
        )
    return np.zeros(len(y), dtype=bool)


def label_dtype(values: np.ndarray):
    """Labels that were mixed with -1 in an object array keep a plain dtype once it is
    gone (strings stay strings)."""
    if values.dtype.kind == "O" and all(isinstance(v, str) for v in values):
        return str
    return values.dtype


def fitted_class_indices(classes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's index in the fitted ``classes``; an unknown class is a ValueError."""
    try:
        index, unknown = _positions(classes, values)
    except TypeError:  # strings asked of a model of numbers, or the reverse
        index, unknown = None, np.ones(len(values), dtype=bool)
    if unknown.any():
        first = values[np.flatnonzero(unknown)[0]]
        first = first.item() if isinstance(first, np.generic) else first
        raise ValueError(f"unknown class {first!r}; the model knows {classes.tolist()}")
    return index


def without_known_anomalies(X: np.ndarray, classes, anomaly_labels, n_neighbors: int):
    """The normal rows, their classes, and the rows ``anomaly_labels`` marks with 1 (None
    when it marks none)."""
    labels = np.asarray(anomaly_labels)
    if labels.shape != (len(X),):
        raise ValueError(
            f"anomaly_labels must hold one label (0 or 1) per row of X ({len(X)}), got "
            f"shape {labels.shape}"
        )
    if labels.dtype != bool and not (
        np.issubdtype(labels.dtype, np.number) and np.isin(labels, (0, 1)).all()
    ):
        raise ValueError(
            "anomaly_labels must be 0 (normal or unknown) or 1 (a known anomaly); class "
            "labels of normal rows go to classes="
        )
    marked = labels.astype(bool)
    if not n_neighbors:
        raise ValueError(
            "known anomalies are used through the neighbors component: anomaly_labels "
            "needs n_neighbors > 0"
        )
    if (~marked).sum() < 2:
        raise ValueError("anomaly_labels must leave at least 2 normal rows to train on")
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != (len(X),):
            raise ValueError(
                f"classes must hold one class label per row of X ({len(X)}), got shape "
                f"{classes.shape}"
            )
        classes = classes[~marked]
    known = X[marked] if marked.any() else None
    return X[~marked], classes, known


def conditioning_classes(detector, classes, n_rows: int) -> np.ndarray | None:
    """Row class indices for a label-conditioned ``detector``, or None (``classes`` not
    given) to score each row in its best-matching class."""
    if classes is None:
        return None
    known = getattr(detector, "normal_classes_", None)
    if known is None:
        raise ValueError("classes apply to a model fitted with classes; this one was not")
    return class_indices(known, classes, n_rows)
