"""Fitting on more rows than memory holds (:meth:`AAEDetector.fit_chunks`).

The rows come in parts (DataFrames or arrays), from a callable that starts a new pass
over them each time it is called. The fit reads them once to draw a uniform sample of
``sample_rows`` rows (a reservoir), and learns from that sample what an in-memory fit
learns from all rows: the table's schema (categories, fill values), the input scaling,
the rows held back to calibrate the score and set the threshold, and the reference rows
of the neighbors component. Then each epoch reads every part again and trains on all rows
but the held-back ones, in batches drawn from a shuffle buffer of ``shuffle_rows`` rows.
Memory holds the sample, the buffer and one part, whatever the number of rows.

How the result differs from :meth:`~AAEDetector.fit` on the same rows held in memory:
statistics come from the sample (exact when the rows are fewer than ``sample_rows``), a
category seen only outside the sample falls in the ``<other>`` bucket, the calibration
rows are ``calibration_fraction`` of the sample rather than of all rows, and batches mix
rows within the buffer rather than over the whole data, so rows far apart in the file
share a batch less often (shuffle the file, or raise ``shuffle_rows``, if it is sorted).

In a distributed fit (:func:`shared_sample`) each process reads only its own part of the
rows, when the callable takes a ``part``; otherwise, or when the source cannot be split
exactly (:class:`~aae_anomaly.errors.PartitionError`), every process reads all rows and
keeps every n-th. Each process draws a reservoir from its part; the processes exchange
their counts, split the sample between the parts as a uniform sample of all rows would
(a multivariate hypergeometric draw from a generator they share), and exchange those
rows, so that every process holds the same sample and learns the same statistics from
it. Each epoch, every process stops after the fewest batches any process's part gives
(the counts are known to all), since data-parallel steps must be taken together: the
rows of a longer part beyond that (a random few of the last its shuffle buffer holds)
sit that epoch out. Equal parts (.npy, Parquet, every n-th row) differ by a row at
most; a CSV file's parts by what an equal split of its bytes gives.

A checkpointed fit (``checkpoint_dir``) also digests every row in that first pass
(:class:`RowsDigest`), since its checkpoint must only resume the same fit and the sample
alone does not tell a changed row outside it. The pass is seeded, so a resumed fit draws
the same sample, and hence the same statistics, as the run it continues; the digest of the
sample's training rows is part of the checkpoint's identity too, so that a pass that came
out otherwise would be refused rather than continued.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine.distributed import ProcessGroup, rank_seed
from ..errors import PartitionError
from ..plugin_system.datasets import every_nth, reads_parts
from .columns import is_frame

Chunks = Callable[[], Iterable[Any]]
DEFAULT_SAMPLE_ROWS = 100_000
DEFAULT_SHUFFLE_ROWS = 65_536


def _take(part, positions: np.ndarray):
    return part.iloc[positions] if is_frame(part) else part[positions]


def _join(parts: list):
    if is_frame(parts[0]):
        import pandas

        return pandas.concat(parts, ignore_index=True)
    return np.concatenate(parts)


class RowsDigest:
    """What identifies the rows of a pass, for a checkpoint: a SHA-256 of their values and
    columns (the same however the rows are cut into parts), and one of the parts' sizes,
    which the shuffle buffer's batches depend on (another ``chunk_rows``, other batches)."""

    def __init__(self):
        self._rows, self._sizes = hashlib.sha256(), hashlib.sha256()
        self._header = None

    def update(self, part) -> None:
        if is_frame(part):
            import pandas

            header = f"{list(map(str, part.columns))}|{list(map(str, part.dtypes))}"
            values = pandas.util.hash_pandas_object(part, index=False).to_numpy()
        else:
            values = np.ascontiguousarray(part)
            header = f"{values.dtype.str}|{values.shape[1:]}"
        if header != self._header:  # once, unless a part's columns or types change
            self._rows.update(header.encode())
            self._header = header
        self._rows.update(values.tobytes())
        self._sizes.update(f"{len(part)},".encode())

    def identity(self) -> dict[str, str]:
        return {"rows_sha256": self._rows.hexdigest(), "part_sizes_sha256": self._sizes.hexdigest()}


