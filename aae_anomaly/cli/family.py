"""The categorical AAE family: ``classify`` (semi-supervised), ``cluster``
(unsupervised) and ``generate`` (supervised), each fitting on DATA and writing a table."""

from __future__ import annotations

import time
import warnings

import click
import numpy as np

from ..estimators.columns import is_frame
from ..estimators.family import AAEClassifier, AAEClustering, SupervisedAAE
from ..estimators.labels import label_dtype, unlabelled_rows
from ..estimators.loading import load_model
from ..estimators.scaling import FAMILY_SCALINGS
from ..io.tables import check_output_path, read_data, write_table
from .app import main, user_errors
from .fitconfig import DEFAULTS as FIT_DEFAULTS
from .fitconfig import parse_options
from .inputs import ignore_name_warnings, row_keys, without_columns
from .options import (
    batch_size_option,
    classes_column_option,
    drop_column_option,
    encoder_option,
    epochs_option,
    id_column_option,
    loss_option,
    plugin_options_option,
    progress_level,
    quiet_option,
    scaling_option,
    seed_option,
    stacked,
    table_options,
    table_output_option,
    training_device_option,
    verbose_option,
)


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
        encoder_option(defaults["encoder"]),
        plugin_options_option("encoder", "hidden=[512,256]"),
        epochs_option(defaults["epochs"]),
        batch_size_option(defaults["batch_size"]),
        loss_option(
            defaults["reconstruction_loss"],
            "Reconstruction loss; bce (pixels scaled to [0, 1]) suits images.",
        ),
        click.option(
            "--input-noise",
            type=float,
            default=defaults["input_noise"],
            help="Std of noise on inputs in training.",
        ),
        scaling_option(
            defaults["scaling"],
            "Input statistics, as for fit, but shared for images under auto.",
            FAMILY_SCALINGS,
        ),
        seed_option(defaults["random_state"]),
        training_device_option(defaults["device"]),
        drop_column_option(),
        table_options(),
        click.option(
            "--save",
            metavar="FILE",
            help="Also write the fitted model to FILE (a model file, no pickle), for --model.",
        ),
        click.option(
            "--model",
            metavar="FILE",
            help="Apply the model saved in FILE (by --save) instead of fitting one; DATA is "
            "then the rows to answer for, and the training options are not used.",
        ),
        quiet_option(),
        verbose_option(),
    ]
    return stacked(options)


# The terms on the inferred class distribution (classify, cluster): parameter -> help.
CATEGORY_TERMS = {
    "balance_weight": "Weight of the term holding each batch's mean class distribution uniform.",
    "sharpness_weight": "Weight of each row's class entropy (one class per row).",
    "consistency_weight": "Weight of virtual adversarial training of the class distribution.",
    "consistency_radius": "Length of that input change, in median distances to the 10th "
    "nearest row.",
}


def category_options(defaults: dict):
    """``--balance-weight`` and the others of :data:`CATEGORY_TERMS`."""
    options = [
        click.option(f"--{name.replace('_', '-')}", type=float, default=defaults[name], help=text)
        for name, text in CATEGORY_TERMS.items()
    ]
    return stacked(options)


def predict_option(verb: str):
    """``--predict DATA``: other rows to answer for than DATA's own."""
    return click.option(
        "--predict", metavar="DATA", help=f"Rows to {verb} (default: DATA's own rows)."
    )


def _family_settings(options: dict) -> tuple[dict, bool, dict]:
    """The estimator's settings, --quiet, and how to read the tables (the read options,
    the dropped and the id columns)."""
    quiet = options.pop("quiet")
    reading = {
        "save": options.pop("save"),
        "model": options.pop("model"),
        "started": time.perf_counter(),
        "read_options": options.pop("read_options"),
        "drop_columns": list(options.pop("drop_columns")),
        "id_columns": list(options.pop("id_columns", ())),
    }
    options["encoder_params"] = parse_options(options["encoder_params"], "--encoder-option")
    options["verbose"] = progress_level(quiet, options.pop("verbose"))
    return options, quiet, reading


def _check_outputs(output, reading: dict, predict=None) -> None:
    """The output paths, before any work; --model and --predict together are refused
    (with --model, DATA holds the rows to answer for)."""
    check_output_path(output)
    if reading["save"] is not None:
        check_output_path(reading["save"])
        if reading["model"] is not None:
            raise ValueError("--save writes a fitted model and --model applies one: give one")
    if reading["model"] is not None and predict is not None:
        raise ValueError("with --model, DATA holds the rows to answer for: drop --predict")


