"""Speed of AAEDetector against PyOD's AutoEncoder, and against the machine's limit.

    python benchmarks/speed.py [--quick] [--output docs/performance.md] [--data-dir DIR]

Every measurement of one detector on one data set runs in a fresh child process, so that
its peak memory is its own. In one run, on one machine, it measures:

- training time per epoch (the epoch loop only, timed around it; each side's own
  preprocessing and PyOD's scoring of its training rows at the end of ``fit`` excluded);
- scoring throughput in rows per second (``score_samples`` for ours, best of 3 passes;
  ``decision_function`` for PyOD, one pass; on all rows of the set);
- the peak resident memory added while training and while scoring, the latter divided by
  the size of the input array (the kernel's high-water mark is reset between phases);
- the machine's limit: float32 FLOP/s of one large ``torch.mm``, best of several, with
  torch's default threads; scoring's fraction of it counts the matrix products that
  ``score_samples`` runs: our encoder and decoder (and the discriminator, when its
  component has a weight; torch's FLOP counter, two per multiply-add; element-wise work
  not counted) plus the neighbour search's matrix product against the reference set
  (``aae_anomaly.scoring.scoring_flops_per_row``).

It prints a Markdown report and writes it to ``--output``. Needs the ``bench`` extra:
``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 32
BATCH_SIZE = 128
LATENT = 8
SHUTTLE = "32_shuttle"


# -- what runs in a child -------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM), Linux >= 4.0
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def load_rows(spec: dict) -> np.ndarray:
    if spec["kind"] == "file":
        return np.load(spec["path"])["X"].astype(np.float64)
    # normal rows near a 6-dimensional subspace, with noise: something to learn
    rng = np.random.default_rng(spec["seed"])
    mixing = rng.normal(size=(6, N_FEATURES))
    latent = rng.normal(size=(spec["n"], 6))
    rows = latent @ mixing
    rows += 0.1 * rng.normal(size=rows.shape)
    return rows


# Our two configurations: the default score (the neighbors component, n_neighbors=5) and
# the networks alone (n_neighbors=0, reconstruction score).
OURS = {"ours": 5, "ours-networks": 0}


def worker(job: dict) -> dict:
    import torch

    rows = load_rows(job["data"])
    hidden, epochs = job["hidden"], job["epochs"]
    result = {"rows": len(rows), "input_bytes": rows.nbytes}
    peaks = _reset_peak()
    base = _rss_bytes()

    if job["library"] in OURS:
        import aae_anomaly.estimators.detector as estimator
        from aae_anomaly.scoring import scoring_flops_per_row

        timed = {}

        class TimedTrainer(estimator.Trainer):
            """The estimator's trainer, timing the epochs alone (not calibration etc.)."""

            def fit(self, *args, **kwargs):
                timed["rows"] = len(self.x_all)
                start = time.perf_counter()
                history = super().fit(*args, **kwargs)
                timed["seconds"] = time.perf_counter() - start
                return history

        untimed, estimator.Trainer = estimator.Trainer, TimedTrainer
        try:
            detector = estimator.AAEDetector(
                encoder_params={"hidden": hidden}, latent_dim=LATENT, batch_size=BATCH_SIZE,
                epochs=epochs, random_state=0, n_neighbors=OURS[job["library"]],
            ).fit(rows)
        finally:
            estimator.Trainer = untimed
        result["train_rows"] = timed["rows"]
        result["epoch_seconds"] = timed["seconds"] / epochs
        # what score_samples runs: the networks and search its weighted components need
        result["flops_per_row"] = scoring_flops_per_row(
            detector.module_, detector.calibration_.weighted()
        )
        score = detector.score_samples
        tiny = rows[:1]
        score(tiny)
        start = time.perf_counter()
        for _ in range(20):
            score(tiny)
        result["one_row_ms"] = (time.perf_counter() - start) / 20 * 1e3
    else:
        from pyod.models.auto_encoder import AutoEncoder

        if job["library"] == "pyod-1-thread":
            torch.set_num_threads(1)

        detector = AutoEncoder(
            hidden_neuron_list=[*hidden, LATENT], batch_size=BATCH_SIZE, epoch_num=epochs,
            hidden_activation_name="leaky_relu", batch_norm=False, dropout_rate=0.0,
            optimizer_params={}, preprocessing=True, random_state=0, verbose=0,
        )
        timed = {}
        train = detector.train

        def timed_train(loader):
            start = time.perf_counter()
            train(loader)
            timed["seconds"] = time.perf_counter() - start

        detector.train = timed_train
        # fit ends by scoring every training row; not part of training, so skipped here
        detector.decision_function = lambda X: np.zeros(len(X))
        detector.fit(rows)
        del detector.train, detector.decision_function
        result["train_rows"] = len(rows) // BATCH_SIZE * BATCH_SIZE  # drop_last=True
        result["epoch_seconds"] = timed["seconds"] / epochs
        score = detector.decision_function

    result["train_peak_bytes"] = _peak_bytes() - base if peaks else None
    score(rows[:1000])  # warm-up
    peaks = _reset_peak()
    base = _rss_bytes()
    start = time.perf_counter()
    scores = score(rows)
    seconds = time.perf_counter() - start
    result["score_peak_bytes"] = _peak_bytes() - base if peaks else None
    for _ in range(job.get("score_repeats", 1) - 1):
        start = time.perf_counter()
        score(rows)
        seconds = min(seconds, time.perf_counter() - start)
    result["score_rows_per_second"] = len(rows) / seconds
    result["scores_finite"] = bool(np.isfinite(scores).all())
    result["threads"] = torch.get_num_threads()
    return result


