"""Reading the command line's DATA argument and writing score tables.

DATA is a file whose format follows its suffix (``.csv`` with a header line,
``.parquet``, ``.npy``, ``.npz``) or a dataset plugin spec such as
``synthetic:n=2000,anomalies=0.05``. Score tables go to ``.csv``, ``.parquet`` or
``.npy`` files, atomically, or as CSV to standard output.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from ..plugin_system.datasets import Dataset, load_dataset, parse_spec
from ..plugin_system.manager import get_plugin_manager
from .atomic import atomic_path, atomic_write_bytes

DATA_SUFFIXES = (".csv", ".parquet", ".npy", ".npz")
TABLE_SUFFIXES = (".csv", ".parquet")
OUTPUT_SUFFIXES = (".csv", ".parquet", ".npy")
STDOUT = "-"
DELIMITERS = (",", ";", "\t", "|")
# enough lines to tell the delimiter and the decimal mark, read before the whole file
_SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class ReadOptions:
    """How to read a CSV file: ``None`` detects the delimiter (one of
    :data:`DELIMITERS`) and the decimal mark from the first lines. A UTF-8 byte-order
    mark is always dropped."""

    delimiter: str | None = None
    decimal: str | None = None
    encoding: str = "utf-8"
    thousands: str | None = None


def read_data(
    source: str, label_column: str | None = None, options: ReadOptions | None = None
) -> Dataset:
    """The rows named by ``source``; ``label_column`` names a CSV or parquet column of
    labels, which is then left out of the features (``y``). A table's rows come as a
    pandas DataFrame, whose columns keep their types (text, booleans, empty cells) for the
    estimator to encode; arrays come as arrays."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in DATA_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        if label_column and suffix not in TABLE_SUFFIXES:
            raise ValueError(f"--label-column applies to .csv and .parquet files, not {source}")
        if suffix == ".csv":
            options = options or ReadOptions()
            extra = {"delimiter": options.delimiter or "", "decimal": options.decimal or "",
                     "encoding": options.encoding, "thousands": options.thousands or ""}
        else:
            extra = {}
        if label_column:
            extra["label"] = label_column
        # the built-in loaders read every format; `path` goes in as an override so a
        # comma or colon in it is not taken for spec syntax
        return load_dataset(suffix[1:], path=str(path), **extra)
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


def read_csv_table(
    path: str | Path, delimiter: str = "", decimal: str = "", encoding: str = "utf-8",
    thousands: str = "",
):
    """A CSV file with a header line as a pandas DataFrame, its delimiter and decimal mark
    detected unless given; header names stripped of spaces and of a byte-order mark.
    ``thousands``: the thousands separator of numbers such as ``1,234.5`` (none by
    default: such cells stay text, and the model's schema names the column)."""
    pandas = _require_pandas()
    path = Path(path)
    encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
        sample = head.decode(encoding, errors="ignore" if len(head) == _SNIFF_BYTES else "strict")
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, exc) from None
    if not sample.strip():
        raise ValueError(f"{path} is empty")
    delimiter = delimiter or sniff_delimiter(sample)
    decimal = decimal or sniff_decimal(sample, delimiter)
    _check_header(path, sample, delimiter)
    try:
        with warnings.catch_warnings():
            # pandas parses a long file in blocks, and a column whose blocks parse to
            # different types (numbers, then a text cell) comes as objects, with this
            # warning; the model's schema reads such a column cell by cell and names a
            # stray cell itself. (low_memory=False would avoid it at 2.5x the time.)
            warnings.simplefilter("ignore", pandas.errors.DtypeWarning)
            frame = pandas.read_csv(
                path, sep=delimiter, decimal=decimal, encoding=encoding, skipinitialspace=True,
                thousands=thousands or None,
            )
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, exc) from None
    except pandas.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except pandas.errors.ParserError as exc:
        raise ValueError(f"{path} is not a well-formed CSV file: {_one_line(exc)}") from None
    frame.columns = [str(name).strip() for name in frame.columns]
    _check_short_lines(path, encoding, delimiter, frame)
    return frame


def _check_short_lines(path: Path, encoding: str, delimiter: str, frame) -> None:
    """Raise for a line with fewer fields than the header, which pandas pads with
    missing cells (a cut-off file would otherwise pass for one with empty cells). Only
    the last column shows such padding, so files without a gap there are not reread."""
    if frame.empty or not frame.iloc[:, -1].isna().any():
        return
    text = path.read_text(encoding)
    if '"' in text:
        return  # quoted fields may hold delimiters and line breaks; pandas' reading stands
    width = len(frame.columns)
    for number, line in enumerate(text.splitlines()[1:], start=2):
        fields = line.count(delimiter) + 1
        if line.strip() and fields < width:
            raise ValueError(
                f"{path} is not a well-formed CSV file: line {number} has {fields} "
                f"field{'s' if fields != 1 else ''} where the header has {width}"
            )


def _check_header(path: Path, sample: str, delimiter: str) -> None:
    """Raise for a column name that repeats, which pandas would rename silently (``a``,
    ``a.1``), and for an empty header line."""
    header = next(csv.reader(sample.splitlines()[:1], delimiter=delimiter), [])
    names = [name.strip().lstrip("\ufeff") for name in header]
    seen = set()
    for name in names:
        if name and name in seen:
            raise ValueError(f"{path}: the header names column {name!r} twice; rename one")
        seen.add(name)


