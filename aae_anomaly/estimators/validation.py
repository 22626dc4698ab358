"""Checking what users pass: parameters, and the rows an estimator fits on or scores.

Errors are ``ValueError`` with a message that names the parameter, or the columns and the
first row at fault; scikit-learn's ``validate_data`` does the checks it owns (shape,
dtype, feature names and counts).
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from ..engine.model import POSTERIORS, RECONSTRUCTION_LOSSES
from ..errors import ExtremeValueWarning
from .calibration import check_contamination
from .columns import (
    TableSchema,
    check_column_list,
    check_missing_choice,
    is_frame,
    missing_cells_error,
    timestamp_error,
)
from .scaling import check_scaling

# The networks compute in float32: larger magnitudes cannot be represented.
FLOAT32_MAX = float(np.finfo(np.float32).max)


FLOAT64_MAX = float(np.finfo(np.float64).max)


# At scoring time, values further than this many training spreads from the training centre
# are scored as if they were at this distance: such rows score far above any threshold,
# and their scores stay finite instead of overflowing float32 in the networks.
SATURATION = 1e6



def check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_positive_number(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Real) or not 0 < value < np.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def flatten_images(X):
    """A 4-D array ``(n, channels, height, width)`` becomes flat rows plus its image shape."""
    if hasattr(X, "ndim") and not hasattr(X, "columns"):
        if getattr(X, "dtype", None) is not None and np.dtype(X.dtype).kind in "mM":
            raise timestamp_error("of X", f"a {X.dtype} array")
        if X.ndim == 4:
            X = np.asarray(X)
            shape = tuple(int(s) for s in X.shape[1:])
            # an explicit width, since -1 cannot be inferred for zero images
            return X.reshape(len(X), int(np.prod(shape))), shape
        if X.ndim == 1:
            # scikit-learn's wording, without the array itself, which may be long
            raise ValueError(
                f"Expected 2D array, got 1D array instead (shape {tuple(X.shape)}). Reshape "
                "your data either using array.reshape(-1, 1) if your data has a single "
                "feature or array.reshape(1, -1) if it contains a single sample."
            )
        if X.ndim == 3 or X.ndim > 4:
            raise ValueError(
                f"Found array with dim {X.ndim}, shape {tuple(X.shape)}; expected rows "
                "(n_samples, n_features) or images (n_samples, channels, height, width)"
            )
    return X, None


def fitted_rows(estimator, X, ensure_all_finite: bool = True) -> np.ndarray:
    """New rows for a fitted estimator: images flattened and checked against the fitted
    input shape; a table's columns found by name and encoded as in fit (see
    :mod:`.columns`), or an array validated against the columns it was fitted on."""
    check_is_fitted(estimator)
    X, image_shape = flatten_images(X)
    if image_shape is not None and image_shape != estimator.input_shape_:
        raise ValueError(
            f"images have shape {image_shape} but the model was fitted on "
            f"{estimator.input_shape_}"
        )
    schema = getattr(estimator, "schema_", None)
    if schema is not None and (is_frame(X) or schema.encodes):
        if not is_frame(X) and schema.named:
            _warn_unnamed(estimator)
        rows = schema.transform(X)
        return check_array(rows, ensure_all_finite=ensure_all_finite, ensure_min_samples=1)
    X = _numeric_array(X)
    return validate_data(
        estimator, X, dtype=[np.float64, np.float32], reset=False,
        ensure_all_finite=ensure_all_finite,
    )


def _warn_unnamed(estimator) -> None:
    # scikit-learn's words for the same case, so that filters written for it apply
    warnings.warn(
        f"X does not have valid feature names, but {type(estimator).__name__} was fitted "
        "with feature names",
        UserWarning,
        stacklevel=4,
    )


def _numeric_array(X):
    """An object array's first cell that is text, named by its column, instead of numpy's
    "could not convert string to float"."""
    if getattr(X, "dtype", None) is None or np.dtype(X.dtype).kind not in "OUS":
        return X
    values = np.asarray(X)
    if values.ndim != 2:
        return X
    for j in range(values.shape[1]):
        for i, value in enumerate(values[:, j]):
            if isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    raise ValueError(
                        f"column {j} of X holds text ({value!r} in row {i}); pass a pandas "
                        "DataFrame, whose text columns are encoded as categories, or encode "
                        "it first"
                    ) from None
    return X


def describe_columns(columns: np.ndarray, names) -> str:
    shown = [repr(str(names[c])) if names is not None else str(c) for c in columns[:5]]
    more = f" and {len(columns) - 5} more" if len(columns) > 5 else ""
    return f"column{'s' if len(columns) > 1 else ''} {', '.join(shown)}{more}"


def check_values(X: np.ndarray, names, limit: float) -> None:
    """Raise ValueError naming the columns if ``X`` holds NaN, infinity, or values beyond
    ``limit`` in magnitude. Two reductions when all is well; the diagnosis only on error."""
    # compared as Python floats: numpy would cast the limit to X's dtype, where
    # float64's limit overflows float32
    if X.size == 0 or (-limit <= float(X.min()) and float(X.max()) <= limit):
        return
    missing = np.isnan(X)
    if missing.any():
        column = int(np.flatnonzero(missing.any(axis=0))[0])
        label = repr(str(names[column])) if names is not None else str(column)
        in_column = missing[:, column]
        raise missing_cells_error(label, int(in_column.sum()), int(np.argmax(in_column)))
    for kind, bad in (
        ("infinity", np.isinf(X)),
        ("values beyond float32's range (|x| > 3.4e38)", np.abs(X) > limit),
    ):
        if bad.any():
            columns = np.flatnonzero(bad.any(axis=0))
            first_row = int(np.flatnonzero(bad.any(axis=1))[0])
            remedy = (
                "the networks compute in float32: rescale these columns"
                if kind.startswith("values")
                else "replace or drop infinite values first"
            )
            raise ValueError(
                f"Input X contains {kind} in {describe_columns(columns, names)} "
                f"(first in row {first_row}); {remedy}"
            )


def check_training_settings(estimator) -> None:
    """The learning rates and the reconstruction loss every AAE estimator takes."""
    for name in ("lr_autoencoder", "lr_discriminator", "lr_generator"):
        check_positive_number(name, getattr(estimator, name))
    if estimator.reconstruction_loss not in RECONSTRUCTION_LOSSES:
        raise ValueError(
            f"reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}, "
            f"got {estimator.reconstruction_loss!r}"
        )
    check_scaling(estimator.scaling)


def check_non_negative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < np.inf:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")



def saturated(X: np.ndarray, center: np.ndarray, scale: np.ndarray, names) -> np.ndarray:
    """``X`` with values beyond :data:`SATURATION` training spreads (``scale``) from the
    training ``center`` moved to that distance, with a warning naming the columns."""
    # the networks see float32 values: a value that rounds to the centre is at it
    margin = SATURATION * scale + np.abs(center) * float(np.finfo(np.float32).eps)
    low, high = center - margin, center + margin
    outside = np.less(X, low) | np.greater(X, high)
    if not outside.any():
        return X
    columns = np.flatnonzero(outside.any(axis=0))
    rows = int(outside.any(axis=1).sum())
    warning = ExtremeValueWarning(extreme_values_message(rows, columns, names))
    # what the message counts, for a caller that scores a file in parts to add up
    warning.rows, warning.columns, warning.names = rows, columns, names
    warnings.warn(warning, stacklevel=4)
    return np.clip(X, low.astype(X.dtype), high.astype(X.dtype))


def extreme_values_message(rows: int, columns: np.ndarray, names) -> str:
    return (
        f"{rows} rows have values more than {SATURATION:g} training spreads from the "
        f"training data in {describe_columns(columns, names)}; they are scored as if they "
        "were at that distance, far above the threshold"
    )


def finite(values: np.ndarray, what: str) -> np.ndarray:
    """``values``, or ValueError naming the rows where the networks gave NaN or infinity."""
    if np.isfinite(values).all():
        return values
    rows = np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))
    raise ValueError(
        f"the model gave non-finite {what} for {len(rows)} rows (first: row {rows[0]}); "
        "their values overflow the networks' float32 arithmetic: check them for "
        "extreme magnitudes"
    )


def check_non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def check_fraction(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_dict_or_none(estimator, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(estimator, name)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict or None, got {type(value).__name__}")


def check_detector_params(estimator) -> None:
    """Every parameter of an ``AAEDetector`` (in ``fit``, and when a model file is read)."""
    if estimator.latent_dim != "auto":
        check_int("latent_dim", estimator.latent_dim)
    check_int("epochs", estimator.epochs)
    check_int("batch_size", estimator.batch_size)
    if estimator.n_neighbors != "auto":
        check_non_negative_int("n_neighbors", estimator.n_neighbors)
    check_training_settings(estimator)
    if estimator.posterior not in POSTERIORS:
        raise ValueError(
            f"posterior must be one of {POSTERIORS}, got {estimator.posterior!r}"
        )
    check_fraction("calibration_fraction", estimator.calibration_fraction)
    check_contamination(estimator.contamination)
    check_dict_or_none(estimator, ("prior_params", "encoder_params", "score_weights"))
    check_missing_choice(estimator.missing)
    check_column_list("id_columns", estimator.id_columns)
    check_column_list("drop_columns", estimator.drop_columns)


def training_rows(estimator, X, y) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """An estimator's training rows, flat (and the image shape when ``X`` held images).

    A DataFrame's columns are learned as a :class:`~.columns.TableSchema` (kept as
    ``schema_``: ids and dropped columns left out, text encoded, missing cells imputed or
    refused), as are an array's when missing cells are imputed. NaN, infinity and values
    beyond float32's range are refused, naming their columns.
    """
    X, image_shape = flatten_images(X)
    missing = getattr(estimator, "missing", "error")
    ignored = []
    for parameter, option in (("id_columns", "--id-column"), ("drop_columns", "--drop-column")):
        names = check_column_list(parameter, getattr(estimator, parameter, None))
        if is_frame(X):
            absent = [n for n in names if n not in X.columns]
            if absent:
                raise ValueError(
                    f"X has no column {absent[0]!r} ({parameter}, {option}); its columns: "
                    f"{', '.join(map(str, X.columns))}"
                )
        ignored += names
    estimator.__dict__.pop("schema_", None)
    if is_frame(X):
        schema, rows = TableSchema.fit_frame(X, ignored, missing)
        rows = check_array(rows, ensure_min_samples=2, ensure_all_finite=False)
        estimator.n_features_in_ = schema.n_inputs
        estimator.feature_names_in_ = np.asarray(schema.names, dtype=object)
        estimator.schema_ = schema
        names = schema.encoded_names()
    else:
        if ignored:
            raise ValueError(
                "id_columns and drop_columns name columns of a pandas DataFrame; X has no "
                "column names"
            )
        rows = validate_data(
            estimator, _numeric_array(X), dtype=[np.float64, np.float32],
            ensure_min_samples=2, ensure_all_finite=False,
        )
        names = getattr(estimator, "feature_names_in_", None)
        if missing == "impute":
            estimator.schema_ = TableSchema.fit_array(rows)
            rows = estimator.schema_.transform(rows)
    check_values(rows, names, limit=FLOAT32_MAX)
    if y is not None:
        check_consistent_length(rows, y)
    return rows, image_shape


def scoring_rows(detector, X) -> np.ndarray:
    """Rows for a fitted detector to score, checked, and saturated (see :func:`saturated`)
    against its input scaling."""
    X = fitted_rows(detector, X, ensure_all_finite=False)
    schema = getattr(detector, "schema_", None)
    names = schema.encoded_names() if schema is not None else getattr(
        detector, "feature_names_in_", None
    )
    check_values(X, names, limit=FLOAT64_MAX)
    center = detector.module_.center.double().cpu().numpy()
    scale = detector.module_.scale.double().cpu().numpy()
    return saturated(X, center, scale, names)
