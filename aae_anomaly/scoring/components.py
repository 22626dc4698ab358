"""Anomaly scores from a fitted AAE.

Four components per sample, each larger for a more anomalous sample:

``reconstruction``
    the mean reconstruction loss of the sample;
``discriminator``
    ``-D(z)``, minus the discriminator's logit that the code ``z`` came from the prior;
``density``
    ``-log p(z)`` under the prior, for priors that have a density;
``neighbors``
    the mean distance to the ``k`` nearest normal training rows in the AAE's joint
    coordinates ``(z, x - x_hat)``: a non-parametric estimate of the density
    ``p(z) p(residual | z)`` that GPND (Pidhorskyi et al., 2018) factorises the likelihood
    into. The code places a sample on the learned manifold (in the prior's units); the
    residual is what the manifold does not explain.
``inputs``
    the mean distance, in the scaled inputs, to the ``k`` closest there of the row's
    ``module.input_candidates`` nearest reference rows in the joint coordinates: a second
    view of the same neighbourhood, found by the same search. A reference row's input is
    its residual plus its code's reconstruction, so it needs no stored tensor. The joint
    coordinates weigh a residual that training rows, fitted by the networks, have smaller
    than new rows; the inputs do not, and the two views together rank anomalies better
    than either (``docs/scoring.md``). Clean fits only: a contaminated fit's sliced search
    has no single neighbourhood to re-rank.

The units differ, so each component is normalized on normal rows the model never trained
on (the calibration rows held back in ``fit``): a robust z-score, the median subtracted
and the result divided by the spread (interquartile range / 1.349, which equals the
standard deviation for Gaussian data). Held-out rows are used because training rows
reconstruct better than new normal rows; calibrating on them would make every new normal
row look anomalous. The combined score is the weighted mean of the normalized components
(:mod:`.calibration`); ``docs/scoring.md`` gives the default weights and the measurements
behind them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..engine.inference import batch_streams, for_each_batch, inference_ready
from ..engine.model import AAEModule, per_sample_reconstruction_error
from ..engine.runtime import forward_flops_per_row
from ..plugin_system.priors import Prior
from .neighbors import NeighborSearch, SlicedNeighborSearch

COMPONENTS = ("reconstruction", "discriminator", "density", "neighbors", "inputs")

# -log p(z) is infinite where a prior has no mass (outside the uniform box); capping it
# keeps every score finite, and the other components still order such samples.
DENSITY_CAP = 1e4


# The most a known anomaly nearby multiplies the neighbors component by.
KNOWN_ANOMALY_CAP = 1e3


def available_components(module: AAEModule, prior: Prior) -> tuple[str, ...]:
    """The components this model can compute, in scoring order."""
    names = ["reconstruction", "discriminator"]
    if prior.has_density:
        names.append("density")
    if len(module.reference):
        names.append("neighbors")
        if module.input_candidates:
            names.append("inputs")
    return tuple(names)


def default_weights(names: tuple[str, ...]) -> dict[str, float]:
    """The combination that measured best on real data (``docs/benchmarks.md``): the
    neighbourhood's two views where the model has them."""
    chosen = {"neighbors", "inputs"} if "neighbors" in names else {"reconstruction"}
    return {name: float(name in chosen) for name in names}


def with_known_anomalies(
    normal_distance: torch.Tensor,
    joint: torch.Tensor,
    anomalies: NeighborSearch,
    n_valid: int | None = None,
) -> torch.Tensor:
    """The neighbors component of a model that knows some anomalies: the mean distance
    ``d`` to the nearest normal rows, multiplied by ``d / a`` where that is above 1, ``a``
    being the distance to the nearest known anomaly (``anomalies`` searches them with
    ``k=1``). A row closer to a known anomaly than to its normal neighbours scores higher
    the closer it is (up to :data:`KNOWN_ANOMALY_CAP` times); every other row keeps its
    score."""
    nearest_anomaly = anomalies.mean_distance(joint, n_valid)
    ratio = normal_distance / nearest_anomaly.clamp(min=1e-12)
    return normal_distance * ratio.clamp(min=1.0, max=KNOWN_ANOMALY_CAP)


def reference_search(module: AAEModule, n_neighbors: int, threads: int = 1):
    """The search of the neighbors component: over the whole reference, or averaged over
    its slices (``module.reference_groups``, see ``estimators.fitting.reference_groups``);
    with ``module.input_candidates``, one that measures the inputs component too."""
    groups = getattr(module, "reference_groups", 1)
    if groups > 1:
        return SlicedNeighborSearch(module.reference, n_neighbors, groups, threads)
    if module.input_candidates:
        return NeighborSearch(
            module.reference, n_neighbors, threads, reference_inputs(module),
            module.input_candidates,
        )
    return NeighborSearch(module.reference, n_neighbors, threads)


def reference_inputs(module: AAEModule) -> torch.Tensor:
    """The reference rows in the scaled inputs: residual plus the code's reconstruction.
    Computed in one pass over the whole reference, the same way at fit and after loading
    (so scores stay bit-identical), and kept until the reference changes."""
    kept = getattr(module, "_reference_inputs", None)
    if kept is not None and kept[0] is module.reference:
        return kept[1]
    with torch.no_grad():
        inputs = module.inputs_of(module.reference)
    module._reference_inputs = (module.reference, inputs.contiguous())
    return module._reference_inputs[1]


