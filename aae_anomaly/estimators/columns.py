"""What a table's columns hold, learned in ``fit`` and applied to every table scored later.

A pandas DataFrame, as users export it from a database or a spreadsheet, has ids, text
categories, booleans, timestamps and empty cells; the networks take a matrix of numbers.
:class:`TableSchema` is the bridge: fitted on the training table, it records each column's
kind (``numeric``, ``boolean`` or ``categorical``, with the categories seen and a bucket
for the others), the value a missing cell takes (the training median, or the most
frequent category), and the columns to leave out (ids). It is stored in the model file as
plain JSON, and applied to new tables by column name, so reordered columns just work.

Every error names its column; one message covers every kind of missing cell.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import RowKeyWarning

MISSING_CHOICES = ("error", "impute")
KINDS = ("numeric", "boolean", "categorical")
# At most this many categories of a column get their own input; rarer ones, and those
# never seen in training, share the column's "other" bucket.
MAX_CATEGORIES = 50
OTHER = "<other>"

_TRUE, _FALSE = {"true"}, {"false"}
# Dates and times as databases and spreadsheets export them: 2024-01-31, 2024-01-31
# 12:00:00(.123)(+01:00), 31/01/2024 (12:00), 12:00:00.
# 1,234.5  1.234,5  1 234  1'234  12,5: numbers that pandas leaves as text unless told the
# separators
_GROUPED_NUMBER = re.compile(r"^[+-]?\d{1,3}([,.' \u00a0]\d{3})+([.,]\d+)?$|^[+-]?\d+,\d+$")
_TIMESTAMP = re.compile(
    r"^\s*(\d{4}-\d{1,2}-\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"
    r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?)?"
    r"|\d{1,2}:\d{2}:\d{2}(\.\d+)?)\s*$"
)
_UNNAMED = re.compile(r"^(Unnamed: \d+)?$")


def is_frame(X: Any) -> bool:
    """Whether ``X`` is a pandas DataFrame (checked without importing pandas)."""
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "iloc")


def check_missing_choice(missing: Any) -> None:
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {MISSING_CHOICES}, got {missing!r}")


def check_column_list(name: str, value: Any) -> list[str]:
    """``value`` (None, a name, or a list of names) as a list of column names."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{name} must be a column name or a list of them, got {value!r}")


def missing_cells_error(column: str, count: int, first_row: Any) -> ValueError:
    """The one message for missing cells (NaN, None, NaT, empty), wherever they are."""
    cells = "cell" if count == 1 else "cells"
    return ValueError(
        f"column {column} has {count} missing {cells} (NaN, None or empty; the first in "
        f"row {first_row}); fill them, or fit with missing='impute' (--missing impute) "
        "to fill them from the training data"
    )


def timestamp_error(column: str, what: str) -> ValueError:
    return ValueError(
        f"column {column} holds timestamps ({what}), which are not features: pass it as "
        "an id (id_columns, --id-column) to keep it out of the features and in the "
        "output, or derive numbers from it first (hour, weekday, seconds since an event)"
    )


@dataclass
class Column:
    """One input column: its name, kind, the value a missing cell takes (None when
    missing cells are an error) and, for a categorical column, its categories."""

    name: str
    kind: str
    fill: float | str | None = None
    categories: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        """How many inputs of the networks the column becomes."""
        return len(self.categories) + 1 if self.kind == "categorical" else 1

    def encoded_names(self) -> list[str]:
        if self.kind != "categorical":
            return [self.name]
        return [f"{self.name}={c}" for c in self.categories] + [f"{self.name}={OTHER}"]


