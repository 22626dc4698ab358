"""The paper's AAE variants: label-conditioned regularization."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aae_anomaly import AAEDetector, ModelFileError, load
from aae_anomaly.cli import main
from aae_anomaly.io.modelfile import read_header

FAST = dict(epochs=3, batch_size=64, random_state=0)
MIXTURE = dict(prior="mixture", prior_params={"n_components": 3}, latent_dim=2)


def three_classes(n: int = 90, seed: int = 0):
    """Rows of three well-separated classes, with string class names."""
    rng = np.random.default_rng(seed)
    index = np.arange(n) % 3
    centres = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    X = centres[index] + rng.normal(scale=0.3, size=(n, 4))
    return X, np.array(["bolt", "nut", "screw"])[index]


@pytest.fixture(scope="module")
def conditioned():
    X, classes = three_classes()
    detector = AAEDetector(**MIXTURE, **FAST, n_neighbors=3).fit(X, classes=classes)
    return detector, X, classes


def test_each_class_gets_a_region_the_discriminator_sees(conditioned):
    detector, X, classes = conditioned
    assert detector.normal_classes_.tolist() == ["bolt", "nut", "screw"]
    assert detector.module_.n_classes == 3
    # the discriminator reads the code followed by the one-hot class
    assert detector.module_.discriminator.net[0].in_features == 2 + 3
    components = detector.score_components(X)
    assert set(components) == {
        "reconstruction", "discriminator", "density", "neighbors", "score", "class"
    }
    assert set(components["class"]) <= {"bolt", "nut", "screw"}
    np.testing.assert_array_equal(-components["score"], detector.score_samples(X))


def test_best_matching_class_is_the_densest_region(conditioned):
    detector, X, classes = conditioned
    best = detector.score_components(X)
    # scoring each row in every class: the best-matching one has the lowest density term
    per_class = np.column_stack([
        detector.score_components(X, classes=[name] * len(X))["density"]
        for name in detector.normal_classes_
    ])
    np.testing.assert_allclose(best["density"], per_class.min(axis=1), rtol=1e-6)
    given = detector.score_components(X, classes=classes)
    assert (given["density"] >= best["density"] - 1e-9).all()
    assert (given["class"] == classes).all()
    np.testing.assert_array_equal(given["reconstruction"], best["reconstruction"])
    np.testing.assert_array_equal(
        detector.predict(X, classes=classes), np.where(detector.decision_function(
            X, classes=classes) < 0, -1, 1)
    )


def test_conditioned_regions_separate_the_classes():
    X, classes = three_classes(n=300, seed=1)
    detector = AAEDetector(**MIXTURE, epochs=30, batch_size=64, random_state=0).fit(
        X, classes=classes
    )
    found = detector.score_components(X)["class"]
    assert (found == classes).mean() > 0.9


def test_class_regions_without_density_use_the_discriminator():
    X, classes = three_classes()
    detector = AAEDetector(
        prior="swiss_roll", prior_params={"n_segments": 4}, latent_dim=3, **FAST
    ).fit(X, classes=(classes == "nut").astype(int))
    components = detector.score_components(X)
    assert "density" not in components and set(components["class"]) <= {0, 1}
    samples = detector.sample(5, random_state=0, classes=1)
    assert samples.shape == (5, 4)


def test_samples_come_from_the_class_region(conditioned):
    detector, _, _ = conditioned
    many = detector.sample(40, random_state=1, classes="nut")
    assert many.shape == (40, 4)
    each = detector.sample(3, random_state=1, classes=["bolt", "nut", "screw"])
    assert each.shape == (3, 4)
    with pytest.raises(ValueError, match="not fitted on"):
        detector.sample(2, classes="washer")


@pytest.mark.parametrize(
    "params, fragment",
    [
        (dict(prior="gaussian"), "cannot sample by class"),
        (dict(prior="mixture", prior_params={"n_components": 2}), "has only 2 regions"),
    ],
)
def test_priors_without_enough_regions_are_refused(params, fragment):
    X, classes = three_classes()
    with pytest.raises(ValueError, match=fragment):
        AAEDetector(latent_dim=2, **params, **FAST).fit(X, classes=classes)


def test_bad_classes_are_refused(conditioned):
    detector, X, classes = conditioned
    with pytest.raises(ValueError, match="one class label per row"):
        AAEDetector(**MIXTURE, **FAST).fit(X, classes=classes[:-1])
    with pytest.raises(ValueError, match="integers or strings"):
        AAEDetector(**MIXTURE, **FAST).fit(X, classes=np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="not fitted on"):
        detector.score_samples(X, classes=np.full(len(X), "washer"))
    with pytest.raises(ValueError, match="classes are int64"):
        detector.score_samples(X, classes=np.zeros(len(X), dtype=int))
    plain = AAEDetector(**FAST).fit(X)
    assert not hasattr(plain, "normal_classes_")
    with pytest.raises(ValueError, match="fitted with classes"):
        plain.score_samples(X, classes=classes)


def test_refit_without_classes_forgets_them():
    X, classes = three_classes()
    detector = AAEDetector(**MIXTURE, **FAST).fit(X, classes=classes)
    detector.fit(X)
    assert not hasattr(detector, "normal_classes_")
    assert detector.module_.n_classes == 0
    assert detector.module_.discriminator.net[0].in_features == 2


def test_conditioned_model_file_round_trip(conditioned, tmp_path):
    detector, X, classes = conditioned
    detector.save(tmp_path / "m.aae")
    header = read_header(tmp_path / "m.aae")
    assert header.document["format_version"] == 2
    assert header.document["normal_classes"] == ["bolt", "nut", "screw"]
    result = CliRunner().invoke(main, ["info", str(tmp_path / "m.aae")])
    assert "classes        3, each in its own prior region: bolt, nut, screw" in result.stdout
    loaded = load(tmp_path / "m.aae")
    np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))
    np.testing.assert_array_equal(
        loaded.score_samples(X, classes=classes), detector.score_samples(X, classes=classes)
    )
    assert (loaded.score_components(X)["class"] == detector.score_components(X)["class"]).all()
    # an unconditioned model's file has no such field (and, fitted clean, the inputs
    # component, which the conditioned one has not)
    plain = AAEDetector(**FAST, n_neighbors=5).fit(X)
    plain.save(tmp_path / "p.aae")
    assert "normal_classes" not in read_header(tmp_path / "p.aae").document
    assert read_header(tmp_path / "p.aae").document["input_candidates"] == 4


def test_damaged_class_list_is_refused(conditioned, tmp_path):
    from safetensors.torch import load_file, save_file

    from aae_anomaly.io.modelfile import METADATA_KEY

    detector, _, _ = conditioned
    detector.save(tmp_path / "m.aae")
    header = read_header(tmp_path / "m.aae").document
    tensors = load_file(tmp_path / "m.aae")
    for bad in (["nut", "bolt", "screw"], [], [1.5, 2.5, 3.5], "bolt"):
        save_file(tensors, tmp_path / "bad.aae",
                  metadata={METADATA_KEY: json.dumps({**header, "normal_classes": bad})})
        with pytest.raises(ModelFileError, match="normal_classes"):
            load(tmp_path / "bad.aae")
    # too many classes for the prior's regions
    save_file(tensors, tmp_path / "bad.aae", metadata={
        METADATA_KEY: json.dumps({**header, "normal_classes": ["a", "b", "c", "d"]})
    })
    with pytest.raises(ModelFileError, match="has only 3 regions"):
        load(tmp_path / "bad.aae")


def test_cli_fit_and_score_with_a_classes_column(tmp_path):
    X, classes = three_classes()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["kind"] = pd.Series(classes).map({"bolt": 0, "nut": 1, "screw": 2})
    frame["label"] = 0
    frame.loc[:4, "label"] = 1
    frame.to_csv(tmp_path / "train.csv", index=False)
    runner = CliRunner()
    result = runner.invoke(main, [
        "fit", str(tmp_path / "train.csv"), "-o", str(tmp_path / "m.aae"), "--quiet",
        "--epochs", "2", "--classes-column", "kind", "--label-column", "label",
        "--prior", "mixture", "--prior-option", "n_components=3", "--latent-dim", "2",
    ])
    assert result.exit_code == 0, result.output
    model = load(tmp_path / "m.aae")
    assert model.normal_classes_.tolist() == [0, 1, 2]
    assert model.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    result = runner.invoke(main, [
        "score", str(tmp_path / "m.aae"), str(tmp_path / "train.csv"),
        "--classes-column", "kind", "--label-column", "label",
    ])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(__import__("io").StringIO(result.stdout))["score"].to_numpy()
    expected = -model.score_samples(frame[["a", "b", "c", "d"]], classes=frame["kind"].to_numpy())
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    result = runner.invoke(main, [
        "fit", str(tmp_path / "train.csv"), "-o", str(tmp_path / "n.aae"), "--quiet",
        "--classes-column", "kind",
    ])
    assert result.exit_code == 2 and "cannot sample by class" in result.stderr
    result = runner.invoke(main, [
        "fit", str(tmp_path / "train.csv"), "-o", str(tmp_path / "n.aae"), "--quiet",
        "--classes-column", "type",
    ])
    assert result.exit_code == 2 and "no column 'type'" in result.stderr


def test_map_of_a_conditioned_model_names_its_classes(conditioned, tmp_path):
    pytest.importorskip("matplotlib")
    from aae_anomaly.plotting import plot_map

    detector, X, classes = conditioned
    drawn = plot_map(detector, X, tmp_path / "m.png", color="label", labels=classes)
    assert drawn["title"] == "latent code of 90 rows, mixture prior, 3 classes"


# -- semi-supervised detection: known anomalies -------------------------------------------------
def with_known_anomalies(seed: int = 0):
    """Normal rows around the origin, and one tight cluster of anomalies off to the side
    whose points lie closer to the normal rows than the normal rows' spread suggests."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(200, 4))
    cluster = rng.normal(loc=[2.2, 2.2, 0, 0], scale=0.05, size=(20, 4))
    return normal, cluster


