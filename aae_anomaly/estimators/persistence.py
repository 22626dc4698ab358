"""Model files of :class:`~aae_anomaly.estimators.detector.AAEDetector` and of the class
and style family (``SupervisedAAE``, ``AAEClassifier``, ``AAEClustering``, format version
4, with an ``estimator`` field): what the document holds beside the tensors, and how an
estimator is rebuilt from it.

The document (see :mod:`aae_anomaly.io.modelfile` for the container) holds the
estimator's parameters, the prior and encoder plugins (name, options, and the
distribution and version they came from), the input shape and feature names, the score
calibration, the threshold offset and the training history. Loading rebuilds the networks
with the installed plugins from the stored names and options, then fills them with the
stored tensors; nothing in the file runs.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ..engine.runtime import resolve_device
from ..errors import ModelFileError, ModelPluginMissingError, PluginError, UnknownPluginError
from ..io.modelfile import (
    field_error,
    is_int,
    is_number,
    is_number_map,
    is_str_or_none,
    write_model_file,
)
from ..plugin_system.manager import (
    LOAD_PLUGINS_VARIABLE,
    distributions_to_load,
    get_plugin_manager,
    normalized_name,
)
from ..scoring import ScoreCalibration, available_components
from ..scoring.conditioning import check_prior
from .building import build_detector_module, create_architecture, create_prior, resolved_latent_dim
from .columns import TableSchema
from .scaling import sample_statistics


# -- saving ----------------------------------------------------------------------------------
def save_detector(detector, path: str | os.PathLike) -> None:
    """Write a fitted detector to ``path`` atomically."""
    check_is_fitted(detector)
    write_model_file(path, detector.module_.state_dict(), _describe(detector))


def _describe(detector) -> dict[str, Any]:
    from .._version import __version__

    architecture = _fitted_architecture_options(detector)
    normal_classes = getattr(detector, "normal_classes_", None)
    feature_names, columns = _input_fields(detector)
    if columns is not None:
        version = 3  # earlier versions would read the encoded inputs as the table's columns
    elif normal_classes is not None or detector.module_.anomaly_reference is not None:
        version = 2
    else:
        version = 1
    per_sample = detector.module_.sample_scaling is not None
    chosen_neighbors = detector.n_neighbors == "auto"
    if per_sample or chosen_neighbors:
        # an older reader would feed the networks rows that were never standardized, or
        # not know how many neighbours "auto" chose
        version = 5
    candidates = detector.module_.input_candidates
    if candidates:
        version = 6  # an older reader would not compute the inputs component
    document = {
        "format_version": version,
        "library_version": __version__,
        "torch_version": torch.__version__,
        "params": _json_params(detector.get_params(deep=False)),
        "prior": _plugin_entry("prior", detector.prior, detector.prior_.options()),
        "encoder": _plugin_entry("encoder", detector.encoder, architecture),
        "input_shape": list(detector.input_shape_),
        "n_features_in": int(np.prod(detector.input_shape_)),  # the networks' inputs
        "feature_names_in": feature_names,
        "calibration": detector.calibration_.to_dict(),
        "offset": float(detector.offset_),
        "history": {k: [float(v) for v in values] for k, values in detector.history_.items()},
    }
    if normal_classes is not None:
        document["normal_classes"] = normal_classes.tolist()
    distributed = getattr(detector, "distributed_", None)
    if distributed is not None:
        # optional, like every field that only describes: readers that predate it skip it
        document["distributed"] = dict(distributed)
    if columns is not None:
        document["columns"] = columns
    if per_sample:
        document["sample_scaling"] = True
    if chosen_neighbors:
        document["n_neighbors"] = int(detector.n_neighbors_)
    if candidates:
        document["input_candidates"] = int(candidates)
    groups = getattr(detector.module_, "reference_groups", 1)
    if groups > 1:
        # optional: a model fitted on contaminated rows searches its reference in slices
        document["reference_groups"] = int(groups)
    value_range = getattr(detector, "input_range_", None)
    if value_range is not None:
        # optional: readers that predate it ignore it, so the format version stays
        document["input_range"] = {"low": value_range[0].tolist(), "high": value_range[1].tolist()}
    return document


def _input_fields(estimator) -> tuple[list[str] | None, dict[str, Any] | None]:
    """What a document says of the inputs: the networks' input names (a category column
    gives one per category), and the table's columns when the model encodes them or
    leaves ids out (else None; such a file needs format 3 or later)."""
    schema = getattr(estimator, "schema_", None)
    if schema is None:
        names = getattr(estimator, "feature_names_in_", None)
        return (None if names is None else [str(n) for n in names]), None
    names = schema.encoded_names() if schema.named or schema.encodes else None
    return names, (schema.to_dict() if schema.encodes or schema.ignored else None)


def _restore_inputs(estimator, schema: TableSchema | None, n_features: int) -> None:
    """Set the fitted input attributes: the networks' width, or the table's columns."""
    estimator.n_features_in_ = n_features
    if schema is not None:
        estimator.schema_ = schema
        estimator.n_features_in_ = schema.n_inputs
        if schema.named:
            estimator.feature_names_in_ = np.asarray(schema.names, dtype=object)


def _fitted_architecture_options(detector) -> dict[str, Any]:
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



# The class-and-style family's files: format version 4, which earlier readers refuse
# (they would take the file for a detector's).
FAMILY_FORMAT_VERSION = 4
FAMILY = ("SupervisedAAE", "AAEClassifier", "AAEClustering")
# The cluster of each training row (AAEClustering.labels_), kept beside the networks.
TRAINING_LABELS = "training_labels"


def save_family(estimator, path: str | os.PathLike) -> None:
    """Write a fitted estimator of the family to ``path`` atomically."""
    check_is_fitted(estimator)
    tensors = dict(estimator.module_.state_dict())
    labels = getattr(estimator, "labels_", None)
    if labels is not None:
        tensors[TRAINING_LABELS] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    write_model_file(path, tensors, _describe_family(estimator))


def _describe_family(estimator) -> dict[str, Any]:
    from .._version import __version__

    names, columns = _input_fields(estimator)
    classes = getattr(estimator, "classes_", None)
    options = create_architecture(estimator.encoder, estimator.encoder_params or {}).options()
    document = {
        "format_version": FAMILY_FORMAT_VERSION,
        "estimator": type(estimator).__name__,
        "library_version": __version__,
        "torch_version": torch.__version__,
        "params": _json_params(estimator.get_params(deep=False)),
        "encoder": _plugin_entry("encoder", estimator.encoder, options),
        "input_shape": list(estimator.input_shape_),
        "n_features_in": int(np.prod(estimator.input_shape_)),
        "feature_names_in": names,
        "n_categories": int(estimator.module_.n_categories),
        "classes": None if classes is None else classes.tolist(),
        "history": {k: [float(v) for v in vs] for k, vs in estimator.history_.items()},
    }
    if columns is not None:
        document["columns"] = columns
    return document


def check_family_document(path, document: Any, known_params: set[str]) -> None:
    """Check every field of a family estimator's document (see check_detector_document)."""

    def fail(field: str, expected: str) -> ModelFileError:
        return field_error(path, document, field, expected)

    _check_common_fields(path, document, known_params, ("encoder",))
    n_categories = document.get("n_categories")
    if not (is_int(n_categories) and n_categories >= 1):
        raise fail("n_categories", "a positive integer")
    classes = document.get("classes")
    if document["estimator"] == "AAEClustering":
        if classes is not None:
            raise fail("classes", "null for AAEClustering")
    elif not (
        isinstance(classes, list)
        and len(classes) == n_categories
        and (all(is_int(c) for c in classes) or all(isinstance(c, str) for c in classes))
        and len(set(classes)) == len(classes)
        and classes == sorted(classes)
    ):
        raise fail("classes", f"a sorted list of {n_categories} distinct integers or strings")