def _saved(path: str, estimator: type, device: str):
    """The estimator saved at ``path``, which must be an ``estimator``."""
    model = load_model(path, device=device)
    if not isinstance(model, estimator):
        raise ValueError(
            f"{path} holds a model of type {type(model).__name__}; this command applies "
            f"one of type {estimator.__name__} (saved by the same command's --save)"
        )
    return model


def _save(model, reading: dict) -> None:
    if reading["save"] is not None:
        model.save(reading["save"])


def _saved_note(reading: dict) -> str:
    return f"; saved {reading['save']}" if reading["save"] is not None else ""


def _check_classes(asked, known: dict, source: str) -> None:
    unknown = [k for k in asked if k not in known]
    if unknown:
        raise ValueError(
            f"--class {unknown[0]} is not a class of {source}; its classes: "
            f"{', '.join(sorted(known))}"
        )


def _took(reading: dict) -> str:
    return f"; took {time.perf_counter() - reading['started']:.1f} s"


def _read(source: str, reading: dict, label_column: str | None = None):
    """DATA without its dropped and id columns, and the keys of its rows."""
    dataset = read_data(source, label_column, reading["read_options"])
    dataset = without_columns(dataset, reading["drop_columns"], source)
    keys = row_keys(dataset, source, reading["id_columns"])
    return without_columns(dataset, reading["id_columns"], source, "--id-column"), keys


def _class_labels(dataset, source: str) -> np.ndarray:
    """DATA's class labels, one per row: numbers, with -1 for an unlabelled row, or text,
    with an empty cell (or -1) for an unlabelled row."""
    if dataset.y is None:
        raise ValueError(
            f"{source} has no labels: use an .npz with y or --label-column NAME (classes as "
            "numbers or text; -1 or an empty cell marks an unlabelled row)"
        )
    labels = np.asarray(dataset.y).reshape(-1)
    if len(labels) != len(dataset.X):
        raise ValueError(f"{source} has {len(dataset.X)} rows but {len(labels)} labels")
    if labels.dtype.kind == "b":
        return labels.astype(np.int64)
    if labels.dtype.kind in "iuf":
        if not np.array_equal(labels, np.round(labels)):
            first = labels[np.flatnonzero(labels != np.round(labels))[0]]
            raise ValueError(
                f"{source}: label {first!r} is not a class; classes are whole numbers or "
                "text, -1 or an empty cell for an unlabelled row (an empty cell in a "
                "column of numbers reads as NaN: use -1)"
            )
        return labels.astype(np.int64)
    # text classes; an empty cell or "-1" marks an unlabelled row, as -1 does for numbers
    import pandas

    text = [None if pandas.isna(v) else str(v).strip() for v in labels]
    return np.array([-1 if v in (None, "", "-1") else v for v in text], dtype=object)


def _labelled_only(X, labels: np.ndarray, source: str):
    """The rows that have a class, their classes and how many rows were left out: the
    supervised AAE learns from labelled rows only."""
    unlabelled = unlabelled_rows(labels)
    if unlabelled.all():
        raise ValueError(f"{source} has no labelled rows (every class is -1 or empty)")
    if not unlabelled.any():
        return X, labels, 0
    kept = ~unlabelled
    rows = X[kept] if not is_frame(X) else X.loc[kept]
    return rows, labels[kept].astype(label_dtype(labels[kept])), int(unlabelled.sum())


def _rows_to_label(predict: str | None, reading: dict):
    """PREDICT's rows (the model checks their columns) and their keys; None without
    --predict, when the command answers for DATA's own rows."""
    if predict is None:
        return None, None
    return _read(predict, reading)


def _predicted(method, rows):
    with warnings.catch_warnings():
        ignore_name_warnings()
        return method(rows)


CLASS_LABEL_HELP = (
    "Column of class labels (numbers or text) in a .csv/.parquet DATA; -1 or an empty "
    "cell marks an unlabelled row. An .npz's y is used otherwise."
)


@main.command()
@click.argument("data")
@table_output_option("Predictions")
@classes_column_option(CLASS_LABEL_HELP)
@predict_option("classify")
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
@category_options(CLASSIFY_DEFAULTS)
@id_column_option()
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
    settings, quiet, reading = _family_settings(options)
    with user_errors():
        _check_outputs(output, reading, predict)
        if reading["model"] is not None:
            model = _saved(reading["model"], AAEClassifier, settings["device"])
            rows, keys = _read(data, reading)
            note = f"applied {reading['model']} to {len(rows.X)} rows"
        else:
            dataset, keys = _read(data, reading, label_column)
            labels = _class_labels(dataset, data)
            model = AAEClassifier(**settings).fit(dataset.X, labels)
            _save(model, reading)
            other, other_keys = _rows_to_label(predict, reading)
            rows, keys = (dataset, keys) if other is None else (other, other_keys)
            n_labelled = int(
                sum(not (isinstance(v, (int, np.integer)) and v == -1) for v in labels)
            )
            note = (
                f"fitted on {len(labels)} rows ({n_labelled} labelled, classes "
                f"{model.classes_.tolist()}), {model.epochs} epochs"
            )
        probabilities = _predicted(model.predict_proba, rows.X)
        table = {"label": model.classes_[probabilities.argmax(axis=1)]}
        for k, name in enumerate(model.classes_):
            table[f"probability_{name}"] = probabilities[:, k]
        write_table(table, output, keys)
    if not quiet:
        click.echo(f"{note}{_saved_note(reading)}{_took(reading)}", err=True)


