"""The ``aae-anomaly`` command line.

Results go to standard output and nothing else does, so output can be piped; progress,
notes and errors go to standard error. Bad input or usage exits with status 2 and one
``Error: ...`` line; status 1 means a bug.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource

from . import __version__
from .demo import DEFAULT_DATASET, run_demo
from .engine.model import POSTERIORS, RECONSTRUCTION_LOSSES
from .errors import AAEAnomalyError
from .estimator import FLOAT32_MAX, SCALINGS, AAEDetector, _check_values
from .family import AAEClassifier, AAEClustering, SupervisedAAE
from .fitconfig import DEFAULTS as FIT_DEFAULTS
from .fitconfig import merge_settings, parse_options, read_config
from .modelfile import load_model, read_header
from .plugins import get_plugin_manager
from .reports import (
    describe_model,
    evaluate,
    format_model,
    format_table,
    plugin_rows,
    score_table,
)
from .tabular_io import check_features, check_labels, read_data, write_table

# Expected failures caused by the input, the environment or the plugins installed; any
# other exception is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, AAEAnomalyError)


class BadInput(click.ClickException):
    """Bad input: one ``Error: ...`` line on standard error and exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected errors into :class:`BadInput`, and warnings into one-line notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            yield
        except click.ClickException:
            raise
        except USER_ERRORS as exc:
            raise BadInput(str(exc) or type(exc).__name__) from None
        finally:
            for warning in caught:
                click.echo(f"Warning: {' '.join(str(warning.message).split())}", err=True)


# click 8.2+ raises this for a bare command that needs arguments; older click prints help
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(click.Group):
    """A group whose usage errors (an unknown option, a bad value) are one line on standard
    error with exit status 2, like every other bad input, instead of click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except NO_ARGS_IS_HELP as exc:
            exc.show()  # the help text, as click prints it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(__version__, prog_name="aae-anomaly")
def main() -> None:
    """Find anomalies with adversarial autoencoders.

    Train on a file of normal rows with `fit`, keep the model as one file, and `score`
    or `evaluate` new rows with it. DATA is a .csv (with a header line), .parquet, .npy
    or .npz file, or a dataset plugin spec such as synthetic:n=2000,anomalies=0.05.
    """


DATA_HELP = "DATA: a .csv/.parquet/.npy/.npz file or a dataset spec name:key=value,..."


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


# -- fit ---------------------------------------------------------------------------------------
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


LATENT_DIM = AutoOr(int)

PLUGIN_OPTION_FLAGS = {"prior_params": "--prior-option", "encoder_params": "--encoder-option"}


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set option ``name`` (rather than click filling in its default)."""
    source = ctx.get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


