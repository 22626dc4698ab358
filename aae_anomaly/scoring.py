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

The units differ, so each component is normalized on normal rows the model never trained
on (the calibration rows held back in ``fit``): a robust z-score, the median subtracted
and the result divided by the spread (interquartile range / 1.349, which equals the
standard deviation for Gaussian data). Held-out rows are used because training rows
reconstruct better than new normal rows; calibrating on them would make every new normal
row look anomalous. The combined score is the weighted mean of the normalized components;
``docs/scoring.md`` gives the default weights and the measurements behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .engine.inference import for_each_batch
from .engine.model import AAEModule, per_sample_reconstruction_error
from .engine.runtime import forward_flops_per_row
from .priors import Prior

COMPONENTS = ("reconstruction", "discriminator", "density", "neighbors")

# -log p(z) is infinite where a prior has no mass (outside the uniform box); capping it
# keeps every score finite, and the other components still order such samples.
DENSITY_CAP = 1e4


# Query rows per distance computation against the reference set: a divisor of the scoring
# batch size, so every row's distances come from identically shaped matrix products, and
# small enough that the block of distances stays in cache (measured fastest here).
NEIGHBOR_QUERY_ROWS = 128
# Reference rows per group in the two-stage nearest-neighbour selection (see
# ``_nearest``): a full top-k over thousands of distances per row cost more than the
# matrix product that made them.
NEIGHBOR_GROUP = 64
# The most a known anomaly nearby multiplies the neighbors component by.
KNOWN_ANOMALY_CAP = 1e3


def available_components(module: AAEModule, prior: Prior) -> tuple[str, ...]:
    """The components this model can compute, in scoring order."""
    names = ["reconstruction", "discriminator"]
    if prior.has_density:
        names.append("density")
    if len(module.reference):
        names.append("neighbors")
    return tuple(names)


def default_weights(names: tuple[str, ...]) -> dict[str, float]:
    """The combination that measured best on real data (``docs/benchmarks.md``)."""
    chosen = "neighbors" if "neighbors" in names else "reconstruction"
    return {name: float(name == chosen) for name in names}


def mean_neighbor_distance(
    queries: torch.Tensor, reference: torch.Tensor, k: int, n_valid: int | None = None
) -> torch.Tensor:
    """Mean Euclidean distance of each query row to its ``k`` nearest reference rows.

    Rows from ``n_valid`` on are padding: blocks holding nothing else are skipped (their
    distances are left at zero), which keeps a call for a few rows cheap.
    """
    k = min(k, len(reference))
    n_valid = len(queries) if n_valid is None else n_valid
    reference_norms = reference.square().sum(dim=1)
    grouped = len(reference) > 2 * k * NEIGHBOR_GROUP
    if grouped:
        # pad to whole groups with rows that rank last
        padding = -len(reference) % NEIGHBOR_GROUP
        reference_norms = torch.nn.functional.pad(reference_norms, (0, padding), value=math.inf)
        padded_reference = torch.nn.functional.pad(reference, (0, 0, 0, padding))
    else:
        padded_reference = reference
    distances = torch.zeros(len(queries), device=queries.device)
    # one buffer for every block's distances instead of a fresh 2 MB block per 128 rows
    # (5-10% of the search's time on the CPU, measured)
    buffer = queries.new_empty((min(NEIGHBOR_QUERY_ROWS, len(queries)), len(reference_norms)))
    for start in range(0, n_valid, NEIGHBOR_QUERY_ROWS):
        chunk = queries[start : start + NEIGHBOR_QUERY_ROWS]
        # |q - r|^2 = |q|^2 - 2 q.r + |r|^2 ranks the neighbours with one matrix product
        # (|q|^2 is the same for every r of a row, so it is left out of the ranking). The
        # expansion cancels digits when q and r are close, so the chosen neighbours'
        # distances are then measured directly: a score does not depend on rounding.
        ranking = buffer[: len(chunk)]
        torch.addmm(reference_norms, chunk, padded_reference.T, alpha=-2, out=ranking)
        if grouped:
            nearest = _nearest_by_groups(ranking, k)
        else:
            nearest = ranking.topk(k, dim=1, largest=False).indices
        direct = (chunk.unsqueeze(1) - reference[nearest]).norm(dim=2)
        distances[start : start + len(chunk)] = direct.mean(dim=1)
    return distances


def _nearest_by_groups(ranking: torch.Tensor, k: int) -> torch.Tensor:
    """The columns of the ``k`` smallest values of each row, found in two cheap stages.

    The columns split into groups of :data:`NEIGHBOR_GROUP`. Each of a row's ``k``
    smallest values lies in a group whose minimum is at most the ``k``-th smallest value,
    and at most ``k`` groups have such a minimum: so the ``k`` smallest values lie in the
    ``k`` groups of smallest minima, and a top-k over those few candidates finds them.
    """
    rows = len(ranking)
    by_group = ranking.view(rows, -1, NEIGHBOR_GROUP)
    groups = by_group.amin(dim=2).topk(k, dim=1, largest=False).indices
    offsets = torch.arange(NEIGHBOR_GROUP, device=ranking.device)
    candidates = (groups.unsqueeze(2) * NEIGHBOR_GROUP + offsets).view(rows, -1)
    chosen = ranking.gather(1, candidates).topk(k, dim=1, largest=False).indices
    return candidates.gather(1, chosen)


