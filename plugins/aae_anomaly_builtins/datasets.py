"""Built-in dataset loaders: files (csv, parquet, npy, npz), scikit-learn's bundled data
sets, and a synthetic generator with known anomalies; and chunked readers for the csv,
parquet and npy files, which ``score`` and ``fit --stream`` stream; each can read one
part of a file (``part=(index, count)``, see :mod:`aae_anomaly.io.chunks`), which is what
a process of a distributed ``fit --stream`` reads."""

from __future__ import annotations

import contextlib
import mmap
from pathlib import Path

import numpy as np

from aae_anomaly import Dataset, hookimpl
from aae_anomaly.io.chunks import (
    check_chunk_rows,
    check_part,
    csv_chunks,
    parquet_chunks,
    part_range,
)
from aae_anomaly.io.tables import read_csv_table, read_parquet_table, split_label


def _existing(path: str) -> Path:
    if not path:
        raise ValueError("this dataset needs a path option, e.g. csv:path=data.csv")
    resolved = Path(path)
    if not resolved.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return resolved


def load_csv(
    path: str = "", label: str = "", delimiter: str = "", decimal: str = "",
    encoding: str = "utf-8", thousands: str = "",
) -> Dataset:
    """Rows of a CSV file with a header line, as a DataFrame whose columns keep their
    types. ``label`` names the column holding the labels, which is then left out of the
    features. ``delimiter`` (``,`` ``;`` tab or ``|``) and ``decimal`` (``.`` or ``,``)
    are detected from the first lines unless given; a UTF-8 byte-order mark is dropped.
    ``thousands`` is the thousands separator of numbers such as ``1,234.5``."""
    file = _existing(path)
    frame = read_csv_table(file, delimiter, decimal, encoding, thousands)
    return _table(frame, label, file)


def load_parquet(path: str = "", label: str = "") -> Dataset:
    """Rows of a parquet file, as a DataFrame; ``label`` as for ``csv``."""
    file = _existing(path)
    return _table(read_parquet_table(file), label, file)


def _table(frame, label: str, file: Path) -> Dataset:
    labels = None
    if label:
        frame, labels = split_label(frame, label, file)
    return Dataset(frame, labels, [str(c) for c in frame.columns], file.stem)


def read_csv_chunks(
    chunk_rows: int, columns=None, path: str = "", label: str = "", delimiter: str = "",
    decimal: str = "", encoding: str = "utf-8", thousands: str = "", part=None,
):
    """``csv``'s rows, ``chunk_rows`` at a time; ``columns`` (name -> kind) parses every
    chunk alike; ``part``: only the lines that start in that share of the file's bytes."""
    file = _existing(path)
    for frame in csv_chunks(
        file, chunk_rows, columns, delimiter, decimal, encoding, thousands, part=part
    ):
        yield _table(frame, label, file)


def read_parquet_chunks(
    chunk_rows: int, columns=None, path: str = "", label: str = "", part=None
):
    """``parquet``'s rows, ``chunk_rows`` at a time, row group by row group (a parquet
    file's columns have their types: ``columns`` is not needed); ``part``: only that
    share of the rows, from the row groups that hold them."""
    file = _existing(path)
    for frame in parquet_chunks(file, chunk_rows, part):
        yield _table(frame, label, file)


def load_npy(path: str = "") -> Dataset:
    """A 2-D (rows) or 4-D (images) array saved with ``numpy.save``; no labels."""
    file = _existing(path)
    with _refusing_pickles(path):
        X = np.load(file, allow_pickle=False)
    return Dataset(_numeric(X, path), None, None, file.stem)


def read_npy_chunks(chunk_rows: int, columns=None, path: str = "", part=None):
    """``npy``'s rows, ``chunk_rows`` at a time, from the file memory-mapped: only the
    chunk being scored is read into memory; ``part``: only that share of the rows (a
    slice of the mapping)."""
    check_chunk_rows(chunk_rows)
    part = check_part(part)
    file = _existing(path)
    with _refusing_pickles(path):
        X = _numeric(np.load(file, mmap_mode="r", allow_pickle=False), path)
    if X.ndim == 0:
        yield Dataset(np.array(X), None, None, file.stem)  # refused where it is used
        return
    mapping = getattr(X, "_mmap", None)
    first, stop = part_range(len(X), part)
    for start in range(first, max(stop, first + 1), chunk_rows):
        chunk = np.array(X[start : min(start + chunk_rows, stop)])
        if mapping is not None and hasattr(mapping, "madvise"):
            # the pages read stay in the process's resident memory until dropped (the
            # kernel keeps them cached): without this, memory would grow with the file
            mapping.madvise(mmap.MADV_DONTNEED)
        yield Dataset(chunk, None, None, file.stem)


