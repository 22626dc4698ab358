"""The AAE whose code is a class part and a style part (Makhzani et al., 2015, sections
4-6): one network family, one trainer, for three uses.

- **supervised** (the class is given): the encoder outputs the style ``z`` alone, the
  decoder reads ``[one_hot(y), z]``, and one discriminator holds ``z`` to a Gaussian prior,
  so ``z`` learns what the class does not say (section 4);
- **semi-supervised** (some rows labelled): the encoder outputs class logits and ``z``;
  the decoder reads ``[softmax(logits), z]``; a second discriminator holds the softmax to
  a categorical prior (one-hot vectors of uniformly drawn classes); and the labelled rows
  add a cross-entropy step on the class head (section 5);
- **unsupervised** (no labels): the same networks with ``k`` categories and no
  cross-entropy step, so the categories become clusters (section 6).

Each mini-batch runs the reconstruction phase (encoder and decoder), the regularization
phase (the discriminators, then the encoder as their generator) and, with labelled rows,
the semi-supervised phase on a batch of labelled rows drawn with replacement, so a few
labels are seen in every step however many unlabelled rows there are.

Additions to the paper, on the encoder's adversarial step: it also holds the batch's mean
class distribution to the uniform marginal of the categorical prior (a balance term,
weight ``balance_weight``), because a discriminator that judges one code at a time does not
stop all rows collapsing into one category; optionally, it asks each row for one category
(``sharpness_weight``) and keeps ``q(y|x)`` unchanged under the input change that changes
it most (virtual adversarial training, ``consistency_weight``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .inference import for_each_batch, inference_ready
from .model import Discriminator, ScaledInput, mean_reconstruction_error
from .training import DiscriminatorTargets, EpochTrainer, TrainingConfig

HISTORY_KEYS = (
    "reconstruction",
    "discriminator",
    "generator",
    "classification",
    "discriminator_accuracy",
)
# The discriminators here judge a softmax over up to dozens of categories as well as a
# style code: wider than the detector's, which judges a small code alone.
DISCRIMINATOR_HIDDEN = 128
UNLABELLED = -1


class CategoricalAAEModule(ScaledInput, nn.Module):
    """Encoder, decoder, the style discriminator and (when the encoder infers the class)
    the category discriminator, with the input scaling kept as buffers.

    The encoder's output holds ``n_categories`` class logits (only when
    ``infers_category``) followed by ``style_dim`` style values; the decoder reads
    ``n_categories + style_dim`` values, a class vector (one-hot or softmax) then the style.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        input_shape: tuple[int, ...],
        n_categories: int,
        style_dim: int,
        infers_category: bool,
        loss: str,
        center: torch.Tensor,
        scale: torch.Tensor,
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.style_discriminator = Discriminator(style_dim, DISCRIMINATOR_HIDDEN)
        self.category_discriminator = (
            Discriminator(n_categories, DISCRIMINATOR_HIDDEN) if infers_category else None
        )
        self.input_shape = tuple(input_shape)
        self.n_categories, self.style_dim = n_categories, style_dim
        self.infers_category = infers_category
        self.loss = loss
        self.register_buffer("center", center.to(torch.float32))
        self.register_buffer("scale", scale.to(torch.float32))
        self.register_buffer("sample_scaling", None)  # the family has no per-sample scaling

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Class logits (``None`` when the class is given, not inferred) and style codes of
        scaled inputs."""
        code = self.encoder(x)
        if not self.infers_category:
            return None, code
        return code[:, : self.n_categories], code[:, self.n_categories :]

    def decode(self, category: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Decoder output for class vectors ``(n, n_categories)`` and styles."""
        return self.decoder(torch.cat([category, style], dim=1))

    def probe(self, x: torch.Tensor, discriminator: bool = True) -> None:
        """Run every network once on scaled inputs ``x`` (for counting FLOPs); the encoder
        and decoder only with ``discriminator=False``."""
        logits, style = self.encode(x)
        category = style.new_zeros(len(x), self.n_categories)
        self.decode(category, style)
        if not discriminator:
            return
        self.style_discriminator(style)
        if self.category_discriminator is not None:
            self.category_discriminator(category)


@dataclass(frozen=True)
class CategoricalTrainingConfig(TrainingConfig):
    """The detector's settings plus those of the categorical model's extra phases."""

    label_weight: float = 1.0  # weight of the cross-entropy step on labelled rows
    labelled_batch_size: int = 32  # labelled rows drawn (with replacement) per step
    input_noise: float = 0.0  # std of Gaussian noise added to the scaled inputs in training
    # weight of the batch balance term: log(k) minus the entropy of the batch's mean class
    # distribution (see CategoricalTrainer.run_epoch)
    balance_weight: float = 1.0
    # weight of the mean entropy of each row's class distribution (sharp, one-category
    # codes; see CategoricalTrainer.run_epoch)
    sharpness_weight: float = 0.0
    # weight of virtual adversarial training on q(y|x) (Miyato et al., 2018): the class
    # distribution should not change under the small input change that changes it most
    consistency_weight: float = 0.0
    # that change's length, as a fraction of the median distance from a row to its
    # NEIGHBOUR_RANK-th nearest training row (so it needs no tuning to the data's units)
    consistency_radius: float = 0.25


