"""Detection quality on real data: AAEDetector beside PyOD's detectors.

The protocol of ``../shared/data/README.md`` ("trained on normal data"): for each data set
and seed, shuffle the normal rows with the seed; 60% of them train; the test set is the
other 40% plus every anomaly. Scaling is fitted on the training rows alone and used for
every detector: a StandardScaler per feature for tabular sets, one mean and standard
deviation over all pixels for image sets (``IMAGE_SHAPES``), whose pixels share one unit.
Training sets over 20,000 rows are subsampled to 20,000 (test sets likewise, keeping every
anomaly). ROC-AUC and average precision on the
test set, averaged over seeds 0, 1 and 2.

Each (data set, seed, detector) result is cached in a JSON file as soon as it is measured,
so a long run can be split, resumed or extended; the report is written from the cache.

    python benchmarks/quality.py                      # everything, then docs/benchmarks.md
    python benchmarks/quality.py --detectors AAE --datasets 6_cardio,38_thyroid
    python benchmarks/quality.py --report-only        # rewrite the report from the cache
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_CACHE = ROOT / "benchmarks" / "results" / "quality.json"
DEFAULT_REPORT = ROOT / "docs" / "benchmarks.md"
SEEDS = (0, 1, 2)
MAX_ROWS = 20_000
AAE = "AAE"
PYOD_DETECTORS = ("IForest", "KNN", "ECOD", "OCSVM", "AutoEncoder", "VAE", "DeepSVDD")
DETECTORS = (AAE, *PYOD_DETECTORS)
# Folders of image data sets and their per-sample shape. Pixels share one unit, so they
# share one scale: per-pixel standardization turns ink on a pixel that is dark in every
# training image into a value of 50 or more, for every detector alike.
IMAGE_SHAPES = {"mnist-oneclass": (1, 28, 28)}
# MNIST figures measured under the first protocol (per-pixel StandardScaler), kept so the
# report can show what the change of scaling did.
PER_PIXEL_CACHE = ROOT / "benchmarks" / "results" / "quality-mnist-per-pixel.json"
# What was tried beside the measured tables (written by hand), appended to the report.
NOTES = ROOT / "benchmarks" / "quality_notes.md"


# -- data -------------------------------------------------------------------------------
def find_datasets(data_dirs: list[Path]) -> dict[str, tuple[str, Path]]:
    """Every ``.npz`` below the given folders, by name, with its group (folder name)."""
    found: dict[str, tuple[str, Path]] = {}
    for folder in data_dirs:
        for path in sorted(folder.rglob("*.npz")):
            found[path.stem] = (path.parent.name, path)
    return found


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        X = archive["X"] if "X" in archive.files else archive["x"]
        y = archive["y"]
    return X.reshape(len(X), -1).astype(np.float64), y.reshape(-1).astype(int)


def protocol_split(
    X: np.ndarray, y: np.ndarray, seed: int, images: bool = False, contamination: float = 0.0
):
    """Training rows, test rows and test labels under the shared protocol (scaled: per
    feature, or with ``images`` one mean and standard deviation for all pixels).

    With ``contamination`` c > 0, the "Contaminated training" protocol: the first
    m = min(round(c / (1 - c) * n_train_normal), floor(n_anomalies / 2)) of the shuffled
    anomalies join the training rows, the rest stay in the test set; a training set over
    :data:`MAX_ROWS` is subsampled keeping the share of anomalies."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    anomalies = np.flatnonzero(y != 0)
    n_train = int(0.6 * len(normal))
    train, test_normal = normal[:n_train], normal[n_train:]
    if contamination > 0:
        anomalies = rng.permutation(anomalies)
        m = min(round(contamination / (1 - contamination) * n_train), len(anomalies) // 2)
        planted, anomalies = anomalies[:m], anomalies[m:]
        if len(train) + m > MAX_ROWS:
            m_kept = round(MAX_ROWS * m / (len(train) + m))
            train = rng.choice(train, MAX_ROWS - m_kept, replace=False)
            planted = rng.choice(planted, m_kept, replace=False)
        train = rng.permutation(np.concatenate([train, planted]))
    elif len(train) > MAX_ROWS:
        train = rng.choice(train, MAX_ROWS, replace=False)
    if len(test_normal) + len(anomalies) > MAX_ROWS:
        keep = max(MAX_ROWS - len(anomalies), 0)
        test_normal = rng.choice(test_normal, keep, replace=False)
    test = np.concatenate([test_normal, anomalies])
    if images:
        center, scale = X[train].mean(), X[train].std()
        return (X[train] - center) / scale, (X[test] - center) / scale, (y[test] != 0).astype(int)
    scaler = StandardScaler().fit(X[train])
    return scaler.transform(X[train]), scaler.transform(X[test]), (y[test] != 0).astype(int)


# -- detectors --------------------------------------------------------------------------
def make_detector(name: str, n_features: int, seed: int, contamination: float = 0.0):
    """A fresh detector with its default settings (the ones a user would start with),
    told the share of anomalies in its training rows when there are some."""
    if name == AAE:
        from aae_anomaly import AAEDetector

        return AAEDetector(random_state=seed, contamination=contamination or "auto")
    from pyod.models import auto_encoder, deep_svdd, ecod, iforest, knn, ocsvm, vae

    told = {"contamination": contamination} if contamination else {}
    factories: dict[str, Callable[[], object]] = {
        "IForest": lambda: iforest.IForest(random_state=seed, **told),
        "KNN": lambda: knn.KNN(n_neighbors=5, method="largest", **told),
        "ECOD": lambda: ecod.ECOD(**told),
        "OCSVM": lambda: ocsvm.OCSVM(**told),
        "AutoEncoder": lambda: auto_encoder.AutoEncoder(random_state=seed, verbose=0, **told),
        "VAE": lambda: vae.VAE(random_state=seed, verbose=0, **told),
        "DeepSVDD": lambda: deep_svdd.DeepSVDD(
            n_features, random_state=seed, verbose=0, **told
        ),
    }
    return factories[name]()


def result_key(dataset: str, seed: int, detector: str, contamination: float = 0.0) -> str:
    """The cache key of one measurement (clean training keeps the first runs' keys)."""
    key = f"{dataset}|{seed}|{detector}"
    return f"{key}|c={contamination:g}" if contamination else key


def anomaly_scores(detector, X: np.ndarray) -> np.ndarray:
    """Larger = more anomalous, for either library."""
    if hasattr(detector, "score_components"):
        return detector.score_components(X)["score"]
    return detector.decision_function(X)


def evaluate(
    name: str, X_train, X_test, y_test, seed: int, image_shape=None, contamination: float = 0.0
) -> dict:
    """Fit on the training rows, score the test rows. With ``image_shape``, the AAE gets
    the rows as images of that shape, their natural form (PyOD takes flat rows only)."""
    detector = make_detector(name, X_train.shape[1], seed, contamination)
    if name == AAE and image_shape is not None:
        X_train = X_train.reshape(len(X_train), *image_shape)
        X_test = X_test.reshape(len(X_test), *image_shape)
    started = time.perf_counter()
    detector.fit(X_train)
    fitted = time.perf_counter()
    if name == AAE:
        components = detector.score_components(X_test)
        scores = components["score"]
    else:
        scores = anomaly_scores(detector, X_test)
    scored = time.perf_counter()
    if not np.isfinite(scores).all():
        raise RuntimeError(f"{name} gave non-finite scores")
    result = {
        "roc_auc": float(roc_auc_score(y_test, scores)),
        "average_precision": float(average_precision_score(y_test, scores)),
        "fit_seconds": fitted - started,
        "score_seconds": scored - fitted,
    }
    if name == AAE:
        result["components"] = {
            key: float(roc_auc_score(y_test, values))
            for key, values in components.items()
            if key != "score"
        }
    return result


# -- cache and report -------------------------------------------------------------------
def load_cache(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"results": {}}


def save_cache(cache: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(cache, indent=1, sort_keys=True))
    temporary.replace(path)


def versions() -> dict[str, str]:
    import sklearn
    import torch

    import aae_anomaly

    found = {
        "python": platform.python_version(),
        "aae-anomaly": aae_anomaly.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }
    try:
        import pyod

        found["pyod"] = pyod.__version__
    except ImportError:
        pass
    return found


def summarise(cache: dict, groups: dict[str, str], seeds, contamination: float = 0.0) -> dict:
    """Mean over seeds per (data set, detector); only complete cells count."""
    table: dict[str, dict[str, dict]] = {}
    for dataset in sorted(groups, key=_natural):
        for detector in DETECTORS:
            runs = [
                cache["results"].get(result_key(dataset, seed, detector, contamination))
                for seed in seeds
            ]
            if any(run is None for run in runs):
                continue
            cell = {
                key: float(np.mean([run[key] for run in runs]))
                for key in ("roc_auc", "average_precision", "fit_seconds", "score_seconds")
            }
            if detector == AAE:
                cell["components"] = {
                    key: float(np.mean([run["components"][key] for run in runs]))
                    for key in runs[0]["components"]
                }
            table.setdefault(dataset, {})[detector] = cell
    return table


def _natural(name: str):
    head = name.split("_")[0]
    return (0, int(head), name) if head.isdigit() else (1, 0, name)


def group_lines(title: str, table: dict, names: list[str], detectors: list[str]) -> list[str]:
    complete = [d for d in names if all(det in table.get(d, {}) for det in detectors)]
    if not complete or not detectors:
        return []
    lines = [f"## {title}", ""]
    for metric, label in (("roc_auc", "ROC-AUC"), ("average_precision", "Average precision")):
        values = np.array([[table[d][det][metric] for det in detectors] for d in complete])
        # rank 1 = best; ties share the mean rank
        ranks = np.array([_ranks(-row) for row in values])
        lines += [f"### {label}", "", "| data set | " + " | ".join(detectors) + " |",
                  "|---" * (len(detectors) + 1) + "|"]
        for dataset, row in zip(complete, values, strict=True):
            best = row.max()
            cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in row]
            lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
        lines.append("| **mean** | " + " | ".join(f"{v:.3f}" for v in values.mean(0)) + " |")
        lines.append("| **mean rank** | " + " | ".join(f"{v:.2f}" for v in ranks.mean(0)) + " |")
        lines.append("")
    lines += ["### Time (seconds, mean over seeds: fit / score)", "",
              "| data set | " + " | ".join(detectors) + " |",
              "|---" * (len(detectors) + 1) + "|"]
    for dataset in complete:
        cells = [
            f"{table[dataset][det]['fit_seconds']:.1f} / {table[dataset][det]['score_seconds']:.2f}"
            for det in detectors
        ]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    lines.append("")
    if all(AAE in table[d] for d in complete):
        from aae_anomaly.scoring.components import COMPONENTS

        measured = table[complete[0]][AAE]["components"]
        names_c = [c for c in COMPONENTS if c in measured]
        lines += [f"### What each AAE score component is worth ({title}, ROC-AUC)", "",
                  "| data set | " + " | ".join(names_c) + " | combined |",
                  "|---" * (len(names_c) + 2) + "|"]
        rows = []
        for dataset in complete:
            cell = table[dataset][AAE]
            row = [cell["components"].get(c, float("nan")) for c in names_c] + [cell["roc_auc"]]
            rows.append(row)
            lines.append(f"| {dataset} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
        mean = np.nanmean(np.array(rows), axis=0)
        lines.append("| **mean** | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
        lines.append("")
    return lines


def per_pixel_lines(groups: dict[str, list[str]], seeds) -> list[str]:
    """The image sets' means under the first protocol (per-pixel StandardScaler), when the
    archived results of that run are present."""
    if not PER_PIXEL_CACHE.exists():
        return []
    archived = load_cache(PER_PIXEL_CACHE)
    lines = []
    for group in sorted(set(groups) & set(IMAGE_SHAPES)):
        table = summarise(archived, {name: group for name in groups[group]}, seeds)
        detectors = [d for d in DETECTORS if all(d in table.get(n, {}) for n in groups[group])]
        if not detectors:
            continue
        lines += [
            f"## {group} under per-pixel scaling (the first protocol, for comparison)", "",
            "Measured before image sets were scaled with one mean and deviation: the same "
            "splits, a StandardScaler per pixel for every detector, and the AAE given flat "
            f"rows (`{PER_PIXEL_CACHE.relative_to(ROOT)}`). Means over "
            f"{len(groups[group])} data sets:", "",
            "| | " + " | ".join(detectors) + " |", "|---" * (len(detectors) + 1) + "|",
        ]
        for metric, label in (("roc_auc", "ROC-AUC"), ("average_precision", "AP")):
            means = [np.mean([table[n][d][metric] for n in groups[group]]) for d in detectors]
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
        lines.append("")
    return lines


def summary_lines(table: dict, groups: dict[str, list[str]]) -> list[str]:
    """AAE against the PyOD detectors, per group, on the data sets every detector finished."""
    lines = ["## Summary", ""]
    for group, names in sorted(groups.items()):
        detectors = [d for d in DETECTORS if all(d in table.get(n, {}) for n in names)]
        complete = [n for n in names if n in table]
        if AAE not in detectors or len(detectors) < 2 or len(complete) < len(names):
            lines.append(f"- {group}: not every detector has finished every data set yet.")
            continue
        roc = {d: np.mean([table[n][d]["roc_auc"] for n in names]) for d in detectors}
        ap = {d: np.mean([table[n][d]["average_precision"] for n in names]) for d in detectors}
        values = np.array([[table[n][d]["roc_auc"] for d in detectors] for n in names])
        ranks = dict(zip(detectors, np.array([_ranks(-r) for r in values]).mean(0), strict=True))
        others = [d for d in detectors if d != AAE]
        best_roc = max(others, key=roc.get)
        best_rank = min(others, key=ranks.get)
        lines.append(
            f"- **{group}** ({len(names)} data sets; PyOD detectors here: {', '.join(others)}): "
            f"AAE mean ROC-AUC {roc[AAE]:.3f} against the best PyOD detector's "
            f"{roc[best_roc]:.3f} ({best_roc}); mean rank {ranks[AAE]:.2f} against "
            f"{ranks[best_rank]:.2f} ({best_rank}); mean average precision {ap[AAE]:.3f} "
            f"against {max(ap[d] for d in others):.3f}."
        )
        for deep in ("AutoEncoder", "VAE"):
            if deep in roc:
                ahead = roc[AAE] > roc[deep] and ap[AAE] > ap[deep]
                lines.append(
                    f"  - against PyOD's {deep}: ROC-AUC {roc[AAE]:.3f} vs {roc[deep]:.3f}, "
                    f"AP {ap[AAE]:.3f} vs {ap[deep]:.3f}: "
                    f"{'ahead on both' if ahead else 'not ahead on both'}."
                )
    return [*lines, ""]


def contaminations(cache: dict) -> list[float]:
    """The contaminated settings the cache has results for."""
    found = {float(key.split("|c=")[1]) for key in cache["results"] if "|c=" in key}
    return sorted(found)


def contaminated_lines(
    contamination: float, clean: dict, table: dict, groups: dict[str, list[str]]
) -> list[str]:
    """Each group's means in one contaminated setting beside the clean ones, the drop, and
    the per-set tables."""
    lines = []
    for group, names in sorted(groups.items()):
        names = sorted(names, key=_natural)
        detectors = [
            d for d in DETECTORS
            if all(d in table.get(n, {}) and d in clean.get(n, {}) for n in names)
        ]
        if not detectors:
            continue
        title = f"{group}, contaminated training (c = {contamination:g})"
        lines += [
            f"## {title}", "",
            f"A share {contamination:g} of the training rows are anomalies and every detector "
            "is told that share (`contamination`); the drop is the contaminated mean minus "
            f"the clean one, over the same {len(names)} data sets and seeds.", "",
            "| detector | clean ROC-AUC | contaminated | drop | clean AP | contaminated | drop |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in detectors:
            cells = []
            for metric in ("roc_auc", "average_precision"):
                before = np.mean([clean[n][d][metric] for n in names])
                after = np.mean([table[n][d][metric] for n in names])
                cells += [f"{before:.3f}", f"{after:.3f}", f"{after - before:+.3f}"]
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += group_lines(title, table, names, detectors)[2:]
    return lines


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values)


def write_report(cache: dict, groups: dict[str, str], path: Path, seeds) -> None:
    table = summarise(cache, groups, seeds)
    run = cache.get("run", {})
    lines = [
        "# Detection quality on real data",
        "",
        "Written by `benchmarks/quality.py` from its result cache "
        "(`benchmarks/results/quality.json`); every figure below is one it measured.",
        "",
        "Commands (run in this order; each adds to the cache):",
        "",
        *[f"    {command}" for command in cache.get("commands", [])],
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items()),
        "",
        f"Machine: {run.get('machine', '?')}",
        "",
        "Protocol (`../shared/data/README.md`): train on 60% of the normal rows; test on the "
        "other 40% and every anomaly; scaling fitted on the training rows, the same for every "
        "detector: a StandardScaler per feature on the tabular sets, one mean and standard "
        "deviation over all pixels on the image sets (pixels share one unit; per-pixel "
        "scaling turns ink on a pixel that is dark in every training image into a value of "
        "50 or more, see the last section), where the AAE gets the rows as 28x28 images "
        "(which its default scaling then standardizes one by one, docs/scoring.md); "
        f"seeds {', '.join(map(str, seeds))}; each figure is the mean over seeds. "
        "Every detector runs with its default settings (PyOD's KNN with n_neighbors=5, "
        "method='largest').",
        "",
    ]
    by_group: dict[str, list[str]] = {}
    for dataset, group in groups.items():
        by_group.setdefault(group, []).append(dataset)
    lines += summary_lines(table, by_group)
    for group, names in sorted(by_group.items()):
        names = sorted(names, key=_natural)
        present = [det for det in DETECTORS if any(det in table.get(d, {}) for d in names)]
        lines += group_lines(group, table, names, present)
    lines += per_pixel_lines(by_group, seeds)
    for contamination in contaminations(cache):
        lines += contaminated_lines(
            contamination, table, summarise(cache, groups, seeds, contamination), by_group
        )
    if NOTES.exists():
        lines += ["", NOTES.read_text().rstrip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# -- main -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append",
                        help=f"folder of .npz data sets (repeatable; default {DEFAULT_DATA})")
    parser.add_argument("--datasets", help="comma-separated names (default: all found)")
    parser.add_argument("--detectors", default=",".join(DETECTORS),
                        help="comma-separated, from " + ", ".join(DETECTORS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--contamination", default="0",
                        help="comma-separated shares of anomalies moved into the training "
                        "rows (0 = clean training; e.g. 0.05,0.1)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--rerun", help="comma-separated detectors to measure again")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)

    data_dirs = args.data or [DEFAULT_DATA]
    missing = [str(d) for d in data_dirs if not d.is_dir()]
    if missing:
        parser.error(f"no data folder at {', '.join(missing)}")
    found = find_datasets(data_dirs)
    wanted = args.datasets.split(",") if args.datasets else list(found)
    unknown = sorted(set(wanted) - set(found))
    if unknown:
        parser.error(f"unknown data sets {unknown}; found {sorted(found, key=_natural)}")
    detectors = args.detectors.split(",")
    bad = sorted(set(detectors) - set(DETECTORS))
    if bad:
        parser.error(f"unknown detectors {bad}; choose from {list(DETECTORS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    try:
        settings = [float(c) for c in args.contamination.split(",")]
    except ValueError:
        parser.error(f"--contamination takes comma-separated numbers, got {args.contamination!r}")
    if any(not 0 <= c < 0.5 for c in settings):
        parser.error(f"--contamination shares must be in [0, 0.5), got {args.contamination!r}")
    rerun = set(args.rerun.split(",")) if args.rerun else set()

    cache = load_cache(args.cache)
    if not args.report_only:
        import torch

        threads = torch.get_num_threads()
        command = "python benchmarks/quality.py " + " ".join(argv or sys.argv[1:])
        cache.setdefault("commands", [])
        if command not in cache["commands"]:
            cache["commands"].append(command)
        cache["run"] = {
            "versions": versions(),
            "machine": f"{platform.machine()}, {_cores()} cores, {platform.system()}, "
            f"torch threads {threads}",
        }
        for dataset in sorted(wanted, key=_natural):
            group, path = found[dataset]
            X, y = load_npz(path)
            image_shape = IMAGE_SHAPES.get(group)
            for contamination, seed in ((c, seed) for c in settings for seed in seeds):
                split = None
                for detector in detectors:
                    key = result_key(dataset, seed, detector, contamination)
                    if key in cache["results"] and detector not in rerun:
                        continue
                    split = split or protocol_split(
                        X, y, seed, images=image_shape is not None, contamination=contamination
                    )
                    result = evaluate(detector, *split, seed, image_shape, contamination)
                    cache["results"][key] = result
                    save_cache(cache, args.cache)
                    setting = f" c={contamination:g}" if contamination else ""
                    print(f"{dataset:>16} seed {seed}{setting} {detector:>11}: ROC-AUC "
                          f"{result['roc_auc']:.3f} AP {result['average_precision']:.3f} "
                          f"fit {result['fit_seconds']:.1f}s", flush=True)
    # the report covers every data set the cache has results for, not only this run's
    # folders: a run on one folder must not drop the other folders' tables
    report_dirs = [*data_dirs, DEFAULT_DATA] if DEFAULT_DATA.is_dir() else data_dirs
    measured = {key.split("|")[0] for key in cache["results"]}
    groups = {
        name: group
        for name, (group, _) in find_datasets(report_dirs).items()
        if name in measured or name in found
    }
    write_report(cache, groups, args.report, seeds)
    print(f"wrote {args.report}")
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    raise SystemExit(main())
