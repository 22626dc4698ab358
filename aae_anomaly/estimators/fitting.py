"""A detector's training run: checkpoints that a resumed fit continues from, progress,
and the training rows the model keeps for the neighbors component."""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
import torch

from ..engine.checkpoint import Checkpoint, data_digest
from ..engine.training import Trainer
from ..errors import CheckpointError
from .progress import progress_bar

# The neighbors component compares with at most this many training rows: enough for a
# stable density estimate, few enough that scoring stays fast and model files small.
MAX_REFERENCE_ROWS = 4096
# The metrics the progress bar shows: shown name -> (metric, format).
PROGRESS_METRICS = {
    "recon": ("reconstruction", ".4g"),
    "disc": ("discriminator", ".3f"),
    "gen": ("generator", ".3f"),
    "acc": ("discriminator_accuracy", ".2f"),
}


def open_checkpoint(
    estimator, directory, train_rows: np.ndarray | None, resume: bool, classes=None,
    group=None, *, streamed: dict | None = None,
) -> Checkpoint | None:
    """The checkpoint of this fit in ``directory`` (None without one): identified by the
    estimator's parameters and a digest of its training rows (and classes), so that only
    the same fit resumes it. In a distributed fit each rank has its own file (its own
    random generator's state), and the number of ranks is part of the identity.
    ``streamed``: for a fit on rows read in parts, what identifies them beyond the
    sample's ``train_rows`` (see :meth:`AAEDetector.fit_chunks`)."""
    if directory is None:
        return None
    identity = {"params": _checkpoint_params(estimator)}
    identity["training_rows_sha256"] = data_digest(train_rows)
    if classes is not None:
        identity["training_classes_sha256"] = data_digest(classes)
    if streamed is not None:
        identity["stream"] = dict(streamed)
    rank = 0
    if group is not None:
        identity["distributed"] = group.describe()
        rank = group.rank
    checkpoint = Checkpoint(directory, identity, rank)
    if checkpoint.exists() and not resume:
        raise CheckpointError(
            f"{checkpoint.path} already holds a checkpoint ({checkpoint.epochs_done()} of "
            f"{estimator.epochs} epochs); resume it, or remove it to start over"
        )
    return checkpoint


def check_checkpoint_dir(estimator, directory, resume: bool, group=None) -> None:
    """What :func:`open_checkpoint` refuses without the training rows, checked before a
    long pass over them: a seed that is not an integer, or a checkpoint already in
    ``directory`` without ``resume``."""
    if directory is None:
        return
    _checkpoint_params(estimator)
    checkpoint = Checkpoint(directory, {}, 0 if group is None else group.rank)
    if checkpoint.exists() and not resume:
        raise CheckpointError(
            f"{checkpoint.path} already holds a checkpoint; resume it, or remove it to "
            "start over"
        )


def _checkpoint_params(estimator) -> dict:
    seed = estimator.random_state
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            "checkpointing needs an integer random_state, so that a resumed fit continues "
            f"the same one; got {seed!r}"
        )
    params = estimator.get_params(deep=False)
    del params["verbose"]
    if params["input_shape"] is not None:
        params["input_shape"] = [int(s) for s in params["input_shape"]]
    params["random_state"] = int(params["random_state"])
    return params


def train(
    estimator, trainer: Trainer, checkpoint: Checkpoint | None, show: bool = True
) -> dict[str, list[float]]:
    """Run ``trainer`` to the end, from the checkpoint when there is one, writing the
    checkpoint after every epoch and showing progress when the estimator is verbose (and
    ``show``: one rank of a distributed fit shows it)."""
    if checkpoint is not None and checkpoint.exists():
        checkpoint.restore(trainer)
    if checkpoint is not None and trainer.group is not None:
        _check_same_epochs(trainer, checkpoint)
    return trainer.fit(_epoch_callback(estimator, trainer, checkpoint, show))


def _check_same_epochs(trainer: Trainer, checkpoint: Checkpoint) -> None:
    """The ranks of a distributed fit must resume from the same epoch, or their steps no
    longer pair up; a job stopped while the ranks were writing their checkpoints (each
    its own file) can leave some an epoch ahead. Collective."""
    epochs = trainer.group.gather(trainer.epoch)
    if len(set(epochs)) > 1:
        done = ", ".join(f"rank {rank}: {epoch}" for rank, epoch in enumerate(epochs))
        raise CheckpointError(
            f"the processes' checkpoints in {checkpoint.directory} hold different numbers "
            f"of epochs ({done}): the job stopped while they were being written; remove "
            "them to start the fit over"
        )


def _epoch_callback(estimator, trainer: Trainer, checkpoint, show: bool) -> Callable | None:
    progress = progress_bar(estimator, PROGRESS_METRICS, initial=trainer.epoch) if show else None
    if checkpoint is None:
        return progress

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        checkpoint.save(trainer)
        if progress is not None:
            progress(epoch, metrics)

    return on_epoch_end


# With ``contamination`` c, the neighbors component leaves out the reference rows that
# reconstruct worst, this many times c of them. The autoencoder learns the bulk of the
# training rows, so anomalies mixed into them reconstruct worse than most normal rows;
# twice the expected share also catches the anomalies that rank just inside it, and the
# normal rows lost with them are the sparsest ones, which the remaining rows still cover.
TRIM_FACTOR = 2.0