def reservoir(
    parts: Iterable[Any], size: int, rng: np.random.RandomState, allow_empty: bool = False,
    digest: RowsDigest | None = None,
):
    """A uniform sample of at most ``size`` rows of ``parts`` (put end to end), in the
    order of the rows; their row numbers; and the number of rows in all. Algorithm R,
    one part at a time: row ``i`` replaces a random slot with probability ``size / (i+1)``.
    No rows: an error, or with ``allow_empty`` a sample of None. ``digest``: every part is
    added to it."""
    sample, numbers, seen = None, np.empty(0, dtype=np.int64), 0
    for part in parts:
        n = len(part)
        if n == 0:
            continue
        if digest is not None:
            digest.update(part)
        part_numbers = np.arange(seen, seen + n)
        free = max(0, size - len(numbers))
        if free:
            head = _take(part, np.arange(min(free, n)))
            sample = head if sample is None else _join([sample, head])
            numbers = np.concatenate([numbers, part_numbers[: len(head)]])
        rest = np.arange(free, n)
        if len(rest):
            slots = rng.randint(0, part_numbers[rest] + 1)
            chosen = slots < size
            rest, slots = rest[chosen], slots[chosen]
            # a slot drawn twice in one part keeps its later row, as row by row would
            last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
            rest, slots = rest[last], slots[last]
            if len(slots):
                keep = np.ones(len(numbers), dtype=bool)
                keep[slots] = False
                sample = _join([_take(sample, np.flatnonzero(keep)), _take(part, rest)])
                numbers = np.concatenate([numbers[keep], part_numbers[rest]])
        seen += n
    if sample is None:
        if allow_empty:
            return None, numbers, 0
        raise ValueError("Found array with 0 sample(s): the parts hold no rows")
    order = np.argsort(numbers, kind="stable")
    return _take(sample, order), numbers[order], seen


def training_batches(
    encode: Callable[[Any], np.ndarray],
    parts: Iterable[Any],
    held_back: np.ndarray,
    batch_size: int,
    shuffle_rows: int,
    generator: torch.Generator,
    device: torch.device,
) -> Iterator[torch.Tensor]:
    """Every row of ``parts`` but those numbered in ``held_back`` (sorted), encoded, in
    batches of ``batch_size`` drawn at random from a buffer of ``shuffle_rows`` rows; the
    last batch may be short."""
    buffer = np.empty((0, 0), dtype=np.float32)
    seen = 0
    for part in parts:
        rows = np.asarray(encode(part), dtype=np.float32)
        numbers = np.arange(seen, seen + len(rows))
        seen += len(rows)
        rows = rows[~np.isin(numbers, held_back, assume_unique=True)]
        buffer = rows if buffer.size == 0 else np.concatenate([buffer, rows])
        if len(buffer) >= shuffle_rows + batch_size:
            buffer = buffer[_permutation(len(buffer), generator)]
            ready = (len(buffer) - shuffle_rows) // batch_size * batch_size
            yield from _batches(buffer[:ready], batch_size, device)
            buffer = buffer[ready:]
    if len(buffer):
        yield from _batches(buffer[_permutation(len(buffer), generator)], batch_size, device)


def _permutation(n: int, generator: torch.Generator) -> np.ndarray:
    return torch.randperm(n, generator=generator, device=generator.device).cpu().numpy()


