"""The categorical+style AAE family: SupervisedAAE, AAEClassifier, AAEClustering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_bad_input, run
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from aae_anomaly import AAEClassifier, AAEClustering, SupervisedAAE

FAST = dict(epochs=15, batch_size=64, random_state=0)


def blobs(n: int = 300, centers: int = 3, seed: int = 0):
    """Well-separated Gaussian blobs in 6 dimensions."""
    return make_blobs(
        n_samples=n, n_features=6, centers=centers, cluster_std=0.6, center_box=(-8, 8),
        random_state=seed,
    )


def few_labels(y: np.ndarray, per_class: int) -> np.ndarray:
    """``y`` with all but the first ``per_class`` rows of each class marked -1."""
    marked = np.full(len(y), -1)
    for label in np.unique(y):
        chosen = np.flatnonzero(y == label)[:per_class]
        marked[chosen] = label
    return marked


def expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, AAEClassifier):
        return {
            "check_classifiers_classes": (
                "it fits the labels -1 and 1, and -1 marks an unlabelled row in "
                "scikit-learn's semi-supervised convention (the check exempts only "
                "scikit-learn's own semi-supervised classifiers, by name)"
            )
        }
    return {}


@parametrize_with_checks(
    [
        AAEClassifier(epochs=20, random_state=0),
        AAEClustering(n_clusters=3, epochs=10, random_state=0),
        SupervisedAAE(epochs=3, random_state=0),
    ],
    expected_failed_checks=expected_failures,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def classified():
    X, y = blobs()
    labels = few_labels(y, per_class=2)
    model = AAEClassifier(**FAST).fit(X, labels)
    return model, X, y, labels


def test_classifier_with_two_labels_per_class_beats_chance_widely(classified):
    model, X, y, labels = classified
    unlabelled = labels == -1
    accuracy = (model.predict(X[unlabelled]) == y[unlabelled]).mean()
    assert accuracy > 0.9  # chance is 1/3


def test_classifier_outputs_have_the_documented_shapes(classified):
    model, X, y, _ = classified
    assert model.classes_.tolist() == [0, 1, 2]  # -1 marks unlabelled rows, not a class
    probabilities = model.predict_proba(X)
    assert probabilities.shape == (len(X), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)
    assert (probabilities >= 0).all()
    np.testing.assert_array_equal(
        model.predict(X), model.classes_[probabilities.argmax(axis=1)]
    )
    assert model.transform(X).shape == (len(X), model.style_dim)
    assert model.get_feature_names_out().tolist()[:2] == ["style0", "style1"]
    assert set(model.history_) >= {"reconstruction", "classification", "discriminator"}


def test_classifier_takes_string_labels_mixed_with_minus_one():
    X, y = blobs()
    names = np.array(["bolt", "nut", "screw"], dtype=object)[y]
    labels = np.where(few_labels(y, 3) == -1, -1, names).astype(object)
    model = AAEClassifier(**FAST).fit(X, labels)
    assert model.classes_.tolist() == ["bolt", "nut", "screw"]
    assert set(model.predict(X)) <= {"bolt", "nut", "screw"}


def test_unlabelled_rows_do_not_count_as_labels():
    # two labelled rows per class, every other row -1 (unlabelled): -1 is not taken for a
    # class, neither in classes_ nor in the predictions
    X, y = blobs(n=150)
    labels = few_labels(y, 2)
    model = AAEClassifier(epochs=2, random_state=0).fit(X, labels)
    assert -1 not in model.classes_
    assert -1 not in set(model.predict(X))


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.full(60, -1), "every row unlabelled"),
        (np.r_[np.zeros(5, int), np.full(55, -1)], "only 1 class"),
    ],
)
def test_classifier_refuses_labels_it_cannot_learn_from(labels, message):
    X, _ = blobs(n=60)
    with pytest.raises(ValueError, match=message):
        AAEClassifier(epochs=1).fit(X, labels)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"label_weight": 0}, "label_weight"),
        ({"labelled_batch_size": 0}, "labelled_batch_size"),
        ({"balance_weight": -1}, "balance_weight"),
        ({"sharpness_weight": -0.5}, "sharpness_weight"),
        ({"consistency_weight": float("nan")}, "consistency_weight"),
        ({"consistency_radius": 0}, "consistency_radius"),
        ({"style_dim": 0}, "style_dim"),
        ({"input_noise": -0.1}, "input_noise"),
    ],
)
def test_classifier_parameters_are_checked_in_fit(params, message):
    X, y = blobs(n=60)
    model = AAEClassifier(epochs=1, **params)  # __init__ stores, fit validates
    with pytest.raises(ValueError, match=message):
        model.fit(X, y)


def test_same_seed_gives_the_same_classifier():
    X, y = blobs(n=120)
    labels = few_labels(y, 3)
    first = AAEClassifier(epochs=3, random_state=5).fit(X, labels).predict_proba(X)
    second = AAEClassifier(epochs=3, random_state=5).fit(X, labels).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    other = AAEClassifier(epochs=3, random_state=6).fit(X, labels).predict_proba(X)
    assert not np.array_equal(first, other)


def test_clustering_recovers_well_separated_blobs():
    X, y = blobs(n=300, centers=4)
    model = AAEClustering(n_clusters=4, epochs=30, batch_size=64, random_state=0).fit(X)
    assert model.labels_.shape == (len(X),)
    assert adjusted_rand_score(y, model.labels_) > 0.8
    np.testing.assert_array_equal(model.fit_predict(X), model.labels_)
    probabilities = model.predict_proba(X)
    assert probabilities.shape == (len(X), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)


def mean_row_entropy(probabilities: np.ndarray) -> float:
    return float(-(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(1).mean())


def test_sharpness_asks_each_row_for_one_category():
    X, _ = blobs(n=300, centers=4)
    settings = dict(n_clusters=8, epochs=10, batch_size=64, random_state=0)
    plain = AAEClustering(**settings).fit(X).predict_proba(X)
    sharp = AAEClustering(**settings, sharpness_weight=1.0).fit(X).predict_proba(X)
    assert mean_row_entropy(sharp) < 0.5 * mean_row_entropy(plain)


def test_consistency_holds_the_categories_under_small_input_changes():
    from aae_anomaly.engine.categorical import neighbour_distance

    # overlapping blobs, where a row's category can flip with a small change
    X, _ = make_blobs(
        n_samples=300, n_features=6, centers=4, cluster_std=3.0, center_box=(-8, 8),
        random_state=0,
    )
    settings = dict(n_clusters=4, epochs=10, batch_size=64, random_state=0)
    plain = AAEClustering(**settings).fit(X)
    steady = AAEClustering(**settings, consistency_weight=3.0).fit(X)
    noise = np.random.default_rng(0).normal(size=X.shape)
    radius = neighbour_distance(torch.as_tensor(X), torch.Generator().manual_seed(0))
    moved = X + 0.25 * radius * noise / np.linalg.norm(noise, axis=1, keepdims=True)

    def change(model):
        return float(np.abs(model.predict_proba(moved) - model.predict_proba(X)).sum(1).mean())

    assert change(steady) < 0.9 * change(plain)


def test_consistency_radius_follows_the_distance_to_the_tenth_neighbour():
    from aae_anomaly.engine.categorical import neighbour_distance

    # points 1 apart on a line: the 10th nearest of an inner point is 5 away (two at each
    # distance 1, 2, ...), whatever the units
    line = torch.arange(200, dtype=torch.float64).reshape(-1, 1) * torch.ones(1, 3)
    generator = torch.Generator().manual_seed(0)
    assert neighbour_distance(line, generator) == pytest.approx(5 * 3**0.5)
    assert neighbour_distance(7.0 * line, generator) == pytest.approx(35 * 3**0.5)


def test_one_cluster_holds_every_row():
    X, _ = blobs(n=40)
    model = AAEClustering(n_clusters=1, epochs=2, random_state=0).fit(X)
    assert model.labels_.tolist() == [0] * len(X)
    np.testing.assert_allclose(model.predict_proba(X), 1.0)


def test_flop_count_covers_the_discriminators_only_when_asked():
    from aae_anomaly.engine.runtime import forward_flops_per_row

    X, _ = blobs(n=40)
    module = AAEClustering(n_clusters=3, epochs=1, random_state=0).fit(X).module_
    autoencoder = forward_flops_per_row(module, discriminator=False)
    assert 0 < autoencoder < forward_flops_per_row(module)


@pytest.mark.parametrize("n_clusters", [0, -3, 2.5, True])
def test_clustering_needs_a_positive_number_of_clusters(n_clusters):
    X, _ = blobs(n=40)
    with pytest.raises(ValueError, match="n_clusters"):
        AAEClustering(n_clusters=n_clusters, epochs=1).fit(X)


def styled(n: int = 400, seed: int = 0):
    """Four classes (a centre each on its own axis) and one style shared by all: each row
    slides along the last axis by ``2 * s``, ``s`` standard normal."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    centres = np.zeros((4, 6))
    centres[np.arange(4), np.arange(4)] = 6.0
    style = rng.normal(size=n)
    X = centres[y] + np.outer(2.0 * style, np.eye(6)[5]) + rng.normal(scale=0.2, size=(n, 6))
    return X, y