@main.command()
@click.argument("data")
@click.option("-o", "--output", required=True, help="Model file to write (e.g. model.aae).")
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    help="TOML or JSON file of settings keyed by AAEDetector parameter names "
    "(prior, prior_params, epochs, ...); options given on the command line win.",
)
@click.option("--prior", default=FIT_DEFAULTS["prior"], help="Prior plugin (see `plugins`).")
@click.option(
    "--prior-option",
    "prior_params",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the prior, e.g. n_components=5; repeat for several. Values are read "
    "as JSON when they parse (3, 0.5, [64,32], true), else as text.",
)
@click.option("--encoder", default=FIT_DEFAULTS["encoder"], help="Encoder plugin.")
@click.option(
    "--encoder-option",
    "encoder_params",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the encoder, e.g. hidden=[64,32]; repeat for several.",
)
@click.option(
    "--latent-dim",
    type=LATENT_DIM,
    default=FIT_DEFAULTS["latent_dim"],
    help="Code size, or 'auto': half the features, between 2 and 8.",
)
@click.option("--epochs", type=int, default=FIT_DEFAULTS["epochs"], help="Passes over the data.")
@click.option("--batch-size", type=int, default=FIT_DEFAULTS["batch_size"], help="Rows a step.")
@click.option("--lr-autoencoder", type=float, default=FIT_DEFAULTS["lr_autoencoder"])
@click.option("--lr-discriminator", type=float, default=FIT_DEFAULTS["lr_discriminator"])
@click.option("--lr-generator", type=float, default=FIT_DEFAULTS["lr_generator"])
@click.option(
    "--loss",
    "reconstruction_loss",
    type=click.Choice(RECONSTRUCTION_LOSSES),
    default=FIT_DEFAULTS["reconstruction_loss"],
    help="Reconstruction loss.",
)
@click.option(
    "--scaling",
    type=click.Choice(SCALINGS),
    default=FIT_DEFAULTS["scaling"],
    help="Input statistics: per_feature (columns in different units), shared (one unit, "
    "such as pixels); auto: shared for images, else per_feature.",
)
@click.option("--posterior", type=click.Choice(POSTERIORS), default=FIT_DEFAULTS["posterior"])
@click.option(
    "--contamination",
    type=AutoOr(float),
    default=FIT_DEFAULTS["contamination"],
    help="Expected share of anomalies, sets the threshold; 'auto' flags scores above the "
    "99th percentile of held-out normal rows.",
)
@click.option(
    "--calibration-fraction",
    type=float,
    default=FIT_DEFAULTS["calibration_fraction"],
    help="Share of rows held back to normalize the scores.",
)
@click.option(
    "--seed", "random_state", type=int, default=FIT_DEFAULTS["random_state"], help="Random seed."
)
@click.option(
    "--device", default=FIT_DEFAULTS["device"], help="auto (CUDA when present), cpu, cuda:0..."
)
@click.option(
    "--label-column",
    metavar="NAME",
    help="Column of anomaly labels (1 = anomaly) in a .csv/.parquet DATA; its anomalies "
    "are left out of training.",
)
@click.option(
    "--classes-column",
    metavar="NAME",
    help="Column of class labels of the normal rows (whole numbers) in a .csv/.parquet "
    "DATA: each class gets its own region of the latent space (label-conditioned "
    "regularization; needs --prior mixture or swiss_roll with a region per class).",
)
@click.option(
    "--known-anomalies",
    is_flag=True,
    help="Semi-supervised: keep DATA's labelled anomalies (label 1) as known anomalies, "
    "which raise the score of rows near them, instead of leaving them out.",
)
@click.option(
    "--checkpoint",
    "checkpoint_dir",
    metavar="DIR",
    help="Save the state of the fit to DIR after every epoch, so that an interrupted fit "
    "can continue with --resume.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the fit whose checkpoint is in --checkpoint DIR (same DATA and "
    "settings); it ends with the model an uninterrupted fit gives. Starts from the "
    "beginning when DIR holds no checkpoint yet.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes on stderr.")