def load_npz(path: str = "") -> Dataset:
    """An ``.npz`` archive with features under ``X`` (or ``x``) and labels under ``y``."""
    file = _existing(path)
    with _refusing_pickles(path), np.load(file, allow_pickle=False) as archive:
        keys = set(archive.files)
        feature_key = "X" if "X" in keys else "x" if "x" in keys else None
        if feature_key is None:
            raise ValueError(f"{path} has no array named X or x; it holds {sorted(keys)}")
        X = _numeric(archive[feature_key], path)
        y = archive["y"].reshape(-1).astype(np.float64) if "y" in keys else None
    return Dataset(X, y, None, file.stem)


@contextlib.contextmanager
def _refusing_pickles(path: str):
    try:
        yield
    except ValueError as exc:
        # np.load with mmap_mode says "Python objects" where it would need a pickle
        if "allow_pickle" not in str(exc) and "Python objects" not in str(exc):
            raise
        raise ValueError(
            f"{path} holds pickled Python objects, which are never loaded because "
            "unpickling can run code; save a numeric array instead"
        ) from None


def _numeric(X: np.ndarray, path: str) -> np.ndarray:
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{path} holds {X.dtype} values, not real numbers")
    return X


SKLEARN_SETS = ("breast_cancer", "digits", "iris", "wine")


def load_sklearn(name: str = "breast_cancer", normal: int = -1) -> Dataset:
    """A data set bundled with scikit-learn, as one-class anomaly detection.

    Rows of class ``normal`` are normal (y = 0), every other row an anomaly (y = 1). By
    default the normal class is ``benign`` for breast_cancer and class 0 for the others.
    """
    from sklearn import datasets as sk_datasets

    if name not in SKLEARN_SETS:
        raise ValueError(f"unknown scikit-learn data set {name!r}; expected one of {SKLEARN_SETS}")
    bunch = getattr(sk_datasets, f"load_{name}")()
    if normal == -1:
        normal = 1 if name == "breast_cancer" else 0  # breast_cancer: 1 = benign
    classes = np.unique(bunch.target)
    if normal not in classes:
        raise ValueError(f"{name} has classes {classes.tolist()}, not {normal}")
    y = (bunch.target != normal).astype(np.float64)
    names = [str(f) for f in bunch.feature_names]
    return Dataset(bunch.data.astype(np.float64), y, names, name, {"normal_class": normal})


def load_synthetic(
    n: int = 2000, n_features: int = 10, anomalies: float = 0.05, seed: int = 0
) -> Dataset:
    """Normal rows near a curved 2-D manifold in ``n_features`` dimensions, plus anomalies.

    Normal rows come from three clusters in a 2-D plane, sent through a fixed random
    nonlinear map, with a little noise. Half the anomalies are uniform in the data's
    bounding box (global anomalies); the other half are normal rows with a few features
    shifted (local anomalies). ``y`` = 1 marks anomalies.
    """
    if n < 2 or n_features < 3:
        raise ValueError("synthetic data needs n >= 2 and n_features >= 3")
    if not 0 <= anomalies < 1:
        raise ValueError(f"anomalies must be a fraction in [0, 1), got {anomalies}")
    rng = np.random.default_rng(seed)
    n_anomalies = int(round(anomalies * n))
    n_normal = n - n_anomalies

    def manifold(m: int) -> np.ndarray:
        centers = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
        t = centers[rng.integers(3, size=m)] + rng.normal(scale=0.6, size=(m, 2))
        return np.tanh(t @ mixing_in) @ mixing_out + 0.05 * rng.normal(size=(m, n_features))

    mixing_in = rng.normal(size=(2, 8))
    mixing_out = rng.normal(size=(8, n_features)) / np.sqrt(8)
    normal = manifold(n_normal)

    n_global = n_anomalies // 2
    low, high = normal.min(axis=0), normal.max(axis=0)
    global_anomalies = rng.uniform(low, high, size=(n_global, n_features))
    local_anomalies = manifold(n_anomalies - n_global)
    spread = normal.std(axis=0)
    for row in local_anomalies:
        shifted = rng.choice(n_features, size=max(1, n_features // 4), replace=False)
        row[shifted] += rng.choice([-1.0, 1.0], size=len(shifted)) * 3 * spread[shifted]

    X = np.vstack([normal, global_anomalies, local_anomalies])
    y = np.r_[np.zeros(n_normal), np.ones(n_anomalies)]
    order = rng.permutation(n)
    names = [f"x{i}" for i in range(n_features)]
    return Dataset(X[order], y[order], names, "synthetic", {"seed": seed})


@hookimpl
def register_datasets(register):
    register("csv", load_csv)
    register("parquet", load_parquet)
    register("npy", load_npy)
    register("npz", load_npz)
    register("sklearn", load_sklearn)
    register("synthetic", load_synthetic)


@hookimpl
def register_dataset_readers(register):
    register("csv", read_csv_chunks)
    register("parquet", read_parquet_chunks)
    register("npy", read_npy_chunks)
