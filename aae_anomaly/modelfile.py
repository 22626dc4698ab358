"""Model files: one fitted :class:`AAEDetector` in one safetensors file.

The tensors are the network's state dict (weights and the input-scaling buffers
``center`` and ``scale``). Everything else needed to score sits in the safetensors
header's ``__metadata__`` under the key ``"aae_anomaly"``, as one JSON document: the
format name and version, the library version, the estimator's parameters, the prior and
encoder plugins (name, options, and the distribution and version they came from), the
input shape and feature names, the score calibration, the threshold offset, the training
history, and a SHA-256 of the tensors.

Nothing in the file is pickled and loading runs no code from it: the networks are rebuilt
by the installed plugins from the stored names and options, then filled with the stored
tensors. Every problem with a file is raised as :class:`ModelFileError` naming the file.
See ``docs/model-files.md`` for the layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize_tensors

from .atomic import atomic_write_bytes
from .engine.runtime import resolve_device
from .errors import ModelFileError, ModelPluginMissingError, PluginError, UnknownPluginError
from .estimator import AAEDetector, create_architecture, create_prior
from .plugins import get_plugin_manager
from .scoring import ScoreCalibration, available_components

FORMAT_NAME = "aae-anomaly-model"
# Version 2 adds ``normal_classes`` (a label-conditioned model); files without it are
# still written as version 1, so that older readers load them.
FORMAT_VERSION = 2
METADATA_KEY = "aae_anomaly"
SUFFIX = ".aae"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ModelHeader:
    """What a model file holds, read without building the model (so without its plugins)."""

    path: str
    document: dict[str, Any]
    tensors: tuple[TensorInfo, ...]

    @property
    def n_parameters(self) -> int:
        return sum(math.prod(t.shape) for t in self.tensors)


# -- saving ----------------------------------------------------------------------------------
def save_model(detector: AAEDetector, path: str | os.PathLike) -> None:
    """Write a fitted detector to ``path`` atomically: a reader (or a crash) sees the
    previous file or the complete new one, never a part."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(detector)
    target = Path(path)
    if not target.parent.is_dir():
        raise ModelFileError(f"cannot save the model to {path}: no such directory {target.parent}")
    tensors = {
        name: tensor.detach().cpu().contiguous().clone()
        for name, tensor in detector.module_.state_dict().items()
    }
    document = _describe(detector, tensors)
    try:
        header = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"cannot save the model to {path}: {exc}") from None
    atomic_write_bytes(target, serialize_tensors(tensors, metadata={METADATA_KEY: header}))