# -- the parent -----------------------------------------------------------------------------
def matmul_limit(size: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def run_child(job: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job['library']} on {job['name']} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import pyod
    import sklearn
    import torch

    import aae_anomaly
    from aae_anomaly.scoring.neighbors import compiled_selection

    numba = "not installed (staged torch/NumPy neighbour selection)"
    if compiled_selection() is not None:
        import numba as numba_module

        numba = f"{numba_module.__version__} (compiled neighbour selection)"
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "versions": (
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
            f"PyOD {pyod.__version__}, numba {numba}, aae-anomaly {aae_anomaly.__version__}"
        ),
    }


def plan(quick: bool, data_dir: Path) -> tuple[list[dict], list[str]]:
    notes = []
    sizes = [(10_000, 3), (100_000, 1)] if quick else [(10_000, 3), (100_000, 2), (1_000_000, 1)]
    sets = [
        {"name": f"synthetic {n:,} x {N_FEATURES}", "data": {"kind": "synthetic", "n": n,
         "seed": 0}, "hidden": [64, 32], "epochs": epochs}
        for n, epochs in sizes
    ]
    shuttle = data_dir / "adbench" / f"{SHUTTLE}.npz"
    if shuttle.exists():
        sets.append({"name": f"{SHUTTLE} (49,097 x 9)", "data": {"kind": "file",
                     "path": str(shuttle)}, "hidden": [32, 16], "epochs": 1 if quick else 2})
    else:
        notes.append(f"{SHUTTLE} skipped: {shuttle} not found (pass --data-dir).")
    return sets, notes


def fmt_bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"


