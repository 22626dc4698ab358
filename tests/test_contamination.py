"""Training rows that hold anomalies: ``contamination`` keeps them out of the rows the
neighbors component compares with."""

import numpy as np
import pytest
import torch

import aae_anomaly
from aae_anomaly import AAEDetector
from aae_anomaly.estimators.fitting import TRIM_FACTOR, trimmed_reference
from aae_anomaly.plugin_system.datasets import load_dataset
from aae_anomaly.scoring.components import joint_coordinates


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
    n_reference = len(clean.module_.reference)
    assert len(told.module_.reference) == int(np.ceil(n_reference * (1 - TRIM_FACTOR * 0.05)))


def test_a_trimmed_reference_survives_a_model_file(contaminated, tmp_path):
    X, _ = contaminated
    detector = AAEDetector(epochs=2, contamination=0.1, random_state=0).fit(X)
    detector.save(tmp_path / "model")
    loaded = aae_anomaly.load(tmp_path / "model")
    assert loaded.module_.reference.shape == detector.module_.reference.shape
    np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))
    assert (loaded.predict(X) == -1).sum() == (detector.predict(X) == -1).sum()


def test_trimming_keeps_the_best_reconstructed_rows_in_their_order():
    latent = torch.zeros(6, 2)
    residual = torch.tensor([[0.1], [3.0], [0.2], [0.0], [5.0], [0.3]])
    coordinates = torch.cat([latent, residual], dim=1)
    kept = trimmed_reference(coordinates, 2, 0.25)  # drops 2 x 25% = 3 of 6 rows
    torch.testing.assert_close(kept[:, 2], torch.tensor([0.1, 0.2, 0.0]))
    assert trimmed_reference(coordinates, 2, "auto") is coordinates
