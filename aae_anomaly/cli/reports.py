"""What the ``evaluate``, ``info`` and ``plugins`` commands report, as data and as text."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ..estimators.building import resolved_latent_dim
from ..estimators.columns import KINDS as COLUMN_KINDS
from ..estimators.scoretable import SCORE_COLUMNS, score_table  # noqa: F401  (re-exported)
from ..io.modelfile import ModelHeader
from ..plugin_system.manager import KINDS, PluginManager


@dataclass
class Evaluation:
    n_rows: int
    n_anomalies: int
    n_flagged: int
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    roc_auc: float
    average_precision: float
    precision: float
    recall: float
    f1: float
    threshold: float
    component_roc_auc: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        components = ", ".join(f"{k} {v:.3f}" for k, v in self.component_roc_auc.items())
        return "\n".join(
            [
                f"rows           {self.n_rows} ({self.n_anomalies} labelled anomalies)",
                f"ROC-AUC        {self.roc_auc:.4f}",
                f"avg precision  {self.average_precision:.4f}",
                f"by component   {components}",
                f"at threshold   score > {self.threshold:.4g}: {self.n_flagged} rows flagged",
                f"precision      {self.precision:.4f}",
                f"recall         {self.recall:.4f}",
                f"F1             {self.f1:.4f}",
                f"confusion      TP {self.true_positives}  FP {self.false_positives}  "
                f"FN {self.false_negatives}  TN {self.true_negatives}",
            ]
        )


def evaluate(table: dict[str, np.ndarray], labels: np.ndarray, offset: float) -> Evaluation:
    """Compare a score table with labels (non-zero = anomaly)."""
    truth = np.asarray(labels).reshape(-1) != 0
    if truth.all() or not truth.any():
        kind = "anomalies" if truth.all() else "normal rows"
        raise ValueError(f"the labels mark only {kind}; evaluation needs both classes")
    flagged = table["is_anomaly"] == 1
    return Evaluation(
        n_rows=len(truth),
        n_anomalies=int(truth.sum()),
        n_flagged=int(flagged.sum()),
        true_positives=int((flagged & truth).sum()),
        false_positives=int((flagged & ~truth).sum()),
        false_negatives=int((~flagged & truth).sum()),
        true_negatives=int((~flagged & ~truth).sum()),
        roc_auc=float(roc_auc_score(truth, table["score"])),
        average_precision=float(average_precision_score(truth, table["score"])),
        precision=float(precision_score(truth, flagged, zero_division=0)),
        recall=float(recall_score(truth, flagged, zero_division=0)),
        f1=float(f1_score(truth, flagged, zero_division=0)),
        threshold=-float(offset),
        component_roc_auc={
            name: float(roc_auc_score(truth, values))
            for name, values in table.items()
            if name not in ("score", "is_anomaly")
        },
    )


def describe_model(header: ModelHeader) -> dict[str, Any]:
    """The model file's contents for ``info --json``: its document minus the checksum,
    plus the tensor list."""
    document = {k: v for k, v in header.document.items() if k != "tensors_sha256"}
    document["path"] = header.path
    document["n_parameters"] = header.n_parameters
    document["tensors"] = [
        {"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in header.tensors
    ]
    return document


# -- info without a model: the environment --------------------------------------------------
REQUIRED_DISTRIBUTIONS = (
    "aae-anomaly", "torch", "numpy", "scikit-learn", "pandas", "pluggy", "click", "safetensors",
)
# the extras' packages: plot, parquet, fast
OPTIONAL_DISTRIBUTIONS = ("matplotlib", "pyarrow", "numba")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def describe_environment(manager: PluginManager) -> dict[str, Any]:
    """What ``info`` without a model reports: versions, the torch build, CUDA devices,
    the device ``auto`` picks, and the plugins found (``plugins``'s rows, per kind)."""
    import torch

    from ..engine.runtime import resolve_device

    devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            devices.append(
                {"index": index, "name": properties.name, "memory_bytes": properties.total_memory}
            )
    rows = plugin_rows(manager)
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in REQUIRED_DISTRIBUTIONS},
        # None: not installed
        "optional": {name: _version(name) for name in OPTIONAL_DISTRIBUTIONS},
        "torch": {
            "version": torch.__version__,
            "cuda": torch.version.cuda,  # None for a CPU-only build
            "cudnn": torch.backends.cudnn.version() if torch.version.cuda else None,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
        },
        "cuda_devices": devices,
        "auto_device": str(resolve_device("auto")),
        "plugins": {
            kind: [row["name"] for row in rows if row["kind"] == kind] for kind in KINDS
        },
        "plugin_failures": [
            {"plugin": f.plugin, "distribution": f.distribution, "message": f.message}
            for f in manager.failures
        ],
    }


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def format_environment(environment: dict[str, Any]) -> str:
    build = environment["torch"]
    cuda = f"CUDA {build['cuda']}" if build["cuda"] else "CPU only"
    if build["cudnn"]:
        cuda += f", cuDNN {build['cudnn']}"
    devices = environment["cuda_devices"]
    python = environment["python"]
    lines = [
        f"aae-anomaly    {environment['versions']['aae-anomaly']}",
        f"python         {python['version']} ({python['executable']})",
        f"platform       {environment['platform']}",
        "packages       " + ", ".join(
            f"{name} {version}" for name, version in environment["versions"].items()
            if name != "aae-anomaly"
        ),
        "optional       " + ", ".join(
            f"{name} {version or 'not installed'}"
            for name, version in environment["optional"].items()
        ),
        f"torch build    {build['version']}, {cuda}; {build['threads']} threads, "
        f"{build['interop_threads']} inter-op threads",
        "cuda devices   " + (
            "; ".join(f"cuda:{d['index']} {d['name']} ({_gib(d['memory_bytes'])})" for d in devices)
            or "none"
        ),
        f"device auto    {environment['auto_device']}",
    ]
    for kind, names in environment["plugins"].items():
        label = kind.replace("_", " ") + "s"
        lines.append(f"{label + ' ':<15}{len(names)}: {', '.join(names) or '-'}")
    failures = environment["plugin_failures"]
    if failures:
        lines.append(
            f"plugin errors  {len(failures)}: "
            + "; ".join(f"{f['plugin']}: {f['message']}" for f in failures)
        )
    return "\n".join(lines)


