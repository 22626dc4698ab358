"""The AAE training loop (Makhzani et al., 2015, section 2).

Each mini-batch has two phases:

1. reconstruction: encoder and decoder take a step on the reconstruction loss;
2. regularization: the discriminator takes a step at telling prior samples (real) from the
   encoder's codes (fake), then the encoder takes a step at making the discriminator call
   its codes real.

Three Adam optimizers, one per step, each with its own learning rate. The data stay on the
device as one tensor and batches are taken by index; losses are summed on the device and
read back once per epoch.

Faults are handled at the epoch level. Before each epoch the trainer keeps a copy of the
networks, the optimizers and the random generator; an epoch whose mean losses or whose
weights come out NaN or infinite is rolled back to that copy and run again with smaller
learning rates, up to :data:`MAX_RETRIES` times, after which the fit stops with
:class:`TrainingDivergedError`. The whole state (:meth:`Trainer.state_dict`) is what a
checkpoint holds (see :mod:`aae_anomaly.engine.checkpoint`).

In a distributed fit each phase's forward runs through the networks'
``DistributedDataParallel`` wrappers (:class:`Networks`), whose backward passes average
the gradients over the ranks before each step (see :mod:`aae_anomaly.engine.distributed`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import TrainingDivergedError, TrainingWarning
from ..plugin_system.priors import Prior
from .adam_step import AdamStep
from .distributed import ProcessGroup
from .model import AAEModule, mean_reconstruction_error

HISTORY_KEYS = ("reconstruction", "discriminator", "generator", "discriminator_accuracy")
# Per-epoch entries after every trainer's own metrics: the factor the learning rates were
# cut by after divergence (1.0 when they never were), and 1.0 where the discriminator has
# overpowered the encoder (accuracy above OVERPOWERED_ACCURACY for the last
# OVERPOWERED_EPOCHS epochs).
EXTRA_HISTORY_KEYS = ("learning_rate_scale", "discriminator_overpowered")

# A diverged epoch is retried with the learning rates multiplied by LR_BACKOFF, at most
# MAX_RETRIES times over the whole fit (so down to LR_BACKOFF ** MAX_RETRIES).
LR_BACKOFF = 0.25
MAX_RETRIES = 4
OVERPOWERED_ACCURACY = 0.95
OVERPOWERED_EPOCHS = 5

OPTIMIZERS = ("autoencoder", "discriminator", "generator")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int
    batch_size: int
    lr_autoencoder: float
    lr_discriminator: float
    lr_generator: float


EpochCallback = Callable[[int, dict[str, float]], None]


def fused_options(device: torch.device) -> dict[str, bool]:
    """Adam's options for ``device``: the fused kernel updates all of an optimizer's
    tensors in one pass instead of a dozen small element-wise operations per parameter."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


