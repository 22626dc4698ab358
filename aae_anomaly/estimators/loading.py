"""Reading a model file back into an estimator: :func:`aae_anomaly.load`."""

from __future__ import annotations

import os

import torch

from ..errors import ModelFileError
from ..io.modelfile import read_model_file
from .detector import AAEDetector
from .persistence import check_detector_document, restore_detector
from .validation import check_detector_params


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> AAEDetector:
    """Read a model file written by :meth:`AAEDetector.save` onto ``device`` (``"cpu"``,
    ``"auto"`` for CUDA when present, or any torch device string).

    On CPU the loaded detector's scores are bit-identical to the saved one's.
    """
    document, tensors = read_model_file(path)
    check_detector_document(path, document, set(AAEDetector().get_params()))
    # files written before ``scaling`` existed were scaled per feature, images included
    params = {"scaling": "per_feature", **document["params"]}
    try:
        detector = AAEDetector(**params)
        check_detector_params(detector)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} holds invalid estimator parameters: {exc}") from None
    return restore_detector(detector, path, document, tensors, device)
