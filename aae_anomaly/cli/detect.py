"""Anomaly detection: ``fit`` a detector to normal rows and save it, ``score`` new rows
with the model file, ``evaluate`` its scores against known labels."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
from click.core import ParameterSource

from ..engine.model import POSTERIORS
from ..estimators.columns import is_frame
from ..estimators.detector import AAEDetector
from ..estimators.streaming import DEFAULT_SAMPLE_ROWS, DEFAULT_SHUFFLE_ROWS
from ..io.tables import (
    OUTPUT_SUFFIXES,
    check_labels,
    check_output_path,
    read_data,
    read_data_chunks,
    reads_in_parts,
    write_table,
)
from .app import BadInput, main, user_errors
from .distributed import dask_option, score_on_dask
from .fitconfig import DEFAULTS as FIT_DEFAULTS
from .fitconfig import merge_settings, parse_options, read_config
from .inputs import (
    ignore_name_warnings,
    load_detector,
    load_model_and_data,
    pop_column,
    row_keys,
    without_columns,
)
from .options import (
    AutoOr,
    Shape,
    anomaly_labels_option,
    batch_size_option,
    drop_column_option,
    encoder_option,
    epochs_option,
    id_column_option,
    json_option,
    loss_option,
    missing_option,
    plugin_options_option,
    progress_level,
    quiet_option,
    scaling_option,
    scoring_device_option,
    seed_option,
    table_options,
    training_device_option,
    verbose_option,
)
from .reports import evaluate, score_table
from .stream import DEFAULT_CHUNK_ROWS, column_kinds, score_chunks, streamed_parts
from .torchrun import torchrun_processes

# -- fit ---------------------------------------------------------------------------------------
PLUGIN_OPTION_FLAGS = {"prior_params": "--prior-option", "encoder_params": "--encoder-option"}


def _setting(flag: str, type=None, help: str | None = None):
    """``--NAME`` for the detector parameter NAME (dashes for underscores), with the
    default a command-line fit uses."""
    name = flag.lstrip("-").replace("-", "_")
    return click.option(flag, type=type, default=FIT_DEFAULTS[name], help=help)


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
@_setting("--prior", help="Prior plugin (see `plugins`).")
@plugin_options_option(
    "prior",
    "n_components=5",
    " Values are read as JSON when they parse (3, 0.5, [64,32], true), else as text.",
)
@encoder_option(FIT_DEFAULTS["encoder"])
@plugin_options_option("encoder", "hidden=[64,32]")
@_setting("--latent-dim", AutoOr(int), "Code size, or 'auto': half the features, between 2 and 8.")
@epochs_option(FIT_DEFAULTS["epochs"])
@batch_size_option(FIT_DEFAULTS["batch_size"])
@_setting("--lr-autoencoder", float)
@_setting("--lr-discriminator", float)
@_setting("--lr-generator", float)
@loss_option(FIT_DEFAULTS["reconstruction_loss"], "Reconstruction loss.")
@scaling_option(
    FIT_DEFAULTS["scaling"],
    "Input statistics: per_feature (columns in different units), shared (one unit, "
    "such as pixels), per_sample (each row first standardized by its own mean and "
    "deviation, then shared); auto: per_sample for images, else per_feature.",
)
@_setting("--posterior", click.Choice(POSTERIORS))
@_setting(
    "--input-shape",
    Shape(),
    "Per-row shape of image rows, C,H,W, e.g. 1,28,28 (or 28,28) for flat 784-column "
    "digits: such rows get the image scaling (per_sample) under --scaling auto.",
)
@id_column_option(" Kept in the model: `score` copies it too.")
@drop_column_option(" Kept in the model: `score` leaves it out too.")
@missing_option(FIT_DEFAULTS["missing"])
@_setting(
    "--contamination",
    AutoOr(float),
    "Expected share of anomalies in DATA: flags that share of the training rows and "
    "guards the score against them (docs/scoring.md); 'auto' treats DATA as clean and "
    "flags scores above the 99th percentile of held-out normal rows.",
)
@_setting(
    "--n-neighbors",
    AutoOr(int),
    "Training rows the neighbors score averages over; 'auto': 2 for clean DATA, 5 with "
    "--contamination; 0 turns it off (and keeps no training rows in the model).",
)
@_setting("--calibration-fraction", float, "Share of rows held back to normalize the scores.")
@seed_option(FIT_DEFAULTS["random_state"])
@training_device_option(FIT_DEFAULTS["device"])
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
@click.option(
    "--stream",
    is_flag=True,
    help="Train on DATA a chunk at a time, for files larger than memory (.csv, .parquet, "
    ".npy): statistics from a uniform sample of --sample-rows rows, batches from a "
    "shuffle buffer of --shuffle-rows rows; takes --checkpoint. Under torchrun, fit "
    "reads DATA this way without it, each process its own part (unless "
    "--classes-column or --known-anomalies is given); see docs/scale.md.",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_ROWS,
    help="Rows read at a time with --stream (and under torchrun).",
)
@click.option(
    "--sample-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_SAMPLE_ROWS,
    help="Rows sampled for the statistics with --stream (and under torchrun).",
)
@click.option(
    "--shuffle-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_SHUFFLE_ROWS,
    help="Rows in the shuffle buffer with --stream (and under torchrun).",
)
@table_options()
@quiet_option()
@verbose_option()
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
    stream,
    chunk_rows,
    sample_rows,
    shuffle_rows,
    read_options,
    quiet,
    verbose,
    **options,
) -> None:
    """Train a detector on DATA and save it to one model file.

    DATA should hold normal rows. When it has labels (an .npz with y, a dataset plugin
    with labels, or --label-column), only the rows labelled 0 are trained on, and a note
    says so on stderr. Settings come from the options given, then --config, then the
    defaults shown.

    SIGINT or SIGTERM stops the fit without writing OUTPUT (exit status 130 or 143); with
    --checkpoint, run the same command with --resume to continue it.

    Under torchrun (one process per CPU or GPU), the processes train one model together,
    and each reads only its own part of a .csv, .parquet or .npy DATA, a chunk at a time,
    as with --stream; with --classes-column or --known-anomalies, or DATA that cannot be
    read in parts, each reads all of DATA (a note says so). Rank 0 writes OUTPUT.

    \b
    Example:
      aae-anomaly fit normal.csv -o model.aae --prior mixture \\
          --prior-option n_components=5 --epochs 100
      aae-anomaly fit synthetic:n=2000 -o model.aae --config settings.toml
      aae-anomaly fit big.csv -o model.aae --checkpoint ckpt/ [--resume]
      aae-anomaly fit orders.csv -o model.aae --id-column "order id" --missing impute
      aae-anomaly fit events.parquet -o model.aae --stream --checkpoint ckpt/
      torchrun --nproc-per-node 2 $(command -v aae-anomaly) fit big.csv -o model.aae
    """
    if resume and not checkpoint_dir:
        raise BadInput("--resume needs --checkpoint DIR, the directory to resume from")
    started = time.perf_counter()
    with user_errors(), _interruptible(output, checkpoint_dir), contextlib.ExitStack() as exits:
        check_output_path(output)  # before the work, not after it
        explicit = {name: value for name, value in options.items() if _given(ctx, name)}
        for name, flag in PLUGIN_OPTION_FLAGS.items():
            if name in explicit:
                explicit[name] = parse_options(explicit[name], flag)
        for name in ("id_columns", "drop_columns"):
            if name in explicit:
                explicit[name] = list(explicit[name])
        config = read_config(config_file) if config_file else {}
        settings = merge_settings(config, explicit)
        group = exits.enter_context(torchrun_processes(settings))
        if group is not None and not group.is_main:
            quiet = True  # rank 0 speaks for the job
        if stream or group is not None and _reads_own_part(
            data, label_column, read_options, quiet, classes_column, known_anomalies
        ):
            if resume and not quiet:
                click.echo(_resume_note(checkpoint_dir), err=True)
            detector = _fit_streamed(
                data, settings, label_column, read_options, progress_level(quiet, verbose),
                (chunk_rows, sample_rows, shuffle_rows),
                classes_column=classes_column, known_anomalies=known_anomalies,
                checkpoint_dir=checkpoint_dir, resume=resume,
            )  # fmt: skip
            if group is None or group.is_main:
                detector.save(output)
            trained = f"{detector.streamed_rows_} rows read a chunk at a time"
            if group is not None:
                trained += ", each process its own part"
        else:
            detector, n_trained = _fit_whole(
                data, settings, label_column, read_options, progress_level(quiet, verbose),
                quiet, classes_column=classes_column, known_anomalies=known_anomalies,
                checkpoint_dir=checkpoint_dir, resume=resume,
            )  # fmt: skip
            if group is None or group.is_main:
                detector.save(output)
            trained = f"{n_trained} rows"
    if not quiet:
        processes = f" in {group.world_size} processes" if group is not None else ""
        click.echo(
            f"saved {output}: {detector.prior} prior, {detector.encoder} encoder, "
            f"{trained}, {detector.n_features_in_} columns, {detector.epochs} epochs"
            f"{processes}, threshold score > {-detector.offset_:.4g}; took "
            f"{time.perf_counter() - started:.1f} s",
            err=True,
        )


def _fit_whole(
    data, settings, label_column, read_options, verbose, quiet, *, classes_column,
    known_anomalies, checkpoint_dir, resume,
):
    """``fit``: the detector fitted on DATA read at once, and the rows it trained on."""
    dataset = read_data(data, label_column, read_options)
    if (settings["id_columns"] or settings["drop_columns"]) and not is_frame(dataset.X):
        raise ValueError(
            f"--id-column and --drop-column apply to .csv and .parquet files, not {data}"
        )
    classes = None
    if classes_column:
        dataset, classes = pop_column(dataset, data, classes_column)
    anomaly_labels = None
    if known_anomalies:
        rows, anomaly_labels, note = _with_known_anomalies(dataset, data)
    else:
        rows, note = _normal_rows(dataset, data)
        if classes is not None and dataset.y is not None:
            classes = classes[~check_labels(dataset.y, data, len(dataset.X))]
    if note and not quiet:
        click.echo(note, err=True)
    detector = AAEDetector(**settings, verbose=verbose)
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
    return detector, n_trained


# the options a fit on DATA read in parts does not take: they need every row in memory
WHOLE_DATA_OPTIONS = ("--classes-column", "--known-anomalies")


def _whole_data_options(classes_column, known_anomalies) -> list[str]:
    """The options of :data:`WHOLE_DATA_OPTIONS` that were given."""
    values = (classes_column, known_anomalies)
    return [flag for flag, value in zip(WHOLE_DATA_OPTIONS, values, strict=True) if value]


def _reads_own_part(
    data, label_column, read_options, quiet, classes_column, known_anomalies
) -> bool:
    """Under torchrun: whether ``fit`` reads DATA as ``fit --stream`` does, each process
    its own part, a chunk at a time. It does unless an option needs every row in memory
    or DATA's reader cannot read one part; then each process reads all of DATA and
    trains on its shard, and a note says why."""
    given = _whole_data_options(classes_column, known_anomalies)
    if given:
        reason = f"{given[0]} needs every row in memory"
    elif not reads_in_parts(data, label_column, read_options):
        reason = f"{data} cannot be read one part at a time (.csv, .parquet and .npy can)"
    else:
        if not quiet:
            click.echo(
                "note: each process reads its own part of DATA, a chunk at a time, as with "
                "--stream (statistics from a sample of up to --sample-rows rows)",
                err=True,
            )
        return True
    if not quiet:
        click.echo(
            f"note: each process reads all of DATA and trains on its own shard: {reason}",
            err=True,
        )
    return False


def _fit_streamed(
    data, settings, label_column, read_options, verbose, sizes, *, classes_column,
    known_anomalies, checkpoint_dir, resume,
):
    """``fit --stream`` (and ``fit`` under torchrun): the detector fitted on DATA read a
    chunk at a time."""
    refused = _whole_data_options(classes_column, known_anomalies)
    if refused:
        raise ValueError(f"--stream does not combine with {refused[0]}; fit without --stream")
    chunk_rows, sample_rows, shuffle_rows = sizes
    ignored = [*(settings["id_columns"] or []), *(settings["drop_columns"] or [])]
    parts = streamed_parts(data, chunk_rows, label_column, read_options, ignored)
    detector = AAEDetector(**settings, verbose=verbose)
    return detector.fit_chunks(
        parts, sample_rows=sample_rows, shuffle_rows=shuffle_rows,
        checkpoint_dir=checkpoint_dir, resume=resume,
    )  # fmt: skip


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
    from ..engine.checkpoint import FILENAME

    if not (Path(checkpoint_dir) / FILENAME).is_file():
        return f"note: no checkpoint in {checkpoint_dir} yet; starting from the beginning"
    return f"note: resuming from the checkpoint in {checkpoint_dir}"


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
def _score_rows(detector, X, classes):
    with warnings.catch_warnings():
        ignore_name_warnings()
        return score_table(detector, X, classes)


def _id_columns(detector, dataset, given) -> list[str]:
    """The id columns to copy: those given, then the model's own that DATA has."""
    ids = list(dict.fromkeys(given))
    if is_frame(dataset.X):
        ids += [n for n in detector.id_columns or [] if n in dataset.X.columns and n not in ids]
    return ids


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
@anomaly_labels_option(" It is not scored.")
@click.option("--classes-column", metavar="NAME", help=CLASSES_HELP)
@id_column_option(" The model's own id columns are copied without it.")
@drop_column_option()
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_ROWS,
    help="Rows of a .csv, .parquet or .npy DATA read and scored at a time: memory grows "
    "with it, not with the size of DATA. Other DATA is read whole; with --dask, each "
    "file is a partition.",
)
@table_options()
@scoring_device_option()
@dask_option()
def score(
    model, data, output, label_column, classes_column, id_columns, drop_columns, chunk_rows,
    read_options, device, dask_scheduler,
) -> None:
    """Score every row of DATA with MODEL: one output row per input row.

    Columns: the row's ids (--id-column, and the id columns the model was fitted with),
    or else row (its number in DATA, from 0); score (the combined anomaly score, larger
    is more anomalous), each component (reconstruction, discriminator, density for priors
    with a density, neighbors unless fitted with n_neighbors=0), and is_anomaly (1 when
    the score is above the model's threshold, else 0). DATA's columns are found by name.
    An .npy output is a float array of the columns from score on, in that order.

    A .csv, .parquet or .npy DATA is read --chunk-rows rows at a time, each chunk scored
    and written before the next is read, so files larger than memory can be scored; the
    output is the same as scoring all rows at once, and appears only when every row is
    scored (on an error, nothing is written).

    \b
    Example:
      aae-anomaly score model.aae new.csv -o scores.csv
      aae-anomaly score model.aae new.npy | sort -t, -k1 -g | tail
      aae-anomaly score model.aae 'events/*.csv' -o scores/ --dask local:4
    """
    with user_errors():
        if dask_scheduler:
            return score_on_dask(
                dask_scheduler, model, data, output, label_column=label_column,
                classes_column=classes_column, id_columns=id_columns,
                drop_columns=drop_columns, read_options=read_options, device=device,
            )
        check_output_path(output, OUTPUT_SUFFIXES)
        detector = load_detector(model, device)
        chunks = read_data_chunks(
            data, chunk_rows, label_column, read_options, column_kinds(detector, id_columns)
        )
        if chunks is not None:
            score_chunks(
                chunks, data, output, chunk_rows,
                lambda X, classes: _score_rows(detector, X, classes),
                lambda dataset: _id_columns(detector, dataset, id_columns),
                classes_column, drop_columns,
            )
            return
        dataset = read_data(data, label_column, read_options)
        classes = None
        if classes_column:
            dataset, classes = pop_column(dataset, data, classes_column)
        dataset = without_columns(dataset, list(drop_columns), data)
        ids = _id_columns(detector, dataset, id_columns)
        keys = row_keys(dataset, data, ids)
        dataset = without_columns(dataset, ids, data, "--id-column")
        write_table(_score_rows(detector, dataset.X, classes), output, keys)


@main.command(name="evaluate")
@click.argument("model")
@click.argument("data")
@anomaly_labels_option()
@click.option("--classes-column", metavar="NAME", help=CLASSES_HELP)
@drop_column_option(" The model's own id columns are left out without it.")
@table_options()
@json_option("One JSON object on stdout.")
@scoring_device_option()
def evaluate_command(
    model, data, label_column, classes_column, drop_columns, read_options, as_json, device
) -> None:
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
        detector, dataset, classes = load_model_and_data(
            model, data, label_column, device, classes_column, read_options, drop_columns
        )
        # the labels are checked before the (possibly long) scoring, not after
        if dataset.y is None:
            raise ValueError(
                f"{data} has no labels; use an .npz with y, a labelled dataset plugin, "
                "or --label-column NAME"
            )
        labels = check_labels(dataset.y, data, len(dataset.X))
        report = evaluate(_score_rows(detector, dataset.X, classes), labels, detector.offset_)
    click.echo(json.dumps(report.to_dict()) if as_json else report.format())
