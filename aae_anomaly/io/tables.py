"""Reading the command line's DATA argument and writing score tables.

DATA is a file whose format follows its suffix (``.csv`` with a header line,
``.parquet``, ``.npy``, ``.npz``) or a dataset plugin spec such as
``synthetic:n=2000,anomalies=0.05``. Score tables go to ``.csv``, ``.parquet`` or
``.npy`` files, atomically, or as CSV to standard output.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from ..plugin_system.datasets import (
    Dataset,
    dataset_reads_parts,
    load_dataset,
    load_dataset_chunks,
    parse_spec,
)
from ..plugin_system.manager import get_plugin_manager
from .atomic import atomic_path

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
    spec, overrides = _loader_call(source, label_column, options)
    return load_dataset(spec, **overrides)


def read_data_chunks(
    source: str, chunk_rows: int, label_column: str | None = None,
    options: ReadOptions | None = None, columns: dict[str, str] | None = None,
    part: tuple[int, int] | None = None,
) -> Iterator[Dataset] | None:
    """``source``'s rows as :func:`read_data` reads them, in chunks of at most
    ``chunk_rows`` rows (see :func:`~aae_anomaly.plugin_system.datasets.load_dataset_chunks`
    for ``columns`` and ``part``); ``None`` when its loader cannot read in chunks (.npz
    files, and dataset plugins without a chunked reader, such as ``synthetic``)."""
    spec, overrides = _loader_call(source, label_column, options)
    return load_dataset_chunks(spec, chunk_rows, columns, part=part, **overrides)


def reads_in_parts(
    source: str, label_column: str | None = None, options: ReadOptions | None = None
) -> bool:
    """Whether :func:`read_data_chunks` can read ``source`` one part at a time (its
    chunked reader takes a ``part``, as those of .csv, .parquet and .npy files do);
    nothing is read."""
    return dataset_reads_parts(_loader_call(source, label_column, options)[0])


def _loader_call(
    source: str, label_column: str | None, options: ReadOptions | None
) -> tuple[str, dict[str, Any]]:
    """The dataset spec and the keyword options that load ``source``."""
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
        return suffix[1:], {"path": str(path), **extra}
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
    return source, {}


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
    pandas = require_pandas()
    path = Path(path)
    dialect = csv_dialect(path, delimiter, decimal, encoding, thousands)
    try:
        with warnings.catch_warnings():
            # pandas parses a long file in blocks, and a column whose blocks parse to
            # different types (numbers, then a text cell) comes as objects, with this
            # warning; the model's schema reads such a column cell by cell and names a
            # stray cell itself. (low_memory=False would avoid it at 2.5x the time.)
            warnings.simplefilter("ignore", pandas.errors.DtypeWarning)
            frame = pandas.read_csv(path, **dialect.pandas_options())
    except UnicodeDecodeError as exc:
        raise encoding_error(path, dialect.encoding, exc) from None
    except pandas.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except pandas.errors.ParserError as exc:
        raise ValueError(f"{path} is not a well-formed CSV file: {one_line(exc)}") from None
    frame.columns = [str(name).strip() for name in frame.columns]
    if needs_short_line_check(frame):
        text = path.read_text(dialect.encoding)
        if '"' not in text:
            check_short_lines(path, text.splitlines()[1:], 2, dialect.delimiter, len(frame.columns))
    return frame


@dataclass(frozen=True)
class CsvDialect:
    """How one CSV file is read: its delimiter and decimal mark, given or detected, and
    its encoding (``utf-8-sig`` for UTF-8, so that a byte-order mark is dropped)."""

    delimiter: str
    decimal: str
    encoding: str
    thousands: str | None = None

    def pandas_options(self) -> dict[str, Any]:
        return {
            "sep": self.delimiter, "decimal": self.decimal, "encoding": self.encoding,
            "skipinitialspace": True, "thousands": self.thousands,
        }


def csv_dialect(
    path: Path, delimiter: str = "", decimal: str = "", encoding: str = "utf-8",
    thousands: str = "",
) -> CsvDialect:
    """The :class:`CsvDialect` of ``path``, from its first lines; ValueError for an empty
    file, an unknown encoding, text that is not in ``encoding``, or a header naming a
    column twice."""
    encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
        sample = head.decode(encoding, errors="ignore" if len(head) == _SNIFF_BYTES else "strict")
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise encoding_error(path, encoding, exc) from None
    if not sample.strip():
        raise ValueError(f"{path} is empty")
    delimiter = delimiter or sniff_delimiter(sample)
    check_header(path, sample, delimiter)
    return CsvDialect(
        delimiter, decimal or sniff_decimal(sample, delimiter), encoding, thousands or None
    )


def needs_short_line_check(frame) -> bool:
    """Whether ``frame``'s lines must be looked at for lines with fewer fields than the
    header, which pandas pads with missing cells (a cut-off file would otherwise pass for
    one with empty cells). Only the last column shows such padding."""
    return not frame.empty and bool(frame.iloc[:, -1].isna().any())


def check_short_lines(path, lines, first_number: int, delimiter: str, width: int) -> None:
    """Raise for a line of ``lines`` (numbered from ``first_number``) with fewer fields
    than ``width``. Only for text without quotes: quoted fields may hold delimiters and
    line breaks, and then pandas' reading stands."""
    for number, line in enumerate(lines, start=first_number):
        fields = line.count(delimiter) + 1
        if line.strip() and fields < width:
            raise ValueError(
                f"{path} is not a well-formed CSV file: line {number} has {fields} "
                f"field{'s' if fields != 1 else ''} where the header has {width}"
            )