class DiscriminatorTargets:
    """A discriminator's targets for a batch of ``m`` prior samples ("real", 1) followed by
    ``m`` codes ("fake", 0), made once per epoch; a short last batch takes slices."""

    def __init__(self, batch_size: int, device: torch.device):
        self.batch_size = batch_size
        self.ones = torch.ones(batch_size, device=device)
        self.zeros = torch.zeros(batch_size, device=device)
        self.full = torch.cat([self.ones, self.zeros])
        self.full_real = self.full.bool()

    def for_batch(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``2 m`` targets as floats (for the loss) and as booleans (for accuracy)."""
        if m == self.batch_size:
            return self.full, self.full_real
        targets = torch.cat([self.ones[:m], self.zeros[:m]])
        return targets, targets.bool()


class EpochTrainer:
    """What every AAE fit shares, whatever its networks and phases: the epoch loop, the
    rollback of a diverged epoch with smaller learning rates, the per-epoch history and the
    state a checkpoint holds.

    A subclass calls :meth:`_build_optimizers` and :meth:`_start`, and implements
    :meth:`run_epoch`, whose metrics include ``discriminator_accuracy`` (the overpowering
    check reads it).
    """

    module: nn.Module
    generator: torch.Generator
    config: TrainingConfig
    optimizers: dict[str, torch.optim.Optimizer]
    discriminator_params: list[nn.Parameter]

    # the processes this fit trains with (see :mod:`.distributed`); None for one process
    group: ProcessGroup | None = None

    def _start(self, history_keys: tuple[str, ...]) -> None:
        """``history_keys``: the names of :meth:`run_epoch`'s metrics, in order."""
        self.epoch = 0  # epochs completed
        self.lr_scale = 1.0
        self.retries = 0
        self.history_keys = history_keys
        self.history: dict[str, list[float]] = {
            key: [] for key in (*history_keys, *EXTRA_HISTORY_KEYS)
        }

    def run_epoch(self) -> tuple[dict[str, float], bool]:
        """One pass over the rows: the epoch's mean metrics, and whether every weight is
        still finite."""
        raise NotImplementedError

    def _epoch_result(self, totals: torch.Tensor, n: int) -> tuple[dict[str, float], bool]:
        """What :meth:`run_epoch` returns, from the metrics' sums over the epoch's ``n``
        rows (in the order of ``history_keys``)."""
        with torch.no_grad():
            # a last step can leave NaN weights behind finite losses: check them too, in
            # the same one host round trip of the epoch
            finite = torch.stack([p.isfinite().all() for p in self.module.parameters()]).all()
            values = torch.cat([totals / n, finite.to(totals.dtype).reshape(1)])
            if self.group is not None:
                # every rank's shard has n rows (in a streamed fit, as many batches, the
                # last may be shorter): the mean of the ranks' means is the epoch's mean,
                # and the flag stays 1 only where every rank's weights are finite
                values = self.group.average(values.cpu())
            values = values.tolist()
        metrics = dict(zip(self.history_keys, values[:-1], strict=True))
        return metrics, values[-1] == 1.0

    def _build_optimizers(
        self,
        autoencoder: list[nn.Parameter],
        discriminator: list[nn.Parameter],
        encoder: list[nn.Parameter],
        device: torch.device,
        classifier: list[nn.Parameter] | None = None,
    ) -> None:
        """The three Adam optimizers of the paper's phases, one per step, each with its own
        learning rate: reconstruction (encoder and decoder), the discriminator's step and
        the encoder's adversarial step; with ``classifier``, a fourth for the categorical
        model's semi-supervised step, at the reconstruction step's learning rate."""
        config = self.config
        self.discriminator_params = discriminator
        fused = fused_options(device)
        # beta1 = 0.5 is the usual choice for adversarial steps: less momentum, less oscillation
        adversarial = {"betas": (0.5, 0.999), **fused}
        self.optimizers = {
            "autoencoder": torch.optim.Adam(autoencoder, lr=config.lr_autoencoder, **fused),
            "discriminator": torch.optim.Adam(
                discriminator, lr=config.lr_discriminator, **adversarial
            ),
            "generator": torch.optim.Adam(encoder, lr=config.lr_generator, **adversarial),
        }
        if classifier is not None:
            # the classification step has its own moments: its gradients are unlike the
            # reconstruction ones, and sharing would let one rescale the other's steps
            self.optimizers["classifier"] = torch.optim.Adam(
                classifier, lr=config.lr_autoencoder, **fused
            )

    @property
    def base_lr(self) -> dict[str, float]:
        """Each optimizer's learning rate as given, before any cut after divergence (a
        cut changes the param groups, never the optimizer's defaults)."""
        return {name: optimizer.defaults["lr"] for name, optimizer in self.optimizers.items()}

    @contextmanager
    def _discriminators_frozen(self) -> Iterator[None]:
        """For the encoder's adversarial step: the discriminators' weights need no gradient
        there, so autograd skips them."""
        for p in self.discriminator_params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in self.discriminator_params:
                p.requires_grad_(True)

    def _lean_steps(self) -> dict[str, AdamStep]:
        """A lean step per optimizer, built from the optimizers' current state: called at
        the start of each epoch, since a rollback or a resumed checkpoint may have replaced
        that state."""
        return {name: AdamStep(optimizer) for name, optimizer in self.optimizers.items()}

    # -- the whole fit ---------------------------------------------------------------------
    def fit(self, on_epoch_end: EpochCallback | None = None) -> dict[str, list[float]]:
        """Run the remaining epochs; return the history."""
        self.module.train()
        while self.epoch < self.config.epochs:
            before = self.snapshot()
            metrics, weights_finite = self.run_epoch()
            bad = [key for key, value in metrics.items() if not math.isfinite(value)]
            if not weights_finite:
                bad.append("weights")
            if bad:
                self._recover(before, bad)
                continue
            self._record(metrics)
            self.epoch += 1
            if on_epoch_end is not None:
                on_epoch_end(self.epoch - 1, metrics)
        self.module.eval()
        self._warn_if_overpowered()
        return self.history

    # -- divergence ------------------------------------------------------------------------
    def _recover(self, before: dict[str, Any], bad: list[str]) -> None:
        """Roll back the diverged epoch and cut the learning rates, or give up."""
        what = " and ".join(f"the {key}" if key == "weights" else f"the {key} loss" for key in bad)
        if self.retries >= MAX_RETRIES:
            lr = ", ".join(f"lr_{name}={lr:g}" for name, lr in self.base_lr.items())
            raise TrainingDivergedError(
                f"training diverged in epoch {self.epoch + 1}: {what} became NaN or infinite, "
                f"and still did after {MAX_RETRIES} retries from the start of the epoch with "
                f"the learning rates cut to {self.lr_scale:g} of the ones given ({lr}); "
                "lower the learning rates further (e.g. 10x), or check the input for extreme "
                "values"
            )
        self.load_state_dict(before)
        self.retries += 1
        self.lr_scale *= LR_BACKOFF
        self._apply_lr_scale()
        warnings.warn(
            f"training diverged in epoch {self.epoch + 1} ({what} became NaN or infinite); "
            f"rolled back to the start of the epoch and retrying with the learning rates "
            f"cut to {self.lr_scale:g} of the ones given (retry {self.retries} of "
            f"{MAX_RETRIES}); lower the learning rates to avoid this",
            TrainingWarning,
            stacklevel=4,
        )

    def _apply_lr_scale(self) -> None:
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr[name] * self.lr_scale

    # -- history ---------------------------------------------------------------------------
    def _record(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.history[key].append(value)
        self.history["learning_rate_scale"].append(self.lr_scale)
        recent = self.history["discriminator_accuracy"][-OVERPOWERED_EPOCHS:]
        overpowered = len(recent) == OVERPOWERED_EPOCHS and min(recent) > OVERPOWERED_ACCURACY
        self.history["discriminator_overpowered"].append(float(overpowered))

    def _warn_if_overpowered(self) -> None:
        flags = self.history["discriminator_overpowered"]
        if not flags or not flags[-1]:
            return
        accuracy = self.history["discriminator_accuracy"][-1]
        warnings.warn(
            f"the discriminator overpowered the encoder: its accuracy stayed above "
            f"{OVERPOWERED_ACCURACY} for the last {OVERPOWERED_EPOCHS} epochs (final "
            f"{accuracy:.3f}), so the codes do not follow the prior and the discriminator "
            "and density scores are unreliable; lower lr_discriminator, raise lr_generator, "
            "or use a larger latent_dim",
            TrainingWarning,
            stacklevel=4,
        )

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed fit needs to continue exactly where this one is (tensors
        are references, not copies; see :meth:`snapshot`)."""
        return {
            "module": self.module.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "lr_scale": self.lr_scale,
            "retries": self.retries,
            "history": {key: list(values) for key, values in self.history.items()},
        }

    def snapshot(self) -> dict[str, Any]:
        """A copy of :meth:`state_dict` that later steps do not change."""
        return _cloned(self.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        for name, optimizer in self.optimizers.items():
            # load_state_dict keeps references to the tensors it is given: pass copies,
            # so that a snapshot can be restored more than once
            optimizer.load_state_dict(_cloned(state["optimizers"][name]))
        self.generator.set_state(state["generator"].clone())
        self.epoch = int(state["epoch"])
        self.lr_scale = float(state["lr_scale"])
        self.retries = int(state["retries"])
        self.history = {key: list(values) for key, values in state["history"].items()}


class Trainer(EpochTrainer):
    """A fit in progress: the networks, their three optimizers, the random generator, the
    epochs done and their history."""

    def __init__(
        self,
        module: AAEModule,
        prior: Prior,
        rows: torch.Tensor,
        config: TrainingConfig,
        generator: torch.Generator,
        classes: torch.Tensor | None = None,
        group: ProcessGroup | None = None,
    ):
        """``classes`` (optional): each row's class index in ``[0, module.n_classes)``, for
        label-conditioned regularization (see :meth:`run_epoch`). ``group``: the processes
        of a distributed fit, whose ranks must all build their trainers together (the
        networks' wrappers talk to each other when they are made)."""
        self.module, self.prior, self.config, self.generator = module, prior, config, generator
        self.classes = classes
        self.group = group
        self.networks = Networks(module, group)
        encoder, decoder = module.encoder, module.decoder
        self._build_optimizers(
            [*encoder.parameters(), *decoder.parameters()],
            list(module.discriminator.parameters()),
            list(encoder.parameters()),
            rows.device,
        )
        self.x_all = module.scale_input(rows)
        self._start(HISTORY_KEYS)

    def run_epoch(self) -> tuple[dict[str, float], bool]:
        """One pass over the rows in a fresh random order: the epoch's mean losses and
        accuracy, and whether every weight is still finite.

        With ``classes`` (label-conditioned regularization, the paper's section 2.3), the
        prior sample beside each row comes from the prior's region for that row's class,
        and the discriminator sees the class's one-hot vector after both the prior sample
        and the code."""
        x_all = self.x_all
        n = len(x_all)
        batch_size = max(1, min(self.config.batch_size, n))
        order = torch.randperm(n, generator=self.generator, device=x_all.device)
        classes = self.classes
        epoch = _Epoch(self, batch_size, x_all.device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            epoch.step(x_all[index], None if classes is None else classes[index])
        return self._epoch_result(epoch.totals, n)


class StreamingTrainer(Trainer):
    """A :class:`Trainer` whose epochs take their batches from ``batches()``, a new pass
    over rows that need not fit in memory (unscaled rows on the module's device), instead
    of from one tensor of every row."""

    def __init__(
        self,
        module: AAEModule,
        prior: Prior,
        batches: Callable[[], Iterator[torch.Tensor]],
        config: TrainingConfig,
        generator: torch.Generator,
        group: ProcessGroup | None = None,
    ):
        device = module.center.device
        super().__init__(module, prior, torch.empty(0, *module.center.shape, device=device),
                         config, generator, group=group)  # fmt: skip
        self.batches = batches

    def run_epoch(self) -> tuple[dict[str, float], bool]:
        epoch = _Epoch(self, self.config.batch_size, self.module.center.device)
        n = 0
        for rows in self.batches():
            epoch.step(self.module.scale_input(rows), None)
            n += len(rows)
        if n == 0:
            raise ValueError("the rows to train on are empty in this pass over the data")
        return self._epoch_result(epoch.totals, n)


class Networks:
    """The encoder, decoder and discriminator as the training phases call them: the
    module's own networks in one process; in a distributed fit each wrapped in its own
    ``DistributedDataParallel``, which shares the network's parameters and averages their
    gradients over the ranks in the backward pass (see :mod:`.distributed`)."""

    def __init__(self, module: AAEModule, group: ProcessGroup | None):
        self.module = module
        networks = (module.encoder, module.decoder, module.discriminator)
        if group is not None:
            networks = tuple(group.data_parallel(network) for network in networks)
        self.encoder, self.decoder, self.discriminator = networks
        self.distributed = group is not None

    def encode(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The module's :meth:`~.model.AAEModule.encode`, through the encoder's wrapper."""
        return self.module.posterior_code(self.encoder(x), generator)

    @contextmanager
    def discriminator_unsynced(self) -> Iterator[None]:
        """For the encoder's adversarial step, whose loss runs through the (frozen)
        discriminator: its wrapper then expects no gradient, as its weights get none."""
        with ExitStack() as stack:
            if self.distributed:
                stack.enter_context(self.discriminator.no_sync())
            yield


class _Epoch:
    """One epoch's steps: each batch's two phases, and the metrics' running sums."""

    def __init__(self, trainer: Trainer, batch_size: int, device: torch.device):
        self.trainer = trainer
        steps = trainer._lean_steps()
        self.autoencoder, self.discriminator_step, self.generator_step = (
            steps[name] for name in OPTIMIZERS
        )
        self.targets = DiscriminatorTargets(batch_size, device)
        self.totals = torch.zeros(len(HISTORY_KEYS), device=device)
        module = trainer.module
        self.one_hot = None
        if trainer.classes is not None:
            self.one_hot = torch.eye(module.n_classes, device=device)

    def step(self, x: torch.Tensor, batch_classes: torch.Tensor | None) -> None:
        """The paper's two phases on the scaled rows ``x`` (and their classes)."""
        trainer = self.trainer
        module, prior, generator = trainer.module, trainer.prior, trainer.generator
        networks = trainer.networks
        discriminator = networks.discriminator
        bce = nn.functional.binary_cross_entropy_with_logits
        m = len(x)
        if batch_classes is not None:
            condition = self.one_hot[batch_classes]

        # 1. reconstruction phase
        z = networks.encode(x, generator)
        reconstruction = mean_reconstruction_error(networks.decoder(z), x, module.loss)
        self.autoencoder.step_on(reconstruction)

        # 2a. regularization: the discriminator learns prior = real, codes = fake (in one
        # forward, so that its wrapper in a distributed fit sees one forward per backward)
        if batch_classes is None:
            real = prior.sample(m, generator)
            logits = discriminator(torch.cat([real, z.detach()]))
        else:
            real = prior.sample(m, generator, labels=batch_classes)
            real = torch.cat([real, condition], 1)
            logits = discriminator(torch.cat([real, torch.cat([z.detach(), condition], 1)]))
        targets, is_real = self.targets.for_batch(m)
        discriminator_loss = bce(logits, targets)
        self.discriminator_step.step_on(discriminator_loss)

        # 2b. regularization: the encoder learns to make D call its codes real
        with trainer._discriminators_frozen(), networks.discriminator_unsynced():
            code = networks.encode(x, generator)
            if batch_classes is not None:
                code = torch.cat([code, condition], 1)
            generator_logits = discriminator(code)
            generator_loss = bce(generator_logits, self.targets.ones[:m])
            self.generator_step.step_on(generator_loss)

        with torch.no_grad():
            accuracy = (logits > 0).eq_(is_real).float().mean()
            self.totals.add_(
                torch.stack([reconstruction, discriminator_loss, generator_loss, accuracy]),
                alpha=m,
            )


def _cloned(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _cloned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cloned(item) for item in value]
    return value