def test_known_anomalies_raise_the_score_near_them():
    normal, cluster = with_known_anomalies()
    X = np.vstack([normal, cluster[:5]])
    labels = np.r_[np.zeros(len(normal)), np.ones(5)]
    plain = AAEDetector(**FAST).fit(normal)
    semi = AAEDetector(**FAST).fit(X, anomaly_labels=labels)
    assert semi.module_.anomaly_reference.shape[0] == 5
    # the same normal rows were trained on, with the same seed: the networks are identical
    np.testing.assert_array_equal(semi.transform(normal), plain.transform(normal))
    unseen = cluster[5:]
    assert (semi.score_components(unseen)["neighbors"]
            >= plain.score_components(unseen)["neighbors"]).all()
    assert np.median(-semi.score_samples(unseen)) > np.median(-plain.score_samples(unseen))
    # rows nearer their normal neighbours than any known anomaly keep their component
    far = semi.score_components(normal)["neighbors"] == plain.score_components(normal)["neighbors"]
    assert far.mean() > 0.9


def test_known_anomaly_model_file_round_trip(tmp_path):
    normal, cluster = with_known_anomalies()
    X = np.vstack([normal, cluster[:5]])
    labels = np.r_[np.zeros(len(normal), dtype=int), np.ones(5, dtype=int)]
    detector = AAEDetector(**FAST, n_neighbors=5).fit(X, anomaly_labels=labels == 1)
    detector.save(tmp_path / "m.aae")
    assert read_header(tmp_path / "m.aae").document["format_version"] == 6
    loaded = load(tmp_path / "m.aae")
    assert loaded.module_.anomaly_reference.shape == detector.module_.anomaly_reference.shape
    np.testing.assert_array_equal(loaded.score_samples(cluster), detector.score_samples(cluster))