def check_header(path: Path, sample: str, delimiter: str) -> None:
    """Raise for a column name that repeats, which pandas would rename silently (``a``,
    ``a.1``), and for an empty header line."""
    header = next(csv.reader(sample.splitlines()[:1], delimiter=delimiter), [])
    names = [name.strip().lstrip("\ufeff") for name in header]
    seen = set()
    for name in names:
        if name and name in seen:
            raise ValueError(f"{path}: the header names column {name!r} twice; rename one")
        seen.add(name)


def encoding_error(
    path: Path, encoding: str, exc: UnicodeDecodeError, offset: int = 0
) -> ValueError:
    """``offset``: where in the file the bytes that ``exc`` counts in start."""
    name = "UTF-8" if encoding in ("utf-8-sig", "utf-8") else encoding
    return ValueError(
        f"{path} is not {name} text (byte {exc.start + offset} cannot be read); give its "
        "encoding, e.g. --encoding latin-1 (encoding='latin-1' in Python)"
    )


def one_line(exc: BaseException) -> str:
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
    pandas = require_parquet_support()
    try:
        return pandas.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ValueError(f"{path} is not a readable parquet file: {one_line(exc)}") from None


def split_label(frame, label: str, path) -> tuple[Any, np.ndarray]:
    """``frame`` without its column ``label``, and that column's values."""
    if label not in frame.columns:
        raise ValueError(
            f"{path} has no column {label!r}; columns: {', '.join(map(str, frame.columns))}"
        )
    values = frame[label].to_numpy()
    return frame.drop(columns=[label]), values


def require_pandas():
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a dependency
        raise MissingDependencyError("reading tables needs pandas: pip install pandas") from None
    return pandas


def require_parquet_support():
    pandas = require_pandas()
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
    with TableWriter(destination) as writer:
        writer.write(columns, keys)


_CSV_SLICE_ROWS = 4096


