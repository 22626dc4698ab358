"""Streaming inference: fixed-size batches, one reused buffer, the thread policy."""

import numpy as np
import pytest
import torch

import aae_anomaly.engine.inference as inference_module
from aae_anomaly import AAEDetector
from aae_anomaly.engine import runtime
from aae_anomaly.engine.inference import (
    batch_streams,
    encode_rows,
    for_each_batch,
    padded_batches,
)
from aae_anomaly.engine.runtime import compute_threads, forward_flops_per_row
from aae_anomaly.scoring.components import raw_components

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def rows():
    return np.random.default_rng(3).normal(size=(100, 6))


@pytest.fixture(scope="module")
def fitted(rows):
    return AAEDetector(epochs=2, random_state=0).fit(rows)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_padded_batches_cover_every_row_once_and_pad_with_zeros(dtype):
    rows = np.random.default_rng(0).normal(size=(23, 4)).astype(dtype)
    seen = []
    for where, batch in padded_batches(rows, 10, CPU):
        assert batch.shape == (10, 4) and batch.dtype == torch.float32
        m = where.stop - where.start
        np.testing.assert_array_equal(batch[:m].numpy(), rows[where].astype(np.float32))
        assert not batch[m:].any()
        seen.append((where.start, where.stop))
    assert seen == [(0, 10), (10, 20), (20, 23)]


def test_padded_batches_reads_non_contiguous_rows():
    rows = np.random.default_rng(1).normal(size=(12, 8))[:, ::2]
    ((where, batch),) = list(padded_batches(rows, 16, CPU))
    np.testing.assert_array_equal(batch[:12].numpy(), rows.astype(np.float32))


def test_scores_across_batch_boundaries_equal_scores_of_the_parts(fitted, rows, monkeypatch):
    monkeypatch.setattr(inference_module, "BATCH_ROWS", 16)
    whole = fitted.score_components(rows)
    # parts that start and end inside batches of the whole
    for start, stop in [(0, 7), (7, 40), (40, 100), (33, 34)]:
        part = fitted.score_components(rows[start:stop])
        for name, values in whole.items():
            np.testing.assert_array_equal(part[name], values[start:stop])
    np.testing.assert_array_equal(fitted.transform(rows)[5:50], fitted.transform(rows[5:50]))


def test_scores_do_not_depend_on_the_batch_size_used_for_other_rows(fitted, rows, monkeypatch):
    reference = fitted.score_samples(rows)
    monkeypatch.setattr(inference_module, "BATCH_ROWS", 7)
    streamed = fitted.score_samples(rows)
    # a different batch size may round differently, but only in the last bits
    np.testing.assert_allclose(streamed, reference, rtol=1e-4, atol=1e-5)


def test_flops_per_row_count_every_matrix_product_of_the_three_networks(rows):
    detector = AAEDetector(encoder_params={"hidden": [64, 32]}, epochs=1, random_state=0)
    detector.fit(np.random.default_rng(0).normal(size=(50, 32)))
    encoder = 32 * 64 + 64 * 32 + 32 * 8
    decoder = 8 * 32 + 32 * 64 + 64 * 32
    discriminator = 8 * 64 + 64 * 64 + 64 * 1
    assert forward_flops_per_row(detector.module_) == 2 * (encoder + decoder + discriminator)
    assert forward_flops_per_row(detector.module_, discriminator=False) == 2 * (encoder + decoder)


def test_small_networks_run_on_one_thread_and_the_setting_comes_back(fitted):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with compute_threads(fitted.module_, CPU):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with compute_threads(fitted.module_, torch.device("meta")):
            assert torch.get_num_threads() == 2  # not a CPU run: left alone
    finally:
        torch.set_num_threads(before)


