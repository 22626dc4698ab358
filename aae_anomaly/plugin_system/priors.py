"""What a latent prior is: something the regularization phase can sample from, and whose
log-density, when it has one, the scorer uses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from ..errors import DensityUnavailableError


class Prior(ABC):
    """A distribution p(z) over ``latent_dim``-dimensional codes.

    Subclasses implement :meth:`sample` and, where a closed form exists, :meth:`log_prob`
    (and set ``has_density = True``). A prior that can sample one region per class sets
    ``n_classes`` and honours ``labels`` in :meth:`sample`.
    """

    #: whether :meth:`log_prob` gives the exact log-density
    has_density: bool = False
    #: number of classes :meth:`sample` can condition on; ``None`` if it cannot
    n_classes: int | None = None

    def __init__(self, latent_dim: int):
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = latent_dim

    @abstractmethod
    def sample(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Draw ``n`` codes, shape ``(n, latent_dim)``, on ``generator.device``.

        ``labels`` (shape ``(n,)``, integers in ``[0, n_classes)``) asks for codes from
        each row's class region.
        """

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of each row of ``z``, shape ``(n,)``."""
        raise DensityUnavailableError(
            f"the {type(self).__name__} prior can be sampled from but has no closed-form "
            "density; its codes are scored by reconstruction and discriminator alone"
        )

    def options(self) -> dict[str, Any]:
        """The keyword options that rebuild this prior (stored in model files)."""
        return {}

    def _check_labels(self, n: int, labels: torch.Tensor | None) -> None:
        if labels is None:
            return
        if self.n_classes is None:
            raise ValueError(f"the {type(self).__name__} prior cannot sample by class label")
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes}), got {labels.unique()}")