def _encoding_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> ValueError:
    name = "UTF-8" if encoding == "utf-8-sig" else encoding
    return ValueError(
        f"{path} is not {name} text (byte {exc.start} cannot be read); give its encoding, "
        "e.g. --encoding latin-1 (encoding='latin-1' in Python)"
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _sample_lines(sample: str) -> list[str]:
    lines = sample.splitlines()
    if not sample.endswith(("\n", "\r")) and len(lines) > 1:
        lines = lines[:-1]  # cut off by the sample's end
    return [line for line in lines[:50] if line.strip()]


def sniff_delimiter(sample: str) -> str:
    """The candidate that splits every sampled line into the same number of fields, more
    than one; the one giving the most fields when several do, ``,`` when none does."""
    lines = _sample_lines(sample)
    best, best_fields = ",", 1
    for candidate in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=candidate)}
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = candidate, fields
    return best


_COMMA_DECIMAL = re.compile(r"^[+-]?\d+,\d+([eE][+-]?\d+)?$")
_POINT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+([eE][+-]?\d+)?$")


def sniff_decimal(sample: str, delimiter: str) -> str:
    """``,`` when the fields hold numbers written with a decimal comma (never when the
    comma separates fields) and none with a decimal point; else ``.``."""
    if delimiter == ",":
        return "."
    fields = [f.strip() for row in csv.reader(_sample_lines(sample)[1:], delimiter=delimiter)
              for f in row]
    comma = sum(bool(_COMMA_DECIMAL.match(f)) for f in fields)
    point = sum(bool(_POINT_DECIMAL.match(f)) for f in fields)
    return "," if comma and not point else "."


def read_parquet_table(path: str | Path):
    """A parquet file as a pandas DataFrame."""
    pandas = _require_parquet_support()
    try:
        return pandas.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ValueError(f"{path} is not a readable parquet file: {_one_line(exc)}") from None


def split_label(frame, label: str, path) -> tuple[Any, np.ndarray]:
    """``frame`` without its column ``label``, and that column's values."""
    if label not in frame.columns:
        raise ValueError(
            f"{path} has no column {label!r}; columns: {', '.join(map(str, frame.columns))}"
        )
    values = frame[label].to_numpy()
    return frame.drop(columns=[label]), values


def _require_pandas():
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a dependency
        raise MissingDependencyError("reading tables needs pandas: pip install pandas") from None
    return pandas


def _require_parquet_support():
    pandas = _require_pandas()
    try:
        import pyarrow  # noqa: F401  (pandas needs it for parquet; fail here, clearly)
    except ImportError:
        raise MissingDependencyError(
            "parquet files need pyarrow: pip install 'aae-anomaly[parquet]'"
        ) from None
    return pandas


def check_output_path(destination: str | None, suffixes: tuple[str, ...] | None = None) -> None:
    """Raise before any work starts unless ``destination`` can be written: its folder
    exists, it is not a folder, and its suffix is one of ``suffixes`` (any when None)."""
    if destination in (None, STDOUT):
        return
    path = Path(destination)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(
            f"{destination}: unsupported output format {path.suffix or '(no suffix)'}; "
            f"expected one of {', '.join(suffixes)}"
        )
    if path.is_dir():
        raise ValueError(f"{destination} is a directory; give a file name to write")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {path.parent} (for {destination})")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"cannot write in {path.parent} (for {destination})")


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


def write_table(
    columns: dict[str, np.ndarray], destination: str | None, keys: dict | None = None
) -> None:
    """Write equal-length columns to ``destination`` (format from its suffix), or as CSV to
    standard output when it is ``None`` or ``"-"``. ``keys`` (row ids, of any type) come
    first in a CSV or parquet table; an .npy file holds only the numeric ``columns``."""
    keys = keys or {}
    if destination in (None, STDOUT):
        sys.stdout.write(_csv_text({**keys, **columns}))
        sys.stdout.flush()
        return
    check_output_path(destination, OUTPUT_SUFFIXES)
    path = Path(destination)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        atomic_write_bytes(path, _csv_text({**keys, **columns}).encode())
    elif suffix == ".npy":
        table = np.column_stack([np.asarray(v, dtype=np.float64) for v in columns.values()])
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, table, allow_pickle=False)
    else:
        pandas = _require_parquet_support()
        frame = pandas.DataFrame({**keys, **columns})
        with atomic_path(path) as temporary:
            frame.to_parquet(temporary, index=False)


def _csv_text(columns: dict[str, np.ndarray]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    cells = [_texts(np.asarray(values)) for values in columns.values()]
    writer.writerows(zip(*cells, strict=True))
    return buffer.getvalue()


def _texts(values: np.ndarray) -> list[str]:
    if values.dtype.kind == "f":
        # repr of a Python float is the shortest text that reads back to the same number
        return [repr(float(x)) for x in values]
    if values.dtype.kind in "iub":
        return [str(int(x)) for x in values]
    # ids as the table had them: text, dates; a missing one as an empty cell
    return ["" if _is_missing(x) else str(x) for x in values]


def _is_missing(value: Any) -> bool:
    import pandas

    missing = pandas.isna(value)  # None, NaN, NaT, pd.NA
    return isinstance(missing, (bool, np.bool_)) and bool(missing)
