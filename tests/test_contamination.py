"""Training rows that hold anomalies: ``contamination`` keeps them out of the rows the
neighbors component compares with."""

import numpy as np
import pytest
import torch

import aae_anomaly
from aae_anomaly import AAEDetector
from aae_anomaly.estimators.fitting import TRIM_FACTOR, reference_groups, trimmed_reference
from aae_anomaly.plugin_system.datasets import load_dataset
from aae_anomaly.scoring.components import joint_coordinates
from aae_anomaly.scoring.neighbors import NeighborSearch, SlicedNeighborSearch


@pytest.fixture(scope="module")
def contaminated():
    """900 normal rows with 50 anomalies mixed in (5.3%), and which rows they are."""
    data = load_dataset("synthetic:n=1500,n_features=10,anomalies=0.1,seed=0")
    normal, anomalous = data.X[data.y == 0][:900], data.X[data.y == 1][:50]
    X = np.vstack([normal, anomalous])
    order = np.random.default_rng(0).permutation(len(X))
    return X[order], order >= len(normal)


def planted_in_reference(detector, planted_rows) -> int:
    """How many of the planted rows' coordinates are among the reference rows."""
    module = detector.module_
    coordinates = joint_coordinates(module, planted_rows, None, detector.device_)
    distances = torch.cdist(coordinates.double(), module.reference.double())
    return int((distances.min(dim=1).values < 1e-6).sum())


def test_contamination_leaves_the_planted_anomalies_out_of_the_reference(contaminated):
    X, is_planted = contaminated
    clean = AAEDetector(epochs=15, random_state=0).fit(X)
    told = AAEDetector(epochs=15, contamination=0.05, random_state=0).fit(X)
    # told nothing, the model compares with every training row it keeps, anomalies too
    kept_untold = planted_in_reference(clean, X[is_planted])
    assert kept_untold > 30
    # told the share, it drops the rows that reconstruct worst: nearly all the anomalies
    assert planted_in_reference(told, X[is_planted]) <= 0.1 * kept_untold
    # the rows trained on (the clean model's reference holds the held-out ones too)
    n_trained = len(X) - round(clean.calibration_fraction * len(X))
    assert len(clean.module_.reference) == len(X)
    assert len(told.module_.reference) == int(np.ceil(n_trained * (1 - TRIM_FACTOR * 0.05)))


def test_a_trimmed_reference_survives_a_model_file(contaminated, tmp_path):
    X, _ = contaminated
    detector = AAEDetector(epochs=2, contamination=0.1, random_state=0).fit(X)
    detector.save(tmp_path / "model")
    loaded = aae_anomaly.load(tmp_path / "model")
    assert loaded.module_.reference.shape == detector.module_.reference.shape
    assert loaded.module_.reference_groups == detector.module_.reference_groups > 1
    np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))
    assert (loaded.predict(X) == -1).sum() == (detector.predict(X) == -1).sum()


def test_trimming_keeps_the_best_reconstructed_rows_in_their_order():
    latent = torch.zeros(6, 2)
    residual = torch.tensor([[0.1], [3.0], [0.2], [0.0], [5.0], [0.3]])
    coordinates = torch.cat([latent, residual], dim=1)
    kept = trimmed_reference(coordinates, 2, 0.25)  # drops 2 x 25% = 3 of 6 rows
    torch.testing.assert_close(kept[:, 2], torch.tensor([0.1, 0.2, 0.0]))
    assert trimmed_reference(coordinates, 2, "auto") is coordinates


def test_slices_of_about_2k_over_c_rows_only_for_contaminated_training():
    assert reference_groups(4096, 5, "auto") == 1
    assert reference_groups(4096, 5, 0.05) == round(4096 / 200)
    assert reference_groups(4096, 5, 0.10) == round(4096 / 100)
    assert reference_groups(150, 5, 0.05) == 1  # fewer rows than one slice
    assert reference_groups(4096, 0, 0.05) == 1


def test_sliced_search_averages_each_slices_nearest_rows():
    reference = torch.tensor([[0.0], [10.0], [1.0], [11.0]])
    queries = torch.tensor([[0.0], [10.5]])
    sliced = SlicedNeighborSearch(reference, 1, 2).mean_distance(queries)
    # slices {0, 10} and {1, 11}: nearest 0 and 1 for the first row, 10 and 11 the second
    torch.testing.assert_close(sliced, torch.tensor([0.5, 0.5]))
    whole = NeighborSearch(reference, 1).mean_distance(queries)
    torch.testing.assert_close(SlicedNeighborSearch(reference, 1, 1).mean_distance(queries), whole)
    with pytest.raises(ValueError, match="groups must be between 1 and the 4 reference rows"):
        SlicedNeighborSearch(reference, 1, 5)


def test_a_clustered_contamination_is_not_masked(contaminated):
    # 40 copies (with a little noise) of one anomaly among 900 normal rows: a kNN over the
    # whole reference finds 5 close copies for a new one; the sliced search mostly does not
    rng = np.random.default_rng(1)
    X, _ = contaminated
    normal = X[:900]
    centre = normal.mean(axis=0) + 2.5 * normal.std(axis=0)
    cluster = centre + 0.05 * rng.normal(size=(40, X.shape[1]))
    train = np.vstack([normal, cluster])
    new = centre + 0.05 * rng.normal(size=(20, X.shape[1]))
    told = AAEDetector(epochs=15, contamination=0.05, random_state=0).fit(train)
    assert told.module_.reference_groups > 1
    normal_scores = told.score_samples(normal[-100:])
    untold = AAEDetector(epochs=15, random_state=0, n_neighbors=5).fit(train)
    caught_told = (told.score_samples(new) < np.quantile(normal_scores, 0.05)).mean()
    caught_untold = (
        untold.score_samples(new) < np.quantile(untold.score_samples(normal[-100:]), 0.05)
    ).mean()
    assert caught_told > caught_untold


def test_info_says_how_the_reference_is_searched(contaminated, tmp_path):
    from click.testing import CliRunner

    from aae_anomaly.cli import main

    X, _ = contaminated
    AAEDetector(epochs=2, contamination=0.05, random_state=0).fit(X).save(tmp_path / "told")
    AAEDetector(epochs=2, random_state=0).fit(X).save(tmp_path / "clean")
    told = CliRunner().invoke(main, ["info", str(tmp_path / "told")])
    clean = CliRunner().invoke(main, ["info", str(tmp_path / "clean")])
    assert told.exit_code == clean.exit_code == 0
    assert "slices (contaminated training)" in told.output
    assert "neighbors      " in clean.output and "slices" not in clean.output