class TableSchema:
    """The columns a model was fitted on, and how each becomes numbers.

    ``named``: the columns were matched by name (a DataFrame) rather than by position.
    ``ignored``: columns left out of the features (ids and dropped columns); a table
    scored later may hold them or not.
    """

    def __init__(self, columns: list[Column], missing: str, named: bool, ignored: list[str]):
        self.columns = columns
        self.missing = missing
        self.named = named
        self.ignored = ignored

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit_frame(cls, frame, ignored: list[str], missing: str) -> tuple[TableSchema, np.ndarray]:
        """Learn the schema of a training DataFrame; also return its encoded rows."""
        names = [str(c) for c in frame.columns]
        if len(frame) == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape {frame.shape}) while a minimum of 1 "
                "is required: X has a header but no rows"
            )
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"X has more than one column named {repeated[0]!r}")
        absent = [n for n in ignored if n not in names]
        if absent:
            raise ValueError(
                f"X has no column {absent[0]!r} to leave out; its columns: {', '.join(names)}"
            )
        kept = [(name, frame.iloc[:, i]) for i, name in enumerate(names) if name not in ignored]
        if not kept:
            raise ValueError("X has no feature columns left once the id and dropped ones are out")
        columns = [_learn(name, series, missing) for name, series in kept]
        schema = cls(columns, missing, True, list(ignored))
        for column, (_, series) in zip(columns, kept, strict=True):
            _warn_if_row_key(column, series)
        return schema, schema._encode([series for _, series in kept], frame.index)

    @classmethod
    def fit_array(cls, X: np.ndarray) -> TableSchema:
        """The schema of numeric rows whose missing cells are imputed with the median."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
            medians = np.nanmedian(X, axis=0) if len(X) else np.zeros(X.shape[1])
        columns = [
            Column(str(j), "numeric", float(m) if np.isfinite(m) else 0.0)
            for j, m in enumerate(medians)
        ]
        return cls(columns, "impute", False, [])

    # -- applying --------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def encoded_names(self) -> list[str]:
        return [n for c in self.columns for n in c.encoded_names()]

    @property
    def encodes(self) -> bool:
        """Whether a column becomes something other than its own numbers."""
        return any(c.kind != "numeric" for c in self.columns) or self.missing == "impute"

    def transform(self, X) -> np.ndarray:
        """New rows as the networks' numbers: columns found by name in a DataFrame (by
        position in an array), encoded and imputed as in training."""
        if is_frame(X):
            return self._encode(self._columns_of(X), X.index)
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            found = X.shape[1] if X.ndim == 2 else "no"
            raise ValueError(
                f"X has {found} feature columns but the model was fitted on {self.n_inputs}"
            )
        if not self.encodes and X.dtype.kind in "fiub":
            return X.astype(np.float64, copy=False)
        import pandas

        frame = pandas.DataFrame(X, columns=self.names) if self.named else pandas.DataFrame(X)
        return self._encode([frame.iloc[:, j] for j in range(self.n_inputs)], frame.index)

    def _columns_of(self, frame) -> list:
        names = [str(c) for c in frame.columns]
        if not self.named:
            if len(names) != self.n_inputs:
                raise ValueError(
                    f"X has {len(names)} columns but the model was fitted on {self.n_inputs}"
                )
            return [frame.iloc[:, j] for j in range(self.n_inputs)]
        position = {name: i for i, name in enumerate(names)}
        absent = [c.name for c in self.columns if c.name not in position]
        if absent:
            more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
            raise ValueError(
                f"X has no column {absent[0]!r}{more}, which the model was fitted on; its "
                f"columns: {', '.join(names)}"
            )
        known = set(self.names) | set(self.ignored)
        extra = [n for n in names if n not in known]
        if extra:
            raise ValueError(
                f"X has column{'s' if len(extra) > 1 else ''} "
                f"{', '.join(map(repr, extra[:5]))} that the model was not fitted on; leave "
                f"{'them' if len(extra) > 1 else 'it'} out (drop_columns, --drop-column) or fit "
                "on a table that has them"
            )
        return [frame.iloc[:, position[c.name]] for c in self.columns]

    def _encode(self, series_list: list, index) -> np.ndarray:
        width = sum(c.width for c in self.columns)
        out = np.empty((len(index), width), dtype=np.float64)
        start = 0
        for column, series in zip(self.columns, series_list, strict=True):
            stop = start + column.width
            out[:, start:stop] = _encode_column(column, series, self.missing, index)
            start = stop
        return out

    # -- model files -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "named": self.named,
            "ignored": list(self.ignored),
            "columns": [
                {"name": c.name, "kind": c.kind, "fill": c.fill, "categories": c.categories}
                for c in self.columns
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> TableSchema:
        """The schema a model file stores; ValueError naming what is wrong in it."""
        if not isinstance(data, dict) or set(data) != {"missing", "named", "ignored", "columns"}:
            raise ValueError("an object with missing, named, ignored and columns")
        check_missing_choice(data["missing"])
        if not isinstance(data["named"], bool):
            raise ValueError("named must be true or false")
        ignored = data["ignored"]
        if not (isinstance(ignored, list) and all(isinstance(n, str) for n in ignored)):
            raise ValueError("ignored must be a list of column names")
        entries = data["columns"]
        if not isinstance(entries, list) or not entries:
            raise ValueError("columns must be a non-empty list")
        columns = [_column_from_dict(entry, data["missing"]) for entry in entries]
        if len({c.name for c in columns}) != len(columns):
            raise ValueError("columns must have distinct names")
        return cls(columns, data["missing"], data["named"], ignored)

    @classmethod
    def numeric(cls, names: list[str]) -> TableSchema:
        """The schema of a model fitted on named numeric columns with no missing cells (the
        one files written before schemas were stored imply)."""
        return cls([Column(n, "numeric") for n in names], "error", True, [])


def _column_from_dict(entry: Any, missing: str) -> Column:
    if not (
        isinstance(entry, dict)
        and set(entry) == {"name", "kind", "fill", "categories"}
        and isinstance(entry["name"], str)
        and entry["kind"] in KINDS
        and isinstance(entry["categories"], list)
        and all(isinstance(c, str) for c in entry["categories"])
    ):
        raise ValueError("each column must have a name, a kind of " + ", ".join(KINDS)
                         + ", a fill and a list of categories")
    kind, fill, categories = entry["kind"], entry["fill"], entry["categories"]
    if kind == "categorical":
        if not categories or len(set(categories)) != len(categories):
            raise ValueError(f"column {entry['name']!r} needs distinct categories")
        fill_ok = fill is None or fill in categories
    else:
        fill_ok = fill is None or (
            isinstance(fill, (int, float)) and not isinstance(fill, bool) and np.isfinite(fill)
        )
    if categories and kind != "categorical":
        raise ValueError(f"column {entry['name']!r} is {kind} but lists categories")
    if not fill_ok or (missing == "impute") != (fill is not None):
        raise ValueError(f"column {entry['name']!r} has an invalid fill value {fill!r}")
    return Column(entry["name"], kind, fill, list(categories))


# -- a column's kind ------------------------------------------------------------------------
def _learn(name: str, series, missing: str) -> Column:
    import pandas
    import pandas.api.types as types

    label = repr(name)
    if (
        types.is_datetime64_any_dtype(series)
        or types.is_timedelta64_dtype(series)
        or isinstance(series.dtype, pandas.PeriodDtype)
    ):
        raise timestamp_error(label, str(series.dtype))
    present = series[~_missing_mask(series)]
    if missing == "error" and len(present) < len(series):
        raise _missing_error(label, series)
    if types.is_bool_dtype(series):
        kind = "boolean"
    elif types.is_numeric_dtype(series) and not isinstance(series.dtype, _categorical()):
        kind = "numeric"
    else:
        kind = _kind_of_values(label, series, present)
    if kind == "categorical":
        return _categorical_column(name, present, missing)
    values = _numbers(label, kind, series, series.index)
    fill = None
    if missing == "impute":
        finite = values[~np.isnan(values)]
        fill = float(np.median(finite)) if len(finite) else 0.0
        if kind == "boolean":
            fill = float(fill >= 0.5)
    return Column(name, kind, fill)


def _categorical():
    import pandas

    return pandas.CategoricalDtype


def _kind_of_values(label: str, series, present) -> str:
    """The kind of a column of objects or text: timestamps are refused, true/false text
    is boolean, numbers written as text are numeric, the rest categorical."""
    if isinstance(series.dtype, _categorical()):
        return "categorical"
    sample = present.iloc[:1000]
    if len(sample) and all(isinstance(v, (bool, np.bool_)) for v in sample):
        return "boolean"
    text = sample.astype(str).str.strip()
    if len(text) and text.str.match(_TIMESTAMP).mean() >= 0.9:
        raise timestamp_error(label, f"e.g. {text.iloc[0]!r}")
    if len(text) and text.str.lower().isin(_TRUE | _FALSE).all():
        return "boolean"
    import pandas

    parsed = pandas.to_numeric(present, errors="coerce")
    if len(present) and parsed.notna().mean() >= 0.9:
        if parsed.notna().all():
            return "numeric"
        bad = present[parsed.isna()]
        raise ValueError(
            f"column {label}: {bad.iloc[0]!r} in row {bad.index[0]} is not a number, "
            f"while {int(parsed.notna().sum()):,} of its {len(present):,} cells are; "
            "correct it, or leave the cell empty to mark it missing"
        )
    grouped = text.str.match(_GROUPED_NUMBER).to_numpy(dtype=bool)
    plain = pandas.to_numeric(text, errors="coerce").notna().to_numpy()
    if grouped.any() and (grouped | plain).mean() >= 0.9:
        raise ValueError(
            f"column {label} holds numbers written as text with a thousands separator or "
            f"a decimal comma (e.g. {text[grouped].iloc[0]!r}), which "
            "would be taken for categories; read them as numbers: --thousands and --decimal "
            "on the command line, thousands= and decimal= of pandas.read_csv"
        )
    return "categorical"


def _categorical_column(name: str, present, missing: str) -> Column:
    text = present.astype(str)
    counts = text.value_counts(sort=False)
    # most frequent first, ties by name: the same categories whatever the row order
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    categories = [c for c, _ in ranked[:MAX_CATEGORIES]]
    if len(ranked) > MAX_CATEGORIES and len(ranked) > len(text) // 2:
        warnings.warn(
            f"column {name!r} has {len(ranked)} distinct values in {len(text)} rows, like a "
            f"key or free text; only its {MAX_CATEGORIES} most frequent are told apart. "
            f"If it identifies rows, leave it out with id_columns=[{name!r}] "
            f"(--id-column {name!r})",
            RowKeyWarning,
            stacklevel=6,
        )
    if not categories:
        raise ValueError(f"column {name!r} has no values, only missing cells")
    fill = categories[0] if missing == "impute" else None
    return Column(name, "categorical", fill, categories)


def _warn_if_row_key(column: Column, series) -> None:
    """Warn when a feature column looks like a row key: unnamed (a saved DataFrame
    index), or unique integers in increasing order."""
    hint = f"leave it out with id_columns=[{column.name!r}] (--id-column {column.name!r})"
    if _UNNAMED.match(column.name):
        reason = "is unnamed, like the index a DataFrame's to_csv() writes"
    elif column.kind == "numeric" and len(series) >= 10:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        steps = np.diff(values)
        if not (np.isfinite(values).all() and (values == np.round(values)).all()
                and (steps > 0).all()):
            return
        reason = "holds unique integers in increasing order, like a row key"
    else:
        return
    warnings.warn(
        f"column {column.name!r} {reason}; it is trained on as a feature, so new rows "
        f"with new keys look anomalous: {hint}",
        RowKeyWarning,
        stacklevel=5,
    )


# -- a column's numbers ---------------------------------------------------------------------
def _missing_mask(series) -> np.ndarray:
    mask = series.isna().to_numpy().copy()
    if series.dtype == object or str(series.dtype) in ("string", "str"):
        text = series[~mask].astype(str).str.strip()
        mask[np.flatnonzero(~mask)[(text == "").to_numpy()]] = True
    return mask


def _missing_error(label: str, series) -> ValueError:
    mask = _missing_mask(series)
    return missing_cells_error(label, int(mask.sum()), series.index[np.argmax(mask)])


def _numbers(label: str, kind: str, series, index) -> np.ndarray:
    """A numeric or boolean column's values as float64, NaN where missing."""
    import pandas
    import pandas.api.types as types

    if types.is_datetime64_any_dtype(series) or types.is_timedelta64_dtype(series):
        raise timestamp_error(label, str(series.dtype))
    if types.is_bool_dtype(series) or (
        types.is_numeric_dtype(series) and not isinstance(series.dtype, _categorical())
    ):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    mask = _missing_mask(series)
    present = series[~mask]
    values = np.full(len(series), np.nan)
    if kind == "boolean":
        text = present.astype(str).str.strip().str.lower()
        known = text.isin(_TRUE | _FALSE | {"1", "0", "1.0", "0.0"})
        if not known.all():
            bad = present[~known.to_numpy()]
            raise ValueError(
                f"column {label}: {bad.iloc[0]!r} in row {bad.index[0]} is neither true "
                "nor false"
            )
        values[~mask] = text.isin(_TRUE | {"1", "1.0"}).to_numpy(dtype=np.float64)
        return values
    parsed = pandas.to_numeric(present, errors="coerce")
    if parsed.isna().any():
        bad = present[parsed.isna().to_numpy()]
        raise ValueError(f"column {label}: {bad.iloc[0]!r} in row {bad.index[0]} is not a number")
    values[~mask] = parsed.to_numpy(dtype=np.float64)
    return values


def _encode_column(column: Column, series, missing: str, index) -> np.ndarray:
    label = repr(column.name)
    if column.kind == "categorical":
        mask = _missing_mask(series)
        if mask.any() and column.fill is None:
            raise missing_cells_error(label, int(mask.sum()), index[np.argmax(mask)])
        import pandas

        text = series.astype(str).to_numpy(dtype=object)
        text[mask] = column.fill
        codes = pandas.Index(column.categories).get_indexer(text).astype(np.int64)
        codes[codes < 0] = len(column.categories)  # never seen in training: "other"
        encoded = np.zeros((len(text), column.width))
        encoded[np.arange(len(text)), codes] = 1.0
        return encoded
    values = _numbers(label, column.kind, series, index)
    nan = np.isnan(values)
    if nan.any():
        if column.fill is None:
            raise missing_cells_error(label, int(nan.sum()), index[np.argmax(nan)])
        values = np.where(nan, column.fill, values)
    return values[:, None]
