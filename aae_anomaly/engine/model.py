"""The three networks of an AAE and the input scaling they share."""

from __future__ import annotations

import torch
from torch import nn

RECONSTRUCTION_LOSSES = ("mse", "l1", "bce")
POSTERIORS = ("deterministic", "gaussian")


class Discriminator(nn.Module):
    """D(z): the logit that a code was drawn from the prior rather than the encoder."""

    def __init__(self, latent_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


def standardize_samples(rows: torch.Tensor, channels: int) -> torch.Tensor:
    """Each channel of each flat row minus its own mean, divided by its own standard
    deviation (a constant channel becomes zeros): per-sample scaling's first step. Each
    row's statistics come from that row alone, so a row's value never depends on the rows
    batched with it."""
    grouped = rows.reshape(len(rows), channels, rows.shape[1] // channels)
    grouped = grouped - grouped.mean(dim=2, keepdim=True)
    spread = grouped.std(dim=2, correction=0, keepdim=True)
    grouped = grouped / torch.where(spread > 0, spread, torch.ones_like(spread))
    return grouped.reshape(rows.shape)


class ScaledInput:
    """The input scaling a module keeps as buffers ``center`` and ``scale``, with its
    ``input_shape`` and reconstruction ``loss``: shared by every AAE network family."""

    center: torch.Tensor
    scale: torch.Tensor
    sample_scaling: torch.Tensor | None  # per-sample scaling's typical (mean, deviation)
    input_shape: tuple[int, ...]
    loss: str

    def scale_input(self, rows: torch.Tensor) -> torch.Tensor:
        if self.sample_scaling is not None:  # contrast normalization first
            rows = standardize_samples(rows, self.sample_scaling.shape[1])
        x = (rows - self.center) / self.scale
        return x.reshape(len(rows), *self.input_shape)

    def unscale_output(self, output: torch.Tensor) -> torch.Tensor:
        """Decoder output back to flat rows in the user's units (with per-sample scaling,
        in the units of a typical training sample: its own mean and deviation are gone)."""
        flat = output.reshape(len(output), -1)
        if self.loss == "bce":
            flat = torch.sigmoid(flat)
        flat = flat * self.scale + self.center
        typical = self.sample_scaling
        if typical is not None:
            channels = typical.shape[1]
            grouped = flat.reshape(len(flat), channels, flat.shape[1] // channels)
            flat = (grouped * typical[1, :, None] + typical[0, :, None]).reshape(len(flat), -1)
        return flat


class AAEModule(ScaledInput, nn.Module):
    """Encoder, decoder and discriminator, with the input scaling kept as buffers.

    Rows arrive flat, shape ``(n, n_features)``, in the user's units; :meth:`scale_input`
    maps them to the network's units (standardized, or to the training range's [0, 1] for
    the bce loss) and
    reshapes them to ``(n, *input_shape)``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        discriminator: nn.Module,
        input_shape: tuple[int, ...],
        latent_dim: int,
        posterior: str,
        loss: str,
        center: torch.Tensor,
        scale: torch.Tensor,
        n_reference: int = 0,
        n_classes: int = 0,
        n_anomaly_reference: int = 0,
        sample_scaling: torch.Tensor | None = None,
    ):
        super().__init__()
        self.encoder, self.decoder, self.discriminator = encoder, decoder, discriminator
        # Label-conditioned regularization: the discriminator takes the code followed by a
        # one-hot class vector of this many entries (0: unconditioned, the code alone).
        self.n_classes = n_classes
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.posterior = posterior
        self.loss = loss
        self.register_buffer("center", center.to(torch.float32))
        self.register_buffer("scale", scale.to(torch.float32))
        # Per-sample scaling: the typical training sample's (mean, deviation) per channel,
        # shape (2, channels), present only when each channel of each sample is
        # standardized by its own statistics before center and scale.
        self.register_buffer(
            "sample_scaling",
            None if sample_scaling is None else sample_scaling.to(torch.float32),
        )
        # Joint coordinates (code, residual) of normal training rows, for the neighbors
        # score component; filled by fit, empty when that component is off.
        n_features = int(center.numel())
        self.register_buffer("reference", torch.zeros(n_reference, latent_dim + n_features))
        # The neighbors component averages the distance to the nearest rows of this many
        # disjoint slices of the reference (more than 1 only for contaminated training).
        self.reference_groups = 1
        # The inputs component measures the input-space distances among this many nearest
        # reference rows of each row (0: off; set by a clean fit, see scoring.components).
        self.input_candidates = 0
        # Joint coordinates of known anomalies (semi-supervised detection), which raise the
        # neighbors component near them; None (and not stored) when there are none.
        self.register_buffer(
            "anomaly_reference",
            torch.zeros(n_anomaly_reference, latent_dim + n_features)
            if n_anomaly_reference
            else None,
        )

    def encode(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Codes of scaled inputs: the posterior mean, or a sample when ``generator`` is
        given and the posterior is Gaussian (the reparameterization trick)."""
        return self.posterior_code(self.encoder(x), generator)

    def posterior_code(
        self, code: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """:meth:`encode`'s code from the encoder's output ``code`` (for a training loop
        that runs the encoder through a wrapper)."""
        if self.posterior == "deterministic":
            return code
        mean, log_var = code.chunk(2, dim=-1)
        if generator is None:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + noise * torch.exp(0.5 * log_var.clamp(-20.0, 20.0))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def probe(self, x: torch.Tensor, discriminator: bool = True) -> None:
        """Run every network once on scaled inputs ``x`` (for counting FLOPs); the encoder
        and decoder only with ``discriminator=False``."""
        z = self.encode(x)
        self.decode(z)
        if discriminator:
            # a label-conditioned discriminator also reads a one-hot class vector
            self.discriminator(torch.cat([z, z.new_zeros(len(z), self.n_classes)], dim=1))

    def joint_coordinates(
        self, x: torch.Tensor, z: torch.Tensor, output: torch.Tensor
    ) -> torch.Tensor:
        """``(code, residual)`` per sample: where the code puts a sample on the learned
        manifold, and what the decoder leaves unexplained (scaled units)."""
        residual = (x - self.reconstructed(output)).reshape(len(x), -1)
        return torch.cat([z, residual], dim=1)

    def inputs_of(self, joint: torch.Tensor) -> torch.Tensor:
        """The scaled inputs (flat) of samples given in :meth:`joint_coordinates`: the
        residual plus the code's reconstruction."""
        output = self.decode(joint[:, : self.latent_dim])
        return joint[:, self.latent_dim :] + self.reconstructed(output).reshape(len(joint), -1)

    def reconstructed(self, output: torch.Tensor) -> torch.Tensor:
        """The decoder's ``output`` in the scaled inputs' units (a probability for bce)."""
        return torch.sigmoid(output) if self.loss == "bce" else output


def per_sample_reconstruction_error(
    output: torch.Tensor, target: torch.Tensor, loss: str
) -> torch.Tensor:
    """Mean reconstruction loss of each sample, shape ``(n,)``."""
    if loss == "mse":
        error = (output - target).square()
    elif loss == "l1":
        error = (output - target).abs()
    elif loss == "bce":
        # Rows outside the training range land outside [0, 1], where cross-entropy is
        # undefined: clip the target, and add the squared distance by which it was clipped
        # so that such rows still count as far off (on training rows the term is zero).
        inside = target.clamp(0.0, 1.0)
        error = nn.functional.binary_cross_entropy_with_logits(output, inside, reduction="none")
        error = error + (target - inside).square()
    else:
        raise ValueError(f"unknown reconstruction loss {loss!r}; expected {RECONSTRUCTION_LOSSES}")
    return error.reshape(len(error), -1).mean(dim=1)


def mean_reconstruction_error(
    output: torch.Tensor, target: torch.Tensor, loss: str
) -> torch.Tensor:
    """Mean of :func:`per_sample_reconstruction_error` over the batch, in one fused loss
    kernel for mse and l1 (every sample has as many elements, so the mean of the
    per-sample means is the mean over all elements)."""
    if loss == "mse":
        return nn.functional.mse_loss(output, target)
    if loss == "l1":
        return nn.functional.l1_loss(output, target)
    return per_sample_reconstruction_error(output, target, loss).mean()
