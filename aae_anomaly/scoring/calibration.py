"""Putting the score components on one scale and combining them.

The components' units differ, so each is normalized on normal rows the model never
trained on (a robust z-score: the median subtracted, divided by the spread), and the
combined score is their weighted mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


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

    def normalize(
        self, components: dict[str, np.ndarray], names: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Robust z-scores of ``components`` (of ``names``; default: every calibrated one)."""
        return {
            name: (components[name] - self.center[name]) / self.spread[name]
            for name in (self.center if names is None else names)
        }

    def weighted(self) -> tuple[str, ...]:
        """The components the combined score is made of (those with a positive weight)."""
        return tuple(name for name in self.center if self.weights[name] > 0)

    def combine(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """The combined anomaly score: larger means more anomalous. Reads only the
        :meth:`weighted` components."""
        normalized = self.normalize(components, self.weighted())
        total_weight = sum(self.weights.values())
        score = sum(self.weights[name] * normalized[name] for name in normalized)
        return score / total_weight

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"center": self.center, "spread": self.spread, "weights": self.weights}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, float]]) -> ScoreCalibration:
        return cls(dict(data["center"]), dict(data["spread"]), dict(data["weights"]))