def _batches(rows: np.ndarray, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    for start in range(0, len(rows), batch_size):
        yield torch.from_numpy(rows[start : start + batch_size]).to(device)


# -- a distributed fit ----------------------------------------------------------------------
@dataclass
class SharedSample:
    """What :func:`shared_sample` gives each process: the ``sample`` and its rows'
    ``numbers`` (the same on every process: rows are numbered over the parts put end to
    end, part 0 first), the rows in each part (``counts``), this process's ``rank``, the
    callable that starts a new pass over its own part (``chunks``), ``rng``, a
    generator every process has in the same state, and when asked for, ``digest``: what
    identifies every part's rows (:meth:`RowsDigest.identity` of all parts), the same on
    every process."""

    sample: Any
    numbers: np.ndarray
    counts: np.ndarray
    rank: int
    chunks: Chunks
    rng: np.random.RandomState
    digest: dict[str, str] | None = None

    @property
    def n_rows(self) -> int:
        return int(self.counts.sum())

    def _bounds(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)])

    def own(self, numbers: np.ndarray) -> np.ndarray:
        """Those of ``numbers`` (sorted) that are rows of this process's part, numbered
        within the part."""
        bounds = self._bounds()
        low, high = bounds[self.rank], bounds[self.rank + 1]
        return numbers[(numbers >= low) & (numbers < high)] - low

    def steps(self, held_back: np.ndarray, batch_size: int) -> int:
        """The batches an epoch takes on every process: the fewest any part gives, its
        rows less those of ``held_back`` (sorted) in ``batch_size`` batches."""
        bounds = self._bounds()
        held = np.diff(np.searchsorted(held_back, bounds))
        trained = self.counts - held
        if trained.min() < 1:
            rank = int(trained.argmin())
            raise ValueError(
                f"process {rank}'s part of the rows holds no rows to train on "
                f"({int(self.counts[rank])} rows in all); use fewer processes or more rows"
            )
        return int((-(-trained // batch_size)).min())


def shared_sample(
    chunks: Chunks, size: int, rng: np.random.RandomState, group: ProcessGroup,
    digest: bool = False,
) -> SharedSample:
    """A uniform sample of at most ``size`` of all processes' rows, the same on every
    process, each of which reads only its own part (see the module's docstring); with
    ``digest``, the digest of all parts' rows too. Collective: every process of ``group``
    calls it together."""
    rank, count = group.rank, group.world_size
    seed = group.broadcast(int(rng.randint(np.iinfo(np.int32).max)))  # rank 0's

    def strided() -> Iterator[Any]:
        return every_nth(chunks(), rank, count, _take)

    own = strided
    if reads_parts(chunks):
        def own() -> Iterable[Any]:
            return chunks(part=(rank, count))

    drawn, failure, digested = _own_reservoir(own, size, seed, rank, digest=digest)
    reports = group.gather((0 if drawn is None else drawn[2], failure, digested))
    failures = [failure for _, failure, _ in reports if failure is not None]
    if failures:
        if group.is_main:
            warnings.warn(
                f"{failures[0]}; every process reads all rows instead, keeping one in "
                f"{count}",
                stacklevel=3,
            )
        own = strided
        drawn, _, digested = _own_reservoir(own, size, seed, rank, strict=True, digest=digest)
        reports = group.gather((0 if drawn is None else drawn[2], None, digested))
    counts = np.array([n for n, _, _ in reports], dtype=np.int64)
    parts_digest = None
    if digest:
        # one digest of the parts' digests, in rank order: the same on every process
        parts_digest = {
            key: hashlib.sha256("|".join(d[key] for _, _, d in reports).encode()).hexdigest()
            for key in digested
        }
    if counts.sum() == 0:
        raise ValueError("Found array with 0 sample(s): the parts hold no rows")
    # how many of each part's rows a uniform sample of all rows holds, drawn alike on
    # every process; each process then takes that many of its reservoir's rows at random
    shared = np.random.default_rng(seed)
    taken = shared.multivariate_hypergeometric(counts, min(size, int(counts.sum())))
    piece = (None, np.empty(0, dtype=np.int64))
    if drawn is not None:
        sample, numbers, _ = drawn
        own_rng = np.random.default_rng(rank_seed(seed, rank))
        chosen = np.sort(own_rng.choice(len(numbers), int(taken[rank]), replace=False))
        piece = (_take(sample, chosen), numbers[chosen])
    pieces = group.gather(piece)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    kept = [
        (rows, numbers + bounds[r]) for r, (rows, numbers) in enumerate(pieces) if len(numbers)
    ]
    merged = _join([rows for rows, _ in kept])
    numbers = np.concatenate([numbers for _, numbers in kept])
    return SharedSample(
        merged, numbers, counts, rank, own, np.random.RandomState(seed), parts_digest
    )


def _own_reservoir(
    own: Chunks, size: int, seed: int, rank: int, strict: bool = False, digest: bool = False
):
    """This process's reservoir of its part, and the message of a PartitionError (its
    part cannot be read exactly) instead of the reservoir when not ``strict``; and with
    ``digest``, the :meth:`RowsDigest.identity` of the part's rows (else None)."""
    rng = np.random.RandomState(rank_seed(seed, rank) % 2**32)
    rows_digest = RowsDigest() if digest else None
    try:
        drawn = reservoir(own(), size, rng, allow_empty=True, digest=rows_digest)
    except PartitionError as exc:
        if strict:
            raise
        return None, str(exc), None
    identity = None if rows_digest is None else rows_digest.identity()
    return (None if drawn[0] is None else drawn), None, identity
