"""Reading a model file back into an estimator: :func:`aae_anomaly.load`, and
:func:`load_model_bytes` for a model file's contents."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import ModelFileError
from ..io.modelfile import read_model_bytes, read_model_file
from .detector import AAEDetector
from .persistence import (
    FAMILY,
    check_detector_document,
    check_family_document,
    restore_detector,
    restore_family,
)
from .validation import check_detector_params


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Read a model file written by ``save`` (of an :class:`AAEDetector`, a
    ``SupervisedAAE``, an ``AAEClassifier`` or an ``AAEClustering``) onto ``device``
    (``"cpu"``, ``"auto"`` for CUDA when present, or any torch device string).

    On CPU the loaded estimator's outputs are bit-identical to the saved one's.
    """
    document, tensors = read_model_file(path)
    return _estimator(path, document, tensors, device)


def load_model_bytes(data: bytes, name: str = "<bytes>", device: str | torch.device = "cpu"):
    """:func:`load_model` for the contents of a model file (``open(path, "rb").read()``),
    with the same checks, the checksum included; ``name`` names them in errors. This is
    how a model travels to other processes or machines: as the file's bytes, which hold
    no pickle and run no code when loaded."""
    document, tensors = read_model_bytes(data, name)
    return _estimator(name, document, tensors, device)


def _estimator(path, document: dict[str, Any], tensors, device):
    if "estimator" in document:
        return _load_family(path, document, tensors, device)
    return _detector(path, document, tensors, device)


def _detector(path, document: dict[str, Any], tensors, device) -> AAEDetector:
    check_detector_document(path, document, set(AAEDetector().get_params()))
    # files written before ``scaling`` existed were scaled per feature, images included
    params = {"scaling": "per_feature", **document["params"]}
    try:
        detector = AAEDetector(**params)
        check_detector_params(detector)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} holds invalid estimator parameters: {exc}") from None
    return restore_detector(detector, path, document, tensors, device)


def _load_family(path, document, tensors, device):
    from . import family

    name = document["estimator"]
    if name not in FAMILY:
        raise ModelFileError(
            f"{path} is corrupted: field estimator: one of {', '.join(FAMILY)}, got {name!r}"
        )
    cls = getattr(family, name)
    check_family_document(path, document, set(cls().get_params()))
    try:
        estimator = cls(**document["params"])
        estimator._check_params()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} holds invalid estimator parameters: {exc}") from None
    return restore_family(estimator, path, document, tensors, device)
