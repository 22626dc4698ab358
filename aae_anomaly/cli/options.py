"""Options and help texts that several commands share, so that an option means and reads
the same wherever it appears.

Each ``*_option`` function returns a click decorator; the training ones take the default
of the estimator the command fits, the others have one default everywhere.
"""

from __future__ import annotations

import click

from ..engine.model import RECONSTRUCTION_LOSSES
from ..estimators.scaling import SCALINGS

DEVICE_HELP = "Where to score: cpu, auto (CUDA when present), cuda:0..."
LABEL_HELP = "Column of anomaly labels (1 = anomaly) in a .csv/.parquet DATA."


class AutoOr(click.ParamType):
    """``auto``, or a value of ``kind`` (int or float)."""

    def __init__(self, kind: type):
        self.kind = kind
        self.name = f"auto|{'INTEGER' if kind is int else 'FLOAT'}"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, self.kind):
            return value
        try:
            return self.kind(value)
        except ValueError:
            noun = "an integer" if self.kind is int else "a number"
            self.fail(f"{value!r} is neither 'auto' nor {noun}", param, ctx)


# -- training: fit, classify, cluster, generate --------------------------------------------------
def encoder_option(default: str):
    return click.option("--encoder", default=default, help="Encoder plugin.")


def plugin_options_option(kind: str, example: str, more: str = ""):
    """``--KIND-option KEY=VALUE``, repeatable, into the ``KIND_params`` parameter."""
    return click.option(
        f"--{kind}-option",
        f"{kind}_params",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"An option of the {kind}, e.g. {example}; repeat for several.{more}",
    )


def epochs_option(default: int):
    return click.option("--epochs", type=int, default=default, help="Passes over the data.")


def batch_size_option(default: int):
    return click.option("--batch-size", type=int, default=default, help="Rows a step.")


def loss_option(default: str, help: str):
    return click.option(
        "--loss",
        "reconstruction_loss",
        type=click.Choice(RECONSTRUCTION_LOSSES),
        default=default,
        help=help,
    )


def scaling_option(default: str, help: str):
    return click.option("--scaling", type=click.Choice(SCALINGS), default=default, help=help)


def seed_option(default: int):
    return click.option("--seed", "random_state", type=int, default=default, help="Random seed.")


def training_device_option(default: str):
    return click.option(
        "--device", default=default, help="auto (CUDA when present), cpu, cuda:0..."
    )


def quiet_option():
    return click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes on stderr.")


# -- using a model: score, evaluate, plot; and output --------------------------------------------
def scoring_device_option():
    return click.option("--device", default="cpu", help=DEVICE_HELP)


def anomaly_labels_option(more: str = ""):
    """``--label-column NAME``: DATA's column of anomaly labels."""
    return click.option("--label-column", metavar="NAME", help=LABEL_HELP + more)


def json_option(help: str):
    return click.option("--json", "as_json", is_flag=True, help=help)


def table_output_option(what: str):
    """``-o/--output`` of a command that writes a table, to stdout unless given a file."""
    return click.option(
        "-o", "--output", default="-", help=f"{what}: .csv, .parquet or .npy, or - for stdout."
    )
