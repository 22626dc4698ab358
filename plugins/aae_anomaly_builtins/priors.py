"""Built-in priors: gaussian, mixture, swiss_roll, uniform.

For codes of more than two dimensions, the 2-D shapes of the paper (mixture, swiss roll)
are repeated in each pair of coordinates (0, 1), (2, 3), ...; a last, odd coordinate is
Gaussian. Conditioned on a class label, every pair uses that class's component or segment.
"""

from __future__ import annotations

import math

import torch

from aae_anomaly import Prior, hookimpl

LOG_2PI = math.log(2 * math.pi)


def _gaussian_log_prob(x: torch.Tensor, mean, std: float) -> torch.Tensor:
    return -0.5 * ((x - mean) / std).square() - math.log(std) - 0.5 * LOG_2PI


def _randn(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, d, generator=generator, device=generator.device)


class GaussianPrior(Prior):
    """Isotropic Gaussian N(0, std^2 I)."""

    has_density = True

    def __init__(self, latent_dim: int, std: float = 1.0):
        super().__init__(latent_dim)
        if not std > 0:
            raise ValueError(f"std must be positive, got {std!r}")
        self.std = float(std)

    def sample(self, n, generator, labels=None):
        self._check_labels(n, labels)
        return _randn(n, self.latent_dim, generator) * self.std

    def log_prob(self, z):
        return _gaussian_log_prob(z, 0.0, self.std).sum(dim=1)

    def options(self):
        return {"std": self.std}


class _PairedPrior(Prior):
    """A 2-D shape repeated in each coordinate pair; a last odd coordinate is Gaussian."""

    odd_std = 0.5

    def __init__(self, latent_dim: int, n_classes: int):
        super().__init__(latent_dim)
        if not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"the number of classes must be a positive integer, got {n_classes}")
        self.n_classes = n_classes
        self.n_pairs = latent_dim // 2

    def _labels(self, n, generator, labels):
        self._check_labels(n, labels)
        if labels is not None:
            return labels.to(generator.device).long()
        return torch.randint(
            self.n_classes, (n,), generator=generator, device=generator.device
        )

    def _with_odd_coordinate(self, pairs: torch.Tensor, generator) -> torch.Tensor:
        n = len(pairs)
        z = pairs.reshape(n, 2 * self.n_pairs)
        if self.latent_dim % 2:
            z = torch.cat([z, _randn(n, 1, generator) * self.odd_std], dim=1)
        return z


