"""``score`` on files larger than memory: DATA read in chunks, each chunk scored and
written before the next is read, so that memory follows the chunk size, not DATA's.

Scores do not depend on which rows are scored together (scoring runs in fixed-shape
batches), and every chunk is parsed with the types the model's schema gives its columns,
so the table written is the one scoring the whole file at once writes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable

import numpy as np

from ..errors import ExtremeValueWarning
from ..estimators.columns import is_frame
from ..estimators.validation import extreme_values_message
from ..io.tables import TableWriter
from .inputs import ignore_name_warnings, pop_column, row_keys, without_columns

# rows read and scored at a time: a few tens of MB for tables of some dozens of columns,
# and large enough that the per-chunk costs (a pandas call, thread pools) do not show
DEFAULT_CHUNK_ROWS = 65_536


def column_kinds(detector, id_columns: Iterable[str]) -> dict[str, str] | None:
    """What each column DATA may have holds, for a chunked reader to parse every chunk
    alike: the model's feature columns by their kind, ids as text."""
    schema = getattr(detector, "schema_", None)
    if schema is None or not schema.named:
        return None
    kinds = {column.name: column.kind for column in schema.columns}
    for name in [*id_columns, *(detector.id_columns or [])]:
        kinds[name] = "text"
    return kinds


def score_chunks(
    chunks, data: str, output: str, chunk_rows: int, score_rows: Callable,
    id_columns_of: Callable, classes_column: str | None, drop_columns,
) -> int:
    """Score each chunk (a Dataset) of DATA with ``score_rows(X, classes)`` and write the
    tables to ``output`` as one; return the number of rows. ``id_columns_of(dataset)``:
    the id columns to copy from a chunk. Nothing is left at ``output`` after an error;
    warnings come once, with totals, after the last chunk."""
    collected = _Warnings()
    start = 0
    with TableWriter(output) as writer:
        for dataset in chunks:
            classes = None
            if classes_column:
                dataset, classes = pop_column(dataset, data, classes_column)
            dataset = without_columns(dataset, list(drop_columns), data)
            ids = id_columns_of(dataset)
            keys = row_keys(dataset, data, ids)
            dataset = without_columns(dataset, ids, data, "--id-column")
            X = dataset.X
            if is_frame(X):
                # the index holds the rows' numbers in DATA (the keys); the model's
                # messages count rows from 0 within what it is given, as for arrays
                X = X.reset_index(drop=True)
            elif not ids:
                keys = {"row": keys["row"] + start}
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    ignore_name_warnings()
                    table = score_rows(X, classes)
            except ValueError as exc:
                whole = start == 0 and len(X) < chunk_rows
                raise ValueError(_in_data(str(exc), start, len(X), data, whole)) from None
            collected.add(caught)
            writer.write(table, keys)
            start += len(X)
    collected.emit()
    return start


def _in_data(message: str, start: int, n_rows: int, data: str, whole: bool) -> str:
    """A message about rows of one chunk, about the same rows of DATA."""
    message = re.sub(r"\brow (\d+)", lambda m: f"row {int(m[1]) + start}", message)
    if whole:
        return message
    # counts in the message (missing cells, rows) are the chunk's
    stop = start + n_rows - 1
    return f"{message} (counted in rows {start} to {stop} of {data}, where scoring stopped)"


class _Warnings:
    """The warnings of every chunk, to show once: the rows with extreme values added up,
    any other warning once."""

    def __init__(self):
        self.extreme_rows = 0
        self.extreme_columns = np.empty(0, dtype=np.int64)
        self.names = None
        self.others: dict[tuple[type, str], warnings.WarningMessage] = {}

    def add(self, caught: list[warnings.WarningMessage]) -> None:
        for record in caught:
            warning = record.message
            if isinstance(warning, ExtremeValueWarning) and hasattr(warning, "rows"):
                self.extreme_rows += warning.rows
                self.extreme_columns = np.union1d(self.extreme_columns, warning.columns)
                self.names = warning.names
            else:
                self.others.setdefault((record.category, str(warning)), record)

    def emit(self) -> None:
        for record in self.others.values():
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
        if self.extreme_rows:
            message = extreme_values_message(self.extreme_rows, self.extreme_columns, self.names)
            warnings.warn(ExtremeValueWarning(message), stacklevel=2)


# -- fit --stream ---------------------------------------------------------------------------
def streamed_parts(
    data: str, chunk_rows: int, label_column: str | None, read_options, ignored: list[str]
) -> Callable:
    """A callable that starts a new pass over DATA's normal rows, a chunk at a time, for
    :meth:`AAEDetector.fit_chunks` (rows labelled 1 are left out, as ``fit`` does); with
    ``part=(index, count)``, over that part of them only (see
    :func:`~aae_anomaly.plugin_system.datasets.load_dataset_chunks`).

    Every pass parses each column alike: its kind is learned from the first chunk (ids
    and dropped columns as text), so that pandas does not guess a column's type anew in
    each chunk (a code such as ``007`` is text in every chunk, not ``7`` in some)."""
    from ..estimators.columns import TableSchema
    from ..io.tables import check_labels, read_data_chunks

    def chunks(kinds, part=None):
        found = read_data_chunks(data, chunk_rows, label_column, read_options, kinds, part)
        if found is None:
            raise ValueError(
                f"--stream reads .csv, .parquet and .npy files (and dataset plugins with a "
                f"chunked reader); {data} is read whole: fit it without --stream"
            )
        return found

    first = next(iter(chunks(None)))
    kinds = None
    if is_frame(first.X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fit itself warns, once
            schema, _ = TableSchema.fit_frame(first.X, ignored, "impute")
        kinds = {column.name: column.kind for column in schema.columns}
        kinds.update({name: "text" for name in ignored})

    def parts(part=None):
        for dataset in chunks(kinds, part):
            X = dataset.X
            if dataset.y is not None:
                X = X[~check_labels(dataset.y, data, len(X))]
            yield X

    return parts