def joint_coordinates(
    module: AAEModule, rows: np.ndarray, batch_size: int, device: torch.device, workers: int = 1
) -> torch.Tensor:
    """``(code, residual)`` of each row, on ``device``: the neighbors component's space."""
    inference_ready(module)
    width = module.latent_dim + rows.shape[1]
    coordinates = torch.empty((len(rows), width), device=device)

    def work(where: slice, batch: torch.Tensor) -> None:
        x = module.scale_input(batch)
        z = module.encode(x)
        joint = module.joint_coordinates(x, z, module.decode(z))
        coordinates[where] = joint[: where.stop - where.start]

    for_each_batch(rows, batch_size, device, work, workers)
    return coordinates


def raw_components(
    module: AAEModule,
    prior: Prior,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    workers: int = 1,
    n_neighbors: int = 5,
    classes: np.ndarray | None = None,
    chosen_classes: np.ndarray | None = None,
    wanted: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Each component for each row of ``rows`` (flat, in the user's units); ``workers``
    batches at a time on the CPU (see :func:`~aae_anomaly.engine.inference.for_each_batch`).
    ``wanted`` limits the work to those components (a score needs only the weighted ones).

    For a label-conditioned model (``module.n_classes > 0``), the class-dependent
    components use each row's class index from ``classes``, or else its best-matching
    class (see :mod:`aae_anomaly.conditioning`); ``chosen_classes``, when given, receives
    the class index each row used.
    """
    names = available_components(module, prior)
    if wanted is not None:
        wanted = set(wanted)
        names = tuple(name for name in names if name in wanted)
    out = {name: np.empty(len(rows), dtype=np.float64) for name in names}
    inference_ready(module)
    streams = batch_streams(len(rows), batch_size, workers)
    normal_search = anomaly_search = None
    searched = "neighbors" in out or "inputs" in out
    if searched:
        # with too few batches to stream side by side, the threads share each batch's
        # search instead, by far its largest part
        normal_search = reference_search(module, n_neighbors, workers // streams)
        if module.anomaly_reference is not None:
            anomaly_search = NeighborSearch(module.anomaly_reference, 1)

    def work(where: slice, batch: torch.Tensor) -> None:
        x = module.scale_input(batch)
        z = module.encode(x)
        output = module.decode(z)
        values = {}
        if "reconstruction" in out:
            values["reconstruction"] = per_sample_reconstruction_error(output, x, module.loss)
        if module.n_classes:
            # every row's class is chosen, and reported, whichever components are wanted
            values.update(
                _conditioned(module, prior, z, where, classes, chosen_classes, "density" in out)
            )
        else:
            if "discriminator" in out:
                values["discriminator"] = -module.discriminator(z)
            if "density" in out:
                values["density"] = -prior.log_prob(z)
        if "density" in out:
            values["density"] = values["density"].nan_to_num(
                nan=DENSITY_CAP, posinf=DENSITY_CAP
            ).clamp(max=DENSITY_CAP)
        m = where.stop - where.start
        if searched:
            joint = module.joint_coordinates(x, z, output)
            if module.input_candidates:
                values["neighbors"], values["inputs"] = normal_search.distances(
                    joint, m, x.reshape(len(x), -1)
                )
            else:
                values["neighbors"] = normal_search.mean_distance(joint, m)
            if anomaly_search is not None and "neighbors" in out:
                values["neighbors"] = with_known_anomalies(
                    values["neighbors"], joint, anomaly_search, m
                )
        for name in names:
            out[name][where] = values[name][:m].cpu().numpy()  # float32 -> 64: exact

    for_each_batch(rows, batch_size, device, work, streams)
    return out


def _conditioned(module, prior, z, where, classes, chosen_classes, with_density):
    from .conditioning import conditioned_values

    given = None
    if classes is not None:
        given = torch.zeros(len(z), dtype=torch.long, device=z.device)
        given[: where.stop - where.start] = torch.from_numpy(classes[where]).to(z.device)
    values = conditioned_values(module, prior, z, given, with_density)
    chosen = values.pop("class")
    if chosen_classes is not None:
        chosen_classes[where] = chosen[: where.stop - where.start].cpu().numpy()
    return values


def scoring_flops_per_row(module: AAEModule, components: Iterable[str] | None = None) -> int:
    """Floating-point operations to score one row for ``components`` (default: every
    component; a score computes only its weighted ones, ``ScoreCalibration.weighted``):
    the encoder and decoder; the discriminator when its component is computed (a
    label-conditioned model always runs it, to choose each row's class); and, for the
    neighbors component, the search's ranking product against the reference rows, with its
    extra column for the norms (the direct distances to the k chosen neighbours add a
    negligible k * width more)."""
    names = set(COMPONENTS if components is None else components)
    with_discriminator = "discriminator" in names or module.n_classes > 0
    flops = forward_flops_per_row(module, with_discriminator)
    if ("neighbors" in names or "inputs" in names) and len(module.reference):
        n_reference, width = module.reference.shape
        flops += 2 * n_reference * (width + 1)
        if module.input_candidates:  # the candidates' distances in the inputs
            flops += 2 * module.input_candidates * (width - module.latent_dim)
    return flops


