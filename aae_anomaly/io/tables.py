"""Reading the command line's DATA argument and writing score tables.

DATA is a file whose format follows its suffix (``.csv`` with a header line,
``.parquet``, ``.npy``, ``.npz``) or a dataset plugin spec such as
``synthetic:n=2000,anomalies=0.05``. Score tables go to ``.csv``, ``.parquet`` or
``.npy`` files, atomically, or as CSV to standard output.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError
from ..plugin_system.datasets import Dataset, load_dataset, parse_spec
from ..plugin_system.manager import get_plugin_manager
from .atomic import atomic_path, atomic_write_bytes

DATA_SUFFIXES = (".csv", ".parquet", ".npy", ".npz")
OUTPUT_SUFFIXES = (".csv", ".parquet", ".npy")
STDOUT = "-"


def read_data(source: str, label_column: str | None = None) -> Dataset:
    """The rows named by ``source``; ``label_column`` names a CSV or parquet column of
    anomaly labels (1 = anomaly), which is then left out of the features."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in DATA_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        if label_column and suffix not in (".csv", ".parquet"):
            raise ValueError(f"--label-column applies to .csv and .parquet files, not {source}")
        if suffix == ".parquet":
            return _read_parquet(path, label_column)
        # the built-in loaders read the other formats; `path` goes in as an override so a
        # comma or colon in it is not taken for spec syntax
        options = {"label": label_column} if label_column else {}
        return load_dataset(suffix[1:], path=str(path), **options)
    if path.is_file():
        raise ValueError(
            f"{source}: unsupported file format {path.suffix or '(no suffix)'}; "
            f"expected one of {', '.join(DATA_SUFFIXES)}, or a dataset spec name:key=value,..."
        )
    name, _ = parse_spec(source)
    if name not in get_plugin_manager().names("dataset") and _looks_like_path(name):
        raise FileNotFoundError(f"no such file: {source}")
    if label_column:
        raise ValueError("--label-column applies to .csv and .parquet files, not dataset specs")
    return load_dataset(source)


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or "." in name


def _read_parquet(path: Path, label_column: str | None) -> Dataset:
    pandas = _require_parquet_support()
    try:
        frame = pandas.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ValueError(f"{path} is not a readable parquet file: {exc}") from None
    labels = None
    if label_column:
        if label_column not in frame.columns:
            raise ValueError(
                f"{path} has no column {label_column!r}; columns: "
                f"{', '.join(map(str, frame.columns))}"
            )
        labels = frame.pop(label_column).to_numpy(dtype=np.float64)
    for column in frame.columns:
        if not pandas.api.types.is_numeric_dtype(frame[column]) or pandas.api.types.is_bool_dtype(
            frame[column]
        ):
            raise ValueError(
                f"{path}, column {column!r}: {frame[column].dtype} values, not numbers"
            )
    names = [str(column) for column in frame.columns]
    return Dataset(frame.to_numpy(dtype=np.float64), labels, names, path.stem)


def _require_parquet_support():
    try:
        import pandas
        import pyarrow  # noqa: F401  (pandas needs it for parquet; fail here, clearly)
    except ImportError:
        raise MissingDependencyError(
            "parquet files need pandas and pyarrow: pip install 'aae-anomaly[parquet]'"
        ) from None
    return pandas


def check_features(dataset: Dataset, source: str, n_features: int, names) -> None:
    """Raise ValueError unless the data's columns are the ones the model was fitted on."""
    found = int(np.prod(dataset.X.shape[1:])) if dataset.X.ndim > 1 else 1
    if dataset.X.ndim < 2 or found != n_features:
        raise ValueError(
            f"{source} has {found} feature columns but the model was fitted on {n_features}"
        )
    if names is not None and dataset.feature_names is not None:
        expected, given = [str(n) for n in names], [str(n) for n in dataset.feature_names]
        differing = [
            f"{g!r} where the model has {e!r}"
            for g, e in zip(given, expected, strict=False)
            if g != e
        ]
        if differing:
            raise ValueError(
                f"{source}: columns do not match the model's features: {differing[0]}"
                + (f" (and {len(differing) - 1} more)" if len(differing) > 1 else "")
            )


def check_labels(labels: np.ndarray, source: str, n_rows: int) -> np.ndarray:
    """The labels as booleans (True = anomaly); ValueError unless there is one per row and
    each is 0 or 1."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(
            f"{source} has {n_rows} rows but {labels.size} labels in shape "
            f"{tuple(labels.shape)}; expected one label (0 or 1) per row"
        )
    if labels.dtype == bool:
        return labels
    if not np.issubdtype(labels.dtype, np.number):
        raise ValueError(f"{source}: labels are {labels.dtype} values; expected 0 or 1")
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{source}: {int(bad.sum())} labels are neither 0 nor 1 (the first, in row "
            f"{first}, is {labels[first].item()!r}); labels mark anomalies with 1 and normal rows "
            "with 0"
        )
    return labels == 1


def write_table(columns: dict[str, np.ndarray], destination: str | None) -> None:
    """Write equal-length columns to ``destination`` (format from its suffix), or as CSV to
    standard output when it is ``None`` or ``"-"``."""
    if destination in (None, STDOUT):
        sys.stdout.write(_csv_text(columns))
        sys.stdout.flush()
        return
    path = Path(destination)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"{destination}: unsupported output format {path.suffix or '(no suffix)'}; "
            f"expected one of {', '.join(OUTPUT_SUFFIXES)}"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {path.parent}")
    if suffix == ".csv":
        atomic_write_bytes(path, _csv_text(columns).encode())
    elif suffix == ".npy":
        table = np.column_stack([np.asarray(v, dtype=np.float64) for v in columns.values()])
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, table, allow_pickle=False)
    else:
        pandas = _require_parquet_support()
        frame = pandas.DataFrame(columns)
        with atomic_path(path) as temporary:
            frame.to_parquet(temporary, index=False)


def _csv_text(columns: dict[str, np.ndarray]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    # repr of a Python float is the shortest text that reads back to the same number
    cells = [
        [repr(float(x)) for x in values]
        if np.issubdtype(np.asarray(values).dtype, np.floating)
        else [str(int(x)) for x in values]
        for values in columns.values()
    ]
    writer.writerows(zip(*cells, strict=True))
    return buffer.getvalue()
