"""Property tests (hypothesis) over shapes, dtypes and value ranges for fit, score, save and
load: every input either gives a clear ValueError or finite scores, and a saved model scores
bit-identically after loading. Bounded: few examples, one-epoch fits."""

import unittest.mock
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aae_anomaly import AAEDetector, load

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.uint8, np.bool_])
SHAPES = st.tuples(st.integers(0, 40), st.integers(0, 6))
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _fit(X):
    return AAEDetector(latent_dim=2, epochs=1, batch_size=16, random_state=0).fit(X)


def _finite_magnitude_ok(X):
    values = np.asarray(X, dtype=np.float64)
    return np.isfinite(values).all() and np.abs(values).max(initial=0) <= 3.4e38


@SETTINGS
@given(dtype=DTYPES, shape=SHAPES, data=st.data())
def test_fit_gives_finite_scores_or_a_clear_value_error(dtype, shape, data):
    elements = FLOATS if np.issubdtype(dtype, np.floating) else None
    X = data.draw(arrays(dtype, shape, elements=elements))
    valid = shape[0] >= 2 and shape[1] >= 1 and _finite_magnitude_ok(X)
    if not valid:
        with pytest.raises(ValueError, match="sample|feature|NaN|infinity|float32|array"):
            _fit(X)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. an overpowered discriminator on odd data
        detector = _fit(X)
        scores = detector.score_samples(X)
    assert scores.shape == (shape[0],) and np.isfinite(scores).all()


@pytest.fixture(scope="module")
def fitted():
    return AAEDetector(latent_dim=2, epochs=2, random_state=0).fit(
        np.random.default_rng(0).normal(size=(80, 4))
    )


@SETTINGS
@given(
    X=arrays(
        np.float64,
        st.tuples(st.integers(1, 30), st.just(4)),
        elements=st.floats(-1e300, 1e300, allow_nan=False),
    )
)
def test_any_finite_rows_score_finitely(fitted, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extreme values are saturated with a warning
        scores = fitted.score_samples(X)
        codes = fitted.transform(X)
    assert np.isfinite(scores).all() and np.isfinite(codes).all()
    assert set(np.unique(fitted.predict(X))) <= {-1, 1}


@SETTINGS
@given(X=arrays(np.float64, st.tuples(st.integers(1, 10), st.just(4)), elements=FLOATS))
def test_rows_with_nan_or_infinity_are_refused_by_name(fitted, X):
    if np.isfinite(X).all():
        return
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity) in column"):
        fitted.score_samples(X)


@SETTINGS
@given(
    n_features=st.integers(1, 5),
    scale=st.sampled_from([1e-20, 1e-3, 1.0, 1e6, 1e30]),
    loss=st.sampled_from(["mse", "l1", "bce"]),
    posterior=st.sampled_from(["deterministic", "gaussian"]),
    seed=st.integers(0, 2**16),
)
def test_save_and_load_score_bit_identically(tmp_path, n_features, scale, loss, posterior, seed):
    X = np.random.default_rng(seed).normal(size=(30, n_features)) * scale
    detector = AAEDetector(
        latent_dim=2, epochs=1, random_state=seed, reconstruction_loss=loss, posterior=posterior
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.fit(X)
    path = tmp_path / "m.aae"
    detector.save(path)
    loaded = load(path)
    expected = detector.score_samples(X)
    assert np.isfinite(expected).all()
    np.testing.assert_array_equal(loaded.score_samples(X), expected)
    np.testing.assert_array_equal(loaded.predict(X), detector.predict(X))


def _selections():
    """Every way the search can select, as (name, patches to force it): the compiled
    kernel (when numba is installed), and without it NumPy's introselect (the CPU's) and
    torch.topk (other devices')."""
    from aae_anomaly.scoring import neighbors

    without_kernel = unittest.mock.patch.object(neighbors, "compiled_selection", lambda: None)
    for select in (neighbors._smallest_by_numpy, neighbors._smallest_by_topk):
        forced = unittest.mock.patch.object(
            neighbors, "_selection_for", lambda device, select=select: select
        )
        yield select.__name__, (without_kernel, forced)
    if neighbors.compiled_selection() is not None:
        yield "compiled", ()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    n_reference=st.integers(1, 5000),
    k=st.integers(1, 10),
    duplicates=st.booleans(),
    n_queries=st.integers(1, 1100),
    seed=st.integers(0, 2**16),
)
def test_neighbour_distances_equal_a_brute_force_search(
    n_reference, k, duplicates, n_queries, seed
):
    """Every selection finds the same neighbours as sorting every distance: with few
    reference rows (one selection) and many (groups, lanes, padding), with duplicated rows
    (ties), and over several query blocks."""
    import contextlib

    import torch

    from aae_anomaly.scoring import neighbors

    generator = torch.Generator().manual_seed(seed)
    reference = torch.randn(n_reference, 6, generator=generator)
    if duplicates:
        reference[1::2] = reference[::2][: len(reference[1::2])]
    queries = torch.randn(n_queries, 6, generator=generator)
    exact = torch.cdist(queries.double(), reference.double())
    expected = exact.topk(min(k, n_reference), dim=1, largest=False).values.mean(dim=1)
    for name, patches in _selections():
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            found = neighbors.NeighborSearch(reference, k).mean_distance(queries)
        torch.testing.assert_close(found.double(), expected, rtol=1e-5, atol=1e-5, msg=name)