# -- info MODEL -------------------------------------------------------------------------------
def _scaling_text(params: dict, doc: dict) -> str:
    """The input scaling a detector's file applies, as fit resolved ``auto``."""
    given = params.get("scaling", "per_feature")  # files from before the parameter
    if doc.get("sample_scaling"):
        resolved = "per_sample"
    elif given == "auto":
        resolved = "shared" if len(doc["input_shape"]) > 1 else "per_feature"
    else:
        resolved = given
    return f"{resolved} (auto)" if given == "auto" else resolved


def _latent_dim(params: dict[str, Any], n_features: int) -> str:
    if params["latent_dim"] != "auto":
        return str(params["latent_dim"])
    resolved = resolved_latent_dim("auto", n_features)
    return f"{resolved} (auto)"


def format_model(header: ModelHeader) -> str:
    doc = header.document
    if "estimator" in doc:
        return format_family_model(header)
    params = doc["params"]
    names = doc["feature_names_in"]
    history = doc["history"]
    losses = ("reconstruction", "discriminator", "generator", "discriminator_accuracy")
    final = ", ".join(f"{k} {v[-1]:.4g}" for k, v in history.items() if v and k in losses)
    calibration = doc["calibration"]
    lines = [
        *_file_lines(header),
        _plugin_line("prior", doc["prior"]),
        _plugin_line("encoder", doc["encoder"]),
        f"latent dim     {_latent_dim(params, doc['n_features_in'])} "
        f"({params['posterior']} posterior, "
        f"{params['reconstruction_loss']} loss)",
        f"input shape    {tuple(doc['input_shape'])}, {doc['n_features_in']} features, "
        f"scaling {_scaling_text(params, doc)}",
        f"features       {', '.join(names) if names else '(unnamed)'}",
        f"parameters     {header.n_parameters} in {len(header.tensors)} tensors",
        f"threshold      score > {-doc['offset']:.6g} is an anomaly "
        f"(contamination {params['contamination']})",
        "calibration    "
        + "; ".join(
            f"{name}: center {calibration['center'][name]:.4g}, "
            f"spread {calibration['spread'][name]:.4g}, weight {calibration['weights'][name]:g}"
            for name in calibration["center"]
        ),
        f"training       {len(next(iter(history.values()), []))} epochs, "
        f"batch size {params['batch_size']}, seed {params['random_state']}"
        + _distributed_text(doc.get("distributed")),
        f"final losses   {final or '(none)'}",
    ]
    reference = [t for t in header.tensors if t.name == "reference" and t.shape[0]]
    if reference:
        groups = doc.get("reference_groups", 1)
        sliced = f", searched in {groups} slices (contaminated training)" if groups > 1 else ""
        k = doc.get("n_neighbors", params["n_neighbors"])
        chosen = " (n_neighbors auto)" if params["n_neighbors"] == "auto" else ""
        candidates = doc.get("input_candidates", 0)
        inputs = (
            f"; inputs: the {k} nearest in the inputs among the {candidates} nearest"
            if candidates else ""
        )
        lines.insert(
            lines.index(next(x for x in lines if x.startswith("threshold "))) + 1,
            f"neighbors      {reference[0].shape[0]} training rows kept, the {k} nearest "
            f"averaged{chosen}{sliced}{inputs}",
        )
    known = [t for t in header.tensors if t.name == "anomaly_reference"]
    if known:
        lines.insert(
            5, f"known anomalies {known[0].shape[0]}, raising the neighbors component near them"
        )
    classes = doc.get("normal_classes")
    if classes is not None:
        shown = ", ".join(map(str, classes[:10])) + (" ..." if len(classes) > 10 else "")
        lines.insert(
            5, f"classes        {len(classes)}, each in its own prior region: {shown}"
        )
    columns = doc.get("columns")
    if columns is not None:
        lines.insert(lines.index(next(x for x in lines if x.startswith("features "))) + 1,
                     f"columns        {format_columns(columns)}")
    notes = _training_notes(history)
    if notes:
        lines.append(f"training notes {notes}")
    return "\n".join(lines)