def restore_family(estimator, path, document: dict[str, Any], tensors, device):
    """Fill ``estimator`` (a family estimator made from the document's checked
    parameters) with the fitted state of the model file at ``path``, on ``device``."""
    from ..engine.categorical import CategoricalAAEModule

    input_shape = tuple(document["input_shape"])
    n_features, n_categories = document["n_features_in"], document["n_categories"]
    architecture = _rebuild(path, "encoder", document["encoder"], None)
    infers = type(estimator)._infers_category
    code_size = estimator.style_dim + (n_categories if infers else 0)
    labels = tensors.pop(TRAINING_LABELS, None)

    def build():
        encoder, decoder = architecture.build(input_shape, n_categories + estimator.style_dim,
                                              code_size)  # fmt: skip
        return CategoricalAAEModule(
            encoder, decoder, input_shape, n_categories, estimator.style_dim, infers,
            estimator.reconstruction_loss, torch.zeros(n_features), torch.ones(n_features),
        )  # fmt: skip

    try:
        with torch.device("meta"):  # shapes first, before memory is allocated
            expected = build().state_dict()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the encoder cannot be rebuilt: {exc}") from None
    _check_tensors_fit(path, expected, tensors)
    module = build()
    module.load_state_dict(tensors, strict=True)
    try:
        resolved = resolve_device(device)
    except ValueError as exc:
        raise ModelFileError(f"cannot load {path}: {exc}") from None
    estimator.module_ = module.to(resolved).eval()
    estimator.device_, estimator.input_shape_ = resolved, input_shape
    estimator.history_ = document["history"]
    _restore_inputs(estimator, _schema(path, document), n_features)
    if document["classes"] is not None:
        estimator.classes_ = np.asarray(document["classes"])
    if labels is not None:
        if labels.dim() != 1 or labels.dtype != torch.int64:
            raise ModelFileError(f"{path}: tensor {TRAINING_LABELS} is not a list of integers")
        estimator.labels_ = labels.numpy()
    return estimator