@pytest.fixture(scope="module")
def supervised():
    X, y = styled()
    model = SupervisedAAE(style_dim=2, epochs=40, batch_size=32, random_state=0).fit(X, y)
    judge = LogisticRegression(max_iter=1000).fit(X, y)
    return model, X, y, judge


def test_sample_of_class_k_is_recognised_as_k(supervised):
    model, X, y, judge = supervised
    for k in model.classes_:
        samples = model.sample(50, classes=k, random_state=0)
        assert samples.shape == (50, X.shape[1])
        assert (judge.predict(samples) == k).mean() > 0.9


def test_a_rows_style_carries_over_to_every_class(supervised):
    model, X, y, judge = supervised
    styles = model.transform(X[:40])
    for k in model.classes_:
        decoded = model.sample(40, classes=k, style=styles)
        assert (judge.predict(decoded) == k).all()
        # the style (the slide along the last axis) is the source row's, in every class
        assert np.corrcoef(decoded[:, 5], X[:40, 5])[0, 1] > 0.7
    # one style, one row per class; the random state plays no part once the style is given
    style = styles[0]
    np.testing.assert_array_equal(
        judge.predict(model.sample(4, classes=model.classes_, style=style)), model.classes_
    )
    np.testing.assert_array_equal(
        model.sample(1, classes=1, style=style, random_state=1),
        model.sample(1, classes=1, style=style, random_state=2),
    )


