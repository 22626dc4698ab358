"""What an encoder architecture is: a builder of an encoder/decoder pair for one kind of
input (a feature vector, an image, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import nn


class Architecture(ABC):
    """Builds the encoder q(z|x) and decoder p(x|z) for inputs of one shape.

    The encoder maps a batch of shape ``(n, *input_shape)`` to ``(n, code_size)``;
    ``code_size`` is ``latent_dim`` for a deterministic posterior and ``2 * latent_dim``
    (mean, log-variance) for a Gaussian one. The decoder maps ``(n, latent_dim)`` back to
    ``(n, *input_shape)``; its output is unbounded (logits when the loss is bce).
    """

    @abstractmethod
    def infer_input_shape(self, n_features: int) -> tuple[int, ...]:
        """The per-sample shape for flat rows of ``n_features`` values, or ValueError."""

    def check_input_shape(self, input_shape: tuple[int, ...], n_features: int) -> None:
        """Raise ValueError if rows of ``n_features`` values cannot take ``input_shape``."""
        size = 1
        for extent in input_shape:
            size *= extent
        if size != n_features:
            raise ValueError(
                f"input_shape {tuple(input_shape)} holds {size} values but the data has "
                f"{n_features} features"
            )

    @abstractmethod
    def build(
        self, input_shape: tuple[int, ...], latent_dim: int, code_size: int
    ) -> tuple[nn.Module, nn.Module]:
        """Return ``(encoder, decoder)``."""

    def options(self) -> dict[str, Any]:
        """The keyword options that rebuild this architecture (stored in model files)."""
        return {}
