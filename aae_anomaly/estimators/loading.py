"""Reading a model file back into an estimator: :func:`aae_anomaly.load`."""

from __future__ import annotations

import os

import torch

from ..errors import ModelFileError
from ..io.modelfile import read_model_file
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
    if "estimator" in document:
        return _load_family(path, document, tensors, device)
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