def report(args, info: dict, limit: float, results: list[dict], notes: list[str]) -> str:
    command = "python benchmarks/speed.py" + (" --quick" if args.quick else "")
    lines = [
        "# Performance",
        "",
        "Generated by `benchmarks/speed.py`; rerunning it rewrites this file. Ratios measured "
        "in one run are what count: absolute times on shared machines are noisy.",
        "",
        f"- command: `{command}`",
        f"- versions: {info['versions']}",
        f"- machine: {info['cpu']}, {info['cores']} cores, torch threads {info['threads']}, "
        f"load average at start {info['load']}; CUDA: {info['cuda']}",
        f"- limit: float32 `torch.mm` 2048 x 2048, best of 10: **{limit / 1e9:.1f} GFLOP/s**",
        "- both sides: the same layer widths (listed per set, then latent 8, mirrored), "
        f"batch size {BATCH_SIZE}, Adam lr 1e-3, the same epochs; see *Configuration* below",
        "",
        "## Training: seconds per epoch",
        "",
        "| data | widths | epochs | ours s/epoch (rows) | PyOD s/epoch (rows) "
        "| ours / PyOD per epoch | ours / PyOD per row | PyOD 1 thread s/epoch "
        "| ours / PyOD 1 thread per row |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o, p, p1 = r["ours"], r["pyod"], r["pyod-1-thread"]
        ours_row = o["epoch_seconds"] / o["train_rows"]
        lines.append(
            f"| {r['name']} | {r['hidden']} | {r['epochs']} | {o['epoch_seconds']:.2f} "
            f"({o['train_rows']:,}) | {p['epoch_seconds']:.2f} ({p['train_rows']:,}) "
            f"| {o['epoch_seconds'] / p['epoch_seconds']:.3f} "
            f"| **{ours_row / (p['epoch_seconds'] / p['train_rows']):.3f}** "
            f"| {p1['epoch_seconds']:.2f} "
            f"| {ours_row / (p1['epoch_seconds'] / p1['train_rows']):.3f} |"
        )
    lines += [
        "",
        "Ours trains on the rows left after holding back 10% for calibration; the per-row "
        "ratio corrects for that. Target: ratio <= 1. *PyOD* runs with torch's default "
        "threads, as a user gets it; *PyOD 1 thread* with `torch.set_num_threads(1)`, the "
        "setting ours picks for small networks, to show how much of the gap is threads.",
        "",
        "## Scoring: rows per second",
        "",
        "| data | ours rows/s | PyOD rows/s | ours / PyOD | PyOD 1 thread rows/s "
        "| ours / PyOD 1 thread | ours FLOP/row | ours GFLOP/s | ours / limit "
        "| ours 1-row call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for library, label in (("ours", "default score"), ("ours-networks", "n_neighbors=0")):
        for r in results:
            o, p, p1 = r[library], r["pyod"], r["pyod-1-thread"]
            achieved = o["score_rows_per_second"] * o["flops_per_row"]
            lines.append(
                f"| {r['name']}, {label} | {o['score_rows_per_second']:,.0f} | "
                f"{p['score_rows_per_second']:,.0f} | "
                f"**{o['score_rows_per_second'] / p['score_rows_per_second']:.1f}** | "
                f"{p1['score_rows_per_second']:,.0f} | "
                f"{o['score_rows_per_second'] / p1['score_rows_per_second']:.1f} | "
                f"{o['flops_per_row']:,} | {achieved / 1e9:.2f} | **{achieved / limit:.1%}** | "
                f"{o['one_row_ms']:.1f} ms |"
            )
    lines += [
        "",
        "Targets: ours / PyOD >= 3; ours / limit >= 30% on 1,000,000 rows. FLOP/row counts "
        "the matrix products `score_samples` runs: the encoder's and decoder's forward "
        "passes (the discriminator's too where its component has a weight; with the "
        "default weights it has none, so it is not run) and the neighbors component's "
        "ranking product against its reference set (2 x reference rows x (latent + "
        "features + 1), the extra column carrying the reference norms).",
        "",
        "## Peak memory",
        "",
        "| data | input array | ours: train | ours: score (x input) "
        "| PyOD: train | PyOD: score (x input) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        o, p = r["ours"], r["pyod"]

        def ratio(x, inp=o["input_bytes"]):
            return "n/a" if x is None else f"{x / inp:.2f}"

        lines.append(
            f"| {r['name']} | {fmt_bytes(o['input_bytes'])} | "
            f"{fmt_bytes(o['train_peak_bytes'])} | {fmt_bytes(o['score_peak_bytes'])} "
            f"({ratio(o['score_peak_bytes'])}) | {fmt_bytes(p['train_peak_bytes'])} | "
            f"{fmt_bytes(p['score_peak_bytes'])} ({ratio(p['score_peak_bytes'])}) |"
        )
    lines += [
        "",
        "Peak resident memory added during the phase, over what the process held when it "
        "began (the input array already loaded). Target: scoring 1,000,000 rows adds less "
        "than 2x the input array.",
        "",
    ]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines.append(HAND_WRITTEN.strip())
    return "\n".join(lines) + "\n"


HAND_WRITTEN = (ROOT / "benchmarks" / "performance_notes.md").read_text() if (
    ROOT / "benchmarks" / "performance_notes.md"
).exists() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows only")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    info = machine()
    limit = matmul_limit()
    print(f"matmul limit {limit / 1e9:.1f} GFLOP/s; load {info['load']}", file=sys.stderr)
    sets, notes = plan(args.quick, args.data_dir)
    results = []
    for spec in sets:
        entry = {**spec}
        for library in (*OURS, "pyod", "pyod-1-thread"):
            started = time.perf_counter()
            # ours scores in seconds: best of 3, like the matmul limit (best of 10);
            # PyOD takes minutes on the large sets: one pass
            repeats = 3 if library in OURS else 1
            entry[library] = run_child({**spec, "library": library, "score_repeats": repeats})
            print(f"{spec['name']}: {library} done in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
        results.append(entry)
    text = report(args, info, limit, results, notes)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