def test_supervised_sample_refuses_what_it_cannot_draw(supervised):
    model, _, _, _ = supervised
    with pytest.raises(ValueError, match="unknown class 7"):
        model.sample(3, classes=7)
    with pytest.raises(ValueError, match="unknown class"):
        model.sample(1, classes="seven")
    with pytest.raises(ValueError, match="one per sample"):
        model.sample(3, classes=[0, 1])
    with pytest.raises(ValueError, match="style must be"):
        model.sample(3, classes=0, style=np.zeros(5))
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(0, classes=0)


def test_supervised_needs_a_class_for_every_row():
    X, _ = blobs(n=40)
    with pytest.raises(ValueError, match="requires y to be passed"):
        SupervisedAAE(epochs=1).fit(X, None)
    with pytest.raises(ValueError, match="Unknown label type"):
        SupervisedAAE(epochs=1).fit(X, np.linspace(0, 1, 40))


# -- command line --------------------------------------------------------------------------
@pytest.fixture
def labelled_file(tmp_path):
    X, y = blobs(n=120)
    path = tmp_path / "rows.npz"
    np.savez(path, X=X, y=few_labels(y, 3))
    return path, X, y


def test_classify_writes_a_label_and_probabilities_per_row(labelled_file, tmp_path):
    path, X, y = labelled_file
    output = tmp_path / "predictions.csv"
    result = run("classify", path, "-o", output, "--epochs", 15, "--batch-size", 64, "-q")
    assert result.exit_code == 0, result.output
    table = np.genfromtxt(output, delimiter=",", names=True)
    assert table.dtype.names == (
        "row", "label", "probability_0", "probability_1", "probability_2"
    )
    np.testing.assert_array_equal(table["row"], np.arange(len(X)))
    assert (table["label"] == y).mean() > 0.9


