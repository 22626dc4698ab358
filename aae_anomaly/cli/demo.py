"""The main job in one call: fit on the normal rows of a data set with known anomalies,
score a held-out part, and report how well the scores separate the anomalies. As a
function, :func:`run_demo`, and as the ``demo`` command."""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
import numpy as np

from ..estimators.detector import AAEDetector
from ..plugin_system.datasets import load_dataset
from .app import main
from .reports import Evaluation, evaluate, score_table

DEFAULT_DATASET = "sklearn:name=breast_cancer"


@dataclass
class DemoReport:
    dataset: str
    n_features: int
    n_train: int
    fit_seconds: float
    evaluation: Evaluation

    def format(self) -> str:
        return "\n".join(
            [
                f"data set       {self.dataset} ({self.n_features} features)",
                f"trained on     {self.n_train} normal rows in {self.fit_seconds:.1f} s",
                self.evaluation.format(),
            ]
        )


def run_demo(
    dataset: str = DEFAULT_DATASET, seed: int = 0, train_fraction: float = 0.6
) -> DemoReport:
    """Fit on ``train_fraction`` of the normal rows; score the rest and every anomaly."""
    data = load_dataset(dataset)
    if data.y is None:
        raise ValueError(f"data set {dataset!r} has no anomaly labels to evaluate against")
    labels = np.asarray(data.y).reshape(-1) != 0
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(~labels))
    n_train = int(train_fraction * len(normal))
    test = np.concatenate([normal[n_train:], np.flatnonzero(labels)])

    started = time.perf_counter()
    detector = AAEDetector(random_state=seed).fit(data.X[normal[:n_train]])
    fit_seconds = time.perf_counter() - started

    table = score_table(detector, data.X[test])
    return DemoReport(
        dataset=dataset,
        n_features=data.X[0].size,
        n_train=n_train,
        fit_seconds=fit_seconds,
        evaluation=evaluate(table, labels[test], detector.offset_),
    )


@main.command()
@click.option(
    "--dataset", default=DEFAULT_DATASET, help="Dataset plugin spec with known anomalies."
)
@click.option("--seed", default=0, type=int, help="Seed of the split and the fit.")
def demo(dataset: str, seed: int) -> None:
    """Fit on normal rows of a bundled data set, score held-out rows, report ROC-AUC.

    \b
    Example:
      aae-anomaly demo --dataset synthetic:n=5000,anomalies=0.05
    """
    try:
        report = run_demo(dataset, seed=seed)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(report.format())