def trimmed_reference(
    coordinates: torch.Tensor, latent_dim: int, contamination
) -> torch.Tensor:
    """The reference rows' ``(code, residual)`` coordinates without the worst-reconstructed
    :data:`TRIM_FACTOR` x ``contamination`` share (all of them for ``"auto"``: clean
    training rows). The order of the kept rows is kept."""
    if contamination == "auto" or not len(coordinates):
        return coordinates
    n_kept = max(1, int(np.ceil(len(coordinates) * (1.0 - TRIM_FACTOR * contamination))))
    if n_kept >= len(coordinates):
        return coordinates
    # squared residual norm: the reconstruction error in the scaled units the model uses
    error = coordinates[:, latent_dim:].double().square().sum(dim=1).cpu().numpy()
    kept = np.sort(np.argsort(error, kind="stable")[:n_kept])
    return coordinates[torch.as_tensor(kept, device=coordinates.device)].contiguous()


# With ``contamination`` c, the search for neighbours runs in disjoint random slices of the
# reference of about this many times k / c rows each, and averages the slices' distances.
# A slice then holds about 2k anomalies' worth of rows at most, so a cluster of anomalies
# among the training rows cannot supply all k neighbours of a new anomaly like them in
# most slices ("masking"; subsampled kNN ensembles, Aggarwal and Sathe 2015), while a
# normal row still finds close neighbours in every slice.
GROUP_FACTOR = 2.0


# n_neighbors="auto": the 2 nearest training rows when the training rows are taken as
# normal (contamination "auto"): a finer density than an average over 5, which blurs small
# groups of normal rows, yet not one row's distance alone, which is zero for every
# training row scored again; 5 when a share of them is said to be anomalies, so that a few
# anomalies among the reference rows cannot vouch for a new one.
CLEAN_NEIGHBORS, DEFAULT_NEIGHBORS = 2, 5


# The inputs component (see scoring.components) measures the input-space distances among
# this many nearest reference rows of each row in the joint coordinates. On the ADBench
# sets 4 scored within 0.0001-0.0003 of 8, 16 and 32 (and of a whole second search), and
# every candidate more costs the selection and the gathers: 8 made scoring 1,000,000 rows
# fall below 3x PyOD's AutoEncoder (docs/scoring.md).
INPUT_CANDIDATES = 4


def input_candidates(module, contamination) -> int:
    """How many candidates the inputs component measures for this fit (0: off): clean,
    unconditioned fits with a reference (a contaminated fit's search runs in slices)."""
    clean = contamination == "auto" and module.n_classes == 0 and len(module.reference) > 0
    return INPUT_CANDIDATES if clean else 0


def neighbors_k(n_neighbors, contamination) -> int:
    """The number of neighbours the ``neighbors`` component averages (0: off)."""
    if n_neighbors != "auto":
        return n_neighbors
    return CLEAN_NEIGHBORS if contamination == "auto" else DEFAULT_NEIGHBORS


def reference_groups(n_rows: int, n_neighbors: int, contamination) -> int:
    """How many slices the neighbour search of a reference of ``n_rows`` rows averages."""
    if contamination == "auto" or not n_rows or not n_neighbors:
        return 1
    rows_per_group = int(np.ceil(GROUP_FACTOR * n_neighbors / contamination))
    return max(1, round(n_rows / rows_per_group))


def capped(rows: np.ndarray | None, rng: np.random.RandomState) -> np.ndarray | None:
    """At most :data:`MAX_REFERENCE_ROWS` of ``rows``, drawn with ``rng``, in their order."""
    if rows is None or len(rows) <= MAX_REFERENCE_ROWS:
        return rows
    chosen = rng.choice(len(rows), MAX_REFERENCE_ROWS, replace=False)
    return rows[np.sort(chosen)]


def adds_held_out_rows(module, n_held_out: int, contamination) -> bool:
    """Whether the held-out calibration rows join the reference after calibrating: on a
    clean fit (``contamination`` "auto") that held rows back, whose whole reference is
    searched, when they fit under :data:`MAX_REFERENCE_ROWS`. They were never trained on,
    so their residuals are those of new rows, and they add to the density estimate."""
    return (
        contamination == "auto"
        and n_held_out > 0
        and len(module.reference) > 0
        and getattr(module, "reference_groups", 1) == 1
        and len(module.reference) + n_held_out <= MAX_REFERENCE_ROWS
    )


def add_held_out_rows(
    module, held_out: torch.Tensor, n_neighbors: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Append the joint coordinates ``held_out`` to ``module.reference``, and return each
    held-out row's mean distance to its ``n_neighbors`` nearest *other* reference rows
    (and, with ``module.input_candidates``, its inputs component among its candidates
    other than itself; else None): the values a new normal row gets from the enlarged
    reference, measured leave-one-out, so the calibration stays unbiased. A row is its
    own nearest reference row at distance exactly zero in both views (the search
    measures the chosen rows' distances directly), so the mean over ``n_neighbors + 1``
    rows of ``candidates + 1``, rescaled, leaves it out."""
    from ..scoring.components import reference_inputs, with_known_anomalies
    from ..scoring.neighbors import NeighborSearch

    # a plain tensor (not an inference one) in the buffer, as fit's other references
    module.reference = torch.cat([module.reference, held_out.clone()]).contiguous()
    k = min(n_neighbors, len(module.reference) - 1)
    inputs = own_inputs = None
    if module.input_candidates:
        inputs = reference_inputs(module)
        own_inputs = inputs[len(module.reference) - len(held_out) :]
    with torch.inference_mode():
        search = NeighborSearch(
            module.reference, k + 1, inputs=inputs, candidates=module.input_candidates + 1
        )
        with_self, inputs_with_self = search.distances(held_out, None, own_inputs)
        distances = with_self * ((k + 1) / k)
        if module.anomaly_reference is not None:  # as the component does for any row
            anomalies = NeighborSearch(module.anomaly_reference, 1)
            distances = with_known_anomalies(distances, held_out, anomalies, len(held_out))
    if inputs_with_self is not None:
        inputs_with_self = inputs_with_self * ((k + 1) / k)
    return distances, inputs_with_self
