"""Building what a fit trains: the prior and encoder plugins, and the detector's networks.

``fit`` and model-file loading both build through here, so a stored state dict always
matches what is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..engine.model import AAEModule, Discriminator
from ..engine.training import TrainingConfig
from ..errors import PluginError
from ..plugin_system.architectures import Architecture
from ..plugin_system.manager import get_plugin_manager
from ..plugin_system.priors import Prior


def create_architecture(name: str, options: dict[str, Any]) -> Architecture:
    """Build the encoder architecture plugin ``name`` with ``options``."""
    architecture = get_plugin_manager().create("encoder", name, **options)
    check_built("encoder", name, architecture, Architecture)
    return architecture


def architecture_and_input_shape(
    estimator, image_shape: tuple[int, ...] | None, n_features: int
) -> tuple[Architecture, tuple[int, ...]]:
    """The estimator's encoder architecture, and the per-sample input shape: that of the
    images in ``X``, else the ``input_shape`` parameter (checked against ``n_features``),
    else the architecture's inference from ``n_features``."""
    architecture = create_architecture(estimator.encoder, estimator.encoder_params or {})
    input_shape = tuple(image_shape or estimator.input_shape or ())
    if input_shape:
        architecture.check_input_shape(input_shape, n_features)
    else:
        input_shape = architecture.infer_input_shape(n_features)
    return architecture, input_shape


def create_prior(name: str, latent_dim: int, options: dict[str, Any]) -> Prior:
    """Build the prior plugin ``name`` over ``latent_dim``-dimensional codes."""
    prior = get_plugin_manager().create("prior", name, latent_dim, **options)
    check_built("prior", name, prior, Prior)
    return prior


def check_built(kind: str, name: str, built: Any, expected: type) -> None:
    if isinstance(built, expected):
        return
    registration = get_plugin_manager().get(kind, name)
    raise PluginError(
        f"{kind} {name!r} ({registration.source}) returned a {type(built).__name__}, "
        f"not an aae_anomaly {expected.__name__}; report this to the plugin's authors"
    )



def resolved_latent_dim(latent_dim, n_features: int) -> int:
    """``"auto"``: half the number of features, between 2 and 8 (a code narrower than the
    input, so the decoder cannot simply copy it)."""
    if latent_dim == "auto":
        return int(min(8, max(2, n_features // 2)))
    return latent_dim


def build_detector_module(
    estimator,
    architecture: Architecture,
    input_shape,
    center: np.ndarray,
    scale: np.ndarray,
    n_reference: int = 0,
    n_anomaly_reference: int = 0,
    sample_scaling: np.ndarray | None = None,
) -> AAEModule:
    """The untrained networks of a fitted-or-loaded ``AAEDetector`` (its ``latent_dim_``
    and ``normal_classes_`` set); ``sample_scaling`` turns on per-sample scaling."""
    latent_dim = estimator.latent_dim_
    code_size = latent_dim * (2 if estimator.posterior == "gaussian" else 1)
    encoder, decoder = architecture.build(input_shape, latent_dim, code_size)
    n_classes = len(getattr(estimator, "normal_classes_", ()))
    return AAEModule(
        encoder,
        decoder,
        Discriminator(latent_dim + n_classes),
        input_shape,
        latent_dim,
        estimator.posterior,
        estimator.reconstruction_loss,
        torch.from_numpy(center),
        torch.from_numpy(scale),
        n_reference,
        n_classes,
        n_anomaly_reference,
        None if sample_scaling is None else torch.from_numpy(sample_scaling),
    )


def training_config(estimator, config: type = TrainingConfig, **extra) -> TrainingConfig:
    """The training settings every AAE estimator takes, as a ``config`` (a
    :class:`~aae_anomaly.engine.training.TrainingConfig` or a subclass) with ``extra``."""
    return config(
        epochs=estimator.epochs,
        batch_size=estimator.batch_size,
        lr_autoencoder=estimator.lr_autoencoder,
        lr_discriminator=estimator.lr_discriminator,
        lr_generator=estimator.lr_generator,
        **extra,
    )
