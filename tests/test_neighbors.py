"""The neighbour search's compiled selection (the ``fast`` extra): it picks the same values
as a full sort, it changes no score, and without numba the search still works. The search
against brute force, for every selection, is in test_properties.py."""

import sys
import unittest.mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aae_anomaly import AAEDetector
from aae_anomaly.scoring import neighbors


@st.composite
def rankings_and_k(draw):
    # widths on both sides of the lane counts (16, 256), values from a few integers so
    # that ties are common
    width = draw(st.sampled_from([1, 2, 15, 16, 17, 100, 255, 256, 257, 600, 4099]))
    rows = draw(st.integers(1, 6))
    values = draw(arrays(np.float32, (rows, width), elements=st.integers(-20, 20).map(float)))
    return values, draw(st.integers(1, min(width, 12)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(rankings_and_k())
def test_the_kernel_picks_each_rows_k_smallest_values(ranking_and_k):
    kernel = pytest.importorskip("aae_anomaly.scoring.selection_kernel")
    ranking, k = ranking_and_k
    columns = np.full((len(ranking), k), -1, dtype=np.int64)
    kernel.smallest_columns(ranking, k, columns)
    assert all(len(set(row)) == k for row in columns)  # k distinct columns, all written
    picked = np.sort(np.take_along_axis(ranking, columns, axis=1), axis=1)
    np.testing.assert_array_equal(picked, np.sort(ranking, axis=1)[:, :k])


def test_the_kernel_returns_valid_columns_for_rows_with_nan():
    # NaN fails every comparison the filters make; the kernel must still write k distinct
    # columns, since the search gathers reference rows by them
    kernel = pytest.importorskip("aae_anomaly.scoring.selection_kernel")
    ranking = np.random.default_rng(0).normal(size=(3, 600)).astype(np.float32)
    ranking[0] = np.nan
    ranking[1, ::2] = np.nan
    columns = np.full((3, 5), -1, dtype=np.int64)
    kernel.smallest_columns(ranking, 5, columns)
    assert all(len(set(row)) == 5 for row in columns)
    assert columns.min() >= 0 and columns.max() < 600
    # the NaN-free row is unaffected
    np.testing.assert_array_equal(np.sort(ranking[2, columns[2]]), np.sort(ranking[2])[:5])



@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "staged"])
def test_threads_sharing_a_calls_blocks_give_the_same_distances(compiled, monkeypatch):
    if compiled:
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(neighbors, "compiled_selection", lambda: None)
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(3000, 7, generator=generator)
    queries = torch.randn(2048, 7, generator=generator)
    one = neighbors.NeighborSearch(reference, 5)
    # valid rows: one block, a block and a row, several blocks and a part of one
    for n_valid in (1, one.block_rows + 1, 3 * one.block_rows + 7, 2048):
        expected = one.mean_distance(queries, n_valid)
        for threads in (2, 3):
            shared = neighbors.NeighborSearch(reference, 5, threads)
            torch.testing.assert_close(
                shared.mean_distance(queries, n_valid), expected, rtol=0, atol=0
            )


def test_alternating_searches_keep_their_buffers():
    # a scoring call alternates the search against the normal rows with the one against
    # known anomalies; neither may push the other's buffers out (a new 4 MB buffer costs
    # page faults), while a thread keeps at most KEPT_SHAPES pairs
    queries = torch.randn(8, 3)
    searches = [neighbors.NeighborSearch(torch.randn(n, 3), 1) for n in (50, 60)]
    first = [search._block_buffers(queries) for search in searches]
    again = [search._block_buffers(queries) for search in searches]
    assert all(a[1] is b[1] for a, b in zip(first, again, strict=True))
    for n in range(70, 70 + neighbors.KEPT_SHAPES):
        neighbors.NeighborSearch(torch.randn(n, 3), 1)._block_buffers(queries)
    assert searches[0]._block_buffers(queries)[1] is not first[0][1]

def test_the_fast_extra_changes_no_score_beyond_exact_ties():
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    detector = AAEDetector(latent_dim=2, epochs=2, random_state=0).fit(X)
    rows = rng.normal(size=(5000, 5))
    compiled = detector.score_samples(rows)
    with unittest.mock.patch.object(neighbors, "compiled_selection", lambda: None):
        without = detector.score_samples(rows)
    # The two selections search blocks of different sizes and break an exact tie between
    # the k-th and the next reference row differently; two such rows are equally near by
    # the ranking, so a row whose neighbours differ scores a few float32 ulps apart.
    # Everywhere else the scores are bit-identical (as on the machine this was written on,
    # where no row differed at all).
    np.testing.assert_allclose(compiled, without, rtol=1e-5, atol=1e-6)
    assert (compiled == without).mean() > 0.99


def test_without_numba_the_search_selects_with_torch():
    with unittest.mock.patch.dict(sys.modules, {"numba": None}):  # import numba fails
        sys.modules.pop("aae_anomaly.scoring.selection_kernel", None)
        assert neighbors.compiled_selection.__wrapped__() is None
    sys.modules.pop("aae_anomaly.scoring.selection_kernel", None)