@click.pass_context
def fit(
    ctx: click.Context,
    data,
    output,
    config_file,
    label_column,
    classes_column,
    known_anomalies,
    checkpoint_dir,
    resume,
    quiet,
    **options,
) -> None:
    """Train a detector on DATA and save it to one model file.

    DATA should hold normal rows. When it has labels (an .npz with y, a dataset plugin
    with labels, or --label-column), only the rows labelled 0 are trained on, and a note
    says so on stderr. Settings come from the options given, then --config, then the
    defaults shown.

    SIGINT or SIGTERM stops the fit without writing OUTPUT (exit status 130 or 143); with
    --checkpoint, run the same command with --resume to continue it.

    \b
    Example:
      aae-anomaly fit normal.csv -o model.aae --prior mixture \\
          --prior-option n_components=5 --epochs 100
      aae-anomaly fit synthetic:n=2000 -o model.aae --config settings.toml
      aae-anomaly fit big.csv -o model.aae --checkpoint ckpt/ [--resume]
    """
    if resume and not checkpoint_dir:
        raise BadInput("--resume needs --checkpoint DIR, the directory to resume from")
    with user_errors(), _interruptible(output, checkpoint_dir):
        explicit = {name: value for name, value in options.items() if _given(ctx, name)}
        for name, flag in PLUGIN_OPTION_FLAGS.items():
            if name in explicit:
                explicit[name] = parse_options(explicit[name], flag)
        config = read_config(config_file) if config_file else {}
        settings = merge_settings(config, explicit)

        dataset = read_data(data, label_column)
        classes = None
        if classes_column:
            dataset, classes = _pop_column(dataset, data, classes_column)
        anomaly_labels = None
        if known_anomalies:
            rows, anomaly_labels, note = _with_known_anomalies(dataset, data)
        else:
            rows, note = _normal_rows(dataset, data)
            if classes is not None and dataset.y is not None:
                classes = classes[~check_labels(dataset.y, data, len(dataset.X))]
        if note and not quiet:
            click.echo(note, err=True)
        if rows.ndim == 2:  # name the columns if a value cannot be trained on
            _check_values(rows, dataset.feature_names, limit=FLOAT32_MAX)
        detector = AAEDetector(**settings, verbose=not quiet and sys.stderr.isatty())
        if resume and not quiet:
            click.echo(_resume_note(checkpoint_dir), err=True)
        n_trained = len(rows) if anomaly_labels is None else int((~anomaly_labels).sum())
        detector.fit(
            rows,
            classes=classes,
            anomaly_labels=anomaly_labels,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
        )
        names = dataset.feature_names
        if names is not None and rows.ndim == 2 and len(names) == rows.shape[1]:
            # fit saw a bare array; keep the file's column names so that `score` can check
            # that new files have the same columns
            detector.feature_names_in_ = np.asarray(names, dtype=object)
        detector.save(output)
    if not quiet:
        click.echo(
            f"saved {output}: {detector.prior} prior, {detector.encoder} encoder, "
            f"{n_trained} rows, {detector.epochs} epochs, "
            f"threshold score > {-detector.offset_:.4g}",
            err=True,
        )


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: stop cleanly, writing nothing at the output path."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _interruptible(output: str, checkpoint_dir: str | None) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into one ``Error:`` line and exit status 128 + signal.

    The model file is written atomically at the very end, so an interrupted fit leaves
    nothing at ``output`` (a model already there stays as it was).
    """

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        if checkpoint_dir:
            where = f"the checkpoint in {checkpoint_dir} holds the epochs done; run the same "
            where += "command with --resume to continue"
        else:
            where = "use --checkpoint DIR to be able to resume an interrupted fit"
        click.echo(f"Error: fit interrupted by {name}; {output} was not written; {where}", err=True)
        sys.exit(128 + signum)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _resume_note(checkpoint_dir: str) -> str:
    from .engine.checkpoint import FILENAME

    if not (Path(checkpoint_dir) / FILENAME).is_file():
        return f"note: no checkpoint in {checkpoint_dir} yet; starting from the beginning"
    return f"note: resuming from the checkpoint in {checkpoint_dir}"


def _pop_column(dataset, source: str, name: str):
    """``dataset`` without its column ``name``, and that column's values."""
    names = dataset.feature_names
    if Path(source).suffix.lower() not in (".csv", ".parquet") or names is None:
        raise ValueError(f"--classes-column applies to .csv and .parquet files, not {source}")
    if name not in names:
        raise ValueError(f"{source} has no column {name!r}; columns: {', '.join(names)}")
    index = list(names).index(name)
    kept = [i for i in range(len(names)) if i != index]
    values = dataset.X[:, index]
    remaining = dataclasses.replace(
        dataset, X=dataset.X[:, kept], feature_names=[names[i] for i in kept]
    )
    return remaining, values


def _with_known_anomalies(dataset, source: str):
    if dataset.y is None:
        raise ValueError(
            f"--known-anomalies needs labels; {source} has none (use an .npz with y, a "
            "labelled dataset plugin, or --label-column NAME)"
        )
    marked = check_labels(dataset.y, source, len(dataset.X))
    note = (
        f"note: training on DATA's {int((~marked).sum())} normal rows; its "
        f"{int(marked.sum())} labelled anomalies are kept as known anomalies"
    )
    return dataset.X, marked, note


def _normal_rows(dataset, source: str):
    if dataset.y is None:
        return dataset.X, None
    normal = ~check_labels(dataset.y, source, len(dataset.X))
    if not normal.any():
        raise ValueError("the labels mark every row as an anomaly; no normal rows to train on")
    note = (
        f"note: DATA has labels; training on its {int(normal.sum())} normal rows "
        f"(leaving out {int((~normal).sum())} labelled anomalies)"
    )
    return dataset.X[normal], note


