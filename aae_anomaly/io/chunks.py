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

``part=(index, count)`` reads only part ``index`` of ``count`` (one process's share of a
distributed fit); the ``count`` parts together hold every row exactly once:

- CSV: the bytes after the header are cut into ``count`` equal ranges, each moved on to
  the start of the next line, and a part holds the lines that start in its range. A
  quoted field holding a line break could be cut through, so a part that meets a line
  with an odd number of quotes raises :class:`~aae_anomaly.errors.PartitionError` (the
  caller then reads the file whole and keeps every ``count``-th row); such a line is in
  some part whenever a record spans lines. A file in an encoding whose line breaks are
  not single bytes (UTF-16) is read whole, keeping every ``count``-th row. The rows of a
  part are numbered from 0, and error messages of a part other than the first count its
  lines from where it starts.
- Parquet: the rows are cut into ``count`` ranges of equal length (to a row), and a part
  reads only the row groups its range overlaps, keeping its rows of them; with fewer row
  groups than parts some row groups are read by several parts, each keeping its slice.
"""

from __future__ import annotations

import bisect
import io
import itertools
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..errors import PartitionError
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


def check_part(part) -> tuple[int, int] | None:
    """``part`` as ``(index, count)`` with ``0 <= index < count``; None (read every row)
    for None or a count of 1."""
    if part is None:
        return None
    try:
        index, count = (int(value) for value in part)
    except (TypeError, ValueError):
        raise ValueError(f"part must be (index, count), got {part!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"part must be (index, count) with 0 <= index < count, got {part!r}")
    return None if count == 1 else (index, count)


def part_range(n_rows: int, part: tuple[int, int] | None) -> tuple[int, int]:
    """The rows ``[start, stop)`` of ``n_rows`` that part ``(index, count)`` holds: equal
    ranges, to a row."""
    if part is None:
        return 0, n_rows
    index, count = part
    return n_rows * index // count, n_rows * (index + 1) // count


def check_column_kinds(columns) -> dict[str, str]:
    columns = dict(columns or {})
    for name, kind in columns.items():
        if kind not in COLUMN_KINDS:
            raise ValueError(f"column {name!r}: kind {kind!r} is not one of {COLUMN_KINDS}")
    return columns


def csv_chunks(
    path: str | Path, chunk_rows: int, columns: dict[str, str] | None = None,
    delimiter: str = "", decimal: str = "", encoding: str = "utf-8", thousands: str = "",
    part: tuple[int, int] | None = None,
) -> Iterator:
    """The rows of a CSV file with a header line, ``chunk_rows`` at a time (a part may hold
    fewer, blank lines being skipped), at least one part (with no rows for a file that
    has none). Read as :func:`~aae_anomaly.io.tables.read_csv_table` reads, with the same
    errors; line numbers in them count from the file's start. ``part``: only that part of
    the rows (see the module's docstring)."""
    check_chunk_rows(chunk_rows)
    columns = check_column_kinds(columns)
    part = check_part(part)
    path = Path(path)
    dialect = csv_dialect(path, delimiter, decimal, encoding, thousands)
    text_encoding = "utf-8" if dialect.encoding == "utf-8-sig" else dialect.encoding
    if "\n".encode(text_encoding) != b"\n" or '"'.encode(text_encoding) != b'"':
        # e.g. UTF-16: lines cannot be found in the bytes; such files are read whole
        frame = read_csv_table(path, delimiter, decimal, encoding, thousands)
        if part is not None:
            frame = frame.iloc[part[0] :: part[1]]
        for start in range(0, max(len(frame), 1), chunk_rows):
            yield frame.iloc[start : start + chunk_rows]
        return
    with path.open("rb") as handle:
        header, header_lines = _record(handle, skip_blank=True)
        _decode(path, dialect.encoding, header, 0)
        parser = _BlockParser(path, dialect, header, columns)
        if part is not None:
            yield from _csv_part(path, handle, header, header_lines, parser, chunk_rows, part)
            return
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


def _csv_part(
    path: Path, handle, header: bytes, header_lines: int, parser: _BlockParser,
    chunk_rows: int, part: tuple[int, int],
) -> Iterator:
    """Part ``part`` of a CSV file whose header has been read from ``handle``: the lines
    that start in its share of the bytes after the header, ``chunk_rows`` at a time."""
    index, count = part
    data_start = handle.tell()
    size = os.fstat(handle.fileno()).st_size
    first, stop = (_line_start(handle, data_start, size, k, count) for k in (index, index + 1))
    handle.seek(first)
    # line numbers are exact in the first part; elsewhere they count from the part's start
    position, line, start, parts = first, 1 + header_lines if index == 0 else 2, 0, 0
    header_quotes = header.count(b'"')
    while position < stop:
        lines = list(itertools.islice(handle, chunk_rows))
        if not lines:
            break
        ends = list(itertools.accumulate(map(len, lines), initial=position))
        if ends[-1] > stop:  # the next part's lines: ``stop`` is where one starts
            lines = lines[: bisect.bisect_right(ends, stop) - 1]
        data = b"".join([header, *lines])
        if data.count(b'"') > header_quotes:
            for number, text in enumerate(lines):
                if text.count(b'"') % 2:
                    raise PartitionError(
                        f"{path} cannot be read in parts split at line breaks: a quoted "
                        f"field holds a line break (the line at byte {ends[number]} has an "
                        "odd number of quotes)"
                    )
        n_lines = len(lines)
        del lines
        try:
            frame = parser.parse(data, len(header), position, line, start)
        except ValueError as exc:
            if index == 0:
                raise
            raise ValueError(
                f"{exc} (in part {index + 1} of {count} of the file, which starts at byte "
                f"{first}: its lines are counted from there)"
            ) from None
        position += len(data) - len(header)
        line += n_lines
        start += len(frame)
        if len(frame):
            parts += 1
            yield frame
    if not parts:
        yield parser.parse(header, len(header), first, line, 0)


def _line_start(handle, data_start: int, size: int, k: int, count: int) -> int:
    """Where part ``k`` of ``count`` starts: the first line start at or after ``k /
    count`` of the way through the bytes after the header (the end of the file for
    ``k == count``)."""
    if k == 0:
        return data_start
    if k == count:
        return size
    handle.seek(max(data_start + (size - data_start) * k // count - 1, 0))
    handle.readline()  # to just after the next line break: a line starts there
    return min(handle.tell(), size)


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


def parquet_chunks(
    path: str | Path, chunk_rows: int, part: tuple[int, int] | None = None
) -> Iterator:
    """The rows of a parquet file, ``chunk_rows`` at a time (read row group by row group),
    at least one part; indexed as :func:`~aae_anomaly.io.tables.read_parquet_table`
    indexes the whole table (the index pandas saved in the file, else row numbers).
    ``part``: only that part of the rows (see the module's docstring)."""
    check_chunk_rows(chunk_rows)
    part = check_part(part)
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
    rows = part_range(file.metadata.num_rows, part)
    start = rows[0]
    for frame in _parquet_frames(file, chunk_rows, unreadable, rows):
        if ranged is not None:
            first = ranged["start"] + ranged["step"] * start
            frame.index = pandas.RangeIndex(
                first, first + ranged["step"] * len(frame), ranged["step"], name=ranged["name"]
            )
        elif not indexes:
            frame.index = pandas.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def _parquet_frames(file, chunk_rows: int, unreadable, rows: tuple[int, int]) -> Iterator:
    """The rows ``[start, stop)`` of ``rows``, one row group read at a time
    (``iter_batches`` kept what it had decoded: memory grew with the file), cut into
    parts of ``chunk_rows`` rows; at least one part. Row groups outside the rows are not
    read."""
    empty = True
    start, stop = rows
    group_start = 0
    for group in range(file.num_row_groups):
        group_rows = file.metadata.row_group(group).num_rows
        low, high = max(start, group_start), min(stop, group_start + group_rows)
        group_start += group_rows
        if low >= high:
            continue
        try:
            table = file.read_row_group(group)
        except Exception as exc:
            raise unreadable(exc) from None
        offset = low - (group_start - group_rows)
        table = table.slice(offset, high - low)
        for first in range(0, table.num_rows, chunk_rows):
            empty = False
            yield table.slice(first, chunk_rows).to_pandas()
        del table
    if empty:
        yield file.schema_arrow.empty_table().to_pandas()