# The rank of the neighbour whose distance sets the consistency radius (IMSAT's choice,
# Hu et al., 2017), and the rows sampled to measure it.
NEIGHBOUR_RANK = 10
RADIUS_QUERIES = 1_000
RADIUS_REFERENCE = 20_000


def neighbour_distance(x: torch.Tensor, generator: torch.Generator) -> float:
    """Median distance from a sampled row to its ``NEIGHBOUR_RANK``-th nearest row among
    a sample of ``x`` (the row itself excluded)."""
    n = len(x)
    reference = x[torch.randperm(n, generator=generator, device=x.device)[:RADIUS_REFERENCE]]
    reference = reference.flatten(1)  # images: one vector each
    queries = reference[:RADIUS_QUERIES]
    rank = min(NEIGHBOUR_RANK, len(reference) - 1)
    if rank < 1:
        return 1.0
    distances = torch.cdist(queries.double(), reference.double())
    # the query itself sits in the reference at distance 0: the rank-th after it
    nearest = distances.topk(rank + 1, dim=1, largest=False).values[:, rank]
    distance = float(nearest.median())
    return distance if distance > 0 else 1.0


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of the distributions along the last dimension of ``p``."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)


def unit_rows(d: torch.Tensor) -> torch.Tensor:
    """``d`` with each row (each image, flattened) scaled to length 1."""
    norms = d.flatten(1).norm(dim=1).clamp_min(1e-12)
    return d / norms.view(-1, *[1] * (d.dim() - 1))


