"""Exact k-nearest-neighbour search against a fixed reference set, for the ``neighbors``
score component (see :mod:`aae_anomaly.scoring`).

The search is brute force: in the (code, residual) coordinates the distances concentrate,
so bounds that prune whole regions (trees, clusters) would skip little. What makes it fast
is doing the brute force in few, large passes:

1. one matrix product per block of query rows ranks every reference row;
2. the ``k`` smallest of the 4,096 ranking values of a row are found in narrowing stages
   instead of one top-k over all of them: on the CPU with numba installed (the ``fast``
   extra) by the compiled :mod:`aae_anomaly.selection_kernel`, otherwise by torch and
   NumPy operations (:meth:`NeighborSearch.nearest`); both find the same values;
3. the chosen neighbours' distances are then measured directly, for all blocks at once.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import torch

from ..engine.inference import aligned_rows
from ..engine.runtime import long_lived_threads, worker_thread

# Query rows per ranking product: a divisor of the scoring batch size, so that every row's
# ranking comes from identically shaped products (a row's score then does not depend on
# which rows it is scored with). 512 measured fastest here: 128 and 256 pay more per-call
# overhead in the selection, 1,024 and more no longer gain.
QUERY_BLOCK_ROWS = 512
# The same with the compiled selection, which costs little per call from Python. From 64
# to 1,024 rows all score within this machine's noise (400,000 to 427,000 rows/s,
# docs/neighbor-search.md; alternating runs of 256 and 512 rows differed by 3%); 256 keeps
# a call for a few rows cheap, since such a call still searches one whole block.
COMPILED_BLOCK_ROWS = 256
# Shapes of search blocks each thread keeps buffers for (see _block_buffers).
KEPT_SHAPES = 4
# Reference rows per group, and rows per subgroup inside a candidate group (see nearest).
GROUP = 64
SUBGROUP = 8


class NeighborSearch:
    """Mean Euclidean distance from query rows to their ``k`` nearest ``reference`` rows.

    With ``inputs`` (one row per reference row: the same rows in a second view), the
    search also measures that view among each query's ``candidates`` nearest reference
    rows: the mean distance, in the second view, to the ``k`` closest of them there
    (:meth:`distances`). The first view's mean is then taken over the ``k`` smallest of
    the candidates' directly measured distances.

    Made once per scoring call (it holds a transposed, augmented copy of the reference);
    :meth:`mean_distance` may be called from several threads at once. With ``threads >
    1`` (CPU only), each call also shares its blocks among that many threads, kept for
    the life of the process (:func:`~aae_anomaly.engine.runtime.long_lived_threads`).
    """

    def __init__(
        self, reference: torch.Tensor, k: int, threads: int = 1,
        inputs: torch.Tensor | None = None, candidates: int = 0,
    ):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not len(reference):
            raise ValueError("the reference set is empty")
        if inputs is not None and len(inputs) != len(reference):
            raise ValueError("inputs must have one row per reference row")
        self.reference = reference
        self.inputs = inputs
        self.k = min(k, len(reference))
        # the rows chosen per query: the k nearest, or more to measure the second view on
        self.chosen = self.k if inputs is None else min(max(k, candidates), len(reference))
        self._compiled = compiled_selection() if reference.device.type == "cpu" else None
        self.block_rows = COMPILED_BLOCK_ROWS if self._compiled else QUERY_BLOCK_ROWS
        self.grouped = self._compiled is None and len(reference) > 2 * self.chosen * GROUP
        # [q, 1] . [-2 r, |r|^2] = |q - r|^2 - |q|^2: one product with no separate pass to
        # add the norms ranks the reference rows for a query (|q|^2 is the same for all).
        ranking_rows = torch.cat([-2 * reference, reference.square().sum(dim=1, keepdim=True)], 1)
        if self.grouped:
            # pad to whole groups with rows that rank last
            padding = -len(reference) % GROUP
            ranking_rows = torch.nn.functional.pad(ranking_rows, (0, 0, 0, padding))
            ranking_rows[len(reference) :, -1] = math.inf
        self._ranking_reference = ranking_rows.T.contiguous()
        if self.grouped:
            # the columns of ranking that each group holds
            columns = torch.arange(len(ranking_rows), device=reference.device)
            self._group_columns = columns.view(-1, GROUP)
        self._smallest = _selection_for(reference.device)
        # CPU threads that share the blocks of each call (see mean_distance)
        self.threads = max(1, threads) if reference.device.type == "cpu" else 1

    def mean_distance(self, queries: torch.Tensor, n_valid: int | None = None) -> torch.Tensor:
        """One value per query row. Rows from ``n_valid`` on are padding: they are left at
        zero, and blocks holding nothing else are skipped, which keeps a call for a few
        rows cheap.

        With ``threads > 1``, the blocks are cut into that many runs, each searched by its
        own thread: for calls with too few rows to give each thread batches of its own.
        The blocks are those one thread would search, so the values are identical."""
        return self.distances(queries, n_valid)[0]

    def distances(
        self, queries: torch.Tensor, n_valid: int | None = None,
        query_inputs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`mean_distance`, and with ``query_inputs`` (the queries in the second
        view, for a search made with ``inputs``) the second view's mean distance among
        the candidates (else None)."""
        if (query_inputs is None) != (self.inputs is None):
            raise ValueError("query_inputs go with a search made with inputs, and only then")
        n_valid = len(queries) if n_valid is None else n_valid
        distances = torch.zeros(len(queries), device=queries.device)
        second = None if query_inputs is None else torch.zeros_like(distances)
        if not n_valid:
            return distances, second
        n_blocks = -(-n_valid // self.block_rows)
        run = -(-n_blocks // self.threads) * self.block_rows
        runs = [slice(start, min(start + run, n_valid)) for start in range(0, n_valid, run)]
        out = (distances, second, query_inputs)
        if len(runs) == 1:
            self._search(queries, runs[0], *out)
        else:
            pool = long_lived_threads(self.threads, "search")
            searches = [pool.submit(self._search_in_thread, queries, rows, *out)
                        for rows in runs]
            for search in searches:
                search.result()
        return distances, second

    def _search(
        self, queries: torch.Tensor, rows: slice, distances: torch.Tensor,
        second: torch.Tensor | None = None, query_inputs: torch.Tensor | None = None,
    ) -> None:
        """Fill ``distances[rows]`` (and ``second[rows]``); ``rows`` starts at a block
        boundary."""
        block = self.block_rows
        augmented, ranking = self._block_buffers(queries)
        chosen = []
        for start in range(rows.start, rows.stop, block):
            chunk = queries[start : start + block]
            n_rows = len(chunk)
            if n_rows < block:  # only when the queries are fewer than one block
                augmented, ranking = augmented[:n_rows], ranking[:n_rows]
            augmented[:, :-1] = chunk
            torch.mm(augmented, self._ranking_reference, out=ranking)
            chosen.append(self.nearest(ranking))
        n = rows.stop - rows.start
        nearest = torch.cat(chosen)[:n]
        distances[rows] = _mean_of_nearest(self.reference, nearest, queries[rows], self.k)
        if second is not None:
            second[rows] = _mean_of_nearest(self.inputs, nearest, query_inputs[rows], self.k)

    def _search_in_thread(self, queries, rows, distances, second=None, query_inputs=None):
        with worker_thread():
            self._search(queries, rows, distances, second, query_inputs)

    def nearest(self, ranking: torch.Tensor) -> torch.Tensor:
        """The columns of the ``k`` smallest values of each row of ``ranking`` (``k`` here
        is :attr:`chosen`: the candidates, when there are more than the neighbours).

        With the compiled kernel, see :func:`aae_anomaly.selection_kernel.smallest_columns`.
        Without it: a top-k over thousands of values per row costs more than the product that made
        them, so the search narrows in stages. The columns split into groups of
        :data:`GROUP`. Each of a row's ``k`` smallest values lies in a group whose minimum
        is at most the ``k``-th smallest value, and at most ``k`` groups have a minimum
        below it: so the ``k`` groups of smallest minima hold the ``k`` smallest values
        (with ties, the same values). The same argument, on subgroups of :data:`SUBGROUP`
        columns of those candidates, narrows them to ``k * SUBGROUP`` values, and a last
        selection picks the ``k``.
        """
        if self._compiled is not None:
            columns = np.empty((len(ranking), self.chosen), dtype=np.int64)
            self._compiled(ranking.numpy(), self.chosen, columns)
            return torch.from_numpy(columns)
        smallest = self._smallest
        if not self.grouped:
            return smallest(ranking, self.chosen)
        k, rows = self.chosen, len(ranking)
        by_group = ranking.view(rows, -1, GROUP)
        groups = smallest(by_group.amin(dim=2), k)
        in_groups = (self._row_starts(rows, by_group.shape[1]) + groups).view(-1)
        # the candidates' values, and their columns of ranking, gathered side by side
        values = by_group.reshape(-1, GROUP).index_select(0, in_groups).view(rows, -1, SUBGROUP)
        columns = self._group_columns.index_select(0, groups.view(-1)).view(-1, SUBGROUP)
        subgroups = smallest(values.amin(dim=2), k)
        in_subgroups = (self._row_starts(rows, values.shape[1]) + subgroups).view(-1)
        values = values.view(-1, SUBGROUP).index_select(0, in_subgroups).view(rows, -1)
        columns = columns.index_select(0, in_subgroups).view(rows, -1)
        return columns.gather(1, smallest(values, k))

    def _row_starts(self, rows: int, n_blocks: int) -> torch.Tensor:
        """Where each row's blocks start in a ``(rows * n_blocks, width)`` view: added to
        block indices, the rows that one ``index_select`` gathers (5-10x faster than
        advanced indexing of the 3-D view, measured here). Made once per shape and thread."""
        starts = _THREAD_CACHE.__dict__.setdefault("starts", {})
        key = (self.reference.device, rows, n_blocks)
        if key not in starts:
            first = torch.arange(0, rows * n_blocks, n_blocks, device=self.reference.device)
            starts[key] = first.unsqueeze(1)
        return starts[key]

    def _block_buffers(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This thread's query and ranking blocks, kept from search to search: a fresh
        ranking block (2 to 4 MB) costs page faults, measured at 5-10% of a large search
        and at 1.5 to 14 ms for each small one here. A thread keeps a pair for each of the
        last :data:`KEPT_SHAPES` shapes it searched with (a scoring call may alternate
        two searches, against the normal rows and against known anomalies)."""
        key = (queries.device, queries.dtype, queries.shape[1], self.block_rows,
               self._ranking_reference.shape[1])
        kept = _THREAD_CACHE.__dict__.setdefault("blocks", {})
        buffers = kept.pop(key, None)
        if buffers is None:
            rows = self.block_rows
            # rows 64 bytes apart, as every matrix product of inference reads them
            augmented = aligned_rows(queries.new_ones((rows, queries.shape[1] + 1)))
            ranking = queries.new_empty((rows, self._ranking_reference.shape[1]))
            buffers = (augmented, ranking)
            if len(kept) >= KEPT_SHAPES:
                del kept[next(iter(kept))]  # the least recently used
        kept[key] = buffers  # now the most recently used
        return buffers


def _mean_of_nearest(
    rows: torch.Tensor, chosen: torch.Tensor, queries: torch.Tensor, k: int
) -> torch.Tensor:
    """Each query's mean distance to the ``k`` closest of its ``chosen`` rows of ``rows``.
    The distances are measured directly (the ranking expansion cancels digits when a
    query and a row are close, so a score does not depend on its rounding), and sorted
    before the mean adds them, in one order however they were selected."""
    n, m = chosen.shape
    difference = rows.index_select(0, chosen.view(-1)).view(n, m, -1)
    direct = torch.linalg.vector_norm(difference.sub_(queries[:, None]), dim=2)
    return direct.sort(dim=1).values[:, :k].mean(dim=1)


# what each thread reuses from search to search: its blocks (NeighborSearch._block_buffers)
# and, for the staged selection, its row offsets (NeighborSearch._row_starts)
_THREAD_CACHE = threading.local()


def _selection_for(device: torch.device):
    """How to find the columns of the ``k`` smallest values of each row, in no particular
    order: on the CPU, NumPy's introselect, three times faster than ``torch.topk`` for rows
    of 64 values here (0.86 against 2.5 ms for 4,096 rows, one thread); elsewhere
    ``topk``."""
    return _smallest_by_numpy if device.type == "cpu" else _smallest_by_topk


def _smallest_by_numpy(values: torch.Tensor, k: int) -> torch.Tensor:
    selected = np.argpartition(values.numpy(), k - 1, axis=1)[:, :k]
    return torch.from_numpy(np.ascontiguousarray(selected))


def _smallest_by_topk(values: torch.Tensor, k: int) -> torch.Tensor:
    return values.topk(k, dim=1, largest=False, sorted=False).indices


@functools.cache
def compiled_selection():
    """:func:`aae_anomaly.selection_kernel.smallest_columns` where numba is installed (the
    ``fast`` extra), else None: the search then selects with torch and NumPy."""
    try:
        from .selection_kernel import smallest_columns
    except ImportError:
        return None
    return smallest_columns


class SlicedNeighborSearch:
    """The mean over ``groups`` consecutive slices of ``reference`` (as equal in size as
    they can be) of :class:`NeighborSearch`'s mean distance within each slice; the same
    interface. The slices are searched and added in one order, so a row's value does not
    depend on the rows scored with it."""

    def __init__(self, reference: torch.Tensor, k: int, groups: int, threads: int = 1):
        if not 1 <= groups <= len(reference):
            raise ValueError(
                f"groups must be between 1 and the {len(reference)} reference rows, got {groups}"
            )
        self.searches = [
            NeighborSearch(part, k, threads) for part in torch.tensor_split(reference, groups)
        ]

    def mean_distance(self, queries: torch.Tensor, n_valid: int | None = None) -> torch.Tensor:
        total = self.searches[0].mean_distance(queries, n_valid)
        for search in self.searches[1:]:
            total += search.mean_distance(queries, n_valid)
        return total / len(self.searches)