def with_known_anomalies(
    normal_distance: torch.Tensor,
    joint: torch.Tensor,
    anomalies: torch.Tensor,
    n_valid: int | None = None,
) -> torch.Tensor:
    """The neighbors component of a model that knows some anomalies: the mean distance
    ``d`` to the nearest normal rows, multiplied by ``d / a`` where that is above 1, ``a``
    being the distance to the nearest known anomaly. A row closer to a known anomaly than
    to its normal neighbours scores higher the closer it is (up to
    :data:`KNOWN_ANOMALY_CAP` times); every other row keeps its score."""
    nearest_anomaly = mean_neighbor_distance(joint, anomalies, 1, n_valid)
    ratio = normal_distance / nearest_anomaly.clamp(min=1e-12)
    return normal_distance * ratio.clamp(min=1.0, max=KNOWN_ANOMALY_CAP)


def joint_coordinates(
    module: AAEModule, rows: np.ndarray, batch_size: int, device: torch.device, workers: int = 1
) -> torch.Tensor:
    """``(code, residual)`` of each row, on ``device``: the neighbors component's space."""
    module.eval()
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
) -> dict[str, np.ndarray]:
    """Each component for each row of ``rows`` (flat, in the user's units); ``workers``
    batches at a time on the CPU (see :func:`~aae_anomaly.engine.inference.for_each_batch`).

    For a label-conditioned model (``module.n_classes > 0``), the class-dependent
    components use each row's class index from ``classes``, or else its best-matching
    class (see :mod:`aae_anomaly.conditioning`); ``chosen_classes``, when given, receives
    the class index each row used.
    """
    names = available_components(module, prior)
    out = {name: np.empty(len(rows), dtype=np.float64) for name in names}
    module.eval()

    def work(where: slice, batch: torch.Tensor) -> None:
        x = module.scale_input(batch)
        z = module.encode(x)
        output = module.decode(z)
        values = {"reconstruction": per_sample_reconstruction_error(output, x, module.loss)}
        if module.n_classes:
            values.update(
                _conditioned(module, prior, z, where, classes, chosen_classes, "density" in out)
            )
        else:
            values["discriminator"] = -module.discriminator(z)
            if "density" in out:
                values["density"] = -prior.log_prob(z)
        if "density" in out:
            values["density"] = values["density"].nan_to_num(
                nan=DENSITY_CAP, posinf=DENSITY_CAP
            ).clamp(max=DENSITY_CAP)
        m = where.stop - where.start
        if "neighbors" in out and module.anomaly_reference is None:
            values["neighbors"] = mean_neighbor_distance(
                module.joint_coordinates(x, z, output), module.reference, n_neighbors, m
            )
        elif "neighbors" in out:
            joint = module.joint_coordinates(x, z, output)
            values["neighbors"] = with_known_anomalies(
                mean_neighbor_distance(joint, module.reference, n_neighbors, m),
                joint,
                module.anomaly_reference,
                m,
            )
        for name in names:
            out[name][where] = values[name][:m].cpu().numpy()  # float32 -> 64: exact

    for_each_batch(rows, batch_size, device, work, workers)
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


def scoring_flops_per_row(module: AAEModule) -> int:
    """Floating-point operations to score one row: the three networks' forward passes and,
    when the neighbors component is on, the matrix product of the neighbour search (the
    direct distances to the k chosen neighbours add a negligible k * width more)."""
    n_reference, width = module.reference.shape
    return forward_flops_per_row(module) + 2 * n_reference * width


@dataclass
class ScoreCalibration:
    """Per-component centre and spread from held-out normal rows, and the weights."""

    center: dict[str, float]
    spread: dict[str, float]
    weights: dict[str, float]

    @classmethod
    def fit(
        cls, components: dict[str, np.ndarray], weights: dict[str, float] | None = None
    ) -> ScoreCalibration:
        center, spread = {}, {}
        for name, values in components.items():
            median = float(np.median(values))
            q75, q25 = np.percentile(values, [75, 25])
            scale = float(q75 - q25) / 1.349
            if not scale > 0:  # many ties: fall back to the standard deviation
                scale = float(np.std(values))
            # a floor relative to the values' size keeps a constant component from
            # dividing by zero and from amplifying rounding noise
            spread[name] = max(scale, 1e-6 * max(abs(median), 1e-6))
            center[name] = median
        if weights is None:
            weights = {name: 1.0 for name in components}
        return cls(center, spread, {name: float(weights.get(name, 0.0)) for name in components})

    def normalize(self, components: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            name: (components[name] - self.center[name]) / self.spread[name]
            for name in self.center
        }

    def combine(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """The combined anomaly score: larger means more anomalous."""
        normalized = self.normalize(components)
        total_weight = sum(self.weights.values())
        score = sum(self.weights[name] * normalized[name] for name in normalized)
        return score / total_weight

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"center": self.center, "spread": self.spread, "weights": self.weights}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, float]]) -> ScoreCalibration:
        return cls(dict(data["center"]), dict(data["spread"]), dict(data["weights"]))