class MixturePrior(_PairedPrior):
    """k Gaussians on a circle, each stretched along its radius, as in the paper's figures.

    Component k sits at angle 2*pi*k/n_components and distance ``radius`` from the origin,
    with standard deviation ``radial_std`` along the radius and ``tangential_std`` across.
    """

    has_density = True

    def __init__(
        self,
        latent_dim: int,
        n_components: int = 10,
        radius: float = 2.0,
        radial_std: float = 0.5,
        tangential_std: float = 0.1,
    ):
        super().__init__(latent_dim, n_components)
        if latent_dim < 2:
            raise ValueError("the mixture prior needs latent_dim >= 2")
        if not (radius > 0 and radial_std > 0 and tangential_std > 0):
            raise ValueError("radius, radial_std and tangential_std must be positive")
        self.n_components = n_components
        self.radius, self.radial_std, self.tangential_std = radius, radial_std, tangential_std

    def _angles(self, device) -> torch.Tensor:
        return torch.arange(self.n_components, device=device) * (2 * math.pi / self.n_components)

    def sample(self, n, generator, labels=None):
        k = self._labels(n, generator, labels)
        angle = self._angles(generator.device)[k].unsqueeze(1)  # (n, 1)
        radial = self.radius + _randn(n, self.n_pairs, generator) * self.radial_std
        across = _randn(n, self.n_pairs, generator) * self.tangential_std
        x = radial * torch.cos(angle) - across * torch.sin(angle)
        y = radial * torch.sin(angle) + across * torch.cos(angle)
        return self._with_odd_coordinate(torch.stack([x, y], dim=2), generator)

    def log_prob_per_component(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z | k) + log p(k) for each component, shape ``(n, n_components)``."""
        pairs = z[:, : 2 * self.n_pairs].reshape(len(z), self.n_pairs, 1, 2)
        angles = self._angles(z.device)
        cos, sin = torch.cos(angles), torch.sin(angles)  # (k,)
        along = pairs[..., 0] * cos + pairs[..., 1] * sin  # (n, pairs, k)
        across = -pairs[..., 0] * sin + pairs[..., 1] * cos
        log_p = (
            _gaussian_log_prob(along, self.radius, self.radial_std)
            + _gaussian_log_prob(across, 0.0, self.tangential_std)
        ).sum(dim=1)
        if self.latent_dim % 2:
            log_p = log_p + _gaussian_log_prob(z[:, -1:], 0.0, self.odd_std)
        return log_p - math.log(self.n_components)

    def log_prob(self, z):
        return torch.logsumexp(self.log_prob_per_component(z), dim=1)

    def options(self):
        return {
            "n_components": self.n_components,
            "radius": self.radius,
            "radial_std": self.radial_std,
            "tangential_std": self.tangential_std,
        }


class SwissRollPrior(_PairedPrior):
    """A swiss roll: u ~ U(0, 1), radius ``scale * sqrt(u)``, angle ``turns * 2 pi sqrt(u)``.

    Class k samples u from the k-th of ``n_segments`` equal slices of [0, 1]. The roll has
    no closed-form density.
    """

    has_density = False

    def __init__(
        self,
        latent_dim: int,
        n_segments: int = 10,
        scale: float = 3.0,
        turns: float = 2.0,
        noise: float = 0.05,
    ):
        super().__init__(latent_dim, n_segments)
        if latent_dim < 2:
            raise ValueError("the swiss_roll prior needs latent_dim >= 2")
        if not (scale > 0 and turns > 0 and noise >= 0):
            raise ValueError("scale and turns must be positive and noise non-negative")
        self.n_segments, self.scale, self.turns, self.noise = n_segments, scale, turns, noise

    def sample(self, n, generator, labels=None):
        k = self._labels(n, generator, labels).unsqueeze(1).float()
        u = (k + torch.rand(n, self.n_pairs, generator=generator, device=generator.device))
        root = torch.sqrt(u / self.n_segments)
        radius, angle = self.scale * root, self.turns * 2 * math.pi * root
        pairs = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=2)
        if self.noise:
            pairs = pairs + _randn(n, 2 * self.n_pairs, generator).reshape(pairs.shape) * self.noise
        return self._with_odd_coordinate(pairs, generator)

    def options(self):
        return {
            "n_segments": self.n_segments,
            "scale": self.scale,
            "turns": self.turns,
            "noise": self.noise,
        }


class UniformPrior(Prior):
    """Uniform on the box [-half_width, half_width]^latent_dim."""

    has_density = True

    def __init__(self, latent_dim: int, half_width: float = 2.0):
        super().__init__(latent_dim)
        if not half_width > 0:
            raise ValueError(f"half_width must be positive, got {half_width!r}")
        self.half_width = float(half_width)

    def sample(self, n, generator, labels=None):
        self._check_labels(n, labels)
        u = torch.rand(n, self.latent_dim, generator=generator, device=generator.device)
        return (2 * u - 1) * self.half_width

    def log_prob(self, z):
        inside = (z.abs() <= self.half_width).all(dim=1)
        log_volume = self.latent_dim * math.log(2 * self.half_width)
        return torch.where(inside, -log_volume, -math.inf).to(z.dtype)

    def options(self):
        return {"half_width": self.half_width}


@hookimpl
def register_priors(register):
    register("gaussian", GaussianPrior)
    register("mixture", MixturePrior)
    register("swiss_roll", SwissRollPrior)
    register("uniform", UniformPrior)