def test_known_anomalies_with_classes_of_normal_rows():
    X, classes = three_classes()
    anomalies = np.full((4, 4), 6.0)
    rows = np.vstack([X, anomalies])
    detector = AAEDetector(**MIXTURE, **FAST).fit(
        rows,
        classes=np.concatenate([classes, ["nut"] * 4]),
        anomaly_labels=np.r_[np.zeros(len(X)), 1, 1, 1, 1],
    )
    assert detector.normal_classes_.tolist() == ["bolt", "nut", "screw"]
    assert detector.module_.anomaly_reference.shape[0] == 4


@pytest.mark.parametrize(
    "labels, params, fragment",
    [
        (np.r_[np.zeros(10), 2 * np.ones(2)], {}, "0 (normal or unknown) or 1"),
        (np.zeros(5), {}, "one label (0 or 1) per row"),
        (np.r_[np.zeros(10), np.ones(2)], {"n_neighbors": 0}, "n_neighbors > 0"),
        (np.r_[0, np.ones(11)], {}, "at least 2 normal rows"),
    ],
)
def test_bad_anomaly_labels_are_refused(labels, params, fragment):
    X = np.random.default_rng(0).normal(size=(12, 3))
    with pytest.raises(ValueError, match=re.escape(fragment)):
        AAEDetector(**FAST, **params).fit(X, anomaly_labels=labels)


def test_no_known_anomalies_is_the_plain_fit():
    normal, _ = with_known_anomalies()
    plain = AAEDetector(**FAST).fit(normal)
    none = AAEDetector(**FAST).fit(normal, anomaly_labels=np.zeros(len(normal)))
    assert none.module_.anomaly_reference is None
    np.testing.assert_array_equal(none.score_samples(normal), plain.score_samples(normal))


def test_cli_fit_with_known_anomalies(tmp_path):
    normal, cluster = with_known_anomalies()
    np.savez(tmp_path / "train.npz", X=np.vstack([normal, cluster[:5]]),
             y=np.r_[np.zeros(len(normal)), np.ones(5)])
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(tmp_path / "train.npz"), "-o",
                                  str(tmp_path / "m.aae"), "--epochs", "2", "--known-anomalies"])
    assert result.exit_code == 0, result.output
    assert "200 normal rows; its 5 labelled anomalies are kept as known anomalies" in result.stderr
    assert load(tmp_path / "m.aae").module_.anomaly_reference.shape[0] == 5
    result = runner.invoke(main, ["info", str(tmp_path / "m.aae")])
    assert "known anomalies 5, raising the neighbors component near them" in result.stdout
    np.save(tmp_path / "train.npy", normal)
    result = runner.invoke(main, ["fit", str(tmp_path / "train.npy"), "-o",
                                  str(tmp_path / "n.aae"), "--known-anomalies"])
    assert result.exit_code == 2 and "--known-anomalies needs labels" in result.stderr
