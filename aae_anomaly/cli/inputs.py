"""A command's MODEL and DATA as it reads them: a column taken out of DATA, and a model
loaded with the rows it is to be used on, checked to fit together."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..estimators.loading import load_model
from ..io.tables import check_features, read_data


def pop_column(dataset, source: str, name: str):
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


def load_model_and_data(
    model: str, data: str, label_column: str | None, device: str, classes_column=None
):
    """Load the model and DATA and check they fit together: the model, the dataset and
    the classes column's values (or None)."""
    detector = load_model(model, device=device)
    dataset = read_data(data, label_column)
    classes = None
    if classes_column:
        dataset, classes = pop_column(dataset, data, classes_column)
    check_features(
        dataset, data, detector.n_features_in_, getattr(detector, "feature_names_in_", None)
    )
    return detector, dataset, classes
