"""AAEDetector: scikit-learn conventions, reproducibility, scoring, the quality floor."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch.utils._python_dispatch import TorchDispatchMode

from aae_anomaly import (
    AAEClassifier,
    AAEClustering,
    AAEDetector,
    SupervisedAAE,
    load_dataset,
)


@parametrize_with_checks([AAEDetector(epochs=3, random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_quality_floor_on_synthetic_anomalies(synthetic_split):
    X_train, X_test, y_test = synthetic_split
    detector = AAEDetector(epochs=30, random_state=0).fit(X_train)
    anomaly_score = -detector.score_samples(X_test)
    assert roc_auc_score(y_test, anomaly_score) >= 0.95


def test_same_seed_gives_bit_identical_scores(small_rows):
    first = AAEDetector(epochs=3, random_state=7).fit(small_rows).score_samples(small_rows)
    second = AAEDetector(epochs=3, random_state=7).fit(small_rows).score_samples(small_rows)
    np.testing.assert_array_equal(first, second)
    other = AAEDetector(epochs=3, random_state=8).fit(small_rows).score_samples(small_rows)
    assert not np.array_equal(first, other)


def test_fit_leaves_the_callers_random_state_alone(small_rows):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    AAEDetector(epochs=2, random_state=1).fit(small_rows)
    assert torch.equal(torch.rand(3), expected)


def test_history_has_one_entry_per_epoch_for_each_loss(small_rows):
    detector = AAEDetector(epochs=4, random_state=0).fit(small_rows)
    assert set(detector.history_) == {
        "reconstruction", "discriminator", "generator", "discriminator_accuracy",
        "learning_rate_scale", "discriminator_overpowered",
    }
    assert all(len(values) == 4 for values in detector.history_.values())
    assert all(0 <= a <= 1 for a in detector.history_["discriminator_accuracy"])
    # the reconstruction phase does its job
    assert detector.history_["reconstruction"][-1] < detector.history_["reconstruction"][0]


def test_constant_and_duplicated_columns_give_finite_scores(small_rows):
    X = np.column_stack([small_rows, np.full(len(small_rows), 5.0), small_rows[:, 0]])
    detector = AAEDetector(epochs=3, random_state=0).fit(X)
    components = detector.score_components(X)
    assert all(np.isfinite(values).all() for values in components.values())
    assert np.isfinite(detector.transform(X)).all()


def test_score_components_are_per_sample_and_combine_into_the_score(small_rows):
    detector = AAEDetector(epochs=3, random_state=0).fit(small_rows)
    components = detector.score_components(small_rows[:10])
    assert set(components) == {
        "reconstruction", "discriminator", "density", "neighbors", "inputs", "score",
    }
    assert all(values.shape == (10,) for values in components.values())
    np.testing.assert_allclose(components["score"], -detector.score_samples(small_rows[:10]))


@pytest.mark.parametrize(
    "weights", [None, {"reconstruction": 1.0, "density": 0.5}, {"discriminator": 2.0}]
)
def test_scores_compute_only_the_weighted_components_and_equal_the_full_combination(
    small_rows, weights, monkeypatch
):
    from aae_anomaly.scoring import components as scoring

    detector = AAEDetector(epochs=2, random_state=0, score_weights=weights).fit(small_rows)
    full = detector.score_components(small_rows)
    computed = []
    real = scoring.raw_components

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        computed.append(set(result))
        return result

    monkeypatch.setattr("aae_anomaly.estimator.raw_components", recording)
    scores = -detector.score_samples(small_rows)
    weighted = {name for name, w in detector.calibration_.weights.items() if w > 0}
    assert computed == [weighted]
    np.testing.assert_array_equal(scores, full["score"])


def test_the_score_is_the_weighted_mean_of_the_normalized_components(small_rows):
    weights = {"reconstruction": 1.0, "density": 0.3, "neighbors": 1.7}
    detector = AAEDetector(epochs=2, random_state=0, score_weights=weights).fit(small_rows)
    components = detector.score_components(small_rows)
    calibration = detector.calibration_
    normalized = {
        name: (components[name] - calibration.center[name]) / calibration.spread[name]
        for name in weights
    }
    expected = sum(weights[name] * normalized[name] for name in weights) / sum(weights.values())
    np.testing.assert_array_equal(-detector.score_samples(small_rows), expected)


def test_priors_without_density_score_without_that_component(small_rows):
    detector = AAEDetector(prior="swiss_roll", latent_dim=2, epochs=2, random_state=0)
    components = detector.fit(small_rows).score_components(small_rows)
    assert set(components) == {"reconstruction", "discriminator", "neighbors", "inputs", "score"}


def test_score_weights_select_components(small_rows):
    only_reconstruction = AAEDetector(
        epochs=2, random_state=0, score_weights={"reconstruction": 1.0}
    ).fit(small_rows)
    components = only_reconstruction.score_components(small_rows)
    calibration = only_reconstruction.calibration_
    expected = (
        components["reconstruction"] - calibration.center["reconstruction"]
    ) / calibration.spread["reconstruction"]
    np.testing.assert_allclose(components["score"], expected)


def test_auto_threshold_flags_about_one_percent_of_held_out_normal_rows(synthetic_split):
    X_train, X_test, y_test = synthetic_split
    detector = AAEDetector(epochs=20, random_state=0).fit(X_train)
    false_alarms = (detector.predict(X_test[y_test == 0]) == -1).mean()
    assert false_alarms < 0.08
    caught = (detector.predict(X_test[y_test == 1]) == -1).mean()
    assert caught > 0.5


def test_contamination_sets_the_share_flagged_in_training(small_rows):
    detector = AAEDetector(epochs=2, contamination=0.1, random_state=0).fit(small_rows)
    assert (detector.predict(small_rows) == -1).sum() == 12
    np.testing.assert_allclose(
        detector.decision_function(small_rows),
        detector.score_samples(small_rows) - detector.offset_,
    )


def test_transform_gives_latent_codes_and_sample_gives_rows(small_rows):
    detector = AAEDetector(latent_dim=3, epochs=2, random_state=0).fit(small_rows)
    assert detector.transform(small_rows).shape == (120, 3)
    assert list(detector.get_feature_names_out()) == ["latent0", "latent1", "latent2"]
    drawn = detector.sample(25, random_state=0)
    assert drawn.shape == (25, 5)
    np.testing.assert_array_equal(drawn, detector.sample(25, random_state=0))


def test_samples_look_like_the_training_data():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[10.0, -5.0, 0.0], scale=[1.0, 2.0, 0.5], size=(600, 3))
    detector = AAEDetector(latent_dim=3, epochs=40, random_state=0).fit(X)
    drawn = detector.sample(2000, random_state=1)
    np.testing.assert_allclose(drawn.mean(axis=0), X.mean(axis=0), atol=0.5)
    np.testing.assert_allclose(drawn.std(axis=0), X.std(axis=0), rtol=0.35)


@pytest.mark.parametrize("loss", ["mse", "l1", "bce"])
@pytest.mark.parametrize("posterior", ["deterministic", "gaussian"])
def test_every_loss_and_posterior_trains_a_working_autoencoder(loss, posterior, synthetic_split):
    X_train, X_test, y_test = synthetic_split
    detector = AAEDetector(
        reconstruction_loss=loss, posterior=posterior, epochs=30, random_state=0
    ).fit(X_train)
    reconstruction = detector.score_components(X_test)["reconstruction"]
    assert roc_auc_score(y_test, reconstruction) > 0.85


def test_gaussian_posterior_scores_are_deterministic(small_rows):
    detector = AAEDetector(posterior="gaussian", epochs=2, random_state=0).fit(small_rows)
    np.testing.assert_array_equal(
        detector.score_samples(small_rows), detector.score_samples(small_rows)
    )


@pytest.mark.parametrize("prior", ["gaussian", "mixture", "swiss_roll", "uniform"])
def test_every_builtin_prior_fits_and_scores_finitely(prior, small_rows):
    detector = AAEDetector(prior=prior, latent_dim=2, epochs=2, random_state=0).fit(small_rows)
    assert np.isfinite(detector.score_samples(small_rows * 10)).all()


def test_conv_encoder_on_flat_digit_images():
    data = load_dataset("sklearn:name=digits")
    normal = data.X[data.y == 0]
    detector = AAEDetector(encoder="conv", epochs=30, random_state=0).fit(normal[:120])
    assert detector.input_shape_ == (1, 8, 8)
    test = np.vstack([normal[120:], data.X[data.y == 1][:200]])
    labels = np.r_[np.zeros(len(normal) - 120), np.ones(200)]
    assert roc_auc_score(labels, -detector.score_samples(test)) > 0.9


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (2, 5, 7)])
def test_conv_encoder_takes_images_of_any_shape(shape):
    images = np.random.default_rng(0).random((16, *shape)).astype(np.float32)
    detector = AAEDetector(encoder="conv", epochs=1, batch_size=8, random_state=0)
    detector.fit(images)
    assert detector.input_shape_ == shape
    assert detector.n_features_in_ == int(np.prod(shape))
    assert detector.score_samples(images).shape == (16,)
    assert detector.sample(2).shape == (2, int(np.prod(shape)))


def test_images_of_the_wrong_shape_are_rejected():
    images = np.random.default_rng(0).random((16, 1, 8, 8))
    detector = AAEDetector(encoder="conv", epochs=1, random_state=0).fit(images)
    with pytest.raises(ValueError, match=r"images have shape \(1, 4, 16\).*\(1, 8, 8\)"):
        detector.score_samples(images.reshape(16, 1, 4, 16))


def test_conv_needs_a_shape_it_can_infer():
    with pytest.raises(ValueError, match="cannot tell the image shape.*input_shape"):
        AAEDetector(encoder="conv", epochs=1).fit(np.zeros((10, 10)))


def _digit_split(digit):
    X, y = load_digits(return_X_y=True)
    normal, others = X[y == digit], X[y != digit][::5]
    test = np.vstack([normal[120:], others])
    labels = np.r_[np.zeros(len(normal) - 120), np.ones(len(others))]
    return normal[:120], test, labels


def test_pixels_of_images_share_one_scale():
    train, test, labels = _digit_split(8)
    images = train.reshape(-1, 1, 8, 8)
    shared = AAEDetector(epochs=30, random_state=0, scaling="shared").fit(images)
    assert len(set(shared.module_.scale.tolist())) == 1
    assert len(set(shared.module_.center.tolist())) == 1
    # statistics of the training rows (the calibration rows held back are a tenth)
    np.testing.assert_allclose(shared.module_.scale[0], train.std(), rtol=0.05)
    per_pixel = AAEDetector(epochs=30, random_state=0, scaling="per_feature").fit(images)
    assert len(set(per_pixel.module_.scale.tolist())) > 10

    # per-pixel scaling inflates ink on pixels that are nearly always dark in training
    def auc(detector):
        return roc_auc_score(labels, -detector.score_samples(test.reshape(-1, 1, 8, 8)))

    assert auc(shared) > 0.97
    assert auc(shared) > auc(per_pixel) + 0.02


def test_images_are_standardized_one_by_one_so_brightness_and_contrast_do_not_count():
    train, test, _ = _digit_split(3)
    images, test = train.reshape(-1, 1, 8, 8), test.reshape(-1, 1, 8, 8)
    detector = AAEDetector(epochs=5, random_state=0).fit(images)  # scaling="auto"
    # the pixels still share one centre and scale, taken after each image's own
    assert len(set(detector.module_.scale.tolist())) == 1
    np.testing.assert_allclose(detector.module_.scale[0], 1.0, rtol=1e-4)
    typical = detector.module_.sample_scaling.numpy()[:, 0]
    np.testing.assert_allclose(typical, [train.mean(1).mean(), train.std(1).mean()], rtol=0.1)
    brighter = 0.5 * test + 3.0  # each image's own affine change of intensity
    np.testing.assert_allclose(
        detector.score_samples(brighter), detector.score_samples(test), rtol=1e-4, atol=1e-4
    )
    shared = AAEDetector(epochs=5, random_state=0, scaling="shared").fit(images)
    assert np.abs(shared.score_samples(brighter) - shared.score_samples(test)).max() > 0.1
    assert shared.module_.sample_scaling is None


def test_each_channel_of_an_image_is_standardized_on_its_own():
    images = np.random.default_rng(0).random((40, 2, 4, 4))
    images[:, 1] = images[:, 1] * 100 + 5  # a channel in other units
    detector = AAEDetector(epochs=1, random_state=0).fit(images)
    typical = detector.module_.sample_scaling.numpy()
    assert typical.shape == (2, 2)
    np.testing.assert_allclose(typical[0], images.reshape(40, 2, 16).mean(2).mean(0), rtol=1e-5)
    changed = images[:5].copy()
    changed[:, 1] = changed[:, 1] * 3 - 7  # one channel's own affine change
    np.testing.assert_allclose(
        detector.score_samples(changed), detector.score_samples(images[:5]), rtol=1e-4, atol=1e-4
    )


def test_neighbours_auto_takes_2_for_clean_data_and_5_otherwise(small_rows):
    clean = AAEDetector(epochs=1, random_state=0).fit(small_rows)
    assert clean.n_neighbors_ == 2
    # training rows scored again still get a distance of their own (not 0 from themselves)
    assert (clean.score_components(small_rows)["neighbors"] > 0).all()
    told = AAEDetector(epochs=1, random_state=0, contamination=0.1).fit(small_rows)
    assert told.n_neighbors_ == 5
    assert AAEDetector(epochs=1, random_state=0, n_neighbors=3).fit(small_rows).n_neighbors_ == 3
    assert clean.get_params()["n_neighbors"] == "auto"


def test_held_out_rows_join_the_reference_and_calibrate_leaving_themselves_out(small_rows):
    clean = AAEDetector(epochs=1, random_state=0).fit(small_rows)
    reference = clean.module_.reference.double().numpy()
    assert len(reference) == len(small_rows)  # 108 trained on, then the 12 held out
    held = reference[-12:]
    distances = np.sqrt(((held[:, None, :] - reference[None, :, :]) ** 2).sum(-1))
    distances[np.arange(12), np.arange(len(reference) - 12, len(reference))] = np.inf
    leave_one_out = np.sort(distances, axis=1)[:, :2].mean(axis=1)
    np.testing.assert_allclose(
        clean.calibration_.center["neighbors"], np.median(leave_one_out), rtol=1e-4
    )
    # said to hold anomalies, the held-out rows stay out (they may be anomalies too)
    told = AAEDetector(epochs=1, random_state=0, contamination=0.1).fit(small_rows)
    assert len(told.module_.reference) < len(small_rows) - 12


def _reference_inputs(detector):
    """The reference rows in the scaled inputs, by brute force: residual + reconstruction."""
    module = detector.module_
    reference = module.reference.double().numpy()
    with torch.no_grad():
        decoded = module.decode(module.reference[:, : module.latent_dim]).double().numpy()
    return reference[:, module.latent_dim :] + decoded


def test_inputs_component_measures_the_inputs_among_the_joint_candidates(small_rows):
    from aae_anomaly.scoring.components import joint_coordinates

    detector = AAEDetector(epochs=2, random_state=0).fit(small_rows)
    module = detector.module_
    assert module.input_candidates == 4
    reference, inputs = module.reference.double().numpy(), _reference_inputs(detector)
    # a reference row's input is the training row itself, in the scaled units
    scaled = module.scale_input(torch.from_numpy(small_rows.astype(np.float32))).numpy()
    np.testing.assert_allclose(np.sort(inputs, axis=0), np.sort(scaled, axis=0), atol=1e-5)
    queries = np.random.default_rng(1).normal(size=(30, 5))
    joint = joint_coordinates(module, queries, 64, detector.device_).double().numpy()
    scaled_queries = module.scale_input(torch.from_numpy(queries.astype(np.float32))).numpy()
    candidates = np.argsort(((joint[:, None] - reference[None]) ** 2).sum(-1), axis=1)[:, :4]
    among = np.linalg.norm(inputs[candidates] - scaled_queries[:, None], axis=2)
    expected = np.sort(among, axis=1)[:, :2].mean(axis=1)
    np.testing.assert_allclose(
        detector.score_components(queries)["inputs"], expected, rtol=1e-4, atol=1e-6
    )


def test_inputs_component_calibrates_leaving_the_held_out_rows_out(small_rows):
    detector = AAEDetector(epochs=1, random_state=0).fit(small_rows)
    reference, inputs = detector.module_.reference.double().numpy(), _reference_inputs(detector)
    n = len(reference)
    held = np.arange(n - 12, n)
    joint = ((reference[held, None] - reference[None]) ** 2).sum(-1)
    joint[np.arange(12), held] = np.inf  # each row itself left out
    candidates = np.argsort(joint, axis=1)[:, :4]
    among = np.linalg.norm(inputs[candidates] - inputs[held, None], axis=2)
    leave_one_out = np.sort(among, axis=1)[:, :2].mean(axis=1)
    np.testing.assert_allclose(
        detector.calibration_.center["inputs"], np.median(leave_one_out), rtol=1e-4
    )


def test_inputs_component_is_for_clean_unconditioned_fits(small_rows):
    told = AAEDetector(epochs=1, random_state=0, contamination=0.1).fit(small_rows)
    assert "inputs" not in told.score_components(small_rows)
    assert told.calibration_.weighted() == ("neighbors",)
    classes = np.arange(len(small_rows)) % 2
    conditioned = AAEDetector(
        prior="mixture", prior_params={"n_components": 2}, epochs=1, random_state=0
    ).fit(small_rows, classes=classes)
    assert "inputs" not in conditioned.score_components(small_rows, classes=classes)
    # switched off by its weight, the score is the neighbors component's alone
    alone = AAEDetector(
        epochs=1, random_state=0, score_weights={"neighbors": 1.0, "inputs": 0.0}
    ).fit(small_rows)
    assert alone.calibration_.weighted() == ("neighbors",)


def test_a_constant_image_scores_without_nan():
    images = np.random.default_rng(0).random((40, 1, 4, 4))
    detector = AAEDetector(epochs=1, random_state=0).fit(images)
    assert np.isfinite(detector.score_samples(np.full((2, 1, 4, 4), 0.7))).all()


def test_flat_rows_are_standardized_one_by_one_only_when_asked(small_rows):
    assert AAEDetector(epochs=1, random_state=0).fit(small_rows).module_.sample_scaling is None
    detector = AAEDetector(epochs=1, random_state=0, scaling="per_sample").fit(small_rows)
    assert detector.module_.sample_scaling is not None
    rows = small_rows[:10]
    np.testing.assert_allclose(
        detector.score_samples(2 * rows + 1), detector.score_samples(rows), rtol=1e-4, atol=1e-4
    )


def test_flat_rows_are_scaled_per_feature_unless_shared_is_asked(small_rows):
    rows = small_rows * np.arange(1, small_rows.shape[1] + 1)
    per_feature = AAEDetector(epochs=1, random_state=0).fit(rows)
    np.testing.assert_allclose(per_feature.module_.scale, rows.std(axis=0), rtol=0.1)
    shared = AAEDetector(epochs=1, random_state=0, scaling="shared").fit(rows)
    assert len(set(shared.module_.scale.tolist())) == 1
    np.testing.assert_allclose(shared.module_.scale[0], rows.std(), rtol=0.1)


def test_channels_of_images_are_scaled_apart():
    images = np.random.default_rng(0).random((40, 2, 4, 4))
    images[:, 1] = images[:, 1] * 100 + 5
    detector = AAEDetector(epochs=1, random_state=0, scaling="shared").fit(images)
    scale = detector.module_.scale.numpy().reshape(2, 16)
    by_channel = images.transpose(1, 0, 2, 3).reshape(2, -1).std(axis=1)
    np.testing.assert_allclose(scale[:, 0], by_channel, rtol=0.1)
    assert (scale == scale[:, :1]).all()


def test_unknown_scaling_is_an_error(small_rows):
    with pytest.raises(ValueError, match="scaling must be one of .*'shared'.*got 'global'"):
        AAEDetector(scaling="global").fit(small_rows)


def test_mlp_encoder_takes_images_and_gives_them_back():
    images = np.random.default_rng(0).random((32, 1, 6, 5))
    detector = AAEDetector(epochs=1, random_state=0).fit(images)
    assert detector.input_shape_ == (1, 6, 5)
    assert detector.score_samples(images).shape == (32,)
    assert detector.sample(3).shape == (3, 30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_fit_and_score_give_no_warnings_for_ordinary_rows(small_rows, dtype, recwarn):
    rows = (small_rows * 10).astype(dtype)
    AAEDetector(epochs=1, random_state=0).fit(rows).score_samples(rows)
    assert [str(w.message) for w in recwarn] == []


def test_empty_images_are_an_error_naming_the_row_count():
    with pytest.raises(ValueError, match="0 sample"):
        AAEDetector().fit(np.zeros((0, 1, 8, 8)))


def test_works_in_pipeline_clone_and_grid_search(small_rows):
    pipeline = make_pipeline(StandardScaler(), AAEDetector(epochs=2, random_state=0))
    pipeline.fit(small_rows)
    assert set(pipeline.predict(small_rows)) <= {-1, 1}

    detector = AAEDetector(latent_dim=3, epochs=2, random_state=0)
    copy = clone(detector)
    assert copy.get_params() == detector.get_params() and not hasattr(copy, "module_")

    def mean_score(estimator, X, y=None):
        return estimator.score_samples(X).mean()

    search = GridSearchCV(detector, {"latent_dim": [2, 4]}, cv=2, scoring=mean_score)
    search.fit(small_rows)
    assert search.best_params_["latent_dim"] in (2, 4)


def test_feature_names_are_kept_and_checked(small_rows):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(small_rows, columns=[f"f{i}" for i in range(5)])
    detector = AAEDetector(epochs=2, random_state=0).fit(frame)
    assert list(detector.feature_names_in_) == [f"f{i}" for i in range(5)]
    renamed = frame.rename(columns={"f0": "other"})
    with pytest.raises(ValueError, match="X has no column 'f0', which the model was fitted on"):
        detector.score_samples(renamed)


def test_wrong_number_of_features_is_named(small_rows):
    detector = AAEDetector(epochs=1, random_state=0).fit(small_rows)
    with pytest.raises(ValueError, match="X has 4 features, but AAEDetector is expecting 5"):
        detector.score_samples(small_rows[:, :4])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"latent_dim": 0}, "latent_dim must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"lr_generator": -1.0}, "lr_generator must be a positive number"),
        ({"reconstruction_loss": "huber"}, "reconstruction_loss must be one of"),
        ({"posterior": "laplace"}, "posterior must be one of"),
        ({"contamination": 0.9}, r"contamination must be 'auto' or a float in \(0, 0.5\]"),
        ({"calibration_fraction": 1.0}, r"calibration_fraction must be in \[0, 1\)"),
        ({"score_weights": {"magic": 1.0}}, "score_weights has unknown components"),
        ({"score_weights": {"reconstruction": 0.0}}, "positive sum"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"n_neighbors": -1}, "n_neighbors must be a non-negative integer"),
    ],
)
def test_bad_parameters_are_named_at_fit(params, message, small_rows):
    with pytest.raises(ValueError, match=message):
        AAEDetector(epochs=1, **params).fit(small_rows)


def test_auto_device_is_cpu_without_cuda(small_rows):
    detector = AAEDetector(epochs=1, random_state=0).fit(small_rows)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert detector.device_.type == expected


class HostReads(TorchDispatchMode):
    """Counts the operations that, on a GPU, make the host wait for the device to read a
    value back: ``.item()``, ``bool()``, ``float()`` of a tensor, and the operations
    whose output size depends on the data."""

    OPERATIONS = {
        "aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select",
        "aten::_unique2", "aten::unique_consecutive", "aten::unique_dim", "aten::equal",
    }

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func._schema.name in self.OPERATIONS
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        (AAEDetector, {}),
        (AAEDetector, {"prior": "mixture"}),
        (SupervisedAAE, {}),
        (AAEClassifier, {}),
        (AAEClustering, {}),
    ],
    ids=["detector", "detector-mixture-prior", "supervised", "classifier", "clustering"],
)
def test_training_reads_nothing_back_inside_the_batch_loop(estimator, params, small_rows):
    # what would stall a GPU batch after batch: counted on any device, the reads of a fit
    # must not grow with the number of batches (2 against 15 per epoch)
    labels = (small_rows[:, 0] > 0).astype(int)
    counts = []
    for batch_size in (60, 8):
        model = estimator(epochs=2, batch_size=batch_size, random_state=0, **params)
        with HostReads() as reads:
            if estimator is AAEDetector:
                model.fit(small_rows)
            else:
                model.fit(small_rows, labels)
        counts.append(reads.count)
    assert counts[0] == counts[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_never_synchronizes_inside_the_batch_loop(small_rows):
    # the same, checked by CUDA itself: a synchronizing call raises while the mode is on
    from aae_anomaly.engine import training

    original = training.Trainer.run_epoch

    def strict_run_epoch(self):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training.Trainer, "run_epoch", strict_run_epoch)
        detector = AAEDetector(epochs=2, batch_size=8, device="cuda", random_state=0)
        detector.fit(small_rows)
    assert detector.device_.type == "cuda"


def test_neighbors_component_is_the_mean_distance_in_code_residual_space(small_rows):
    from sklearn.neighbors import NearestNeighbors

    from aae_anomaly.scoring.components import joint_coordinates

    detector = AAEDetector(epochs=3, n_neighbors=4, random_state=0).fit(small_rows)
    reference = detector.module_.reference.numpy()
    # the 90% trained on, then the 10% held out; latent "auto" = 5 // 2
    assert reference.shape == (120, 2 + 5)
    queries = np.random.default_rng(1).normal(size=(30, 5))
    coordinates = joint_coordinates(detector.module_, queries, 64, detector.device_).numpy()
    expected = NearestNeighbors(n_neighbors=4).fit(reference).kneighbors(coordinates)[0]
    np.testing.assert_allclose(
        detector.score_components(queries)["neighbors"], expected.mean(axis=1), rtol=1e-4
    )


def test_default_score_is_the_mean_of_the_neighbourhoods_two_views_normalized(small_rows):
    detector = AAEDetector(epochs=2, random_state=0).fit(small_rows)
    components = detector.score_components(small_rows)
    calibration = detector.calibration_
    assert calibration.weighted() == ("neighbors", "inputs")
    normalized = [
        (components[name] - calibration.center[name]) / calibration.spread[name]
        for name in ("neighbors", "inputs")
    ]
    np.testing.assert_allclose(components["score"], (normalized[0] + normalized[1]) / 2)


def test_without_neighbors_no_training_rows_are_kept(small_rows):
    detector = AAEDetector(epochs=2, n_neighbors=0, random_state=0).fit(small_rows)
    assert detector.module_.reference.shape == (0, 2 + 5)
    components = detector.score_components(small_rows)
    assert "neighbors" not in components
    assert detector.calibration_.weights == {
        "reconstruction": 1.0, "discriminator": 0.0, "density": 0.0,
    }


def test_reference_set_is_capped(small_rows, monkeypatch):
    import aae_anomaly.estimators.fitting as fitting_module

    monkeypatch.setattr(fitting_module, "MAX_REFERENCE_ROWS", 50)
    detector = AAEDetector(epochs=1, random_state=0).fit(small_rows)
    assert detector.module_.reference.shape[0] == 50
    assert np.isfinite(detector.score_samples(small_rows)).all()


@pytest.mark.parametrize("n_features, expected", [(1, 2), (5, 2), (9, 4), (16, 8), (784, 8)])
def test_auto_latent_dim_is_narrower_than_the_input(n_features, expected):
    rows = np.random.default_rng(0).normal(size=(40, n_features))
    detector = AAEDetector(epochs=1, random_state=0).fit(rows)
    assert detector.latent_dim_ == expected
    assert detector.transform(rows).shape == (40, expected)