@main.command()
@click.argument("data")
@table_output_option("Clusters")
@click.option(
    "--clusters",
    "n_clusters",
    type=int,
    default=CLUSTER_DEFAULTS["n_clusters"],
    help="Number of clusters.",
)
@predict_option("assign")
@category_options(CLUSTER_DEFAULTS)
@id_column_option()
@family_options(CLUSTER_DEFAULTS)
def cluster(data, output, n_clusters, predict, **options) -> None:
    """Unsupervised clustering: fit an AAEClustering on DATA (labels, if any, are not
    used) and write each row's cluster number.

    \b
    Example:
      aae-anomaly cluster rows.npy --clusters 16 -o clusters.csv
    """
    settings, quiet, reading = _family_settings(options)
    with user_errors():
        _check_outputs(output, reading, predict)
        dataset, keys = _read(data, reading)
        if reading["model"] is not None:
            model = _saved(reading["model"], AAEClustering, settings["device"])
            clusters = _predicted(model.predict, dataset.X)
            note = f"applied {reading['model']} to {len(dataset.X)} rows"
        else:
            model = AAEClustering(n_clusters=n_clusters, **settings).fit(dataset.X)
            _save(model, reading)
            clusters = model.labels_
            used = len(np.unique(model.labels_))
            note = f"fitted on {len(dataset.X)} rows: {used} of {n_clusters} clusters used"
            other, other_keys = _rows_to_label(predict, reading)
            if other is not None:
                clusters, keys = _predicted(model.predict, other.X), other_keys
        write_table({"cluster": clusters}, output, keys)
    if not quiet:
        click.echo(f"{note}{_saved_note(reading)}{_took(reading)}", err=True)


@main.command()
@click.argument("data", required=False)
@table_output_option("Samples")
@classes_column_option("Column of class labels (numbers or text) in a .csv/.parquet.")
@click.option(
    "--class",
    "class_",
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
    settings, quiet, reading = _family_settings(options)
    with user_errors():
        _check_outputs(output, reading)
        if reading["model"] is not None:
            if data is not None:
                raise ValueError("with --model, generate draws from the saved model: no DATA")
            model = _saved(reading["model"], SupervisedAAE, settings["device"])
            known = {str(v): v for v in model.classes_.tolist()}
            _check_classes(class_, known, reading["model"])
            names = None
        else:
            if data is None:
                raise ValueError("give DATA to fit on, or --model FILE saved by generate --save")
            dataset, _ = _read(data, reading, label_column)
            X, labels, left_out = _labelled_only(dataset.X, _class_labels(dataset, data), data)
            known = {str(v): v for v in labels.tolist()}
            _check_classes(class_, known, data)  # before the fit, not after it
            model = SupervisedAAE(**settings).fit(X, labels)
            _save(model, reading)
            names = dataset.feature_names
        chosen = [known[k] for k in class_] if class_ else list(model.classes_)
        wanted = np.repeat(np.asarray(chosen, dtype=model.classes_.dtype), n_samples)
        samples = model.sample(len(wanted), classes=wanted, random_state=settings["random_state"])
        schema = getattr(model, "schema_", None)
        names = schema.encoded_names() if schema is not None else names
        if names is None or len(names) != samples.shape[1]:
            names = [f"x{i}" for i in range(samples.shape[1])]
        table = {name: samples[:, i] for i, name in enumerate(names)}
        table["class"] = wanted
        write_table(table, output)
    if not quiet:
        if reading["model"] is not None:
            note = f"drew from {reading['model']} (classes {model.classes_.tolist()})"
        else:
            unlabelled = f" (leaving out {left_out} unlabelled)" if left_out else ""
            note = f"fitted on {len(labels)} rows{unlabelled} of classes {model.classes_.tolist()}"
        click.echo(
            f"{note}; wrote {len(wanted)} samples{_saved_note(reading)}{_took(reading)}",
            err=True,
        )
