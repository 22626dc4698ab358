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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

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


def reservoir(parts: Iterable[Any], size: int, rng: np.random.RandomState):
    """A uniform sample of at most ``size`` rows of ``parts`` (put end to end), in the
    order of the rows; their row numbers; and the number of rows in all. Algorithm R,
    one part at a time: row ``i`` replaces a random slot with probability ``size / (i+1)``."""
    sample, numbers, seen = None, np.empty(0, dtype=np.int64), 0
    for part in parts:
        n = len(part)
        if n == 0:
            continue
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