class TableWriter:
    """A score table written in parts, each part's rows after the last: ``write`` as often
    as needed inside ``with TableWriter(destination) as writer:``. The file appears,
    atomically, when the block ends without an error; after an error nothing is left at
    ``destination`` (a file already there stays as it was). Standard output gets the
    table only at the end too, from a temporary file, so that a failure part-way leaves
    no rows there either.

    Written in parts or at once, a CSV or .npy file has the same bytes (a parquet file
    the same values: its row groups follow the parts).
    """

    def __init__(self, destination: str | None):
        if destination not in (None, STDOUT):
            check_output_path(destination, OUTPUT_SUFFIXES)
        self.destination = destination
        self.rows = 0
        self._stack = contextlib.ExitStack()
        self._handle = None
        self._width: int | None = None
        self._parquet = None

    def __enter__(self) -> TableWriter:
        if self.destination in (None, STDOUT):
            # in memory while small, on disk beyond
            self._handle = self._stack.enter_context(
                tempfile.SpooledTemporaryFile(1 << 24, mode="w+", newline="", encoding="utf-8")
            )
            self._format = ".csv"
            return self
        self._format = Path(self.destination).suffix.lower()
        self._temporary = self._stack.enter_context(atomic_path(self.destination))
        if self._format == ".csv":
            self._handle = self._stack.enter_context(
                open(self._temporary, "w", newline="", encoding="utf-8")
            )
        elif self._format == ".npy":
            self._handle = self._stack.enter_context(open(self._temporary, "wb"))
        return self

    def write(self, columns: dict[str, np.ndarray], keys: dict | None = None) -> None:
        keys = keys or {}
        if self._format == ".csv":
            self._write_csv({**keys, **columns})
        elif self._format == ".npy":
            self._write_npy(columns)
        else:
            self._write_parquet({**keys, **columns})
        self.rows += len(next(iter(columns.values())))

    def _write_csv(self, table: dict[str, np.ndarray]) -> None:
        writer = csv.writer(self._handle, lineterminator="\n")
        if self._width is None:
            writer.writerow(table)
            self._width = len(table)
        columns = [np.asarray(values) for values in table.values()]
        # a slice at a time: the texts of a whole chunk would take ~100 bytes a cell
        for start in range(0, len(columns[0]), _CSV_SLICE_ROWS):
            cells = [_texts(values[start : start + _CSV_SLICE_ROWS]) for values in columns]
            writer.writerows(zip(*cells, strict=True))

    def _write_npy(self, columns: dict[str, np.ndarray]) -> None:
        block = np.column_stack([np.asarray(v, dtype=np.float64) for v in columns.values()])
        if self._width is None:
            self._width = block.shape[1]
            self._npy_header(0)  # rewritten with the row count at the end
        self._handle.write(block.tobytes())

    def _npy_header(self, rows: int) -> None:
        # numpy pads the header so that the row count can grow to 21 digits in place:
        # the header for 0 rows and the final one have the same length
        header = {"descr": "<f8", "fortran_order": False, "shape": (rows, self._width)}
        np.lib.format.write_array_header_1_0(self._handle, header)

    def _write_parquet(self, table: dict[str, np.ndarray]) -> None:
        pandas = require_parquet_support()
        import pyarrow
        import pyarrow.parquet

        frame = pandas.DataFrame(table)
        if self._parquet is None:
            schema = pyarrow.Schema.from_pandas(frame, preserve_index=False)
            # a key column without a value in the first part has no type yet: text
            for i, field in enumerate(schema):
                if pyarrow.types.is_null(field.type):
                    schema = schema.set(i, field.with_type(pyarrow.string()))
            self._parquet = pyarrow.parquet.ParquetWriter(self._temporary, schema)
            self._stack.callback(self._parquet.close)  # also after an error (closing twice is fine)
        arrow = pyarrow.Table.from_pandas(
            frame, schema=self._parquet.schema, preserve_index=False
        )
        self._parquet.write_table(arrow)

    def __exit__(self, kind, error, traceback) -> bool:
        try:
            if error is None:
                self._finish()
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        return self._stack.__exit__(kind, error, traceback)

    def _finish(self) -> None:
        if self._width is None and self._parquet is None:
            raise RuntimeError("a TableWriter was closed before anything was written")
        if self._format == ".npy":
            end = self._handle.tell()
            self._handle.seek(0)
            self._npy_header(self.rows)
            if self._handle.tell() != end - self.rows * self._width * 8:
                raise RuntimeError("the .npy header changed length")  # numpy's padding changed
            self._handle.seek(end)
        elif self._parquet is not None:
            self._parquet.close()
        if self.destination in (None, STDOUT):
            self._handle.seek(0)
            shutil.copyfileobj(self._handle, sys.stdout)
            sys.stdout.flush()


def _texts(values: np.ndarray) -> list[str]:
    # tolist() makes Python numbers in one step, several times faster than one at a time
    if values.dtype.kind == "f":
        # repr of a Python float is the shortest text that reads back to the same number
        return list(map(repr, values.astype(np.float64, copy=False).tolist()))
    if values.dtype.kind in "iub":
        numbers = values.astype(np.int64) if values.dtype.kind == "b" else values
        return list(map(str, numbers.tolist()))
    # ids as the table had them: text, dates; a missing one as an empty cell
    return ["" if _is_missing(x) else str(x) for x in values]


def _is_missing(value: Any) -> bool:
    import pandas

    missing = pandas.isna(value)  # None, NaN, NaT, pd.NA
    return isinstance(missing, (bool, np.bool_)) and bool(missing)