def test_cluster_takes_the_class_distribution_terms_as_options(labelled_file, tmp_path):
    from aae_anomaly import load

    path, X, y = labelled_file
    model_file = tmp_path / "clusters.aae"
    result = run(
        "cluster", path, "--clusters", 3, "--epochs", 2, "--sharpness-weight", 0.5,
        "--consistency-weight", 2, "--consistency-radius", 0.1, "--balance-weight", 3,
        "-o", tmp_path / "clusters.csv", "--save", model_file, "-q",
    )
    assert result.exit_code == 0, result.output
    params = load(model_file).get_params()
    assert (params["sharpness_weight"], params["consistency_weight"]) == (0.5, 2.0)
    assert (params["consistency_radius"], params["balance_weight"]) == (0.1, 3.0)


def test_cluster_and_generate_write_their_tables(labelled_file, tmp_path):
    path, X, y = labelled_file
    clusters = tmp_path / "clusters.csv"
    result = run("cluster", path, "--clusters", 3, "--epochs", 2, "-o", clusters, "-q")
    assert result.exit_code == 0, result.output
    assert np.genfromtxt(clusters, delimiter=",", names=True).shape == (len(X),)
    samples = tmp_path / "samples.csv"
    result = run("generate", path, "--class", 0, "--class", 2, "-n", 4, "--epochs", 2,
                 "-o", samples, "-q")
    assert result.exit_code == 0, result.output
    table = np.genfromtxt(samples, delimiter=",", names=True)
    assert table["class"].tolist() == [0] * 4 + [2] * 4
    assert len(table.dtype.names) == X.shape[1] + 1


@pytest.mark.parametrize(
    "args, message",
    [
        (("classify", "{unlabelled}"), "every row unlabelled"),
        (("classify", "{plain}"), "has no labels"),
        (("cluster", "{plain}", "--clusters", 0), "n_clusters must be"),
        (("generate", "{labelled}", "--class", 9), "--class 9 is not a class"),
        (("classify", "{labelled}", "--epochs", 0), "epochs must be a positive integer"),
        (("cluster", "{plain}", "--consistency-radius", -1), "consistency_radius must be"),
        (("classify", "{labelled}", "--sharpness-weight", -1), "sharpness_weight must be"),
    ],
)
def test_family_commands_exit_2_with_one_line_on_bad_input(tmp_path, args, message):
    X, y = blobs(n=40)
    files = {
        "unlabelled": tmp_path / "unlabelled.npz",
        "plain": tmp_path / "plain.npy",
        "labelled": tmp_path / "labelled.npz",
    }
    np.savez(files["unlabelled"], X=X, y=np.full(len(X), -1))
    np.save(files["plain"], X)
    np.savez(files["labelled"], X=X, y=y)
    assert_bad_input(run(*[str(a).format(**files) for a in args], "-q"), message)