def test_large_networks_keep_torchs_thread_setting(fitted, monkeypatch):
    monkeypatch.setattr(runtime, "SMALL_NETWORK_FLOPS", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with compute_threads(fitted.module_, CPU):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_thread_policy_leaves_scores_unchanged(fitted, rows, monkeypatch):
    one_thread = fitted.score_samples(rows)
    monkeypatch.setattr(runtime, "SMALL_NETWORK_FLOPS", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two_threads = fitted.score_samples(rows)
    finally:
        torch.set_num_threads(before)
    # a BLAS may round a product differently on two threads: scores a few float32 ulps of
    # a component apart, divided by its spread, are at most about 1e-5 apart
    np.testing.assert_allclose(one_thread, two_threads, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.sign(one_thread - fitted.offset_),
                                  np.sign(two_threads - fitted.offset_))  # fmt: skip


def test_training_on_one_thread_is_reproducible_and_restores_threads(rows):
    before = torch.get_num_threads()
    first = AAEDetector(epochs=2, random_state=4).fit(rows).score_samples(rows)
    assert torch.get_num_threads() == before
    second = AAEDetector(epochs=2, random_state=4).fit(rows).score_samples(rows)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    ("workers", "n_rows", "batch_size"),
    [
        (2, 100, 4),  # 25 batches: whole batches side by side
        (3, 100, 4),
        (2, 2000, 1024),  # 2 batches: the threads share each batch's search blocks
        (50, 2000, 1024),
    ],
)
def test_batches_scored_side_by_side_equal_one_thread(fitted, workers, n_rows, batch_size):
    module, prior = fitted.module_, fitted.prior_
    rows = np.random.default_rng(5).normal(size=(n_rows, 6))
    one = raw_components(module, prior, rows, batch_size, CPU, workers=1)
    several = raw_components(module, prior, rows, batch_size, CPU, workers=workers)
    for name, values in one.items():
        np.testing.assert_array_equal(several[name], values)
    np.testing.assert_array_equal(
        encode_rows(module, rows, batch_size, CPU, workers=workers),
        encode_rows(module, rows, batch_size, CPU),
    )


def test_few_batches_are_not_streamed_side_by_side():
    # three batches on two threads would leave one thread idle for a third of the call
    assert batch_streams(3 * 4096, 4096, 2) == 1
    assert batch_streams(8 * 4096, 4096, 2) == 2
    assert batch_streams(100, 4096, 1) == 1


def _score_in_child(detector, batches, results):
    results.put([detector.score_samples(rows) for rows in batches])


def test_scoring_works_in_a_child_forked_after_scoring(fitted, monkeypatch):
    # the scoring threads live on between calls; a forked child has none of them and
    # must start its own instead of waiting forever on the parent's
    import multiprocessing
    import queue

    monkeypatch.setattr(inference_module, "BATCH_ROWS", 512)
    generator = np.random.default_rng(6)
    # 20 batches: streamed side by side; 4 batches: their search blocks shared
    batches = [generator.normal(size=(10_000, 6)), generator.normal(size=(2_000, 6))]
    expected = [fitted.score_samples(rows) for rows in batches]  # both kinds of threads
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_score_in_child, args=(fitted, batches, results))
    child.start()
    try:
        found = results.get(timeout=120)  # read before joining: the child waits to send
    except queue.Empty:
        pytest.fail("scoring in the forked child hung")
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    for values, wanted in zip(found, expected, strict=True):
        np.testing.assert_array_equal(values, wanted)


def test_for_each_batch_visits_every_row_once_across_workers():
    rows = np.arange(103, dtype=np.float64).reshape(-1, 1)
    seen = np.zeros(len(rows), dtype=int)

    def work(where, batch):
        m = where.stop - where.start
        np.testing.assert_array_equal(batch[:m, 0].numpy(), rows[where, 0])
        assert torch.is_inference_mode_enabled()
        seen[where] += 1

    for_each_batch(rows, 10, CPU, work, workers=4)
    assert (seen == 1).all()


def test_scoring_hands_the_cores_to_batches_when_one_thread_each(fitted):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with compute_threads(fitted.module_, CPU) as workers:
            assert workers == 2
    finally:
        torch.set_num_threads(before)


def test_scoring_flops_add_the_neighbour_search_to_the_networks():
    from aae_anomaly.engine.runtime import forward_flops_per_row
    from aae_anomaly.scoring.components import scoring_flops_per_row

    rows = np.random.default_rng(0).normal(size=(60, 6))
    detector = AAEDetector(epochs=1, random_state=0).fit(rows)
    module = detector.module_
    n_reference, width = module.reference.shape
    assert (n_reference, width) == (60, 3 + 6)  # the rows trained on and the held-out ones
    # the ranking product has a column for the norms; the inputs component measures its
    # 4 candidates' input-space distances (6 features)
    search = 2 * 60 * (9 + 1) + 2 * 4 * 6
    assert scoring_flops_per_row(module) == forward_flops_per_row(module) + search
    # the default score weighs the neighbourhood's two views: no discriminator pass
    weighted = detector.calibration_.weighted()
    assert weighted == ("neighbors", "inputs")
    autoencoder = forward_flops_per_row(module, discriminator=False)
    assert 0 < autoencoder < forward_flops_per_row(module)
    assert scoring_flops_per_row(module, weighted) == autoencoder + search
    assert scoring_flops_per_row(module, ("reconstruction",)) == autoencoder


def test_a_pool_task_computes_on_one_intra_op_thread_and_puts_the_setting_back():
    from concurrent.futures import ThreadPoolExecutor

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with ThreadPoolExecutor(1) as pool:  # a thread started while torch had 2 threads

            def task():
                with runtime.worker_thread():
                    inside = torch.get_num_threads()
                return inside, torch.get_num_threads()

            assert pool.submit(task).result() == (1, 2)
    finally:
        torch.set_num_threads(before)
