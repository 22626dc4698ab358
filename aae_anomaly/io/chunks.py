"""Reading a CSV or parquet file in parts of a bounded number of rows, for ``score`` on
files larger than memory.

Each part is a DataFrame indexed by its rows' numbers in the file, so the parts, put end
to end, are the table :func:`~aae_anomaly.io.tables.read_csv_table` or
:func:`~aae_anomaly.io.tables.read_parquet_table` reads at once. One difference is
deliberate: pandas guesses a CSV column's type from the rows it sees, so a column can come
out as integers in one part and floats or text in another. ``columns`` (a column's name
-> its kind, as a model's schema knows it) makes every part parse alike: ``numeric``
columns as floats, ``categorical`` and ``text`` ones as the text in the file (``007``
stays ``007``), ``boolean`` ones as pandas reads them.
"""

from __future__ import annotations

import io
import itertools
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from .tables import (
    check_short_lines,
    csv_dialect,
    encoding_error,
    needs_short_line_check,
    one_line,
    read_csv_table,
    require_pandas,
    require_parquet_support,
)

COLUMN_KINDS = ("numeric", "boolean", "categorical", "text")
_DTYPES = {"numeric": "float64", "boolean": None, "categorical": str, "text": str}


def check_chunk_rows(chunk_rows) -> int:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return chunk_rows


def check_column_kinds(columns) -> dict[str, str]:
    columns = dict(columns or {})
    for name, kind in columns.items():
        if kind not in COLUMN_KINDS:
            raise ValueError(f"column {name!r}: kind {kind!r} is not one of {COLUMN_KINDS}")
    return columns


def csv_chunks(
    path: str | Path, chunk_rows: int, columns: dict[str, str] | None = None,
    delimiter: str = "", decimal: str = "", encoding: str = "utf-8", thousands: str = "",
) -> Iterator:
    """The rows of a CSV file with a header line, ``chunk_rows`` at a time (a part may hold
    fewer, blank lines being skipped), at least one part (with no rows for a file that
    has none). Read as :func:`~aae_anomaly.io.tables.read_csv_table` reads, with the same
    errors; line numbers in them count from the file's start."""
    check_chunk_rows(chunk_rows)
    columns = check_column_kinds(columns)
    path = Path(path)
    dialect = csv_dialect(path, delimiter, decimal, encoding, thousands)
    text_encoding = "utf-8" if dialect.encoding == "utf-8-sig" else dialect.encoding
    if "\n".encode(text_encoding) != b"\n" or '"'.encode(text_encoding) != b'"':
        # e.g. UTF-16: lines cannot be found in the bytes; such files are read whole
        frame = read_csv_table(path, delimiter, decimal, encoding, thousands)
        for start in range(0, max(len(frame), 1), chunk_rows):
            yield frame.iloc[start : start + chunk_rows]
        return
    with path.open("rb") as handle:
        header, header_lines = _record(handle, skip_blank=True)
        _decode(path, dialect.encoding, header, 0)
        parser = _BlockParser(path, dialect, header, columns)
        offset, line, start, parts = len(header), 1 + header_lines, 0, 0
        while True:
            lines = list(itertools.islice(handle, chunk_rows))
            if not lines and parts:
                return
            n_lines = len(lines)
            # the header leads every part pandas reads; joined once, not copied again
            data = b"".join([header, *lines])
            del lines  # as many objects as lines: not kept while pandas reads
            quotes = data.count(b'"') - header.count(b'"')
            more = []
            while quotes % 2:  # a quoted field holds a line break: read on to its end
                next_line = handle.readline()
                if not next_line:
                    break  # an unclosed quote: pandas reports it
                more.append(next_line)
                quotes += next_line.count(b'"')
            if more:
                data += b"".join(more)
                n_lines += len(more)
            frame = parser.parse(data, len(header), offset, line, start)
            offset += len(data) - len(header)
            line += n_lines
            start += len(frame)
            if len(frame) or not n_lines:
                parts += 1
                yield frame


def _record(handle, skip_blank: bool) -> tuple[bytes, int]:
    """The next record's bytes (more than one line when a quoted field holds a line
    break) and how many lines it took."""
    record, count = b"", 0
    for line in handle:
        count += 1
        if skip_blank and not record and not line.lstrip(b"\xef\xbb\xbf").strip():
            continue
        record += line
        if record.count(b'"') % 2 == 0:
            break
    return record, count


def _decode(path: Path, encoding: str, data: bytes, offset: int) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise encoding_error(path, encoding, exc, offset) from None


