"""The AAE training loop (Makhzani et al., 2015, section 2).

Each mini-batch has two phases:

1. reconstruction: encoder and decoder take a step on the reconstruction loss;
2. regularization: the discriminator takes a step at telling prior samples (real) from the
   encoder's codes (fake), then the encoder takes a step at making the discriminator call
   its codes real.

Three Adam optimizers, one per step, each with its own learning rate. The data stay on the
device as one tensor and batches are taken by index; losses are summed on the device and
read back once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import TrainingDivergedError
from ..priors import Prior
from .model import AAEModule, mean_reconstruction_error

HISTORY_KEYS = ("reconstruction", "discriminator", "generator", "discriminator_accuracy")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int
    batch_size: int
    lr_autoencoder: float
    lr_discriminator: float
    lr_generator: float


EpochCallback = Callable[[int, dict[str, float]], None]


def train(
    module: AAEModule,
    prior: Prior,
    rows: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, list[float]]:
    """Fit ``module`` on ``rows`` (flat, in the user's units, on the module's device).

    Returns the per-epoch history: mean reconstruction, discriminator and generator losses
    and the discriminator's accuracy.
    """
    encoder, decoder, discriminator = module.encoder, module.decoder, module.discriminator
    # the fused kernel updates all of an optimizer's tensors in one pass instead of a
    # dozen small element-wise operations per parameter
    fused = {"fused": True} if rows.device.type in ("cpu", "cuda") else {}
    autoencoder_opt = torch.optim.Adam(
        [*encoder.parameters(), *decoder.parameters()], lr=config.lr_autoencoder, **fused
    )
    # beta1 = 0.5 is the usual choice for adversarial steps: less momentum, less oscillation
    discriminator_opt = torch.optim.Adam(
        discriminator.parameters(), lr=config.lr_discriminator, betas=(0.5, 0.999), **fused
    )
    generator_opt = torch.optim.Adam(
        encoder.parameters(), lr=config.lr_generator, betas=(0.5, 0.999), **fused
    )
    bce = nn.functional.binary_cross_entropy_with_logits

    x_all = module.scale_input(rows)
    n = len(x_all)
    batch_size = max(1, min(config.batch_size, n))
    device = x_all.device
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    # the discriminator's targets, made once: batch_size ones (prior samples, "real"),
    # then batch_size zeros (codes, "fake"); a short last batch takes a slice of each
    ones = torch.ones(batch_size, device=device)
    zeros = torch.zeros(batch_size, device=device)
    full_targets = torch.cat([ones, zeros])
    real_targets = full_targets.bool()
    module.train()

    for epoch in range(config.epochs):
        totals = torch.zeros(4, device=device)
        order = torch.randperm(n, generator=generator, device=device)
        for start in range(0, n, batch_size):
            x = x_all[order[start : start + batch_size]]
            m = len(x)

            # 1. reconstruction phase
            z = module.encode(x, generator)
            reconstruction = mean_reconstruction_error(module.decode(z), x, module.loss)
            autoencoder_opt.zero_grad(set_to_none=True)
            reconstruction.backward()
            autoencoder_opt.step()

            # 2a. regularization: the discriminator learns prior = real, codes = fake
            real = prior.sample(m, generator)
            logits = discriminator(torch.cat([real, z.detach()]))
            targets = full_targets if m == batch_size else torch.cat([ones[:m], zeros[:m]])
            discriminator_loss = bce(logits, targets)
            discriminator_opt.zero_grad(set_to_none=True)
            discriminator_loss.backward()
            discriminator_opt.step()

            # 2b. regularization: the encoder learns to make D call its codes real.
            # D's weights need no gradient here, so autograd skips them.
            discriminator.requires_grad_(False)
            generator_logits = discriminator(module.encode(x, generator))
            generator_loss = bce(generator_logits, ones[:m])
            generator_opt.zero_grad(set_to_none=True)
            generator_loss.backward()
            generator_opt.step()
            discriminator.requires_grad_(True)

            with torch.no_grad():
                is_real = real_targets if m == batch_size else targets.bool()
                accuracy = (logits > 0).eq_(is_real).float().mean()
                totals.add_(
                    torch.stack([reconstruction, discriminator_loss, generator_loss, accuracy]),
                    alpha=m,
                )

        epoch_means = (totals / n).tolist()  # the one host round trip of the epoch
        metrics = dict(zip(HISTORY_KEYS, epoch_means, strict=True))
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise TrainingDivergedError(
                f"training diverged in epoch {epoch + 1}: the {' and '.join(bad)} loss "
                "became NaN or infinite; lower the learning rates (lr_autoencoder, "
                "lr_discriminator, lr_generator) or check the input for extreme values"
            )
        for key, value in metrics.items():
            history[key].append(value)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)

    module.eval()
    return history
