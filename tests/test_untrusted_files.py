"""Untrusted model files: loading never runs code from the file, and every damaged,
foreign or hostile file gives a clear ModelFileError (never a crash, a hang or a silently
wrong model)."""

import contextlib
import json
import os
import pickle
import signal
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save as serialize

from aae_anomaly import AAEDetector, ModelFileError, ModelPluginMissingError, load
from aae_anomaly.cli import main
from aae_anomaly.io.modelfile import METADATA_KEY, read_header, tensor_digest

ROWS = np.random.default_rng(0).normal(size=(60, 3))


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    """A small valid model file (about 2 kB of weights)."""
    path = tmp_path_factory.mktemp("valid") / "model.aae"
    AAEDetector(latent_dim=2, epochs=1, random_state=0, encoder_params={"hidden": [4]}).fit(
        ROWS
    ).save(path)
    return path


def _parts(path):
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()[METADATA_KEY])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return document, tensors


def _write(path, document, tensors, fix_checksum=True, raw_header=None):
    if fix_checksum:
        document["tensors_sha256"] = tensor_digest(tensors)
    header = raw_header if raw_header is not None else json.dumps(document)
    path.write_bytes(serialize(tensors, metadata={METADATA_KEY: header}))
    return path


# -- files that would run code if they were unpickled ------------------------------------------
class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickle_file(path, marker):
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


def _torch_zip(path, marker):
    torch.save({"state_dict": Payload(marker)}, path)
    assert zipfile.is_zipfile(path)
    return path


def _safetensors_with_pickled_metadata(path, marker):
    # a pickle where the JSON document should be (as text, the only thing metadata holds)
    header = pickle.dumps(Payload(marker), protocol=0).decode("latin-1")
    return _write(path, {}, {"x": torch.zeros(1)}, fix_checksum=False, raw_header=header)


def _pickle_inside_a_tensor(path, marker, valid_file):
    document, tensors = _parts(valid_file)
    blob = pickle.dumps(Payload(marker))
    tensors["payload"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    return _write(path, document, tensors)


@pytest.mark.parametrize(
    "craft",
    [
        lambda path, marker, valid: _pickle_file(path, marker),
        lambda path, marker, valid: _torch_zip(path, marker),
        lambda path, marker, valid: _safetensors_with_pickled_metadata(path, marker),
        _pickle_inside_a_tensor,
    ],
    ids=["raw-pickle", "torch-save-zip", "pickle-as-metadata", "pickle-in-a-tensor"],
)
def test_files_that_would_run_code_if_unpickled_are_refused(tmp_path, valid_file, craft):
    marker = tmp_path / "MARKER"
    path = craft(tmp_path / "evil.aae", marker, valid_file)
    # the payload is real: unpickling it would create the marker
    with pytest.raises(ModelFileError) as info:
        load(path)
    assert str(path) in str(info.value)
    # info reads only the header: it refuses the first three, and lists the fourth's
    # extra tensor without reading its bytes
    with contextlib.suppress(ModelFileError):
        read_header(path)
    assert CliRunner().invoke(main, ["info", str(path)]).exit_code in (0, 2)
    result = CliRunner().invoke(main, ["score", str(path), "synthetic:n=10,n_features=3"])
    assert result.exit_code == 2 and result.output.startswith("Error: ")
    assert not marker.exists()


def test_the_payload_would_run_if_it_were_unpickled(tmp_path):
    # proves the test above would notice: plain pickle.loads does run it
    marker = tmp_path / "MARKER"
    pickle.loads(_pickle_file(tmp_path / "p", marker).read_bytes())  # noqa: S301
    assert marker.exists()


# -- safetensors headers that lie ----------------------------------------------------------------
def _raw_safetensors(header: dict, data: bytes, declared_length=None) -> bytes:
    text = json.dumps(header).encode()
    length = len(text) if declared_length is None else declared_length
    return struct.pack("<Q", length) + text + data


LYING_HEADERS = {
    "offsets-beyond-the-file": (
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
        b"\0" * 8,
        None,
    ),
    "overlapping-offsets": (
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        },
        b"\0" * 12,
        None,
    ),
    "size-disagrees-with-dtype": (
        {"w": {"dtype": "F64", "shape": [4], "data_offsets": [0, 16]}},
        b"\0" * 16,
        None,
    ),
    "negative-shape": ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, b"", None),
    "unknown-dtype": (
        {"w": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 1]}},
        b"\0",
        None,
    ),
    "header-length-beyond-the-file": ({}, b"", 10**12),
    "header-length-huge": ({}, b"", 2**64 - 1),
    "metadata-not-strings": ({"__metadata__": {METADATA_KEY: {"format": 1}}}, b"", None),
    "header-not-an-object": ([1, 2, 3], b"", None),
}


