"""Options and help texts that several commands share, so that an option means and reads
the same wherever it appears.

Each ``*_option`` function returns a click decorator; the training ones take the default
of the estimator the command fits, the others have one default everywhere.
"""

from __future__ import annotations

import functools
import logging
import sys

import click

from ..engine.model import RECONSTRUCTION_LOSSES
from ..estimators.columns import MISSING_CHOICES
from ..estimators.progress import LOGGER
from ..estimators.scaling import SCALINGS
from ..io.tables import DELIMITERS, ReadOptions

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


class Shape(click.ParamType):
    """A per-sample shape such as ``1,28,28`` (or ``1x28x28``); ``H,W`` is one channel,
    ``1,H,W``."""

    name = "C,H,W"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).replace("x", ",").split(",")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if not shape or any(s < 1 for s in shape):
            self.fail(f"{value!r} is not a shape of positive integers, e.g. 1,28,28", param, ctx)
        return (1, *shape) if len(shape) == 2 else shape


# -- reading DATA: every command that reads a table ---------------------------------------------
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def _delimiter(ctx, param, value):
    if value is None:
        return None
    value = _DELIMITER_NAMES.get(value.lower(), value)
    if value not in DELIMITERS:
        raise click.BadParameter(
            f"{value!r} is not one of , ; tab | (or comma, semicolon, tab, pipe)", ctx, param
        )
    return value


def table_options():
    """``--delimiter``, ``--decimal`` and ``--encoding`` of a CSV DATA, given to the
    command as one ``read_options`` (:class:`~aae_anomaly.io.tables.ReadOptions`)."""
    options = [
        click.option(
            "--delimiter",
            callback=_delimiter,
            help="Field separator of a CSV DATA: , ; tab or | (default: detected).",
        ),
        click.option(
            "--decimal",
            type=click.Choice((".", ",")),
            help="Decimal mark of a CSV DATA (default: detected; , only with a ; or tab "
            "delimiter).",
        ),
        click.option(
            "--encoding", default="utf-8", help="Text encoding of a CSV DATA (a BOM is dropped)."
        ),
        click.option(
            "--thousands",
            type=click.Choice((",", ".", " ", "'")),
            help="Thousands separator of numbers in a CSV DATA, as in 1,234.5 (default: none).",
        ),
    ]

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, delimiter, decimal, encoding, thousands, **kwargs):
            read_options = ReadOptions(delimiter, decimal, encoding, thousands)
            return command(*args, read_options=read_options, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def stacked(options: list):
    """One decorator that applies click ``options`` in their listed order (first on top
    in ``--help``)."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _column_names_option(flag: str, dest: str, text: str):
    return click.option(flag, dest, multiple=True, metavar="NAME", help=text)


def id_column_option(more: str = ""):
    return _column_names_option(
        "--id-column", "id_columns",
        "A column that identifies rows (an id, a timestamp): not a feature, and copied into "
        "the output; repeat for several." + more,
    )  # fmt: skip


def drop_column_option(more: str = ""):
    return _column_names_option(
        "--drop-column", "drop_columns",
        "A column to leave out of the features; repeat for several." + more,
    )  # fmt: skip


def missing_option(default: str):
    return click.option(
        "--missing",
        type=click.Choice(MISSING_CHOICES),
        default=default,
        help="Missing cells (empty, NaN): an error naming the column, or imputed from the "
        "training rows (median, most frequent category), now and when scoring.",
    )


def verbose_option():
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Log a line per epoch (losses, elapsed time) on stderr, also when it is not a "
        "terminal.",
    )


class _StderrLog(logging.Handler):
    """Log lines on whatever standard error is when they are written."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def progress_level(quiet: bool, verbose: bool) -> int:
    """The estimators' ``verbose``: 2 (log lines, with a handler on stderr) for --verbose,
    1 (a progress bar) on a terminal, else 0."""
    if verbose:
        if not any(isinstance(h, _StderrLog) for h in LOGGER.handlers):
            handler = _StderrLog()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        return 2
    return 0 if quiet or not sys.stderr.isatty() else 1


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


def scaling_option(default: str, help: str, choices: tuple[str, ...] = SCALINGS):
    return click.option("--scaling", type=click.Choice(choices), default=default, help=help)


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


def classes_column_option(help_text: str):
    """``--classes-column NAME``, the column of class labels, given to the command as
    ``label_column``; ``--label-column``, its name in 0.1, still works with a warning
    (everywhere else ``--label-column`` is the 0/1 anomaly labels)."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, classes_column, old_label_column, **kwargs):
            if old_label_column is not None:
                if classes_column is not None:
                    raise click.UsageError(
                        "give --classes-column alone; --label-column is its old name here"
                    )
                click.echo(
                    "Warning: --label-column is deprecated for class labels and will be "
                    "removed in the next release; use --classes-column (--label-column "
                    "names 0/1 anomaly labels in fit, score, evaluate and plot)",
                    err=True,
                )
                classes_column = old_label_column
            return command(*args, label_column=classes_column, **kwargs)

        wrapper = click.option(
            "--label-column", "old_label_column", metavar="NAME", hidden=True
        )(wrapper)
        return click.option(
            "--classes-column", "classes_column", metavar="NAME", help=help_text
        )(wrapper)

    return decorate
