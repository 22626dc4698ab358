"""The ``aae-anomaly`` command line."""

from __future__ import annotations

import click

from . import __version__
from .demo import DEFAULT_DATASET, run_demo


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="aae-anomaly")
def main() -> None:
    """Find anomalies with adversarial autoencoders."""


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
