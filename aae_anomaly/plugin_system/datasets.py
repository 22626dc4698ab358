"""What a dataset loader returns, and how ``name:key=value,...`` specs reach a loader."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .manager import get_plugin_manager


@dataclass
class Dataset:
    """Rows to fit or score. ``y`` marks anomalies with 1 (normal rows 0), when known (or,
    for the AAE family's commands, holds class labels).

    ``X`` is an array (rows, or images ``(n, channels, height, width)``) or a pandas
    DataFrame, whose columns may hold text, booleans and empty cells: the estimators
    encode them (see :mod:`aae_anomaly.estimators.columns`)."""

    X: Any
    y: np.ndarray | None = None
    feature_names: list[str] | None = None
    name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.X):
            raise ValueError(
                f"dataset {self.name!r} has {len(self.X)} rows but {len(self.y)} labels"
            )


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``"synthetic:n=2000,anomalies=0.05"`` into its name and raw option strings."""
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"dataset option {item!r} in {spec!r} is not of the form key=value")
        options[key.strip()] = value.strip()
    if not name.strip():
        raise ValueError(f"dataset spec {spec!r} has no name")
    return name.strip(), options


def coerce_options(loader: Any, options: dict[str, str]) -> dict[str, Any]:
    """Convert option strings to the types the loader's annotations ask for."""
    signature = inspect.signature(loader)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    converted: dict[str, Any] = {}
    for key, raw in options.items():
        parameter = signature.parameters.get(key)
        if parameter is None:
            if accepts_any:
                converted[key] = raw
                continue
            known = [p for p in signature.parameters if p != "self"]
            raise ValueError(f"unknown option {key!r}; this dataset takes: {', '.join(known)}")
        converted[key] = _convert(key, raw, parameter)
    return converted


def _convert(key: str, raw: str, parameter: inspect.Parameter) -> Any:
    annotation = parameter.annotation
    if isinstance(annotation, str):  # postponed annotations: take the first named type
        annotation = annotation.split("|")[0].strip()
    type_name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(type_name)
    if kind is None and parameter.default is not inspect.Parameter.empty:
        default = parameter.default
        kind = type(default) if isinstance(default, (int, float, bool, str)) else str
    kind = kind or str
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return lowered in {"1", "true", "yes"}
        return kind(raw)
    except ValueError:
        raise ValueError(f"option {key}={raw!r} is not a valid {kind.__name__}") from None


def load_dataset(spec: str, **overrides: Any) -> Dataset:
    """Load a dataset by plugin spec, e.g. ``load_dataset("synthetic:n=2000")``."""
    name, raw_options = parse_spec(spec)
    registration = get_plugin_manager().get("dataset", name)
    options = coerce_options(registration.factory, raw_options)
    options.update(overrides)
    dataset = registration.factory(**options)
    if not isinstance(dataset, Dataset):
        raise TypeError(
            f"dataset loader {name!r} (plugin {registration.plugin!r}) returned "
            f"{type(dataset).__name__}, not a Dataset"
        )
    return dataset


def load_dataset_chunks(
    spec: str, chunk_rows: int, columns: dict[str, str] | None = None, *,
    part: tuple[int, int] | None = None, **overrides: Any,
) -> Iterator[Dataset] | None:
    """The dataset ``spec`` names, as chunks of at most ``chunk_rows`` rows, from the
    chunked reader a plugin registered for it (``register_dataset_readers``); ``None`` when
    there is none, and the dataset is to be loaded whole. ``columns``: each column's kind
    (``numeric``, ``boolean``, ``categorical``, ``text``) when known, so that every chunk
    parses alike.

    ``part=(index, count)``: only part ``index`` of ``count`` of the rows, the parts
    together holding every row once (what one process of a distributed fit reads). A
    reader with a ``part`` parameter reads its part itself; from any other, every chunk
    is read and only the rows numbered ``index``, ``index + count``, ... are kept."""
    name, raw_options = parse_spec(spec)
    registration = _reader_registration(name)
    if registration is None:
        return None
    options = coerce_options(registration.factory, raw_options)
    options.update(overrides)
    reader = registration.factory
    if part is None or part[1] == 1:
        return _checked_chunks(name, registration, reader(chunk_rows, columns, **options))
    if reads_parts(reader):
        chunks = reader(chunk_rows, columns, part=tuple(part), **options)
        return _checked_chunks(name, registration, chunks)
    chunks = _checked_chunks(name, registration, reader(chunk_rows, columns, **options))
    return every_nth(chunks, *part, take=_rows_of, length=lambda chunk: len(chunk.X))


def dataset_reads_parts(spec: str) -> bool:
    """Whether the dataset ``spec`` names has a chunked reader that reads one part of its
    rows itself (:func:`reads_parts`); nothing is read."""
    registration = _reader_registration(parse_spec(spec)[0])
    return registration is not None and reads_parts(registration.factory)


def _reader_registration(name: str):
    return get_plugin_manager().registrations("dataset_reader").get(name)


def reads_parts(reader: Any) -> bool:
    """Whether a chunked reader takes a ``part`` (it names the parameter itself)."""
    try:
        parameter = inspect.signature(reader).parameters.get("part")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY
    )


def every_nth(
    chunks: Iterable[Any], index: int, count: int, take: Callable, length: Callable = len
) -> Iterator[Any]:
    """The rows numbered ``index``, ``index + count``, ... of ``chunks`` put end to end,
    one chunk out for each in: ``take(chunk, positions)`` of each ``length(chunk)`` rows
    (the fallback for a reader that cannot read one part of the rows)."""
    seen = 0
    for chunk in chunks:
        n = length(chunk)
        yield take(chunk, np.arange((index - seen) % count, n, count))
        seen += n


def _rows_of(chunk: Dataset, keep: np.ndarray) -> Dataset:
    X = chunk.X.iloc[keep] if hasattr(chunk.X, "iloc") else chunk.X[keep]
    y = None if chunk.y is None else np.asarray(chunk.y)[keep]
    return Dataset(X, y, chunk.feature_names, chunk.name, chunk.metadata)


def _checked_chunks(name: str, registration, chunks) -> Iterator[Dataset]:
    for chunk in chunks:
        if not isinstance(chunk, Dataset):
            raise TypeError(
                f"dataset reader {name!r} (plugin {registration.plugin!r}) yielded "
                f"{type(chunk).__name__}, not a Dataset"
            )
        yield chunk