# What each of the family's estimators calls its categories, for info.
_CATEGORY_NOUNS = {"AAEClustering": "clusters", "AAEClassifier": "classes",
                   "SupervisedAAE": "classes"}  # fmt: skip


def _file_lines(header: ModelHeader) -> list[str]:
    """The lines every model file's description starts with: where, which format, who."""
    doc = header.document
    return [
        f"model file     {header.path}",
        f"format         {doc['format']} version {doc['format_version']}",
        f"saved by       aae-anomaly {doc['library_version']}, torch {doc['torch_version']}",
    ]


def format_family_model(header: ModelHeader) -> str:
    """``info`` for a model file of the class-and-style family."""
    doc = header.document
    params, history, names = doc["params"], doc["history"], doc["feature_names_in"]
    noun = _CATEGORY_NOUNS.get(doc["estimator"], "categories")
    categories = f"{doc['n_categories']} {noun}"
    if doc.get("classes"):
        shown = ", ".join(map(str, doc["classes"][:10]))
        categories += f": {shown}" + (" ..." if len(doc["classes"]) > 10 else "")
    losses = ("reconstruction", "discriminator", "generator", "classification",
              "discriminator_accuracy")  # fmt: skip
    final = ", ".join(f"{k} {v[-1]:.4g}" for k, v in history.items() if v and k in losses)
    lines = [
        *_file_lines(header),
        f"estimator      {doc['estimator']}, {categories}, style dim {params['style_dim']}",
        _plugin_line("encoder", doc["encoder"]),
        f"input shape    {tuple(doc['input_shape'])}, {doc['n_features_in']} features, "
        f"scaling {_scaling_text(params, doc)}",
        f"features       {', '.join(names) if names else '(unnamed)'}",
        f"parameters     {header.n_parameters} in {len(header.tensors)} tensors",
        f"training       {len(next(iter(history.values()), []))} epochs, "
        f"batch size {params['batch_size']}, seed {params['random_state']}",
        f"final losses   {final or '(none)'}",
    ]
    if doc.get("columns") is not None:
        lines.insert(7, f"columns        {format_columns(doc['columns'])}")
    return "\n".join(lines)


# At most this many of a model's columns are named on its columns line.
SHOWN_COLUMNS = 12


def format_columns(schema: dict[str, Any]) -> str:
    """A stored table schema in one line: each column's name and kind, the columns left
    out, and what a missing cell does."""

    def described(column: dict[str, Any]) -> str:
        if column["kind"] != "categorical":
            return f"{column['name']} ({column['kind']})"
        count = len(column["categories"])
        noun = "category" if count == 1 else "categories"
        return f"{column['name']} (categorical, {count} {noun} + other)"

    entries = schema["columns"]
    if len(entries) <= SHOWN_COLUMNS:
        text = ", ".join(described(c) for c in entries)
    else:
        # many columns: counts per kind, then the ones that are not plain numbers
        counts = {kind: sum(c["kind"] == kind for c in entries) for kind in COLUMN_KINDS}
        text = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        special = [c for c in entries if c["kind"] != "numeric"]
        if special:
            text += ": " + ", ".join(described(c) for c in special[:SHOWN_COLUMNS])
            if len(special) > SHOWN_COLUMNS:
                text += ", ..."
    if schema["ignored"]:
        text += f"; ignored: {', '.join(schema['ignored'])}"
    missing = "imputed" if schema["missing"] == "impute" else "refused"
    return f"{text}; missing cells {missing}"


def _training_notes(history: dict[str, list[float]]) -> str:
    notes = []
    scale = history.get("learning_rate_scale") or [1.0]
    if scale[-1] < 1.0:
        notes.append(f"diverged and recovered with the learning rates cut to {scale[-1]:g}")
    if (history.get("discriminator_overpowered") or [0.0])[-1]:
        notes.append("the discriminator overpowered the encoder in the final epochs")
    return "; ".join(notes)


def _plugin_line(kind: str, entry: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in entry["options"].items()) or "defaults"
    source = entry["distribution"] or f"plugin {entry['plugin']}"
    version = f" {entry['version']}" if entry["version"] else ""
    return f"{kind:<15}{entry['name']} ({options}) from {source}{version}"


def plugin_rows(manager: PluginManager) -> list[dict[str, str | None]]:
    return [
        {
            "kind": kind,
            "name": name,
            "plugin": registration.plugin,
            "distribution": registration.distribution,
            "version": registration.version,
        }
        for kind in KINDS
        for name, registration in sorted(manager.registrations(kind).items())
    ]


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    cells = [[str(row[c]) if row[c] is not None else "-" for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _distributed_text(distributed: dict | None) -> str:
    if not distributed:
        return ""
    return f", world size {distributed['world_size']} ({distributed['backend']})"