@pytest.mark.parametrize("case", LYING_HEADERS, ids=list(LYING_HEADERS))
def test_safetensors_headers_that_lie_are_refused(tmp_path, case):
    header, data, declared = LYING_HEADERS[case]
    path = tmp_path / "lying.aae"
    path.write_bytes(_raw_safetensors(header, data, declared))
    with pytest.raises(ModelFileError, match="not an aae-anomaly model file|is corrupted"):
        load(path)


# -- metadata with unexpected types or values --------------------------------------------------
METADATA_DAMAGE = {
    "document-is-a-list": (lambda d: [d], "unknown format"),
    "params-is-a-list": (lambda d: {**d, "params": []}, "field 'params'"),
    "unknown-param": (lambda d: {**d, "params": {**d["params"], "shell": "rm"}}, "'params'"),
    "latent-dim-as-string": (
        lambda d: {**d, "params": {**d["params"], "latent_dim": "2"}},
        "invalid estimator parameters: latent_dim",
    ),
    "input-shape-param-as-string": (
        lambda d: {**d, "params": {**d["params"], "input_shape": "abc"}},
        "input_shape",
    ),
    "offset-as-string": (lambda d: {**d, "offset": "0.5"}, "field 'offset' should be a number"),
    "offset-nan": (lambda d: {**d, "offset": float("nan")}, "field 'offset'"),
    "offset-infinite": (lambda d: {**d, "offset": float("inf")}, "field 'offset'"),
    "offset-huge-integer": (lambda d: {**d, "offset": 10**400}, "field 'offset'"),
    "history-nan": (
        lambda d: {**d, "history": {"reconstruction": [float("nan")]}},
        "field 'history'",
    ),
    "prior-is-a-string": (lambda d: {**d, "prior": "gaussian"}, "field 'prior'"),
    "prior-options-a-list": (
        lambda d: {**d, "prior": {**d["prior"], "options": [1]}},
        "field 'prior'",
    ),
    "prior-option-wrong-type": (
        lambda d: {**d, "prior": {**d["prior"], "options": {"std": "wide"}}},
        "the prior 'gaussian' cannot be rebuilt",
    ),
    "encoder-option-unknown": (
        lambda d: {**d, "encoder": {**d["encoder"], "options": {"evil": 1}}},
        "encoder 'mlp' .*rejected its options",
    ),
    "input-shape-floats": (lambda d: {**d, "input_shape": [1.5, 2]}, "field 'input_shape'"),
    "input-shape-empty": (lambda d: {**d, "input_shape": []}, "field 'input_shape'"),
    "n-features-disagrees": (lambda d: {**d, "n_features_in": 4}, "field 'n_features_in'"),
    "feature-names-wrong-length": (
        lambda d: {**d, "feature_names_in": ["a"]},
        "field 'feature_names_in'",
    ),
    "feature-names-numbers": (
        lambda d: {**d, "feature_names_in": [1, 2, 3]},
        "field 'feature_names_in'",
    ),
    "calibration-spread-zero": (
        lambda d: {
            **d,
            "calibration": {
                **d["calibration"],
                "spread": dict.fromkeys(d["calibration"]["spread"], 0.0),
            },
        },
        "positive spreads",
    ),
    "calibration-weights-negative": (
        lambda d: {
            **d,
            "calibration": {
                **d["calibration"],
                "weights": dict.fromkeys(d["calibration"]["weights"], -1.0),
            },
        },
        "positive spreads and non-negative weights",
    ),
    "calibration-components-differ": (
        lambda d: {**d, "calibration": {k: {"reconstruction": 1.0} for k in d["calibration"]}},
        "calibration covers",
    ),
    "checksum-a-number": (lambda d: {**d, "tensors_sha256": 5}, "field 'tensors_sha256'"),
    "format-version-newer": (lambda d: {**d, "format_version": 99}, "upgrade aae-anomaly"),
    "format-version-string": (lambda d: {**d, "format_version": "1"}, "format_version"),
    "huge-latent-dim": (
        lambda d: {**d, "params": {**d["params"], "latent_dim": 10**9}},
        r"but the configuration builds torch.float32 \(\d*, ?10000000\d\d",
    ),
    "huge-input-shape": (
        lambda d: {**d, "input_shape": [10**12], "n_features_in": 10**12},
        "tensor center is of shape \\(3,\\), but the model has 1000000000000 features",
    ),
    "reference-groups-beyond-the-rows": (
        lambda d: {**d, "reference_groups": 10**6},
        "reference_groups must be absent, or an integer from 1 to the",
    ),
    "reference-groups-a-string": (
        lambda d: {**d, "reference_groups": "2"}, "reference_groups must be absent"
    ),
    "huge-hidden-layers": (
        lambda d: {**d, "encoder": {**d["encoder"], "options": {"hidden": [10**6, 10**6]}}},
        "do not match the networks its configuration builds",
    ),
}


