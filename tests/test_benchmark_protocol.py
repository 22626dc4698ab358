"""The quality benchmark's data protocol, and one real data set when it is present."""

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import quality  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def labelled(n_normal, n_anomalies, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_normal + n_anomalies, n_features)) * [1.0, 10.0, 100.0][:n_features]
    y = np.r_[np.zeros(n_normal), np.ones(n_anomalies)].astype(int)
    order = rng.permutation(len(y))
    return X[order], y[order]


def test_split_trains_on_60_percent_of_normal_rows_and_tests_on_the_rest():
    X, y = labelled(100, 20)
    X_train, X_test, y_test = quality.protocol_split(X, y, seed=0)
    assert len(X_train) == 60
    assert len(X_test) == 40 + 20
    assert y_test.sum() == 20
    # scaling is fitted on the training rows alone
    np.testing.assert_allclose(X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(axis=0), 1, atol=1e-12)


def test_split_depends_on_the_seed_only():
    X, y = labelled(50, 5)
    first = quality.protocol_split(X, y, seed=1)
    np.testing.assert_array_equal(first[0], quality.protocol_split(X, y, seed=1)[0])
    assert not np.array_equal(first[0], quality.protocol_split(X, y, seed=2)[0])


def test_large_sets_are_subsampled_keeping_every_anomaly(monkeypatch):
    monkeypatch.setattr(quality, "MAX_ROWS", 30)
    X, y = labelled(100, 10)
    X_train, X_test, y_test = quality.protocol_split(X, y, seed=0)
    assert len(X_train) == 30
    assert len(X_test) == 30 and y_test.sum() == 10


@pytest.mark.skipif(not (SHARED / "adbench").is_dir(), reason="../shared/data is absent")
def test_real_data_set_through_the_protocol():
    datasets = quality.find_datasets([SHARED / "adbench"])
    X, y = quality.load_npz(datasets["42_WBC"][1])
    result = quality.evaluate("AAE", *quality.protocol_split(X, y, seed=0), seed=0)
    assert result["roc_auc"] > 0.95
    assert set(result["components"]) == {
        "reconstruction", "discriminator", "density", "neighbors", "inputs",
    }


def test_scores_from_the_protocol_are_what_roc_auc_reads():
    # anomaly scores must grow with abnormality for both libraries' detectors
    X, y = labelled(200, 20)
    X[y == 1] += 8.0
    split = quality.protocol_split(X, y, seed=0)
    result = quality.evaluate("AAE", *split, seed=0)
    assert result["roc_auc"] == pytest.approx(
        roc_auc_score(split[2], quality.anomaly_scores(
            quality.make_detector("AAE", 3, 0).fit(split[0]), split[1]
        ))
    )


def test_image_sets_share_one_scale_fitted_on_training_pixels():
    X, y = labelled(100, 20, n_features=3)
    X_train, X_test, _ = quality.protocol_split(X, y, seed=0, images=True)
    np.testing.assert_allclose(X_train.mean(), 0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(), 1, atol=1e-12)
    # one centre and scale for every column: the columns keep their relative spread
    spread = X_train.std(axis=0)
    assert spread[2] > 10 * spread[0]
    # the scale is fitted, not fixed: a change of the pixels' unit changes nothing
    unscaled_train, unscaled_test, _ = quality.protocol_split(X * 3 + 7, y, seed=0, images=True)
    np.testing.assert_allclose(unscaled_test, X_test, atol=1e-9)
    np.testing.assert_allclose(unscaled_train, X_train, atol=1e-9)


def test_contaminated_split_moves_the_protocols_share_of_anomalies_into_training():
    X, y = labelled(1000, 100)
    clean_train, _, _ = quality.protocol_split(X, y, seed=3)
    X_train, X_test, y_test = quality.protocol_split(X, y, seed=3, contamination=0.05)
    # m = round(0.05 / 0.95 * 600) = 32 anomalies join the 600 normal training rows
    assert len(X_train) == 632 and len(clean_train) == 600
    assert len(X_test) == 400 + 68 and y_test.sum() == 68


def test_contamination_takes_at_most_half_of_the_anomalies():
    X, y = labelled(1000, 20)
    X_train, X_test, y_test = quality.protocol_split(X, y, seed=0, contamination=0.10)
    assert len(X_train) == 600 + 10
    assert y_test.sum() == 10


def test_contaminated_subsampling_keeps_the_share(monkeypatch):
    monkeypatch.setattr(quality, "MAX_ROWS", 200)
    X, y = labelled(1000, 200)
    # the label as an extra column tells, after scaling, which training rows are anomalies
    X_train, _, _ = quality.protocol_split(np.c_[X, y], y, seed=0, contamination=0.10)
    assert len(X_train) == 200
    is_anomaly = X_train[:, -1] == X_train[:, -1].max()
    # m = round(0.1 / 0.9 * 600) = 67 of 667 rows, then 200 rows keeping that share
    assert is_anomaly.sum() == round(200 * 67 / 667)


def test_input_view_score_is_a_z_score_on_the_training_rows_left_one_out():
    import input_views

    rng = np.random.default_rng(0)
    X_train, X_test = rng.normal(size=(200, 3)), rng.normal(size=(30, 3))
    X_test[0] = [8.0, 8.0, 8.0]
    k = input_views.K

    def mean_nearest(queries, leave_out_self):
        distances = np.linalg.norm(queries[:, None, :] - X_train[None, :, :], axis=2)
        if leave_out_self:
            np.fill_diagonal(distances, np.inf)
        return np.sort(distances, axis=1)[:, :k].mean(axis=1)

    own = mean_nearest(X_train, leave_out_self=True)
    q75, q25 = np.percentile(own, [75, 25])
    expected = (mean_nearest(X_test, False) - np.median(own)) / ((q75 - q25) / 1.349)
    score = input_views.input_knn_score(X_train, X_test, rows=None, seed=0)
    np.testing.assert_allclose(score, expected, rtol=1e-9, atol=1e-9)
    assert score[0] > 10 and np.abs(np.median(score[1:])) < 1.5
    # with a cap, both the search and its normalization use a subsample of the rows
    capped = input_views.input_knn_score(X_train, X_test, rows=50, seed=0)
    assert capped.shape == score.shape and not np.allclose(capped, score)


def test_reranked_input_view_is_the_input_knn_when_every_row_is_a_candidate(monkeypatch):
    import input_views
    import torch

    from aae_anomaly import AAEDetector

    rng = np.random.default_rng(1)
    X_train, X_test = rng.normal(size=(80, 4)), rng.normal(size=(20, 4))
    detector = AAEDetector(epochs=2, random_state=0).fit(X_train)
    assert len(detector.module_.reference) == len(X_train)  # held-out rows joined it
    monkeypatch.setattr(input_views, "CANDIDATES", 10_000)
    reranked = input_views.reranked_input_score(detector, X_test)

    def scaled(X):
        rows = torch.from_numpy(X.astype(np.float32))
        return detector.module_.scale_input(rows).numpy().astype(np.float64)

    plain = input_views.input_knn_score(scaled(X_train), scaled(X_test), rows=None, seed=0)
    np.testing.assert_allclose(reranked, plain, rtol=1e-3, atol=1e-3)