class _BlockParser:
    """pandas' reading of one part: the header line and the part's lines, as bytes (text
    in a StringIO would take four bytes a character), with the types ``columns`` gives."""

    def __init__(self, path: Path, dialect, header: bytes, columns: dict[str, str]):
        self.pandas = require_pandas()
        self.path = path
        self.dialect = dialect
        self.header = header
        # the header leads every part: utf-8-sig drops a byte-order mark from it
        self.options = dialect.pandas_options()
        names = self._read(header, {}, 1).columns  # as pandas names them (a.1 for a twin)
        self.names = [str(name).strip() for name in names]
        self.dtypes = {
            raw: _DTYPES[columns[name]]
            for raw, name in zip(names, self.names, strict=True)
            if name in columns and _DTYPES[columns[name]] is not None
        }

    def parse(self, data: bytes, skip: int, offset: int, first_line: int, start: int):
        """The rows of ``data`` (the header, then ``skip`` bytes on, the part's lines),
        indexed from ``start``; ``offset``: where the lines start in the file,
        ``first_line``: the number of the first."""
        try:
            frame = self._read(data, self.dtypes, first_line)
        except UnicodeDecodeError:
            encoding = "utf-8" if self.dialect.encoding == "utf-8-sig" else self.dialect.encoding
            _decode(self.path, encoding, data[skip:], offset)  # raises, naming the byte
            raise
        except _Malformed:
            raise
        except (ValueError, TypeError):
            # a cell pandas cannot read as a number: read the part as pandas would guess
            # it, for the model's own message naming the column, row and value
            text_only = {k: v for k, v in self.dtypes.items() if v is str}
            frame = self._read(data, text_only, first_line)
        frame.columns = self.names
        if needs_short_line_check(frame) and b'"' not in data:
            lines = data[skip:].decode(self.dialect.encoding).splitlines()
            check_short_lines(self.path, lines, first_line, self.dialect.delimiter, len(self.names))
        frame.index = self.pandas.RangeIndex(start, start + len(frame))
        return frame

    def _read(self, data: bytes, dtypes: dict, first_line: int):
        try:
            with warnings.catch_warnings():
                # as for the whole file (read_csv_table): the schema reads such a column
                warnings.simplefilter("ignore", self.pandas.errors.DtypeWarning)
                return self.pandas.read_csv(io.BytesIO(data), dtype=dtypes or None, **self.options)
        except self.pandas.errors.ParserError as exc:
            # pandas counts the lines of the part, whose line 2 is the file's first_line
            message = re.sub(
                r"line (\d+)", lambda m: f"line {int(m[1]) + first_line - 2}", one_line(exc)
            )
            raise _Malformed(f"{self.path} is not a well-formed CSV file: {message}") from None


class _Malformed(ValueError):
    """A part pandas cannot split into fields (not a cell it cannot convert)."""


def parquet_chunks(path: str | Path, chunk_rows: int) -> Iterator:
    """The rows of a parquet file, ``chunk_rows`` at a time (read row group by row group),
    at least one part; indexed as :func:`~aae_anomaly.io.tables.read_parquet_table`
    indexes the whole table (the index pandas saved in the file, else row numbers)."""
    check_chunk_rows(chunk_rows)
    pandas = require_parquet_support()
    import pyarrow
    import pyarrow.parquet

    def unreadable(exc: BaseException) -> ValueError:
        return ValueError(f"{path} is not a readable parquet file: {one_line(exc)}")

    try:
        file = pyarrow.parquet.ParquetFile(path)
        indexes = (file.schema_arrow.pandas_metadata or {}).get("index_columns", [])
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise unreadable(exc) from None
    # a range index is saved as its bounds, which each part has to be placed in
    ranged = indexes[0] if len(indexes) == 1 and isinstance(indexes[0], dict) else None
    start = 0
    for frame in _parquet_frames(file, chunk_rows, unreadable):
        if ranged is not None:
            first = ranged["start"] + ranged["step"] * start
            frame.index = pandas.RangeIndex(
                first, first + ranged["step"] * len(frame), ranged["step"], name=ranged["name"]
            )
        elif not indexes:
            frame.index = pandas.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def _parquet_frames(file, chunk_rows: int, unreadable) -> Iterator:
    """One row group read at a time (``iter_batches`` kept what it had decoded: memory
    grew with the file), cut into parts of ``chunk_rows`` rows; at least one part."""
    empty = True
    for group in range(file.num_row_groups):
        try:
            table = file.read_row_group(group)
        except Exception as exc:
            raise unreadable(exc) from None
        for first in range(0, table.num_rows, chunk_rows):
            empty = False
            yield table.slice(first, chunk_rows).to_pandas()
        del table
    if empty:
        yield file.schema_arrow.empty_table().to_pandas()