@pytest.mark.parametrize("case", METADATA_DAMAGE, ids=list(METADATA_DAMAGE))
def test_metadata_with_unexpected_types_is_refused(tmp_path, valid_file, case):
    change, message = METADATA_DAMAGE[case]
    document, tensors = _parts(valid_file)
    path = _write(tmp_path / "m.aae", document, tensors)  # checksum fixed, then changed
    path = _write(path, change(document), tensors, fix_checksum=False)
    with pytest.raises(ModelFileError, match=message):
        load(path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"format": "aae-anomaly-model", ', "metadata is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "metadata is not JSON"),
        ('{"format": "aae-anomaly-model", "offset": ' + "9" * 5000 + "}", "not JSON"),
        ("", "metadata is not JSON"),
    ],
    ids=["truncated-json", "deeply-nested", "5000-digit-integer", "empty"],
)
def test_metadata_that_is_not_json_is_refused(tmp_path, raw, message):
    path = _write(tmp_path / "m.aae", {}, {"x": torch.zeros(1)}, fix_checksum=False, raw_header=raw)
    with pytest.raises(ModelFileError, match=message):
        load(path)


def test_metadata_naming_a_plugin_that_is_not_installed(tmp_path, valid_file):
    document, tensors = _parts(valid_file)
    document["prior"].update(name="acme_prior", distribution="acme-priors", version="1.0")
    path = _write(tmp_path / "m.aae", document, tensors)
    with pytest.raises(ModelPluginMissingError, match="prior plugin 'acme_prior' \\(from "
                       "acme-priors 1.0\\), which is not installed"):  # fmt: skip
        load(path)
    # info reads it without the plugin
    assert read_header(path).document["prior"]["name"] == "acme_prior"


def test_a_plugin_left_out_by_the_load_variable_is_named_as_left_out(
    tmp_path, valid_file, monkeypatch
):
    document, tensors = _parts(valid_file)
    document["prior"].update(name="acme_prior", distribution="acme-priors", version="1.0")
    path = _write(tmp_path / "m.aae", document, tensors)
    monkeypatch.setenv("AAE_ANOMALY_LOAD_PLUGINS", "other-plugins")
    with pytest.raises(ModelPluginMissingError, match="which AAE_ANOMALY_LOAD_PLUGINS leaves "
                       r"out \(it loads only other-plugins\)"):  # fmt: skip
        load(path)


