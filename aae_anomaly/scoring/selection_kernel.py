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
# then costs two vectorised passes and a few dozen scalar steps. Measured fastest here for
# k = 5, right after the product: 128/16, 256/8, 256/32, 512/16 and 512/32 lanes took 1 to
# 5% longer, 1,024/32 lanes 10%.
LANES = 256
SUPER_LANES = 16


@numba.njit(nogil=True, boundscheck=False, cache=True)
def smallest_columns(ranking: np.ndarray, k: int, out: np.ndarray) -> None:
    """Write into ``out[i]`` the columns of the ``k`` smallest values of ``ranking[i]``
    (float32, C-contiguous; ``1 <= k <=`` its width), in no particular order.

    Column ``c`` belongs to lane ``c % LANES``, and one vectorised pass takes each lane's
    minimum; lane ``l`` belongs to super lane ``l % SUPER_LANES``, and a second pass takes
    theirs. If ``k`` groups (lanes or super lanes) have a minimum at most ``bound``, then
    ``k`` values are at most ``bound``, so each of the ``k`` smallest values is at most
    ``bound`` and lies in a group whose minimum is too. The ``k``-th smallest super-lane
    minimum is such a bound, which leaves a few lanes; the ``k``-th smallest of their
    minima is a tighter one, which leaves a few columns; the ``k`` smallest of those are
    the answer (with ties, values equal to it).

    Filtering by a bound, without branches on the values, then sorting the few that pass
    costs 5 ms per 4,096 rows of 4,096 values right after their product, against 7 ms for
    keeping the ``k`` smallest of every member of the chosen groups as they come, whose
    data-dependent branches mispredict.
    """
    width = ranking.shape[1]
    n_lanes = min(LANES, width)
    n_super = min(SUPER_LANES, n_lanes)
    minima = np.empty(n_lanes, np.float32)
    super_minima = np.empty(n_super, np.float32)
    every_super_lane = np.arange(n_super)
    every_column = np.arange(width)
    lanes = np.empty(n_lanes, np.int64)
    columns = np.empty(width, np.int64)
    smallest = np.empty(k, np.float32)
    kept = np.empty(k, np.int64)  # scratch for the bounds
    for i in range(ranking.shape[0]):
        row = ranking[i]
        _lane_minima(row, minima)
        _lane_minima(minima, super_minima)
        bound = _kth_smallest(super_minima, every_super_lane, k, smallest, kept)
        n = _members_at_most(minima, every_super_lane, n_super, super_minima, bound, lanes)
        bound = _kth_smallest(minima, lanes[:n], k, smallest, kept)
        n = _members_at_most(row, lanes[:n], n_lanes, minima, bound, columns)
        if n < k:  # only where comparisons fail, with NaN: then any k columns will do
            _smallest_of(row, every_column, k, smallest, out[i])
        else:
            _smallest_of(row, columns[:n], k, smallest, out[i])


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
def _members_at_most(values, groups, n_groups, group_minima, bound, into):
    """Write into ``into`` the positions in ``values`` of the members at most ``bound``
    of those ``groups`` whose minimum is (group ``g`` holds ``g, g + n_groups, ...``);
    return how many. Every member is written, and counted only if it passes, so that no
    branch depends on its value: which members pass is what a predictor cannot guess."""
    n = 0
    for group in groups:
        if group_minima[group] <= bound:
            for position in range(group, len(values), n_groups):
                into[n] = position
                n += values[position] <= bound
    return n


@numba.njit(inline="always")
def _kth_smallest(values, positions, k, smallest, kept):
    """The ``k``-th smallest of ``values[positions]``; infinity when they are fewer
    (every value then passes the bound). ``smallest`` and ``kept``: scratch space."""
    if len(positions) < k:
        return np.float32(np.inf)
    _smallest_of(values, positions, k, smallest, kept)
    return smallest[k - 1]


@numba.njit(inline="always")
def _smallest_of(values, positions, k, smallest, kept):
    """The positions of the ``k`` smallest of ``values[positions]`` into ``kept``, their
    values into ``smallest`` in ascending order (``len(positions) >= k``): an insertion
    sort of the ``k`` kept so far."""
    filled = 0
    for position in positions:
        value = values[position]
        if filled < k:
            filled += 1
        elif not value < smallest[k - 1]:
            continue
        slot = filled - 1
        while slot > 0 and smallest[slot - 1] > value:
            smallest[slot] = smallest[slot - 1]
            kept[slot] = kept[slot - 1]
            slot -= 1
        smallest[slot] = value
        kept[slot] = position