# -- shared machinery ----------------------------------------------------------------------
def test_a_diverging_fit_is_rolled_back_then_stops_with_a_clear_error():
    # the family's trainer reuses the detector's epoch loop: a diverged epoch is retried
    # with smaller steps, and a fit that keeps diverging says what to change
    import warnings

    from aae_anomaly import TrainingDivergedError, TrainingWarning

    X, y = blobs(n=200)
    model = AAEClassifier(epochs=3, random_state=0, lr_autoencoder=1e7, lr_generator=1e7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrainingWarning)
        with pytest.raises(TrainingDivergedError, match="lower the learning rates"):
            model.fit(X, few_labels(y, 3))
    assert any("rolled back" in str(w.message) for w in caught)


def test_images_train_through_the_conv_encoder():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    images = X[:200].reshape(-1, 1, 8, 8)
    model = AAEClustering(n_clusters=4, encoder="conv", epochs=1, random_state=0).fit(images)
    assert model.input_shape_ == (1, 8, 8)
    assert model.predict(images).shape == (200,)
    with pytest.raises(ValueError, match="images have shape"):
        model.predict(images.reshape(-1, 1, 4, 16))
    supervised = SupervisedAAE(encoder="conv", epochs=1, random_state=0).fit(images, y[:200])
    assert supervised.sample(3, y=5).shape == (3, 64)


def test_verbose_fit_shows_progress(capsys):
    X, y = blobs(n=60)
    AAEClassifier(epochs=2, verbose=True, random_state=0).fit(X, few_labels(y, 2))
    assert "2/2" in capsys.readouterr().err


@pytest.mark.parametrize("estimator", [AAEClassifier, AAEClustering, SupervisedAAE])
def test_images_share_one_scale_unless_per_feature_is_asked(estimator):
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 4, 4)) * np.linspace(0.1, 1, 16).reshape(4, 4)
    y = np.arange(40) % 2
    fit = (lambda model: model.fit(images)) if estimator is AAEClustering else (
        lambda model: model.fit(images, y)
    )
    shared = fit(estimator(epochs=1, random_state=0))
    assert len(set(shared.module_.scale.tolist())) == 1
    per_feature = fit(estimator(epochs=1, random_state=0, scaling="per_feature"))
    assert len(set(per_feature.module_.scale.tolist())) == 16
    with pytest.raises(ValueError, match="scaling must be one of"):
        fit(estimator(epochs=1, scaling="global"))
    # the detector's contrast normalization would lose the intensities decoded images need
    refused = r"one of \('auto', 'per_feature', 'shared'\), got 'per_sample'"
    with pytest.raises(ValueError, match=refused):
        fit(estimator(epochs=1, scaling="per_sample"))


def test_cluster_probabilities_is_the_deprecated_name_of_predict_proba():
    X, _ = blobs(n=90)
    model = AAEClustering(n_clusters=3, epochs=2, random_state=0).fit(X)
    with pytest.warns(FutureWarning, match="use predict_proba"):
        old = model.cluster_probabilities(X)
    np.testing.assert_array_equal(old, model.predict_proba(X))


def test_the_names_of_0_1_for_classes_still_work_with_a_warning(supervised, tmp_path):
    model, _, _, _ = supervised
    with pytest.warns(FutureWarning, match=r"sample\(n, classes=\.\.\.\)"):
        old = model.sample(3, y=1, random_state=0)
    np.testing.assert_array_equal(old, model.sample(3, classes=1, random_state=0))
    X, y = blobs(n=60)
    path = tmp_path / "rows.npz"
    np.savez(path, X=X, y=y)
    rows = np.column_stack([X, y])
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",", header="a,b,kind", comments="")
    result = run("generate", tmp_path / "rows.csv", "--label-column", "kind", "-n", 2,
                 "--epochs", 1, "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Warning: --label-column is deprecated for class labels" in result.stderr
    assert_bad_input(run("generate", tmp_path / "rows.csv", "--label-column", "kind",
                         "--classes-column", "kind"), "give --classes-column alone")  # fmt: skip