# -- loading ---------------------------------------------------------------------------------
def restore_detector(detector, path, document: dict[str, Any], tensors, device):
    """Fill ``detector`` (made from the document's checked parameters) with the fitted
    state of the model file at ``path``, whose document and tensors were read; on
    ``device``."""
    input_shape = tuple(document["input_shape"])
    n_features = document["n_features_in"]
    detector.latent_dim_ = resolved_latent_dim(detector.latent_dim, n_features)
    prior = _rebuild(path, "prior", document["prior"], detector.latent_dim_)
    normal_classes = document.get("normal_classes")
    if normal_classes is not None:
        detector.normal_classes_ = np.asarray(normal_classes)
        try:
            check_prior(prior, document["prior"]["name"], len(normal_classes))
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
    architecture = _rebuild(path, "encoder", document["encoder"], None)
    n_reference = _reference_rows(tensors)
    n_anomalies = _reference_rows(tensors, "anomaly_reference")
    per_sample = document.get("sample_scaling", False)  # checked by check_detector_document
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
                detector, architecture, input_shape, n_features, n_reference, n_anomalies,
                per_sample,
            ).state_dict()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the encoder cannot be rebuilt: {exc}") from None
    _check_tensors_fit(path, expected, tensors)
    module = _build(
        detector, architecture, input_shape, n_features, n_reference, n_anomalies, per_sample
    )
    module.load_state_dict(tensors, strict=True)
    typical = module.sample_scaling
    if typical is not None and not (torch.isfinite(typical).all() and (typical[1] > 0).all()):
        raise ModelFileError(
            f"{path}: tensor sample_scaling must hold a finite mean and a positive "
            f"deviation, got {typical.tolist()}"
        )
    groups = document.get("reference_groups", 1)
    if not (is_int(groups) and 1 <= groups <= max(1, n_reference)):
        raise ModelFileError(
            f"{path}: field reference_groups must be absent, or an integer from 1 to the "
            f"{n_reference} reference rows, got {groups!r}"
        )
    module.reference_groups = groups
    candidates = document.get("input_candidates", 0)  # checked by check_detector_document
    if candidates and (not n_reference or groups > 1):
        raise ModelFileError(
            f"{path}: field input_candidates needs a reference searched whole, but the file "
            f"has {n_reference} reference rows in {groups} slices"
        )
    module.input_candidates = candidates
    calibration = _calibration_in_scoring_order(
        path, document["calibration"], module, prior
    )
    try:
        resolved = resolve_device(device)
    except ValueError as exc:
        raise ModelFileError(f"cannot load {path}: {exc}") from None
    restored = _restore_fitted_state(
        detector,
        module=module,
        prior=prior,
        device=resolved,
        input_shape=input_shape,
        calibration=calibration,
        offset=document["offset"],
        history=document["history"],
        normal_classes=normal_classes,
        schema=_schema(path, document),
        distributed=document.get("distributed"),
        n_neighbors=document.get("n_neighbors"),
    )
    value_range = document.get("input_range")
    if value_range is not None:
        restored.input_range_ = np.array([value_range["low"], value_range["high"]], dtype=float)
    return restored


