"""A command's MODEL and DATA as it reads them: columns taken out of DATA (classes, ids,
dropped ones), and a model loaded with the rows it is to be used on."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..estimators.columns import is_frame
from ..estimators.loading import load_model
from ..estimators.scoretable import NAME_WARNINGS, ignore_name_warnings  # noqa: F401
from ..io.tables import read_data


def _require_table(dataset, source: str, option: str) -> None:
    if not is_frame(dataset.X):
        raise ValueError(f"{option} applies to .csv and .parquet files, not {source}")


def pop_column(dataset, source: str, name: str, option: str = "--classes-column"):
    """``dataset`` without its column ``name``, and that column's values."""
    _require_table(dataset, source, option)
    frame = dataset.X
    if name not in frame.columns:
        raise ValueError(
            f"{source} has no column {name!r} ({option}); columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    return without_columns(dataset, [name]), frame[name].to_numpy()


def without_columns(dataset, names, source: str = "", option: str = "--drop-column"):
    """``dataset`` without the columns ``names`` (each must be there)."""
    if not names:
        return dataset
    _require_table(dataset, source, option)
    absent = [n for n in names if n not in dataset.X.columns]
    if absent:
        raise ValueError(
            f"{source} has no column {absent[0]!r} ({option}); columns: "
            f"{', '.join(map(str, dataset.X.columns))}"
        )
    frame = dataset.X.drop(columns=list(names))
    return dataclasses.replace(dataset, X=frame, feature_names=[str(c) for c in frame.columns])


def row_keys(dataset, source: str, id_columns) -> dict[str, np.ndarray]:
    """The columns that identify DATA's rows, to copy into an output table: the id
    columns it has, else ``row``, each row's number (from 0) in DATA."""
    if not id_columns:
        index = dataset.X.index if is_frame(dataset.X) else None
        rows = np.arange(len(dataset.X)) if index is None else np.asarray(index)
        return {"row": rows}
    _require_table(dataset, source, "--id-column")
    absent = [n for n in id_columns if n not in dataset.X.columns]
    if absent:
        raise ValueError(
            f"{source} has no id column {absent[0]!r}; columns: "
            f"{', '.join(map(str, dataset.X.columns))}"
        )
    return {name: dataset.X[name].to_numpy() for name in id_columns}


def load_detector(model: str, device: str):
    """The AAEDetector in the model file ``model``; a file of another estimator (the
    class-and-style family) is an error that says which commands take it."""
    from ..estimators.detector import AAEDetector

    detector = load_model(model, device=device)
    if not isinstance(detector, AAEDetector):
        raise ValueError(
            f"{model} holds a model of type {type(detector).__name__}, not an anomaly "
            "detector; classify, cluster or generate apply it (--model)"
        )
    return detector


def load_model_and_data(
    model: str, data: str, label_column: str | None, device: str, classes_column=None,
    read_options=None, drop_columns=(),
):
    """Load the model and DATA: the model, the dataset (without the ``drop_columns``) and
    the classes column's values (or None). The model checks DATA's columns when it uses
    them: by name for a table, by position for an array."""
    detector = load_detector(model, device)
    dataset = read_data(data, label_column, read_options)
    classes = None
    if classes_column:
        dataset, classes = pop_column(dataset, data, classes_column)
    dataset = without_columns(dataset, list(drop_columns), data)
    return detector, dataset, classes
