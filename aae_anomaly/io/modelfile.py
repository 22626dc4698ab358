"""Model files: one fitted estimator in one safetensors file.

The tensors are the networks' state dict. Everything else a model needs sits in the
safetensors header's ``__metadata__`` under the key ``"aae_anomaly"``, as one JSON
document: the format name and version, the library and torch versions, a SHA-256 of the
tensors, and the estimator's own fields (written and checked by
:mod:`aae_anomaly.estimators.persistence`).

This module knows the container, not the estimators: it writes a document and tensors
atomically, and reads them back checked (the format, its version, the checksum). Nothing
in a file is pickled and reading one runs no code. Every problem with a file is raised as
:class:`~aae_anomaly.errors.ModelFileError` naming the file. See ``docs/model-files.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as deserialize_tensors
from safetensors.torch import save as serialize_tensors

from ..errors import ModelFileError
from .atomic import atomic_write_bytes

FORMAT_NAME = "aae-anomaly-model"
# Version 2 adds ``normal_classes`` (a label-conditioned model), 3 a table's ``columns``,
# 4 the class-and-style family's files (``estimator``), 5 per-sample scaling
# (``sample_scaling``), 6 the inputs score component (``input_candidates``); a file is
# written at the lowest version that holds it, so that older readers load what they can
# read.
FORMAT_VERSION = 6
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


# -- writing ---------------------------------------------------------------------------------
def write_model_file(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], document: dict[str, Any]
) -> None:
    """Write ``tensors`` and ``document`` (to which the format name and the tensors'
    checksum are added) to ``path`` atomically: a reader (or a crash) sees the previous
    file or the complete new one, never a part."""
    target = Path(path)
    if not target.parent.is_dir():
        raise ModelFileError(f"cannot save the model to {path}: no such directory {target.parent}")
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    document = {"format": FORMAT_NAME, **document, "tensors_sha256": tensor_digest(tensors)}
    try:
        header = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"cannot save the model to {path}: {exc}") from None
    atomic_write_bytes(target, serialize_tensors(tensors, metadata={METADATA_KEY: header}))


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
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
    """The checked JSON document and the tensor list of a model file."""
    document, tensors = _open(path, load_tensors=False)
    return ModelHeader(str(path), document, tuple(tensors))


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked JSON document and the tensors (on the CPU) of a model file, whose
    checksum is verified."""
    document, tensors = _open(path, load_tensors=True)
    _check_digest(path, document, tensors)
    return document, tensors


def read_model_bytes(
    data: bytes, name: str = "<bytes>"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """What :func:`read_model_file` gives, from a model file's contents (read elsewhere,
    or sent over a network), with the same checks; ``name`` names them in errors (the
    file they came from, say)."""
    try:
        tensors = deserialize_tensors(bytes(data))
        # safetensors has validated the header above; its metadata is not returned, so
        # it is read here: an 8-byte little-endian length, then that much JSON
        (size,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(bytes(data[8 : 8 + size])).get("__metadata__") or {}
    except (SafetensorError, ValueError, struct.error, TypeError) as exc:
        raise ModelFileError(
            f"{name} is not an aae-anomaly model file (not a readable safetensors file: "
            f"{_one_line(exc)})"
        ) from None
    document = _document(name, metadata)
    _check_digest(name, document, tensors)
    return document, tensors


def _check_digest(path, document: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    if tensor_digest(tensors) != document["tensors_sha256"]:
        raise ModelFileError(f"{path} is corrupted: its weights do not match their checksum")


def field_error(path, document: dict[str, Any], field: str, expected: str) -> ModelFileError:
    """The error for a document ``field`` that is not what a model needs."""
    value = document.get(field, "<missing>")
    shown = repr(value) if len(repr(value)) < 60 else type(value).__name__
    return ModelFileError(f"{path} is corrupted: field {field!r} should be {expected}, got {shown}")


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
    return _document(path, metadata), tensors


def _document(path, metadata: dict[str, str]) -> dict[str, Any]:
    """The checked JSON document in a model file's safetensors metadata."""
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
    _check_container(path, document)
    return document


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_container(path, document: Any) -> None:
    """The fields every model file has, whatever estimator it holds."""
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not an aae-anomaly model file (unknown format)")
    version = document.get("format_version")
    if not is_int(version) or version < 1:
        raise ModelFileError(f"{path} is corrupted: format_version is {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model-file format version {version}, newer than this aae-anomaly "
            f"reads ({FORMAT_VERSION}); upgrade aae-anomaly to load it"
        )
    for field in ("library_version", "torch_version", "tensors_sha256"):
        if not isinstance(document.get(field), str):
            raise field_error(path, document, field, "a string")


# -- JSON value checks -----------------------------------------------------------------------
def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (JSON allows NaN, Infinity and integers too large for a float,
    none of which a model can use)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def is_number_map(value: Any) -> bool:
    return isinstance(value, dict) and all(is_number(v) for v in value.values())