# -- tensors with the right names but the wrong shapes or dtypes -------------------------------
TENSOR_DAMAGE = {
    "float64-weights": (lambda t: t.update(w=t["w"].double()), "torch.float64"),
    "int-weights": (lambda t: t.update(w=t["w"].to(torch.int32)), "torch.int32"),
    "uint8-weights": (lambda t: t.update(w=t["w"].to(torch.uint8)), "torch.uint8"),
    "float16-weights": (lambda t: t.update(w=t["w"].half()), "torch.float16"),
    "bool-weights": (lambda t: t.update(w=t["w"] > 0), "torch.bool"),
    "transposed": (lambda t: t.update(w=t["w"].T.contiguous()), "but the configuration"),
    "flattened": (lambda t: t.update(w=t["w"].reshape(-1).clone()), "but the configuration"),
    "extra-tensor": (lambda t: t.update(extra=torch.zeros(2)), "unexpected: extra"),
    "missing-tensor": (lambda t: t.pop("w"), "missing: decoder.0.weight"),
    "center-float64": (lambda t: t.update(center=t["center"].double()), "tensor center is"),
    "scale-wrong-length": (lambda t: t.update(scale=torch.ones(5)), "tensor scale is of shape"),
}


@pytest.mark.parametrize("case", TENSOR_DAMAGE, ids=list(TENSOR_DAMAGE))
def test_tensors_of_the_wrong_shape_or_dtype_are_refused(tmp_path, valid_file, case):
    change, message = TENSOR_DAMAGE[case]
    document, tensors = _parts(valid_file)
    tensors["w"] = tensors.pop("decoder.0.weight")
    change(tensors)
    if "w" in tensors:
        tensors["decoder.0.weight"] = tensors.pop("w")
    path = _write(tmp_path / "m.aae", document, tensors)  # a valid checksum over them
    with pytest.raises(ModelFileError, match=message):
        load(path)


def test_changed_weights_fail_the_checksum(tmp_path, valid_file):
    document, tensors = _parts(valid_file)
    tensors["decoder.0.weight"][0, 0] += 1e-3
    path = _write(tmp_path / "m.aae", document, tensors, fix_checksum=False)
    with pytest.raises(ModelFileError, match="weights do not match their checksum"):
        load(path)


# -- fuzzing: random bytes, truncations, bit flips ---------------------------------------------
class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds):
    """Fail a case that takes longer than ``seconds`` (a hang), via SIGALRM."""

    def alarm(signum, frame):
        raise Hang(f"loading took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _load_or_clear_error(path):
    """Either a ModelFileError, or a model that scores finitely; anything else fails."""
    with time_limit(20):
        try:
            detector = load(path)
        except ModelFileError as exc:
            assert str(exc).strip() and "\n" not in str(exc)
            return "refused"
        assert np.isfinite(detector.score_samples(ROWS[:5])).all()
        return "loaded"


def test_fuzz_random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "random.aae"
    for case in range(200):
        size = int(rng.integers(0, 3000))
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        if case % 2:  # a plausible header length, so the parser gets further
            data = struct.pack("<Q", min(size, int(rng.integers(0, 2000)))) + data
        path.write_bytes(data)
        assert _load_or_clear_error(path) == "refused", case


def test_fuzz_truncations(tmp_path, valid_file):
    data = valid_file.read_bytes()
    path = tmp_path / "truncated.aae"
    for length in [*range(0, 64), *range(64, len(data), max(1, len(data) // 150))]:
        path.write_bytes(data[:length])
        assert _load_or_clear_error(path) == "refused", length


def test_fuzz_bit_flips(tmp_path, valid_file):
    data = bytearray(valid_file.read_bytes())
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    rng = np.random.default_rng(1)
    path = tmp_path / "flipped.aae"
    outcomes = []
    # half the flips in the header (JSON and offsets), half in the tensor bytes
    positions = [*rng.integers(0, header_end, 100), *rng.integers(header_end, len(data), 100)]
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(flipped))
        outcomes.append(_load_or_clear_error(path))
    # every flip in the tensor bytes is caught by the checksum
    assert outcomes[100:] == ["refused"] * 100
    assert outcomes.count("refused") > 150


def test_a_directory_or_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load(tmp_path / "absent.aae")
    with pytest.raises(ModelFileError, match="is not a file"):
        load(tmp_path)


@pytest.mark.parametrize("module", ["io/modelfile.py", "estimators/persistence.py"])
def test_the_model_file_modules_never_unpickle(module):
    source = (Path(__file__).parents[1] / "aae_anomaly" / module).read_text()
    for forbidden in ("import pickle", "torch.load", "allow_pickle=True", "weights_only"):
        assert forbidden not in source
