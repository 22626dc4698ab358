"""Bad input to the estimator and the command line: each case gives a clear error that names
the problem, or is handled where handling is the right answer. Scores are never NaN."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from aae_anomaly import (
    AAEDetector,
    ExtremeValueWarning,
    Prior,
    TrainingDivergedError,
    TrainingWarning,
)
from aae_anomaly.cli import main

RNG = np.random.default_rng(0)
X = RNG.normal(size=(120, 4))


@pytest.fixture(scope="module")
def fitted():
    return AAEDetector(epochs=2, random_state=0).fit(X)


@pytest.fixture(scope="module")
def fitted_frame():
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    return AAEDetector(epochs=1, random_state=0).fit(frame)


def _with(value, rows=(3,), columns=(1,)):
    data = X.copy()
    data[np.ix_(rows, columns)] = value
    return data


# -- fit ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(np.nan), r"column 1 has 1 missing cell .*the first in row 3"),
        (_with(np.inf, columns=(0, 2)), r"Input X contains infinity in columns 0, 2"),
        (_with(-np.inf), "Input X contains infinity in column 1"),
        (_with(1e39), r"beyond float32's range \(\|x\| > 3.4e38\) in column 1"),
        (np.array([["a", "b"], ["c", "d"]]), r"column 0 of X holds text .*pass a pandas DataFrame"),
        (X.astype(complex), "Complex data not supported"),
        (np.empty((0, 4)), r"Found array with 0 sample\(s\)"),
        (X[:1], r"Found array with 1 sample\(s\) .* minimum of 2"),
        (X[:, 0], r"Expected 2D array, got 1D array instead \(shape \(120,\)\)"),
        (np.zeros((5, 2, 3)), "Found array with dim 3.*images"),
        (np.zeros((5, 4, 0)), "Found array with dim 3"),
    ],
    ids=[
        "nan",
        "inf",
        "minus-inf",
        "beyond-float32",
        "strings",
        "complex",
        "empty",
        "one-row",
        "1-d",
        "3-d",
        "3-d-empty",
    ],
)
def test_bad_training_input_is_rejected_with_the_problem_named(data, message):
    with pytest.raises(ValueError, match=message):
        AAEDetector(epochs=1).fit(data)


def test_a_stray_text_cell_in_a_numeric_dataframe_column_is_named():
    frame = pd.DataFrame({"a": np.arange(12.0), "b": [*map(str, range(11)), "x"]})
    with pytest.raises(ValueError, match=r"column 'b': 'x' in row 11 is not a number"):
        AAEDetector(epochs=1).fit(frame)


def test_nan_in_a_named_column_names_the_column():
    frame = pd.DataFrame(_with(np.nan, columns=(2,)), columns=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="column 'c' has 1 missing cell"):
        AAEDetector(epochs=1).fit(frame)


def test_labels_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[120, 5\]"):
        AAEDetector(epochs=1).fit(X, np.zeros(5))


def test_labels_of_the_right_length_are_accepted_and_ignored():
    with_labels = AAEDetector(epochs=1, random_state=0).fit(X, np.zeros(len(X)))
    without = AAEDetector(epochs=1, random_state=0).fit(X)
    np.testing.assert_array_equal(with_labels.score_samples(X), without.score_samples(X))


@pytest.mark.parametrize("factor", [1e30, 1e-30, 3e37])
def test_columns_of_extreme_magnitude_fit_and_score_finitely(factor):
    data = X.copy()
    data[:, 0] *= factor
    scores = AAEDetector(epochs=2, random_state=0).fit(data).score_samples(data)
    assert np.isfinite(scores).all()


def test_a_huge_offset_with_tiny_variation_counts_as_constant():
    data = X.copy()
    data[:, 0] = 1e30 + X[:, 0]  # the variation is below float64's resolution at 1e30
    detector = AAEDetector(epochs=2, random_state=0).fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training rows themselves are not extreme
        assert np.isfinite(detector.score_samples(data)).all()


def test_constant_and_duplicated_columns_are_handled():
    data = np.column_stack([X, np.full(len(X), 7.0), X[:, 0], X[:, 0]])
    detector = AAEDetector(epochs=2, random_state=0).fit(data)
    components = detector.score_components(data)
    assert all(np.isfinite(values).all() for values in components.values())
    # a constant column whose value changes at scoring time makes rows more anomalous
    moved = data.copy()
    moved[:, 4] = 107.0
    assert (detector.score_samples(moved) < detector.score_samples(data)).all()


def test_integer_and_boolean_input_is_accepted():
    assert np.isfinite(AAEDetector(epochs=1, random_state=0).fit(X > 0).score_samples(X > 0)).all()
    ints = (X * 10).astype(np.int64)
    assert np.isfinite(AAEDetector(epochs=1, random_state=0).fit(ints).score_samples(ints)).all()


# -- score -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(np.nan), "column 1 has 1 missing cell"),
        (_with(np.inf), "Input X contains infinity in column 1"),
        (X[:, :3], "X has 3 features, but AAEDetector is expecting 4 features"),
        (X[0], r"Expected 2D array, got 1D array instead \(shape \(4,\)\)"),
        (np.empty((0, 4)), r"Found array with 0 sample\(s\)"),
        (np.array([["a"] * 4]), "column 0 of X holds text"),
    ],
    ids=["nan", "inf", "wrong-feature-count", "1-d", "empty", "strings"],
)
def test_bad_scoring_input_is_rejected(fitted, data, message):
    for method in (fitted.score_samples, fitted.predict, fitted.transform):
        with pytest.raises(ValueError, match=message):
            method(data)


def test_feature_names_that_differ_from_the_fit_are_rejected(fitted_frame):
    renamed = pd.DataFrame(X, columns=["a", "b", "c", "e"])
    with pytest.raises(ValueError, match="X has no column 'd', which the model was fitted on"):
        fitted_frame.score_samples(renamed)


@pytest.mark.parametrize("value", [1e30, -1e30, 1e300, 3e38])
def test_extreme_values_at_scoring_time_saturate_with_a_warning(fitted, value):
    data = _with(value, rows=(0, 5))
    with pytest.warns(
        ExtremeValueWarning, match="2 rows have values more than 1e\\+06 .* column 1"
    ):
        scores = fitted.score_samples(data)
    assert np.isfinite(scores).all()
    assert (fitted.predict(data[[0, 5]]) == -1).all()
    # the other rows score exactly as they do alone
    np.testing.assert_array_equal(scores[1:5], fitted.score_samples(X[1:5]))


def test_a_model_that_gives_non_finite_scores_raises_instead(small_rows):
    detector = AAEDetector(epochs=1, random_state=0).fit(small_rows)
    with torch.no_grad():
        next(detector.module_.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite scores for 120 rows"):
        detector.score_samples(small_rows)
    with pytest.raises(ValueError, match="non-finite scores"):
        detector.score_components(small_rows)


def test_images_of_the_wrong_shape_for_a_conv_encoder():
    images = RNG.normal(size=(12, 1, 8, 8))
    detector = AAEDetector(encoder="conv", latent_dim=2, epochs=1, random_state=0).fit(images)
    with pytest.raises(ValueError, match=r"images have shape \(1, 4, 16\) but the model"):
        detector.score_samples(RNG.normal(size=(3, 1, 4, 16)))
    with pytest.raises(ValueError, match=r"Found array with dim 3, shape \(3, 8, 8\)"):
        detector.score_samples(RNG.normal(size=(3, 8, 8)))
    with pytest.raises(ValueError, match="X has 60 features, but AAEDetector is expecting 64"):
        detector.score_samples(RNG.normal(size=(3, 60)))
    with pytest.raises(ValueError, match="cannot tell the image shape of rows with 13"):
        AAEDetector(encoder="conv", epochs=1).fit(RNG.normal(size=(10, 13)))
    with pytest.raises(ValueError, match=r"input_shape \(1, 3, 3\) holds 9 values .* 10"):
        AAEDetector(encoder="conv", input_shape=(1, 3, 3), epochs=1).fit(RNG.normal(size=(9, 10)))


# -- the command line ---------------------------------------------------------------------------
def _csv(path, data, header):
    np.savetxt(path, data, delimiter=",", header=",".join(header), comments="")
    return str(path)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    data = _csv(folder / "train.csv", X[:, :3], "abc")
    result = CliRunner().invoke(
        main, ["fit", data, "-o", str(folder / "m.aae"), "--epochs", "1", "-q"]
    )
    assert result.exit_code == 0, result.output
    return str(folder / "m.aae")


def _labelled(tmp_path, labels):
    return _csv(tmp_path / "labelled.csv", np.c_[X[:, :3], labels], ["a", "b", "c", "y"])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.where(np.arange(120) == 5, 2.0, np.arange(120) % 2), "in row 5, is 2.0"),
        (np.where(np.arange(120) == 7, np.nan, np.arange(120) % 2), "in row 7, is nan"),
        (np.where(np.arange(120) == 9, -1.0, np.arange(120) % 2), "in row 9, is -1.0"),
    ],
    ids=["two", "nan", "minus-one"],
)
@pytest.mark.parametrize("command", ["fit", "evaluate"])
def test_cli_labels_that_are_not_0_or_1_are_rejected(
    tmp_path, model_file, labels, message, command
):
    data = _labelled(tmp_path, labels)
    args = (
        ["fit", data, "-o", str(tmp_path / "x.aae")]
        if command == "fit"
        else [
            "evaluate",
            model_file,
            data,
        ]
    )
    result = CliRunner().invoke(main, [*args, "--label-column", "y"])
    assert result.exit_code == 2
    assert "labels are neither 0 nor 1" in result.output and message in result.output
    assert not (tmp_path / "x.aae").exists()


def test_cli_labels_of_the_wrong_length_are_rejected(tmp_path, model_file):
    np.savez(tmp_path / "short.npz", X=X[:, :3], y=np.zeros(10))
    result = CliRunner().invoke(main, ["evaluate", model_file, str(tmp_path / "short.npz")])
    assert result.exit_code == 2
    assert "has 120 rows but 10 labels" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\n" + "1,2,3\n" * 9 + "1,2,x\n", "column 'c': 'x' in row 9 is not a number"),
        ("a,b,c\n", r"Found array with 0 sample\(s\)"),
        ("a,b,c\n1,2,3\n", r"Found array with 1 sample\(s\)"),
        ("a,b,c\n1,2,nan\n3,4,5\n", "column 'c' has 1 missing cell"),
        ("a,b,c\n1,2,inf\n3,4,5\n", "Input X contains infinity in column 'c'"),
        ("a,b,c\n1,2,1e39\n3,4,5\n", "beyond float32's range"),
        ("a,b,c\n1,2\n3,4,5\n", "line 2 has 2 fields where the header has 3"),
    ],
    ids=["text", "empty", "one-row", "nan", "inf", "beyond-float32", "ragged"],
)
def test_cli_fit_bad_data_is_one_line_and_status_2(tmp_path, content, message):
    (tmp_path / "d.csv").write_text(content)
    result = CliRunner().invoke(
        main, ["fit", str(tmp_path / "d.csv"), "-o", str(tmp_path / "m.aae")]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert __import__("re").search(message, lines[0])
    assert not (tmp_path / "m.aae").exists()


def test_cli_one_dimensional_npy_is_rejected_without_dumping_it(tmp_path):
    np.save(tmp_path / "flat.npy", X[:, 0])
    result = CliRunner().invoke(
        main, ["fit", str(tmp_path / "flat.npy"), "-o", str(tmp_path / "m.aae")]
    )
    assert result.exit_code == 2
    assert "got 1D array instead (shape (120,))" in result.output
    assert len(result.output) < 300


def test_cli_score_wrong_columns_and_extreme_values(tmp_path, model_file):
    renamed = _csv(tmp_path / "renamed.csv", X[:, :3], ["a", "b", "z"])
    result = CliRunner().invoke(main, ["score", model_file, renamed])
    assert result.exit_code == 2
    assert "no column 'c', which the model was fitted on; its columns: a, b, z" in result.output
    narrow = _csv(tmp_path / "narrow.csv", X[:, :2], ["a", "b"])
    result = CliRunner().invoke(main, ["score", model_file, narrow])
    assert result.exit_code == 2 and "no column 'c'" in result.output
    extreme = _csv(tmp_path / "extreme.csv", np.where(X[:, :3] > 2, 1e30, X[:, :3]), "abc")
    result = CliRunner().invoke(main, ["score", model_file, extreme, "-o", str(tmp_path / "s.npy")])
    assert result.exit_code == 0, result.output
    assert "Warning:" in result.output and "training spreads" in result.output
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()


# -- training faults -----------------------------------------------------------------------------
class FlakyPrior(Prior):
    """A standard normal prior whose samples are NaN on the calls listed in ``nan_calls``:
    a fault in the middle of a fit, at a known point."""

    has_density = True

    def __init__(self, latent_dim, nan_calls=()):
        super().__init__(latent_dim)
        self.nan_calls, self.calls = set(nan_calls), 0

    def sample(self, n, generator, labels=None):
        self.calls += 1
        z = torch.randn(n, self.latent_dim, generator=generator, device=generator.device)
        return z * float("nan") if self.calls in self.nan_calls else z

    def log_prob(self, z):
        return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=1)

    def options(self):
        return {"nan_calls": sorted(self.nan_calls)}


@pytest.fixture
def flaky_prior(fresh_plugins):
    import types

    from aae_anomaly import get_plugin_manager, hookimpl

    plugin = types.ModuleType("flaky")
    plugin.register_priors = hookimpl(lambda register: register("flaky", FlakyPrior))
    get_plugin_manager().register(plugin, "flaky", "flaky-dist", "0.1")


def test_a_diverged_epoch_is_rolled_back_and_retried_with_smaller_steps(flaky_prior, small_rows):
    # 120 rows in one batch: one prior sample per epoch, so call 2 is epoch 2's
    params = {"latent_dim": 2, "epochs": 4, "random_state": 0, "prior": "flaky"}
    clean = AAEDetector(**params).fit(small_rows)
    with pytest.warns(TrainingWarning, match="diverged in epoch 2 .*discriminator loss.*retry 1"):
        recovered = AAEDetector(**params, prior_params={"nan_calls": [2]}).fit(small_rows)
    assert recovered.history_["learning_rate_scale"] == [1.0, 0.25, 0.25, 0.25]
    # epoch 1 was kept as it was, and the retried epoch 2 started from exactly the state
    # (weights, generator) of the clean fit: its one batch's loss, taken before any step,
    # is the same; the smaller steps then show from epoch 3 on
    assert recovered.history_["reconstruction"][:2] == clean.history_["reconstruction"][:2]
    assert recovered.history_["reconstruction"][2] != clean.history_["reconstruction"][2]
    assert all(np.isfinite(v).all() for v in recovered.history_.values())
    assert np.isfinite(recovered.score_samples(small_rows)).all()


def test_a_fit_that_keeps_diverging_stops_with_what_to_change(flaky_prior, small_rows):
    prior_params = {"nan_calls": [3, 4, 5, 6, 7]}  # epoch 3 and every retry of it
    detector = AAEDetector(
        latent_dim=2, epochs=4, random_state=0, prior="flaky", prior_params=prior_params
    )
    with (
        pytest.warns(TrainingWarning, match="retry 4 of 4"),
        pytest.raises(
            TrainingDivergedError,
            match=r"diverged in epoch 3: the discriminator loss .* after 4 retries .* cut to "
            r"0.00390625 of the ones given \(lr_autoencoder=0.001, .* lower the learning rates",
        ),
    ):
        detector.fit(small_rows)
    assert not hasattr(detector, "module_")


@pytest.mark.parametrize("lr", [1e2, 1e3, 1e4, 1e7])
def test_huge_learning_rates_recover_or_stop_and_never_give_nan_scores(lr):
    rows = np.random.default_rng(0).normal(size=(300, 6))
    detector = AAEDetector(
        epochs=4, random_state=0, lr_autoencoder=lr, lr_discriminator=lr, lr_generator=lr
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)
        try:
            detector.fit(rows)
        except TrainingDivergedError as exc:
            assert "lower the learning rates" in str(exc)
            return
    assert all(np.isfinite(v).all() for v in detector.history_.values())
    assert np.isfinite(detector.score_samples(rows)).all()
    assert all(torch.isfinite(t).all() for t in detector.module_.state_dict().values())


def test_a_learning_rate_of_1e7_stops_with_a_clear_error():
    rows = np.random.default_rng(0).normal(size=(300, 6))
    detector = AAEDetector(epochs=3, random_state=0, lr_autoencoder=1e7, lr_generator=1e7)
    with (
        warnings.catch_warnings(),
        pytest.raises(TrainingDivergedError, match="training diverged in epoch 1: the .* loss"),
    ):
        warnings.simplefilter("ignore", TrainingWarning)
        detector.fit(rows)


def test_an_overpowering_discriminator_is_flagged_and_warned_about(small_rows):
    detector = AAEDetector(
        latent_dim=8, epochs=12, random_state=0, lr_generator=1e-7, lr_discriminator=1e-2
    )
    with pytest.warns(TrainingWarning, match="overpowered the encoder.*lower lr_discriminator"):
        detector.fit(small_rows)
    flags = detector.history_["discriminator_overpowered"]
    assert flags[:4] == [0.0] * 4  # needs 5 epochs of evidence
    assert flags[-1] == 1.0
    accuracy = detector.history_["discriminator_accuracy"]
    assert min(accuracy[-5:]) > 0.95


def test_cli_shows_training_warnings_and_info_notes_them(tmp_path):
    data = _csv(tmp_path / "d.csv", X, "abcd")
    model = str(tmp_path / "m.aae")
    args = ["fit", data, "-o", model, "--epochs", "12", "--latent-dim", "8"]
    args += ["--lr-generator", "1e-7"]
    result = CliRunner().invoke(main, [*args, "--lr-discriminator", "1e-2", "-q"])
    assert result.exit_code == 0, result.output
    assert "Warning: the discriminator overpowered the encoder" in result.output
    info = CliRunner().invoke(main, ["info", model])
    assert "training notes the discriminator overpowered the encoder" in info.output
    assert "learning_rate_scale" not in info.output