# -- score, evaluate -----------------------------------------------------------------------------
def _loaded(
    model: str, data: str, label_column: str | None, device: str, classes_column=None
):
    """Load the model and DATA and check they fit together: the model, the dataset and
    the classes column's values (or None)."""
    detector = load_model(model, device=device)
    dataset = read_data(data, label_column)
    classes = None
    if classes_column:
        dataset, classes = _pop_column(dataset, data, classes_column)
    check_features(
        dataset, data, detector.n_features_in_, getattr(detector, "feature_names_in_", None)
    )
    return detector, dataset, classes


def _score_rows(detector, dataset, classes):
    with warnings.catch_warnings():
        # the column names were checked against DATA's own; the bare array passed on
        # would only make scikit-learn warn that it has none
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return score_table(detector, dataset.X, classes)


def _scored(
    model: str, data: str, label_column: str | None, device: str, classes_column=None
):
    """Load the model and DATA, check they fit together, and score every row."""
    detector, dataset, classes = _loaded(model, data, label_column, device, classes_column)
    return detector, dataset, _score_rows(detector, dataset, classes)


DEVICE_HELP = "Where to score: cpu, auto (CUDA when present), cuda:0..."
LABEL_HELP = "Column of anomaly labels (1 = anomaly) in a .csv/.parquet DATA."
CLASSES_HELP = (
    "For a model fitted with --classes-column: the column of each row's class in a "
    ".csv/.parquet DATA (else each row is scored in its best-matching class's region)."
)


@main.command()
@click.argument("model")
@click.argument("data")
@click.option(
    "-o",
    "--output",
    default="-",
    help="Where to write the scores: .csv, .parquet or .npy (format from the suffix), or - "
    "for CSV on stdout.",
)
@click.option("--label-column", metavar="NAME", help=LABEL_HELP + " It is not scored.")
@click.option("--classes-column", metavar="NAME", help=CLASSES_HELP)
@click.option("--device", default="cpu", help=DEVICE_HELP)
def score(model, data, output, label_column, classes_column, device) -> None:
    """Score every row of DATA with MODEL: one output row per input row.

    Columns: score (the combined anomaly score, larger is more anomalous), each component
    (reconstruction, discriminator, density for priors with a density, neighbors unless
    fitted with n_neighbors=0), and is_anomaly (1 when the score is above the model's
    threshold, else 0). An .npy output is a float array with the columns in that order.

    \b
    Example:
      aae-anomaly score model.aae new.csv -o scores.csv
      aae-anomaly score model.aae new.npy | sort -t, -k1 -g | tail
    """
    with user_errors():
        _, _, table = _scored(model, data, label_column, device, classes_column)
        write_table(table, output)