def _schema(path, document: dict[str, Any]) -> TableSchema | None:
    """The table schema a file stores (format 3), or the one its named numeric columns
    imply; None for a model fitted on a bare array."""
    stored = document.get("columns")
    names = document["feature_names_in"]
    if stored is None:
        return None if names is None else TableSchema.numeric(names)
    try:
        schema = TableSchema.from_dict(stored)
    except ValueError as exc:
        raise ModelFileError(f"{path} is corrupted: field columns: {exc}") from None
    encoded = schema.encoded_names()
    if len(encoded) != document["n_features_in"] or (names is not None and names != encoded):
        raise ModelFileError(
            f"{path} is corrupted: field columns encodes {len(encoded)} inputs, but the "
            f"model has {document['n_features_in']} features"
        )
    return schema


def _build(
    detector,
    architecture,
    input_shape,
    n_features: int,
    n_reference: int,
    n_anomalies: int = 0,
    per_sample: bool = False,
):
    return build_detector_module(
        detector,
        architecture,
        input_shape,
        np.zeros(n_features, dtype=np.float32),  # placeholders: the stored
        np.ones(n_features, dtype=np.float32),  # buffers replace them
        n_reference,
        n_anomalies,
        sample_statistics(np.zeros((1, n_features)), input_shape) if per_sample else None,
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
        raise ModelPluginMissingError(
            str(path), kind, name, source, exc.available, _excluded_by(entry)
        ) from None
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


def _excluded_by(entry: dict[str, Any]) -> str | None:
    """Why a plugin that may well be installed did not load: AAE_ANOMALY_LOAD_PLUGINS
    leaves its distribution out (None when that is not the reason)."""
    wanted = distributions_to_load()
    distribution = entry["distribution"]
    if wanted is None or distribution is None or normalized_name(distribution) in wanted:
        return None
    loaded = ", ".join(wanted.values()) or "the built-ins"
    return f"{LOAD_PLUGINS_VARIABLE} leaves out (it loads only {loaded})"


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



def _restore_fitted_state(
    detector,
    *,
    module,
    prior,
    device: torch.device,
    input_shape: tuple[int, ...],
    calibration: ScoreCalibration,
    offset: float,
    history: dict[str, list[float]],
    normal_classes: list | None = None,
    schema: TableSchema | None = None,
    distributed: dict | None = None,
    n_neighbors: int | None = None,
):
    """Set the learned attributes a fit sets, from stored state (``n_neighbors``: what
    ``n_neighbors="auto"`` chose)."""
    detector.__dict__.pop("distributed_", None)
    if distributed is not None:
        detector.distributed_ = dict(distributed)
    if normal_classes is not None:
        detector.normal_classes_ = np.asarray(normal_classes)
    detector.module_ = module.to(device).eval()
    detector.latent_dim_ = module.latent_dim
    detector.prior_, detector.device_ = prior, device
    detector.input_shape_ = tuple(input_shape)
    # a file's feature names always come back as a schema (see _schema)
    _restore_inputs(detector, schema, int(np.prod(detector.input_shape_)))
    detector.calibration_, detector.offset_ = calibration, float(offset)
    detector.history_ = history
    detector.n_neighbors_ = (
        detector.n_neighbors if n_neighbors is None else n_neighbors
    )
    return detector



# -- validating the JSON document ------------------------------------------------------------
def check_detector_document(path, document: Any, known_params: set[str]) -> None:
    """Check every field of a detector's document, so that a damaged or hand-edited file
    fails here with the field's name rather than later inside torch."""
    version = document["format_version"]

    def fail(field: str, expected: str) -> ModelFileError:
        return field_error(path, document, field, expected)

    shape, n_features = _check_common_fields(path, document, known_params, ("prior", "encoder"))
    calibration = document.get("calibration")
    if not (
        isinstance(calibration, dict)
        and set(calibration) == {"center", "spread", "weights"}
        and all(is_number_map(calibration[k]) for k in calibration)
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
        and (all(is_int(c) for c in classes) or all(isinstance(c, str) for c in classes))
        and len(set(classes)) == len(classes)
        and classes == sorted(classes)
    ):
        raise fail("normal_classes", "a sorted list of distinct integers or strings")
    per_sample = document.get("sample_scaling", False)
    if not (isinstance(per_sample, bool) and (version >= 5 or not per_sample)):
        raise fail("sample_scaling", "absent, or true or false (true from format version 5)")
    chosen = document.get("n_neighbors")
    if document["params"].get("n_neighbors") == "auto":
        if not (version >= 5 and is_int(chosen) and chosen > 0):
            raise fail("n_neighbors", "the positive number of neighbours n_neighbors='auto' chose")
    elif chosen is not None:
        raise fail("n_neighbors", "absent when the parameter n_neighbors is a number")
    candidates = document.get("input_candidates", 0)
    if not (is_int(candidates) and 0 <= candidates <= 1024 and (version >= 6 or not candidates)):
        raise fail("input_candidates", "absent, or an integer from 1 to 1024 (format version 6)")
    distributed = document.get("distributed")
    if distributed is not None and not (
        isinstance(distributed, dict)
        and set(distributed) == {"world_size", "backend"}
        and isinstance(distributed["world_size"], int)
        and distributed["world_size"] >= 2
        and isinstance(distributed["backend"], str)
    ):
        raise fail("distributed", "absent, or an object with world_size (2 or more) and backend")
    value_range = document.get("input_range")
    if value_range is not None and not (
        len(shape) > 1
        and isinstance(value_range, dict)
        and set(value_range) == {"low", "high"}
        and all(
            isinstance(value_range[k], list)
            and len(value_range[k]) == shape[0]
            and all(is_number(v) for v in value_range[k])
            for k in ("low", "high")
        )
        and all(lo <= hi for lo, hi in zip(value_range["low"], value_range["high"], strict=True))
    ):
        raise fail(
            "input_range",
            f"absent, or for an image model an object of {shape[0]} smallest (low) and "
            "largest (high) training values, one per channel",
        )
    if not is_number(document.get("offset")):
        raise fail("offset", "a number")


def _check_common_fields(path, document: Any, known_params: set[str], plugins: tuple[str, ...]):
    """The fields every estimator's document has: parameters, plugins, the input shape,
    the feature names and the history; returns the input shape and its size."""

    def fail(field: str, expected: str) -> ModelFileError:
        return field_error(path, document, field, expected)

    params = document.get("params")
    known = known_params
    if not isinstance(params, dict) or not set(params) <= known:
        raise fail("params", f"an object with some of the keys {sorted(known)}")
    if params.get("input_shape") is not None:
        if not (
            isinstance(params["input_shape"], list)
            and all(is_int(s) and s > 0 for s in params["input_shape"])
        ):
            raise fail("params", "an object whose input_shape is null or positive integers")
        params["input_shape"] = tuple(params["input_shape"])
    for kind in plugins:
        entry = document.get(kind)
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("options"), dict)
            and isinstance(entry.get("plugin"), str)
            and all(is_str_or_none(entry.get(k, 0)) for k in ("distribution", "version"))
        ):
            raise fail(kind, "an object with name, options, plugin, distribution and version")
    shape = document.get("input_shape")
    if not (isinstance(shape, list) and shape and all(is_int(s) and s > 0 for s in shape)):
        raise fail("input_shape", "a list of positive integers")
    n_features = document.get("n_features_in")
    if not is_int(n_features) or n_features != math.prod(shape):
        raise fail("n_features_in", f"the size of input_shape, {math.prod(shape)}")
    names = document.get("feature_names_in")
    if names is not None and not (
        isinstance(names, list)
        and len(names) == n_features
        and all(isinstance(n, str) for n in names)
    ):
        raise fail("feature_names_in", f"null or a list of {n_features} strings")
    history = document.get("history")
    if not (
        isinstance(history, dict)
        and all(isinstance(v, list) and all(is_number(x) for x in v) for v in history.values())
    ):
        raise fail("history", "an object of lists of numbers")
    return shape, n_features
