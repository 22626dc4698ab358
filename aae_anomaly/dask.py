"""Scoring on a Dask cluster: :func:`score_partitions` scores a dask DataFrame or Array
partition by partition and returns a lazy dask DataFrame of score tables (``dask`` extra).

>>> import dask.dataframe as dd                                      # doctest: +SKIP
>>> from aae_anomaly.dask import score_partitions
>>> rows = dd.read_parquet("events/")                                # doctest: +SKIP
>>> scores = score_partitions("model.aae", rows, id_columns=["event_id"])  # doctest: +SKIP
>>> scores.to_parquet("scores/")                                     # doctest: +SKIP

The model travels as its file's bytes, one key of the graph: the scheduler holds them
once, each worker fetches them once, and each worker process loads them once with the
safe loader (:func:`~aae_anomaly.estimators.loading.load_model_bytes`, every check and the
checksum included) and keeps the detector for later partitions. No torch module is
pickled. A row's scores do not depend on the rows scored with it (scoring runs in
fixed-shape batches), so they are bit-identical to scoring all rows in one process.

The lineage of every partition stays in the graph, the model's bytes included, so a
worker lost while scoring costs its partitions a rerun elsewhere, not the result. See
``docs/dask.md``.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError
from .estimators.detector import AAEDetector
from .estimators.loading import load_model_bytes
from .estimators.scoretable import SCORE_COLUMNS, ignore_name_warnings, score_table
from .scoring.components import available_components

try:
    import dask
    import dask.array
    import dask.dataframe
    import pandas
except ImportError:  # pragma: no cover - the extra installs them
    raise MissingDependencyError(
        "aae_anomaly.dask needs dask: pip install 'aae-anomaly[dask]'"
    ) from None

ROW = "row"
# detectors a worker process keeps, newest last: enough for a few models scored side by
# side, few enough that a long-lived worker does not collect every model it ever saw
CACHED_MODELS = 4


@dataclass(frozen=True)
class ModelBytes:
    """A model file's contents as they travel to the workers: plain bytes with the name
    they came from (for errors) and their SHA-256 (the key of each worker's cache)."""

    name: str
    digest: str
    data: bytes

    @classmethod
    def of(cls, model: str | os.PathLike | bytes, name: str | None = None) -> ModelBytes:
        """``model``: a model file's path, or its contents."""
        if isinstance(model, ModelBytes):
            return model
        if isinstance(model, (bytes, bytearray, memoryview)):
            data = bytes(model)
            name = name or "<model bytes>"
        else:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"no such model file: {model}")
            data = path.read_bytes()
            name = name or str(model)
        return cls(name, hashlib.sha256(data).hexdigest(), data)

    def __repr__(self) -> str:  # dask shows task arguments in errors and dashboards
        return f"ModelBytes({self.name!r}, {len(self.data)} bytes, sha256 {self.digest[:12]})"


def score_partitions(
    model,
    collection,
    *,
    id_columns=(),
    classes_column: str | None = None,
    drop_columns=(),
    device: str = "cpu",
):
    """A lazy dask DataFrame of the score table of every row of ``collection``, one
    partition per partition (per block of rows for an Array), in order.

    ``model``: a model file's path or contents (bytes). ``collection``: a dask DataFrame
    (columns matched by name, as in one process) or a dask Array of rows (one row per
    index along axis 0, in the model's feature order).

    Columns, as the ``score`` command writes them: the row's ids, which are
    ``id_columns`` and then the id columns the model was fitted with that the DataFrame
    has, or else ``row`` (the row's number across all partitions, from 0; numbering a
    DataFrame's rows needs each partition's length, so its partitions are computed before
    any is numbered); then ``score``, the components (``reconstruction``,
    ``discriminator``, ``density`` for priors with a density, ``neighbors`` unless fitted
    with ``n_neighbors=0``) and ``is_anomaly``. ``classes_column``: the column of each
    row's class, for a model fitted with classes; ``drop_columns``: columns that are not
    features. ``device``: where the workers score (bit-identical scores need ``"cpu"``).

    The DataFrame's columns are checked here; the rows are read and scored when the
    result is computed, on whatever scheduler is active (a ``distributed.Client`` when
    one is).
    """
    travelling = ModelBytes.of(model)
    # loaded here too: a bad file fails now, and the output's columns come from it
    detector = load_model_bytes(travelling.data, travelling.name)
    if not isinstance(detector, AAEDetector):
        raise ValueError(
            f"{travelling.name} holds a model of type {type(detector).__name__}, not an "
            "anomaly detector: score_partitions scores with an AAEDetector's file"
        )
    columns = _empty_table(detector)
    shipped = dask.delayed(travelling, name=f"aae-model-{travelling.digest[:32]}", traverse=False)
    if isinstance(collection, dask.array.Array):
        if id_columns or classes_column or drop_columns:
            raise ValueError(
                "id_columns, classes_column and drop_columns apply to a DataFrame, not an Array"
            )
        return _score_array(shipped, collection, columns, device)
    if not isinstance(collection, dask.dataframe.DataFrame):
        raise TypeError(
            f"expected a dask DataFrame or Array, got {type(collection).__name__}"
        )
    available = [str(c) for c in collection.columns]
    given = list(dict.fromkeys(id_columns))
    ids = given + [n for n in detector.id_columns or [] if n in available and n not in given]
    classes = [classes_column] if classes_column else []
    for name, what in [
        *((n, "id column") for n in given),
        *((n, "classes column") for n in classes),
        *((n, "column to drop") for n in drop_columns),
    ]:
        if name not in available:
            raise ValueError(
                f"the DataFrame has no {what} {name!r}; columns: {', '.join(available)}"
            )
    leave_out = list(dict.fromkeys([*ids, *classes, *drop_columns]))
    meta = pandas.DataFrame(
        {
            **{n: collection._meta[n].iloc[:0] for n in ids},
            **columns,
        }
    )
    scored = collection.map_partitions(
        score_frame, shipped, ids, classes_column, leave_out, device, meta=meta,
        enforce_metadata=False,
    )
    if ids:
        return scored
    parts = scored.to_delayed()
    lengths = [dask.delayed(len, pure=True)(part) for part in parts]
    starts = dask.delayed(_starts, pure=True)(lengths)
    numbered = [dask.delayed(_numbered, pure=True)(part, starts, i) for i, part in enumerate(parts)]
    meta.insert(0, ROW, np.empty(0, np.int64))
    return dask.dataframe.from_delayed(numbered, meta=meta, verify_meta=False)