@main.command(name="evaluate")
@click.argument("model")
@click.argument("data")
@click.option("--label-column", metavar="NAME", help=LABEL_HELP)
@click.option("--classes-column", metavar="NAME", help=CLASSES_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--device", default="cpu", help=DEVICE_HELP)
def evaluate_command(model, data, label_column, classes_column, as_json, device) -> None:
    """Compare MODEL's scores on DATA with DATA's known labels (1 = anomaly).

    Prints ROC-AUC and average precision of the scores, and precision, recall, F1 and the
    confusion counts at the model's threshold. Labels come from an .npz's y, a dataset
    plugin, or --label-column.

    \b
    Example:
      aae-anomaly evaluate model.aae test.csv --label-column is_fraud
      aae-anomaly evaluate model.aae synthetic:n=2000,seed=1 --json
    """
    with user_errors():
        detector, dataset, classes = _loaded(model, data, label_column, device, classes_column)
        # the labels are checked before the (possibly long) scoring, not after
        if dataset.y is None:
            raise ValueError(
                f"{data} has no labels; use an .npz with y, a labelled dataset plugin, "
                "or --label-column NAME"
            )
        labels = check_labels(dataset.y, data, len(dataset.X))
        report = evaluate(_score_rows(detector, dataset, classes), labels, detector.offset_)
    click.echo(json.dumps(report.to_dict()) if as_json else report.format())


# -- plot --------------------------------------------------------------------------------------
@main.command()
@click.argument("model")
@click.argument("data", required=False)
@click.option("-o", "--output", required=True, help="PNG file to write.")
@click.option(
    "--kind",
    type=click.Choice(("map", "histogram", "samples")),
    default="map",
    help="map: the latent codes of DATA over the prior's samples; histogram: DATA's scores "
    "and the threshold; samples: images decoded from the prior (image models, no DATA).",
)
@click.option(
    "--color",
    type=click.Choice(("score", "label")),
    default="score",
    help="What colours a map's points: the anomaly score, or DATA's labels.",
)
@click.option("--label-column", metavar="NAME", help=LABEL_HELP)
@click.option("--dpi", type=int, default=100, help="Pixels per inch of the PNG.")
@click.option("--device", default="cpu", help=DEVICE_HELP)
def plot(model, data, output, kind, color, label_column, dpi, device) -> None:
    """Draw a picture of MODEL to a PNG file (needs: pip install 'aae-anomaly[plot]').

    A 2-D latent map (codes of more dimensions are projected on their first two
    principal axes), the score histogram with the threshold, or a grid of decoded samples.

    \b
    Example:
      aae-anomaly plot model.aae test.npz -o map.png --color label
      aae-anomaly plot model.aae test.csv -o scores.png --kind histogram
      aae-anomaly plot model.aae -o samples.png --kind samples
    """
    from . import plotting

    with user_errors():
        if not output.lower().endswith(".png"):
            raise ValueError(f"{output}: the picture is written as PNG; name it *.png")
        plotting.require_matplotlib()
        if kind == "samples":
            if data is not None:
                raise ValueError("--kind samples draws from the prior and takes no DATA")
            plotting.plot_samples(load_model(model, device=device), output, dpi=dpi)
            return
        if data is None:
            raise ValueError(f"--kind {kind} needs DATA, the rows to draw")
        detector, dataset, _ = _loaded(model, data, label_column, device)
        if color == "label" and kind == "map" and dataset.y is None:
            raise ValueError(
                f"--color label needs labels; {data} has none (use an .npz with y, a labelled "
                "dataset plugin, or --label-column NAME)"
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            if kind == "map":
                plotting.plot_map(
                    detector, dataset.X, output, color=color, labels=dataset.y, dpi=dpi
                )
            else:
                labels = None
                if dataset.y is not None:
                    labels = check_labels(dataset.y, data, len(dataset.X))
                plotting.plot_histogram(detector, dataset.X, output, labels=labels, dpi=dpi)


# -- classify, cluster, generate: the categorical AAE family ------------------------------------
def _command_defaults(estimator: type) -> dict:
    """The defaults of a family command's options: ``estimator``'s parameters, and fit's
    seed (a command-line fit is reproducible unless asked otherwise)."""
    return {**estimator().get_params(), "random_state": FIT_DEFAULTS["random_state"]}


CLASSIFY_DEFAULTS = _command_defaults(AAEClassifier)
CLUSTER_DEFAULTS = _command_defaults(AAEClustering)
GENERATE_DEFAULTS = _command_defaults(SupervisedAAE)


def family_options(defaults: dict):
    """The training options the family's commands share, defaulting to ``defaults`` (one
    of the ``*_DEFAULTS`` above)."""
    options = [
        click.option(
            "--style-dim", type=int, default=defaults["style_dim"], help="Size of the style code."
        ),
        click.option("--encoder", default=defaults["encoder"], help="Encoder plugin."),
        click.option(
            "--encoder-option",
            "encoder_params",
            multiple=True,
            metavar="KEY=VALUE",
            help="An option of the encoder, e.g. hidden=[512,256]; repeat for several.",
        ),
        click.option(
            "--epochs", type=int, default=defaults["epochs"], help="Passes over the data."
        ),
        click.option("--batch-size", type=int, default=defaults["batch_size"], help="Rows a step."),
        click.option(
            "--loss",
            "reconstruction_loss",
            type=click.Choice(RECONSTRUCTION_LOSSES),
            default=defaults["reconstruction_loss"],
            help="Reconstruction loss; bce (pixels scaled to [0, 1]) suits images.",
        ),
        click.option(
            "--input-noise",
            type=float,
            default=defaults["input_noise"],
            help="Std of noise on inputs in training.",
        ),
        click.option(
            "--scaling",
            type=click.Choice(SCALINGS),
            default=defaults["scaling"],
            help="Input statistics, as for fit: shared for images under auto.",
        ),
        click.option(
            "--seed",
            "random_state",
            type=int,
            default=defaults["random_state"],
            help="Random seed.",
        ),
        click.option(
            "--device", default=defaults["device"], help="auto (CUDA when present), cpu, cuda:0..."
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes on stderr."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _family_settings(options: dict) -> tuple[dict, bool]:
    quiet = options.pop("quiet")
    options["encoder_params"] = parse_options(options["encoder_params"], "--encoder-option")
    options["verbose"] = not quiet and sys.stderr.isatty()
    return options, quiet


def _class_labels(dataset, source: str) -> np.ndarray:
    """DATA's labels as whole numbers (-1 = unlabelled), one per row."""
    if dataset.y is None:
        raise ValueError(
            f"{source} has no labels: use an .npz with y or --label-column NAME (class "
            "numbers; -1 marks an unlabelled row)"
        )
    labels = np.asarray(dataset.y).reshape(-1)
    if len(labels) != len(dataset.X):
        raise ValueError(f"{source} has {len(dataset.X)} rows but {len(labels)} labels")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise ValueError(f"{source}: labels must be whole class numbers (-1 = unlabelled)")
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{source}: labels are {labels.dtype} values; expected class numbers")
    return labels.astype(np.int64)


def _rows_to_label(predict: str | None, n_features: int):
    """PREDICT's rows, checked to have the model's ``n_features`` columns; None without
    --predict, when the command answers for DATA's own rows."""
    if predict is None:
        return None
    dataset = read_data(predict)
    check_features(dataset, predict, n_features, None)
    return dataset.X


CLASS_LABEL_HELP = (
    "Column of class numbers in a .csv/.parquet DATA (-1 = unlabelled); an .npz's y is "
    "used otherwise."
)


@main.command()
@click.argument("data")
@click.option(
    "-o", "--output", default="-", help="Predictions: .csv, .parquet or .npy, or - for stdout."
)
@click.option("--label-column", metavar="NAME", help=CLASS_LABEL_HELP)
@click.option(
    "--predict", metavar="DATA", help="Rows to classify (default: DATA's own rows)."
)
@click.option(
    "--label-weight",
    type=float,
    default=CLASSIFY_DEFAULTS["label_weight"],
    help="Weight of the labelled step.",
)
@click.option(
    "--labelled-batch-size",
    type=int,
    default=CLASSIFY_DEFAULTS["labelled_batch_size"],
    help="Labelled rows drawn per step.",
)
@family_options(CLASSIFY_DEFAULTS)
def classify(data, output, label_column, predict, **options) -> None:
    """Semi-supervised classification: fit an AAEClassifier on DATA, whose labels are
    class numbers with -1 for unlabelled rows, and write each row's predicted class and
    class probabilities.

    Columns: label (the predicted class), then probability_K for each class K.

    \b
    Example:
      aae-anomaly classify train.npz --predict test.npz -o predictions.csv
      aae-anomaly classify rows.csv --label-column digit --epochs 100
    """
    settings, quiet = _family_settings(options)
    with user_errors():
        dataset = read_data(data, label_column)
        labels = _class_labels(dataset, data)
        model = AAEClassifier(**settings).fit(dataset.X, labels)
        rows = _rows_to_label(predict, model.n_features_in_)
        probabilities = model.predict_proba(dataset.X if rows is None else rows)
        table = {"label": model.classes_[probabilities.argmax(axis=1)]}
        for k, name in enumerate(model.classes_):
            table[f"probability_{name}"] = probabilities[:, k]
        write_table(table, output)
    if not quiet:
        n_labelled = int((labels != -1).sum())
        click.echo(
            f"fitted on {len(labels)} rows ({n_labelled} labelled, classes "
            f"{model.classes_.tolist()}), {model.epochs} epochs",
            err=True,
        )


@main.command()
@click.argument("data")
@click.option(
    "-o", "--output", default="-", help="Clusters: .csv, .parquet or .npy, or - for stdout."
)
@click.option(
    "--clusters",
    "n_clusters",
    type=int,
    default=CLUSTER_DEFAULTS["n_clusters"],
    help="Number of clusters.",
)
@click.option(
    "--predict", metavar="DATA", help="Rows to assign (default: DATA's own rows)."
)
@family_options(CLUSTER_DEFAULTS)
def cluster(data, output, n_clusters, predict, **options) -> None:
    """Unsupervised clustering: fit an AAEClustering on DATA (labels, if any, are not
    used) and write each row's cluster number.

    \b
    Example:
      aae-anomaly cluster rows.npy --clusters 16 -o clusters.csv
    """
    settings, quiet = _family_settings(options)
    with user_errors():
        dataset = read_data(data)
        model = AAEClustering(n_clusters=n_clusters, **settings).fit(dataset.X)
        rows = _rows_to_label(predict, model.n_features_in_)
        clusters = model.labels_ if rows is None else model.predict(rows)
        write_table({"cluster": clusters}, output)
    if not quiet:
        used = len(np.unique(model.labels_))
        click.echo(
            f"fitted on {len(dataset.X)} rows: {used} of {n_clusters} clusters used", err=True
        )


@main.command()
@click.argument("data")
@click.option(
    "-o", "--output", default="-", help="Samples: .csv, .parquet or .npy, or - for stdout."
)
@click.option("--label-column", metavar="NAME", help="Column of class numbers in a .csv/.parquet.")
@click.option(
    "--class",
    "class_",
    type=int,
    multiple=True,
    help="Class of the samples; repeat for several (default: every class).",
)
@click.option("-n", "--samples", "n_samples", type=int, default=10, help="Samples per class.")
@family_options(GENERATE_DEFAULTS)
def generate(data, output, label_column, class_, n_samples, **options) -> None:
    """Supervised AAE: fit a SupervisedAAE on DATA and its class labels (the decoder is
    given the class, the code learns the style), then write new rows of the classes asked
    for, each drawn with a style from the prior.

    Rows come in DATA's columns, n per class, class by class; the last column, class,
    names the class of each row.

    \b
    Example:
      aae-anomaly generate digits.npz --class 3 --class 8 -n 16 -o samples.csv
    """
    settings, quiet = _family_settings(options)
    with user_errors():
        dataset = read_data(data, label_column)
        labels = _class_labels(dataset, data)
        unknown = sorted(set(class_) - set(labels.tolist()))
        if unknown:  # before the fit, not after it
            raise ValueError(
                f"--class {unknown[0]} is not a class of {data}; its classes: "
                f"{np.unique(labels).tolist()}"
            )
        model = SupervisedAAE(**settings).fit(dataset.X, labels)
        wanted = np.repeat(np.asarray(class_ or model.classes_), n_samples)
        samples = model.sample(len(wanted), y=wanted, random_state=settings["random_state"])
        names = dataset.feature_names
        if names is None or len(names) != samples.shape[1]:
            names = [f"x{i}" for i in range(samples.shape[1])]
        table = {name: samples[:, i] for i, name in enumerate(names)}
        table["class"] = wanted
        write_table(table, output)
    if not quiet:
        click.echo(
            f"fitted on {len(labels)} rows of classes {model.classes_.tolist()}; wrote "
            f"{len(wanted)} samples",
            err=True,
        )


# -- info, plugins -------------------------------------------------------------------------------
@main.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="The full contents as one JSON object.")
def info(model, as_json) -> None:
    """Show what a model file holds: plugins and their options and versions, input shape,
    features, threshold, calibration, training epochs and final losses.

    Works without the model's plugins installed.

    \b
    Example:
      aae-anomaly info model.aae
    """
    with user_errors():
        header = read_header(model)
    click.echo(json.dumps(describe_model(header)) if as_json else format_model(header))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON object with plugins and failures.")
def plugins(as_json) -> None:
    """List every prior, encoder and dataset, with the plugin, distribution and version
    each comes from. Plugins that failed to load are listed on stderr.

    \b
    Example:
      aae-anomaly plugins
    """
    manager = get_plugin_manager()
    rows = plugin_rows(manager)
    failures = [
        {"plugin": f.plugin, "distribution": f.distribution, "message": f.message}
        for f in manager.failures
    ]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": failures}))
        return
    click.echo(format_table(rows, ("kind", "name", "plugin", "distribution", "version")))
    for failure in failures:
        source = failure["distribution"] or "unknown distribution"
        click.echo(
            f"note: plugin {failure['plugin']} ({source}) failed: {failure['message']}", err=True
        )