def class_divergence(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence from the class distributions ``target`` to ``softmax(logits)``."""
    log_p = torch.log_softmax(logits, dim=1)
    return (target * (torch.log(target.clamp_min(1e-12)) - log_p)).sum(dim=1).mean()


class CategoricalTrainer(EpochTrainer):
    """A fit of a :class:`CategoricalAAEModule` in progress.

    ``labels`` holds each row's class index in ``[0, n_categories)``, or
    :data:`UNLABELLED`; ``None`` means no row is labelled. A module that does not infer
    the class (the supervised model) needs every row labelled.
    """

    def __init__(
        self,
        module: CategoricalAAEModule,
        rows: torch.Tensor,
        labels: torch.Tensor | None,
        config: CategoricalTrainingConfig,
        generator: torch.Generator,
    ):
        self.module, self.config, self.generator = module, config, generator
        if not module.infers_category and (labels is None or bool((labels < 0).any())):
            raise ValueError("a model that is given the class needs every row labelled")
        self.labels = labels
        self.labelled = None
        if module.infers_category and labels is not None:
            labelled = torch.nonzero(labels >= 0).flatten()
            self.labelled = labelled if len(labelled) else None
        encoder, decoder = module.encoder, module.decoder
        discriminators = [*module.style_discriminator.parameters()]
        if module.category_discriminator is not None:
            discriminators += [*module.category_discriminator.parameters()]
        self._build_optimizers(
            [*encoder.parameters(), *decoder.parameters()],
            discriminators,
            list(encoder.parameters()),
            rows.device,
            classifier=None if self.labelled is None else list(encoder.parameters()),
        )
        self.x_all = module.scale_input(rows)
        self.radius = 0.0
        if module.infers_category and config.consistency_weight:
            self.radius = config.consistency_radius * neighbour_distance(
                self.x_all, generator
            )
        self._start(HISTORY_KEYS)

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.input_noise:
            return x
        noise = torch.randn(x.shape, generator=self.generator, device=x.device)
        return x + self.config.input_noise * noise

    def _consistency(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Virtual adversarial loss of the class head at rows ``x`` (one power iteration):
        the divergence of ``q(y|x + r)`` from ``q(y|x)`` for the ``r`` of length
        ``self.radius`` that the divergence grows fastest along."""
        target = torch.softmax(logits.detach(), dim=1)
        probe = torch.randn(x.shape, generator=self.generator, device=x.device)
        probe = (1e-6 * unit_rows(probe)).requires_grad_()
        probed, _ = self.module.encode(x + probe)
        (gradient,) = torch.autograd.grad(class_divergence(target, probed), probe)
        adversarial = self.radius * unit_rows(gradient)
        perturbed, _ = self.module.encode(x + adversarial)
        return class_divergence(target, perturbed)

    def run_epoch(self) -> tuple[dict[str, float], bool]:
        module, config, generator = self.module, self.config, self.generator
        infers = module.infers_category
        bce = nn.functional.binary_cross_entropy_with_logits
        x_all, labels, labelled = self.x_all, self.labels, self.labelled
        n = len(x_all)
        batch_size = max(1, min(config.batch_size, n))
        device = x_all.device
        eye = torch.eye(module.n_categories, device=device)
        discriminator_targets = DiscriminatorTargets(batch_size, device)
        steps = self._lean_steps()

        totals = torch.zeros(len(HISTORY_KEYS), device=device)
        order = torch.randperm(n, generator=generator, device=device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            x = x_all[index]
            m = len(x)
            given = None if infers else eye[labels[index]]

            # 1. reconstruction phase
            logits, style = module.encode(self._noisy(x))
            category = torch.softmax(logits, dim=1) if infers else given
            output = module.decode(category, style)
            reconstruction = mean_reconstruction_error(output, x, module.loss)
            steps["autoencoder"].step_on(reconstruction)

            # 2a. regularization: each discriminator learns prior = real, codes = fake
            targets, is_real = discriminator_targets.for_batch(m)
            real_style = torch.randn(m, module.style_dim, generator=generator, device=device)
            style_logits = module.style_discriminator(torch.cat([real_style, style.detach()]))
            discriminator_loss = bce(style_logits, targets)
            correct = ((style_logits > 0) == is_real).float().mean()
            if infers:
                drawn = torch.randint(
                    module.n_categories, (m,), generator=generator, device=device
                )
                category_logits = module.category_discriminator(
                    torch.cat([eye[drawn], category.detach()])
                )
                discriminator_loss = discriminator_loss + bce(category_logits, targets)
                correct = (correct + ((category_logits > 0) == is_real).float().mean()) / 2
            steps["discriminator"].step_on(discriminator_loss)

            # 2b. regularization: the encoder learns to make the discriminators call its
            # codes real
            with self._discriminators_frozen():
                logits, style = module.encode(self._noisy(x))
                ones = discriminator_targets.ones[:m]
                generator_loss = bce(module.style_discriminator(style), ones)
                if infers:
                    category = torch.softmax(logits, dim=1)
                    generator_loss = generator_loss + bce(
                        module.category_discriminator(category), ones
                    )
                    if config.balance_weight:
                        # The discriminator judges one code at a time, so it cannot stop every
                        # row moving to the same category at once (measured on MNIST: all rows
                        # in one of 16 categories after 3 epochs). The categorical prior's
                        # marginal is uniform: hold the batch's mean distribution to it.
                        imbalance = math.log(module.n_categories) - entropy(category.mean(dim=0))
                        generator_loss = generator_loss + config.balance_weight * imbalance
                    if config.sharpness_weight:
                        # the balance term is met by flat distributions as well as by
                        # one-hot ones; this asks each row for one category
                        generator_loss = generator_loss + config.sharpness_weight * (
                            entropy(category).mean()
                        )
                    if config.consistency_weight:
                        generator_loss = generator_loss + config.consistency_weight * (
                            self._consistency(x, logits)
                        )
                steps["generator"].step_on(generator_loss)

            # 3. semi-supervised phase: cross-entropy of q(y|x) on a batch of labelled rows
            classification = torch.zeros((), device=device)
            if labelled is not None:
                pick = torch.randint(
                    len(labelled), (config.labelled_batch_size,), generator=generator,
                    device=device,
                )
                chosen = labelled[pick]
                logits, _ = module.encode(self._noisy(x_all[chosen]))
                classification = nn.functional.cross_entropy(logits, labels[chosen])
                steps["classifier"].step_on(config.label_weight * classification)

            with torch.no_grad():
                totals.add_(
                    torch.stack([
                        reconstruction, discriminator_loss, generator_loss, classification,
                        correct,
                    ]),
                    alpha=m,
                )

        return self._epoch_result(totals, n)


def encode_categorical(
    module: CategoricalAAEModule,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    workers: int = 1,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Class probabilities (``None`` when the module is given the class) and style codes
    of flat rows."""
    probabilities = (
        np.empty((len(rows), module.n_categories)) if module.infers_category else None
    )
    styles = np.empty((len(rows), module.style_dim))
    inference_ready(module)

    def work(where: slice, batch: torch.Tensor) -> None:
        logits, style = module.encode(module.scale_input(batch))
        size = where.stop - where.start
        styles[where] = style[:size].cpu().numpy()
        if probabilities is not None:
            # softmax in float64, so that each row sums to 1 to float64 precision
            probabilities[where] = torch.softmax(logits[:size].double(), dim=1).cpu().numpy()

    for_each_batch(rows, batch_size, device, work, workers)
    return probabilities, styles


def decode_categorical(
    module: CategoricalAAEModule,
    category: torch.Tensor,
    style: torch.Tensor,
    workers: int = 1,
) -> np.ndarray:
    """Flat rows in the user's units decoded from class vectors and styles.

    The codes go through the same fixed-shape padded batches as encoding, so a sample's
    rows are bit-identical however many are drawn and in whichever process (the matrix
    products' rounding can depend on the batch's shape)."""
    inference_ready(module)
    codes = torch.cat([category, style], dim=1).float().cpu().numpy()
    k = module.n_categories
    rows = np.empty((len(codes), math.prod(module.input_shape)))  # unscale_output is flat

    def work(where: slice, batch: torch.Tensor) -> None:
        size = where.stop - where.start
        decoded = module.unscale_output(module.decode(batch[:, :k], batch[:, k:]))
        rows[where] = decoded[:size].double().cpu().numpy()

    for_each_batch(codes, None, category.device, work, workers)
    return rows