def _describe(detector: AAEDetector, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    from . import __version__

    architecture = _fitted_architecture_options(detector)
    feature_names = getattr(detector, "feature_names_in_", None)
    normal_classes = getattr(detector, "normal_classes_", None)
    document = {
        "format": FORMAT_NAME,
        "format_version": (
            1
            if normal_classes is None and detector.module_.anomaly_reference is None
            else 2
        ),
        "library_version": __version__,
        "torch_version": torch.__version__,
        "params": _json_params(detector.get_params(deep=False)),
        "prior": _plugin_entry("prior", detector.prior, detector.prior_.options()),
        "encoder": _plugin_entry("encoder", detector.encoder, architecture),
        "input_shape": list(detector.input_shape_),
        "n_features_in": int(detector.n_features_in_),
        "feature_names_in": None if feature_names is None else [str(f) for f in feature_names],
        "calibration": detector.calibration_.to_dict(),
        "offset": float(detector.offset_),
        "history": {k: [float(v) for v in values] for k, values in detector.history_.items()},
        "tensors_sha256": _tensor_digest(tensors),
    }
    if normal_classes is not None:
        document["normal_classes"] = normal_classes.tolist()
    return document


def _fitted_architecture_options(detector: AAEDetector) -> dict[str, Any]:
    # The fitted module does not keep its Architecture; rebuilding one from the parameters
    # gives the options (with the plugin's defaults filled in) that built it.
    return create_architecture(detector.encoder, detector.encoder_params or {}).options()


def _plugin_entry(kind: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    registration = get_plugin_manager().get(kind, name)
    return {
        "name": name,
        "options": options,
        "plugin": registration.plugin,
        "distribution": registration.distribution,
        "version": registration.version,
    }


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        # a RandomState object only seeded the fit; scoring never uses it
        params["random_state"] = None
    if params["input_shape"] is not None:
        params["input_shape"] = [int(s) for s in params["input_shape"]]
    return params


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: flipped
    bits in the weights would otherwise load silently and give wrong scores."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# -- reading ---------------------------------------------------------------------------------
def read_header(path: str | os.PathLike) -> ModelHeader:
    """The validated JSON document and the tensor list of a model file."""
    document, tensors = _open(path, load_tensors=False)
    return ModelHeader(str(path), document, tuple(tensors))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> AAEDetector:
    """Read a model file written by :meth:`AAEDetector.save` onto ``device`` (``"cpu"``,
    ``"auto"`` for CUDA when present, or any torch device string).

    On CPU the loaded detector's scores are bit-identical to the saved one's.
    """
    document, tensors = _open(path, load_tensors=True)
    if _tensor_digest(tensors) != document["tensors_sha256"]:
        raise ModelFileError(f"{path} is corrupted: its weights do not match their checksum")
    # files written before ``scaling`` existed were scaled per feature, images included
    params = {"scaling": "per_feature", **document["params"]}
    try:
        detector = AAEDetector(**params)
        detector._check_params()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} holds invalid estimator parameters: {exc}") from None
    input_shape = tuple(document["input_shape"])
    n_features = document["n_features_in"]
    detector.latent_dim_ = detector._resolved_latent_dim(n_features)
    prior = _rebuild(path, "prior", document["prior"], detector.latent_dim_)
    normal_classes = document.get("normal_classes")
    if normal_classes is not None:
        from .conditioning import check_prior

        detector.normal_classes_ = np.asarray(normal_classes)
        try:
            check_prior(prior, document["prior"]["name"], len(normal_classes))
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
    architecture = _rebuild(path, "encoder", document["encoder"], None)
    n_reference = _reference_rows(tensors)
    n_anomalies = _reference_rows(tensors, "anomaly_reference")
    for name in ("center", "scale"):
        stored = tensors.get(name)
        if stored is None or tuple(stored.shape) != (n_features,):
            shape = "missing" if stored is None else f"of shape {tuple(stored.shape)}"
            raise ModelFileError(
                f"{path}: tensor {name} is {shape}, but the model has {n_features} features"
            )
    # Build on the meta device first: shapes and dtypes without memory, so a file whose
    # configuration asks for enormous networks is refused before anything is allocated.
    try:
        with torch.device("meta"):
            expected = _build(
                detector, architecture, input_shape, n_features, n_reference, n_anomalies
            ).state_dict()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the encoder cannot be rebuilt: {exc}") from None
    _check_tensors_fit(path, expected, tensors)
    module = _build(detector, architecture, input_shape, n_features, n_reference, n_anomalies)
    module.load_state_dict(tensors, strict=True)
    calibration = _calibration_in_scoring_order(
        path, document["calibration"], module, prior
    )
    try:
        resolved = resolve_device(device)
    except ValueError as exc:
        raise ModelFileError(f"cannot load {path}: {exc}") from None
    return detector._restore_fitted_state(
        module=module,
        prior=prior,
        device=resolved,
        input_shape=input_shape,
        calibration=calibration,
        offset=document["offset"],
        history=document["history"],
        feature_names=document["feature_names_in"],
        normal_classes=normal_classes,
    )


def _build(
    detector: AAEDetector,
    architecture,
    input_shape,
    n_features: int,
    n_reference: int,
    n_anomalies: int = 0,
):
    return detector._build_module(
        architecture,
        input_shape,
        np.zeros(n_features, dtype=np.float32),  # placeholders: the stored
        np.ones(n_features, dtype=np.float32),  # buffers replace them
        n_reference,
        n_anomalies,
    )


def _calibration_in_scoring_order(path, stored: dict, module, prior) -> ScoreCalibration:
    # The combined score sums the components in the calibration's key order; floating-point
    # addition is not associative, so the order fit used (the scorer's) is restored here for
    # bit-identical scores whatever order the JSON holds.
    names = available_components(module, prior)
    if set(stored["center"]) != set(names):
        raise ModelFileError(
            f"{path}: the score calibration covers {sorted(stored['center'])} but the model "
            f"gives the components {list(names)}"
        )
    return ScoreCalibration.from_dict(
        {part: {name: stored[part][name] for name in names} for part in stored}
    )


def _rebuild(path, kind: str, entry: dict[str, Any], latent_dim: int | None):
    name, options = entry["name"], entry["options"]
    manager = get_plugin_manager()
    source = _source(entry)
    try:
        registration = manager.get(kind, name)
    except UnknownPluginError as exc:
        raise ModelPluginMissingError(str(path), kind, name, source, exc.available) from None
    if entry["version"] is not None and registration.version != entry["version"]:
        warnings.warn(
            f"{path} was saved with the {kind} plugin {name!r} {source}; the installed one "
            f"is from {registration.distribution} {registration.version}",
            stacklevel=3,
        )
    try:
        if kind == "prior":
            return create_prior(name, latent_dim, options)
        return create_architecture(name, options)
    except (PluginError, ValueError) as exc:
        raise ModelFileError(f"{path}: the {kind} {name!r} cannot be rebuilt: {exc}") from None


def _source(entry: dict[str, Any]) -> str:
    if entry["distribution"] is None:
        return f"plugin {entry['plugin']!r}"
    return f"from {entry['distribution']} {entry['version']}"


def _reference_rows(tensors: dict[str, torch.Tensor], name: str = "reference") -> int:
    """Rows in the neighbors component's reference set; its width is checked with the
    other shapes against what the configuration builds."""
    reference = tensors.get(name)
    return int(reference.shape[0]) if reference is not None and reference.dim() == 2 else 0


def _check_tensors_fit(
    path, expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]
) -> None:
    """Compare stored tensors with the rebuilt module's before load_state_dict, whose own
    errors are long and speak of torch internals, and which would cast a float64 or an
    integer tensor silently."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: its tensors do not match the networks its configuration builds "
            f"(missing: {', '.join(missing) or 'none'}; unexpected: "
            f"{', '.join(unexpected) or 'none'})"
        )
    for name, tensor in expected.items():
        stored = tensors[name]
        if stored.shape != tensor.shape or stored.dtype != tensor.dtype:
            raise ModelFileError(
                f"{path}: tensor {name} is {stored.dtype} {tuple(stored.shape)} but the "
                f"configuration builds {tensor.dtype} {tuple(tensor.shape)}"
            )


def _open(path, load_tensors: bool):
    file = Path(path)
    if not file.exists():
        raise ModelFileError(f"no such model file: {path}")
    if not file.is_file():
        raise ModelFileError(f"{path} is not a file")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            names = list(handle.keys())
            if load_tensors:
                tensors: Any = {name: handle.get_tensor(name) for name in names}
            else:
                tensors = []
                for name in names:
                    tensor_slice = handle.get_slice(name)
                    tensors.append(
                        TensorInfo(name, tuple(tensor_slice.get_shape()), tensor_slice.get_dtype())
                    )
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path} is not an aae-anomaly model file (not a readable safetensors file: "
            f"{_one_line(exc)})"
        ) from None
    if METADATA_KEY not in metadata:
        raise ModelFileError(
            f"{path} is not an aae-anomaly model file (a safetensors file without "
            f"aae-anomaly metadata)"
        )
    try:
        document = json.loads(metadata[METADATA_KEY])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too-long integers, nesting
        message = _one_line(exc)[:200] or type(exc).__name__
        raise ModelFileError(f"{path} is corrupted: its metadata is not JSON ({message})") from None
    _validate(path, document)
    return document, tensors


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- validating the JSON document ------------------------------------------------------------
def _validate(path, document: Any) -> None:
    """Check every field's type, so that a damaged or hand-edited file fails here with the
    field's name rather than later inside torch."""
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not an aae-anomaly model file (unknown format)")
    version = document.get("format_version")
    if not _is_int(version) or version < 1:
        raise ModelFileError(f"{path} is corrupted: format_version is {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model-file format version {version}, newer than this aae-anomaly "
            f"reads ({FORMAT_VERSION}); upgrade aae-anomaly to load it"
        )

    def fail(field: str, expected: str) -> ModelFileError:
        value = document.get(field, "<missing>")
        shown = repr(value) if len(repr(value)) < 60 else type(value).__name__
        return ModelFileError(
            f"{path} is corrupted: field {field!r} should be {expected}, got {shown}"
        )

    for field in ("library_version", "torch_version", "tensors_sha256"):
        if not isinstance(document.get(field), str):
            raise fail(field, "a string")
    params = document.get("params")
    known = set(AAEDetector().get_params())
    if not isinstance(params, dict) or not set(params) <= known:
        raise fail("params", f"an object with some of the keys {sorted(known)}")
    if params.get("input_shape") is not None:
        if not (
            isinstance(params["input_shape"], list)
            and all(_is_int(s) and s > 0 for s in params["input_shape"])
        ):
            raise fail("params", "an object whose input_shape is null or positive integers")
        params["input_shape"] = tuple(params["input_shape"])
    for kind in ("prior", "encoder"):
        entry = document.get(kind)
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("options"), dict)
            and isinstance(entry.get("plugin"), str)
            and all(_is_str_or_none(entry.get(k, 0)) for k in ("distribution", "version"))
        ):
            raise fail(kind, "an object with name, options, plugin, distribution and version")
    shape = document.get("input_shape")
    if not (isinstance(shape, list) and shape and all(_is_int(s) and s > 0 for s in shape)):
        raise fail("input_shape", "a list of positive integers")
    n_features = document.get("n_features_in")
    if not _is_int(n_features) or n_features != math.prod(shape):
        raise fail("n_features_in", f"the size of input_shape, {math.prod(shape)}")
    names = document.get("feature_names_in")
    if names is not None and not (
        isinstance(names, list)
        and len(names) == n_features
        and all(isinstance(n, str) for n in names)
    ):
        raise fail("feature_names_in", f"null or a list of {n_features} strings")
    calibration = document.get("calibration")
    if not (
        isinstance(calibration, dict)
        and set(calibration) == {"center", "spread", "weights"}
        and all(_is_number_map(calibration[k]) for k in calibration)
        and calibration["center"].keys() == calibration["spread"].keys()
        and calibration["center"].keys() == calibration["weights"].keys()
    ):
        raise fail("calibration", "an object with center, spread and weights per component")
    if not (
        all(v > 0 for v in calibration["spread"].values())
        and all(v >= 0 for v in calibration["weights"].values())
        and sum(calibration["weights"].values()) > 0
    ):
        raise fail("calibration", "positive spreads and non-negative weights with a positive sum")
    classes = document.get("normal_classes")
    if classes is not None and not (
        version >= 2
        and isinstance(classes, list)
        and classes
        and (all(_is_int(c) for c in classes) or all(isinstance(c, str) for c in classes))
        and len(set(classes)) == len(classes)
        and classes == sorted(classes)
    ):
        raise fail("normal_classes", "a sorted list of distinct integers or strings")
    if not _is_number(document.get("offset")):
        raise fail("offset", "a number")
    history = document.get("history")
    if not (
        isinstance(history, dict)
        and all(isinstance(v, list) and all(_is_number(x) for x in v) for v in history.values())
    ):
        raise fail("history", "an object of lists of numbers")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (JSON allows NaN, Infinity and integers too large for a float,
    none of which a model can use)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_number_map(value: Any) -> bool:
    return isinstance(value, dict) and all(_is_number(v) for v in value.values())