def _score_array(shipped, array, columns, device):
    if array.ndim < 2:
        raise ValueError(f"expected an Array of rows (2 or more dimensions), got {array.ndim}")
    if any(np.isnan(size) for size in array.chunks[0]):
        raise ValueError(
            "the Array's row blocks have unknown sizes; call array.compute_chunk_sizes() first"
        )
    # one block per group of whole rows
    rows = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
    blocks = rows.to_delayed().reshape(-1)
    starts = np.cumsum((0, *rows.chunks[0]))[:-1]
    parts = [
        dask.delayed(score_block, pure=True)(block, shipped, int(start), device)
        for block, start in zip(blocks, starts, strict=True)
    ]
    meta = pandas.DataFrame({ROW: np.empty(0, np.int64), **columns})
    return dask.dataframe.from_delayed(parts, meta=meta, verify_meta=False)


# -- on the workers --------------------------------------------------------------------------
_loaded: collections.OrderedDict[tuple[str, str], object] = collections.OrderedDict()
_loading = threading.Lock()
# how many times this process loaded each model (digest): once, unless evicted
loads: collections.Counter[str] = collections.Counter()


def worker_detector(model: ModelBytes, device: str = "cpu"):
    """The detector of ``model`` in this process: loaded from its bytes the first time,
    then kept (for the last :data:`CACHED_MODELS` models)."""
    key = (model.digest, str(device))
    with _loading:  # a worker's threads share one copy, loaded once
        detector = _loaded.get(key)
        if detector is None:
            detector = load_model_bytes(model.data, model.name, device)
            loads[model.digest] += 1
            _loaded[key] = detector
            while len(_loaded) > CACHED_MODELS:
                _loaded.popitem(last=False)
        _loaded.move_to_end(key)
        return detector


def score_frame(
    frame, model: ModelBytes, ids, classes_column, leave_out, device="cpu", partition_info=None
):
    """One partition's score table as a pandas DataFrame: ``ids`` copied first, then the
    score columns; ``leave_out`` (ids, classes, dropped columns) are not features. A
    problem with the rows is a ValueError naming the partition (dask passes
    ``partition_info``)."""
    detector = worker_detector(model, device)
    try:
        keys = {name: frame[name].to_numpy() for name in ids}
        classes = frame[classes_column].to_numpy() if classes_column else None
        rows = frame.drop(columns=list(leave_out))
        return pandas.DataFrame({**keys, **_table(detector, rows, classes)})
    except (ValueError, KeyError) as exc:
        where = f"partition {partition_info['number']}" if partition_info else "a partition"
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"{where}: {message}") from exc


def score_block(block, model: ModelBytes, start: int, device="cpu"):
    """One block of an Array's rows, numbered from ``start``."""
    detector = worker_detector(model, device)
    table = _table(detector, block, None)
    return pandas.DataFrame({ROW: np.arange(start, start + len(block), dtype=np.int64), **table})


def _table(detector, rows, classes) -> dict[str, np.ndarray]:
    if len(rows) == 0:  # an empty partition: the estimator refuses zero rows
        return _empty_table(detector)
    with warnings.catch_warnings():
        ignore_name_warnings()
        return score_table(detector, rows, classes)


def _empty_table(detector) -> dict[str, np.ndarray]:
    """The score table's columns for ``detector``, with no rows."""
    names = available_components(detector.module_, detector.prior_)
    return {
        c: np.empty(0, np.int64 if c == "is_anomaly" else np.float64)
        for c in SCORE_COLUMNS
        if c in ("score", "is_anomaly") or c in names
    }


def _starts(lengths) -> list[int]:
    return [0, *np.cumsum(lengths, dtype=np.int64).tolist()][:-1]


def _numbered(part, starts, index: int):
    part = part.copy()
    start = starts[index]
    part.insert(0, ROW, np.arange(start, start + len(part), dtype=np.int64))
    return part
