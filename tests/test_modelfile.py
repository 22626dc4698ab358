"""Model files: exact round trips, atomic saves, and clear errors for every bad file."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.exceptions import NotFittedError

import aae_anomaly
from aae_anomaly import AAEDetector, ModelFileError, UnknownPluginError, load_dataset
from aae_anomaly.estimators.loading import load_model_bytes
from aae_anomaly.io import atomic as atomic_module
from aae_anomaly.io.modelfile import METADATA_KEY, read_header, tensor_digest
from aae_anomaly.plugin_system.manager import get_plugin_manager

TINY = {"epochs": 2, "batch_size": 64, "random_state": 0}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    dataset = load_dataset("synthetic:n=240,n_features=6,anomalies=0.1")
    return pd.DataFrame(dataset.X, columns=dataset.feature_names)


@pytest.fixture(scope="module")
def fitted(data) -> AAEDetector:
    return AAEDetector(**TINY).fit(data)


@pytest.fixture()
def saved(fitted, tmp_path) -> str:
    path = str(tmp_path / "model.aae")
    fitted.save(path)
    return path


def assert_same_scores(a: AAEDetector, b: AAEDetector, X) -> None:
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    for name, values in a.score_components(X).items():
        np.testing.assert_array_equal(values, b.score_components(X)[name])


# -- round trips -----------------------------------------------------------------------------
def test_saved_and_loaded_model_gives_bit_identical_scores(fitted, saved, data):
    loaded = aae_anomaly.load(saved)
    assert_same_scores(fitted, loaded, data)
    assert list(loaded.feature_names_in_) == list(data.columns)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.offset_ == fitted.offset_
    assert loaded.history_ == fitted.history_
    assert loaded.device_ == torch.device("cpu")


def test_a_model_files_bytes_load_as_the_file_does(fitted, saved, data):
    loaded = load_model_bytes(Path(saved).read_bytes(), name=saved)
    assert_same_scores(fitted, loaded, data)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.offset_ == fitted.offset_


@pytest.mark.parametrize(
    "params",
    [
        {"prior": "swiss_roll", "latent_dim": 2},  # no density component
        {"prior": "mixture", "prior_params": {"n_components": 3}, "posterior": "gaussian"},
        {"prior": "uniform", "reconstruction_loss": "bce", "contamination": 0.1},
        {"encoder_params": {"hidden": [16, 8]}, "score_weights": {"reconstruction": 2.0}},
    ],
    ids=["swiss_roll", "mixture-gaussian-posterior", "uniform-bce", "custom-mlp-weights"],
)
def test_round_trip_is_exact_for_other_configurations(params, data, tmp_path):
    detector = AAEDetector(**TINY, **params).fit(data.to_numpy())
    detector.save(tmp_path / "model.aae")
    loaded = aae_anomaly.load(tmp_path / "model.aae")
    assert_same_scores(detector, loaded, data.to_numpy())
    assert not hasattr(loaded, "feature_names_in_")


def test_round_trip_is_exact_for_images(tmp_path):
    images = np.random.default_rng(0).random((64, 1, 8, 8))
    detector = AAEDetector(encoder="conv", encoder_params={"channels": [4, 8]}, **TINY)
    detector.fit(images)
    detector.save(tmp_path / "conv.aae")
    loaded = aae_anomaly.load(tmp_path / "conv.aae")
    assert loaded.input_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(loaded.score_samples(images), detector.score_samples(images))
    # the training range, per channel, for pictures of samples (a subset trained on: the
    # rest calibrates, so it lies within the images' own range)
    low, high = loaded.input_range_[:, 0]
    assert 0 <= images.min() <= low < high <= images.max() <= 1
    np.testing.assert_array_equal(loaded.input_range_, detector.input_range_)
    # images are standardized one by one (scaling="auto"): a format-5 field and tensor
    document = read_header(tmp_path / "conv.aae").document
    assert document["sample_scaling"] is True and document["format_version"] == 6
    np.testing.assert_array_equal(loaded.module_.sample_scaling, detector.module_.sample_scaling)


@pytest.fixture()
def saved_images(tmp_path) -> str:
    images = np.random.default_rng(0).random((32, 1, 4, 4))
    path = tmp_path / "images.aae"
    AAEDetector(**TINY).fit(images).save(path)
    return str(path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(sample_scaling="yes"), "field 'sample_scaling'"),
        (lambda d: d.update(format_version=4), "field 'sample_scaling'"),
        # without the field, the rows would reach the networks unstandardized
        (lambda d: d.pop("sample_scaling"), "unexpected: sample_scaling"),
    ],
    ids=["not-a-bool", "older-version", "field-dropped"],
)
def test_per_sample_scaling_fields_are_checked(change, problem, saved_images, tmp_path):
    path = rewrite_document(saved_images, tmp_path / "edited.aae", change)
    with pytest.raises(ModelFileError, match=problem):
        aae_anomaly.load(path)


def test_a_bad_typical_sample_scale_is_refused(saved_images, tmp_path):
    # a well-formed file (its checksum matches) whose typical deviation is zero
    tensors = load_file(saved_images)
    tensors["sample_scaling"] = torch.tensor([[0.5], [0.0]])
    with safe_open(saved_images, framework="pt") as handle:
        document = json.loads(handle.metadata()[METADATA_KEY])
    document["tensors_sha256"] = tensor_digest(tensors)
    save_file(tensors, str(tmp_path / "edited.aae"), metadata={METADATA_KEY: json.dumps(document)})
    with pytest.raises(ModelFileError, match="sample_scaling must hold .* positive deviation"):
        aae_anomaly.load(tmp_path / "edited.aae")


def test_flat_rows_are_not_standardized_one_by_one(fitted, saved):
    assert fitted.module_.sample_scaling is None
    assert "sample_scaling" not in read_header(saved).document


def test_the_neighbours_auto_chose_are_stored_and_a_number_needs_no_new_format(
    fitted, saved, data, tmp_path
):
    assert fitted.n_neighbors == "auto" and fitted.n_neighbors_ == 2
    document = read_header(saved).document
    assert document["n_neighbors"] == 2 and document["format_version"] == 6
    assert aae_anomaly.load(saved).n_neighbors_ == 2
    fixed = AAEDetector(**TINY, n_neighbors=3).fit(data)
    fixed.save(tmp_path / "fixed.aae")
    document = read_header(tmp_path / "fixed.aae").document
    # version 6 for the inputs component (input_candidates), not for the neighbours
    assert "n_neighbors" not in document and document["input_candidates"] == 4
    assert aae_anomaly.load(tmp_path / "fixed.aae").n_neighbors_ == 3


@pytest.mark.parametrize(
    "change",
    [lambda d: d.pop("n_neighbors"), lambda d: d.update(n_neighbors=0),
     lambda d: d.update(format_version=4), lambda d: d["params"].update(n_neighbors=5)],
    ids=["missing", "zero", "older-version", "with-a-number"],
)
def test_bad_chosen_neighbours_fail_clearly(change, saved, tmp_path):
    path = rewrite_document(saved, tmp_path / "edited.aae", change)
    with pytest.raises(ModelFileError, match="field 'n_neighbors'"):
        aae_anomaly.load(path)


def test_the_inputs_component_round_trips_with_its_candidates(fitted, saved, data):
    document = read_header(saved).document
    assert document["input_candidates"] == 4 and document["format_version"] == 6
    loaded = aae_anomaly.load(saved)
    assert loaded.module_.input_candidates == 4
    np.testing.assert_array_equal(
        loaded.score_components(data)["inputs"], fitted.score_components(data)["inputs"]
    )


@pytest.mark.parametrize(
    "change, match",
    [(lambda d: d.update(input_candidates="8"), "field 'input_candidates'"),
     (lambda d: d.update(input_candidates=-1), "field 'input_candidates'"),
     (lambda d: d.update(input_candidates=5000), "field 'input_candidates'"),
     (lambda d: d.update(format_version=5, n_neighbors=2), "field 'input_candidates'"),
     (lambda d: d.pop("input_candidates"), "score calibration covers"),
     (lambda d: d.update(reference_groups=2), "input_candidates needs a reference searched")],
    ids=["text", "negative", "too-many", "older-version", "missing", "sliced"],
)
def test_bad_input_candidates_fail_clearly(change, match, saved, tmp_path):
    path = rewrite_document(saved, tmp_path / "edited.aae", change)
    with pytest.raises(ModelFileError, match=match):
        aae_anomaly.load(path)


def test_flat_rows_keep_no_training_range(fitted, saved):
    assert not hasattr(fitted, "input_range_")
    assert "input_range" not in read_header(saved).document


@pytest.mark.parametrize(
    "value",
    [{"low": [0.0]}, {"low": [0.0, 0.0], "high": [1.0, 1.0]}, {"low": [2.0], "high": [1.0]},
     {"low": ["0"], "high": [1.0]}, [0.0, 1.0]],
)
def test_bad_training_ranges_fail_clearly(value, tmp_path):
    images = np.random.default_rng(0).random((32, 1, 4, 4))
    AAEDetector(encoder="conv", encoder_params={"channels": [2, 2]}, **TINY).fit(images).save(
        tmp_path / "conv.aae"
    )
    path = rewrite_document(tmp_path / "conv.aae", tmp_path / "edited.aae",
                            lambda d: d.update(input_range=value))
    with pytest.raises(ModelFileError, match="field 'input_range'"):
        aae_anomaly.load(path)


def test_loading_never_unpickles(saved, monkeypatch, data):
    def forbidden(*args, **kwargs):
        raise AssertionError("a model file must load without pickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert aae_anomaly.load(saved).score_samples(data).shape == (len(data),)


def test_file_is_plain_safetensors_with_json_metadata(saved, fitted):
    with open(saved, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    document = json.loads(header["__metadata__"][METADATA_KEY])
    assert document["format"] == "aae-anomaly-model"
    assert document["library_version"] == aae_anomaly.__version__
    assert document["prior"]["name"] == "gaussian"
    assert document["prior"]["distribution"] == "aae-anomaly"
    assert document["encoder"]["options"]["hidden"] is None
    assert document["feature_names_in"] == list(fitted.feature_names_in_)
    tensors = {name: spec for name, spec in header.items() if name != "__metadata__"}
    assert set(tensors) == set(fitted.module_.state_dict())
    assert {spec["dtype"] for spec in tensors.values()} == {"F32"}


def test_header_reads_without_building_the_model(saved, fitted):
    header = read_header(saved)
    expected = sum(t.numel() for t in fitted.module_.state_dict().values())
    assert header.n_parameters == expected
    assert header.document["n_features_in"] == fitted.n_features_in_


def test_load_onto_auto_device(saved, fitted, data):
    loaded = aae_anomaly.load(saved, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loaded.device_.type == expected


def test_joblib_round_trip_keeps_scores(fitted, data, tmp_path):
    joblib.dump(fitted, tmp_path / "model.joblib")
    restored = joblib.load(tmp_path / "model.joblib")
    assert_same_scores(fitted, restored, data)


def test_unfitted_detector_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        AAEDetector().save(tmp_path / "model.aae")
    assert not (tmp_path / "model.aae").exists()


# -- atomic saves ----------------------------------------------------------------------------
def test_interrupted_save_keeps_the_previous_file(fitted, saved, monkeypatch, tmp_path):
    before = Path(saved).read_bytes()

    def crash(descriptor):
        raise OSError("disk full")

    # fsync runs after the new bytes are written to the temporary file and before the
    # rename: a crash there is the moment a non-atomic save would leave half a file
    monkeypatch.setattr(atomic_module.os, "fsync", crash)
    other = AAEDetector(**{**TINY, "random_state": 1}).fit(np.random.default_rng(1).random((50, 6)))
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    assert Path(saved).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.aae"]


def test_interrupted_first_save_leaves_no_file(fitted, monkeypatch, tmp_path):
    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        fitted.save(tmp_path / "model.aae")
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory_is_a_clear_error(fitted, tmp_path):
    with pytest.raises(ModelFileError, match="no such directory"):
        fitted.save(tmp_path / "absent" / "model.aae")


# -- bad files -------------------------------------------------------------------------------
def write(path, content: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(content)
    return str(path)


def rewrite_document(source: str, target, change) -> str:
    """Copy a model file, passing its JSON document through ``change``."""
    tensors = load_file(source)
    with safe_open(source, framework="pt") as handle:
        document = json.loads(handle.metadata()[METADATA_KEY])
    change(document)
    save_file(tensors, str(target), metadata={METADATA_KEY: json.dumps(document)})
    return str(target)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p, s: write(p, os.urandom(256)), "not an aae-anomaly model file"),
        (lambda p, s: write(p, b""), "not an aae-anomaly model file"),
        (lambda p, s: write(p, Path(s).read_bytes()[:-100]), "not an aae-anomaly model file"),
        (lambda p, s: write(p, Path(s).read_bytes()[:40]), "not an aae-anomaly model file"),
        (lambda p, s: write(p, b'{"prior": "gaussian"}'), "not an aae-anomaly model file"),
        (
            lambda p, s: save_file({"w": torch.zeros(3)}, str(p)) or str(p),
            "without aae-anomaly metadata",
        ),
        (
            lambda p, s: save_file({"w": torch.zeros(3)}, str(p), {METADATA_KEY: "{"}) or str(p),
            "metadata is not JSON",
        ),
        (
            lambda p, s: save_file({"w": torch.zeros(3)}, str(p), {METADATA_KEY: "[]"}) or str(p),
            "unknown format",
        ),
    ],
    ids=[
        "random",
        "empty",
        "truncated",
        "truncated-header",
        "json",
        "foreign",
        "bad-json",
        "wrong-json",
    ],
)
def test_foreign_and_damaged_files_fail_clearly(make, problem, saved, tmp_path):
    path = make(tmp_path / "bad.aae", saved)
    with pytest.raises(ModelFileError, match=problem) as caught:
        aae_anomaly.load(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    # the same contents as bytes meet the same checks
    with pytest.raises(ModelFileError, match=problem) as caught:
        load_model_bytes(Path(path).read_bytes(), name="sent.aae")
    assert str(caught.value).startswith("sent.aae ")
    assert "\n" not in str(caught.value)


def test_missing_and_directory_paths_fail_clearly(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        aae_anomaly.load(tmp_path / "absent.aae")
    with pytest.raises(ModelFileError, match="is not a file"):
        aae_anomaly.load(tmp_path)


def test_flipped_weight_bytes_are_detected(saved):
    content = bytearray(Path(saved).read_bytes())
    content[-3] ^= 0xFF  # inside the last tensor's data
    write(saved, bytes(content))
    with pytest.raises(ModelFileError, match="corrupted: its weights do not match"):
        aae_anomaly.load(saved)
    with pytest.raises(ModelFileError, match="corrupted: its weights do not match"):
        load_model_bytes(bytes(content))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(format_version=99), "format version 99, newer"),
        (lambda d: d.update(offset="high"), "field 'offset' should be a number"),
        (lambda d: d.pop("calibration"), "field 'calibration'"),
        (lambda d: d["params"].update(colour="red"), "field 'params'"),
        (lambda d: d["params"].update(latent_dim=-1), "invalid estimator parameters"),
        (lambda d: d.update(input_shape=[7]), "field 'n_features_in'"),
        (lambda d: d["encoder"]["options"].update(hidden=[5, 3]), "tensor encoder.0.weight"),
        (lambda d: d["encoder"]["options"].update(depth=3), "cannot be rebuilt"),
        (lambda d: d["calibration"]["center"].pop("density"), "field 'calibration'"),
    ],
    ids=[
        "future-version",
        "offset-type",
        "no-calibration",
        "unknown-param",
        "bad-param",
        "shape-mismatch",
        "tensor-mismatch",
        "bad-option",
        "calibration-keys",
    ],
)
def test_inconsistent_documents_fail_clearly(change, problem, saved, tmp_path):
    path = rewrite_document(saved, tmp_path / "edited.aae", change)
    with pytest.raises(ModelFileError, match=problem):
        aae_anomaly.load(path)
    with pytest.raises(ModelFileError, match=problem):
        load_model_bytes(Path(path).read_bytes())


def test_files_from_before_the_scaling_option_load_as_per_feature(saved, tmp_path):
    path = rewrite_document(saved, tmp_path / "older.aae", lambda d: d["params"].pop("scaling"))
    older, current = aae_anomaly.load(path), aae_anomaly.load(saved)
    assert older.scaling == "per_feature" and current.scaling == "auto"
    rows = np.random.default_rng(1).normal(size=(20, current.n_features_in_))
    np.testing.assert_array_equal(older.score_samples(rows), current.score_samples(rows))


def test_missing_prior_plugin_is_named(saved, tmp_path):
    def foreign_prior(document):
        document["prior"].update(name="vonmises", distribution="aae-circular", version="2.1")

    path = rewrite_document(saved, tmp_path / "vonmises.aae", foreign_prior)
    with pytest.raises(ModelFileError, match="prior plugin 'vonmises'.*aae-circular 2.1") as caught:
        aae_anomaly.load(path)
    assert isinstance(caught.value, UnknownPluginError)
    assert caught.value.name == "vonmises"
    # the header stays readable, so `aae-anomaly info` can show what the file needs
    assert read_header(path).document["prior"]["name"] == "vonmises"


def test_model_of_an_uninstalled_plugin_distribution_fails_on_load(data, tmp_path):
    class Plugin:
        @staticmethod
        @aae_anomaly.hookimpl
        def register_priors(register):
            register("wide_gaussian", get_plugin_manager().get("prior", "gaussian").factory)

    manager = get_plugin_manager()
    manager.register(Plugin(), "wide_plugin", "aae-wide", "0.3")
    try:
        detector = AAEDetector(prior="wide_gaussian", prior_params={"std": 2.0}, **TINY)
        detector.fit(data.to_numpy()).save(tmp_path / "wide.aae")
        np.testing.assert_array_equal(
            aae_anomaly.load(tmp_path / "wide.aae").score_samples(data.to_numpy()),
            detector.score_samples(data.to_numpy()),
        )
    finally:
        manager.unregister("wide_plugin")
    with pytest.raises(ModelFileError, match="'wide_gaussian' \\(from aae-wide 0.3\\)"):
        aae_anomaly.load(tmp_path / "wide.aae")


def test_other_plugin_version_warns(saved):
    path = rewrite_document(saved, saved + ".old", lambda d: d["prior"].update(version="0.0.1"))
    with pytest.warns(UserWarning, match="saved with the prior plugin 'gaussian'"):
        aae_anomaly.load(path)


def test_unknown_device_is_a_model_file_error(saved):
    with pytest.raises(ModelFileError, match="unknown device"):
        aae_anomaly.load(saved, device="abacus")
