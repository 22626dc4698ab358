"""The ``k`` smallest values of each row, compiled with numba (the ``fast`` extra).

:class:`~aae_anomaly.neighbors.NeighborSearch` ranks every reference row for a block of
queries with one matrix product; picking each row's ``k`` smallest values then costs as
much again when it is done with torch operations, each a separate pass over memory and a
separate call from Python. This kernel does it in one pass per row, while the block is
still in the core's cache, and without holding the GIL (scoring threads run it at once).

Imported only when a search runs on the CPU: importing numba takes a few tenths of a
second, and the compiled code is cached on disk after the first call.
"""

from __future__ import annotations

import numba
import numpy as np

# Lanes of the first and second narrowing (see smallest_columns). A row of 4,096 values
# then costs one vectorised pass plus about 16 + 16 k + 16 k scalar steps. Measured
# fastest here for k = 5: 512/32, 512/16 and 1,024/32 lanes took 15 to 40% longer.
LANES = 256
SUPER_LANES = 16


@numba.njit(nogil=True, boundscheck=False, cache=True)
def smallest_columns(ranking: np.ndarray, k: int, out: np.ndarray) -> None:
    """Write into ``out[i]`` the columns of the ``k`` smallest values of ``ranking[i]``
    (float32, C-contiguous; ``1 <= k <=`` its width), in no particular order.

    Column ``c`` belongs to lane ``c % LANES``, and one vectorised pass takes each lane's
    minimum. Each of the ``k`` smallest values lies in a lane whose minimum is at most the
    ``k``-th smallest value, and at most ``k`` lanes have a smaller minimum: so the ``k``
    lanes of smallest minima hold the ``k`` smallest values (with ties, values equal to
    them). Those ``k`` lanes are found the same way, among :data:`SUPER_LANES` lanes of
    lane minima; only the members of chosen lanes are ever examined one by one.
    """
    width = ranking.shape[1]
    n_lanes = min(LANES, width)
    n_super = min(SUPER_LANES, n_lanes)
    minima = np.empty(n_lanes, np.float32)
    super_minima = np.empty(n_super, np.float32)
    every_super_lane = np.arange(n_super)
    super_lanes = np.empty(min(k, n_super), np.int64)
    lanes = np.empty(min(k, n_lanes), np.int64)
    values = np.empty(k, np.float32)
    for i in range(ranking.shape[0]):
        row = ranking[i]
        _lane_minima(row, minima)
        _lane_minima(minima, super_minima)
        _smallest_members(super_minima, every_super_lane, n_super, values, super_lanes)
        _smallest_members(minima, super_lanes, n_super, values, lanes)
        _smallest_members(row, lanes, n_lanes, values, out[i])


@numba.njit(inline="always")
def _lane_minima(values, minima):
    """``minima[c]``: the smallest of ``values[c], values[c + L], ...`` with ``L`` lanes
    (the length of ``minima``), taken round by round so that the loop vectorises."""
    n_lanes = len(minima)
    minima[:] = values[:n_lanes]
    for start in range(n_lanes, len(values), n_lanes):
        segment = values[start : start + n_lanes]
        for lane in range(len(segment)):
            value = segment[lane]
            minima[lane] = value if value < minima[lane] else minima[lane]


@numba.njit(inline="always")
def _smallest_members(values, lanes, n_lanes, kept_values, kept):
    """The positions in ``values`` of the ``len(kept)`` smallest members of ``lanes``
    (lane ``c`` holds positions ``c, c + n_lanes, ...``), into ``kept``: the first ones
    seen fill it, each later one replaces the largest kept while it is smaller."""
    k = len(kept)
    seen = 0
    largest = 0
    limit = np.float32(0)
    for lane in lanes:
        for position in range(lane, len(values), n_lanes):
            value = values[position]
            if seen < k:
                kept_values[seen] = value
                kept[seen] = position
                if seen == k - 1:
                    largest = _largest(kept_values[:k])
                    limit = kept_values[largest]
            elif value < limit:
                kept_values[largest] = value
                kept[largest] = position
                largest = _largest(kept_values[:k])
                limit = kept_values[largest]
            seen += 1


@numba.njit(inline="always")
def _largest(values):
    largest = 0
    for j in range(1, len(values)):
        if values[j] > values[largest]:
            largest = j
    return largest
