"""Scoring on Dask against scoring in one process, and what 100 machines would spend on what.

    python benchmarks/scale_dask.py [--rows 1000000] [--features 16] [--files 16]
                                    [--repeats 3] [--output docs/scale-dask.md]

It fits a detector with the defaults (neighbors score, 10,000 reference rows) on normal
rows, writes ``--rows`` new rows as ``--files`` Parquet files (and as one file), then
times, best of ``--repeats`` runs:

- ``one process``: ``aae-anomaly score MODEL whole.parquet -o scores.parquet`` in this
  process, with torch's threads (all cores) and with one thread (one core);
- ``dask, N workers``: ``aae-anomaly score MODEL folder/ -o scores/ --dask ADDRESS``
  against the cluster ``--dask local:N`` starts (N worker processes of one thread),
  started and warmed up (torch imported, the model loaded) before the timing; how long
  starting one takes is reported apart.

It also times the parts of one process's work on one core (reading the files, scoring,
writing) and measures the model file and the bytes per row, and from them writes an
estimate for 100 machines. It prints a Markdown report and writes it to ``--output``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aae_anomaly import AAEDetector
from aae_anomaly.cli import main as cli
from aae_anomaly.cli.distributed import connect
from aae_anomaly.estimators.loading import load_model_bytes
from aae_anomaly.estimators.scoretable import score_table
from aae_anomaly.io.tables import read_csv_table, read_parquet_table

ROOT = Path(__file__).resolve().parents[1]
FIT_ROWS = 10_000
CSV_SAMPLE_ROWS = 20_000
# the assumptions of the estimate, stated in the report
MACHINES = 100
CORES_PER_MACHINE = 16
NETWORK_BYTES_PER_S = 1.25e9  # 10 Gbit/s per machine
SCHEDULER_TASKS_PER_S = 2_000  # a Dask scheduler's order of magnitude (its docs: ~1 ms a task)


def best_of(repeats: int, task) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return min(times)


def command(*args) -> None:
    cli([str(a) for a in args], standalone_mode=False)


def rows_table(n: int, features: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(rng.normal(size=(n, features)), columns=[f"x{i}" for i in range(features)])


def one_process(model: Path, whole: Path, out: Path, repeats: int, threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return best_of(repeats, lambda: command("score", model, whole, "-o", out))
    finally:
        torch.set_num_threads(before)


def on_dask(
    model: Path, folder: Path, warm: Path, out: Path, repeats: int, workers: int
) -> tuple[float, float, float]:
    """(best scoring time, time to start the cluster and score ``warm``'s small files,
    best time to score them again: what a command costs besides its rows)."""
    start = time.perf_counter()
    with connect(f"local:{workers}") as client:  # the cluster `--dask local:N` starts
        address = client.scheduler.address
        # the workers import torch and load the model, as their first tasks would
        shutil.rmtree(out, ignore_errors=True)
        command("score", model, warm, "-o", out, "--dask", address)
        startup = time.perf_counter() - start

        def task(data):
            shutil.rmtree(out, ignore_errors=True)
            command("score", model, data, "-o", out, "--dask", address)

        fixed = best_of(repeats, lambda: task(warm))
        return best_of(repeats, lambda: task(folder)), startup, fixed


def parts_on_one_core(
    model: Path, folder: Path, sample: Path, out: Path, repeats: int
) -> dict[str, float]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        files = sorted(folder.iterdir())
        read = best_of(repeats, lambda: [read_parquet_table(f) for f in files])
        read_csv = best_of(repeats, lambda: read_csv_table(sample))
        frame = pd.concat([read_parquet_table(f) for f in files], ignore_index=True)
        data = model.read_bytes()
        load = best_of(repeats, lambda: load_model_bytes(data))
        detector = load_model_bytes(data)
        table: dict = {}
        score = best_of(repeats, lambda: table.update(score_table(detector, frame)))
        write = best_of(repeats, lambda: pd.DataFrame({"row": np.arange(len(frame)), **table})
                        .to_parquet(out, index=False))
    finally:
        torch.set_num_threads(before)
    return {"read": read, "read_csv": read_csv, "load": load, "score": score, "write": write}


def report(args, figures: dict) -> str:
    n = args.rows
    f = figures
    rate = {name: n / seconds for name, seconds in f["runs"].items()}
    one_core = n / f["parts"]["score"]
    efficiency = rate["dask, 2 workers"] / (2 * rate["dask, 1 worker"])
    overhead = f["runs"]["dask, 1 worker"] / f["runs"]["one process, 1 thread"] - 1
    csv_read_per_row = f["parts"]["read_csv"] / CSV_SAMPLE_ROWS
    score_per_row = f["parts"]["score"] / n
    parquet_per_row = f["parquet_bytes"] / n
    machine_rows = CORES_PER_MACHINE * one_core
    machine_read = machine_rows * parquet_per_row
    cluster_rows = MACHINES * machine_rows
    model_mb = f["model_bytes"] / 1e6
    lines = [
        "# Scoring on Dask: measured, and estimated for 100 machines",
        "",
        f"Written by `python benchmarks/scale_dask.py --rows {n} --features {args.features} "
        f"--files {args.files} --repeats {args.repeats}` (best of {args.repeats} runs; "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, dask {f['dask']}; load "
        f"average {f['load']:.1f} when it started: this machine is shared, so the figures "
        "carry that noise).",
        "",
        f"{n:,} rows of {args.features} numbers in {args.files} Parquet files of "
        f"{n // args.files:,} rows, scored by a detector with the default settings "
        f"(neighbors score over {FIT_ROWS:,} reference rows). Each run reads the rows, "
        "scores them and writes the score table as Parquet; the Dask runs' scores are "
        "identical to one process's (`tests/test_dask.py` checks it bit for bit).",
        "",
        "| how | time | rows/s | against 1 Dask worker |",
        "|---|---|---|---|",
    ]
    for name, seconds in f["runs"].items():
        lines.append(
            f"| {name} | {seconds:.2f} s | {rate[name]:,.0f} | "
            f"{rate[name] / rate['dask, 1 worker']:.2f}x |"
        )
    lines += [
        "",
        f"- Two workers against one: {rate['dask, 2 workers'] / rate['dask, 1 worker']:.2f}x "
        f"the rows per second, an efficiency of {efficiency:.0%} of two cores. This machine "
        "has 2 cores, which the scheduler, the client (this process) and the other "
        "engineers' jobs share with the workers, so two workers cannot reach 2x here.",
        f"- Dask's overhead on one worker against one process on one thread: "
        f"{overhead:+.0%}. Of it, {f['fixed'][1]:.2f} s is what any command costs on a "
        "running cluster (the time to score 4 files of 1,000 rows: connecting, loading "
        "the model here to check it, asking the workers their version, a few tasks); the "
        "rest is per partition (a task's round trips, its own Parquet file, the lengths "
        "gathered before the rows are numbered) and the other processes sharing 2 cores.",
        f"- Starting a `local:N` cluster and warming it (workers importing torch, loading "
        f"the model) took {f['startup'][1]:.1f} s for 1 worker and {f['startup'][2]:.1f} s "
        "for 2: `--dask local:N` pays it on every command, an address of a running "
        "cluster pays it once.",
        "",
        "## One core's work, in parts",
        "",
        "| part | time | per row |",
        "|---|---|---|",
    ]
    for name, label in [("read", "read the Parquet files"), ("score", "score (score table)"),
                        ("write", "write the score table")]:
        seconds = f["parts"][name]
        lines.append(f"| {label} | {seconds:.2f} s | {seconds / n * 1e6:.2f} us |")
    lines += [
        f"| load the model from its bytes (once per worker) | {f['parts']['load'] * 1e3:.0f} ms "
        "| - |",
        f"| for comparison: read the same rows as CSV ({CSV_SAMPLE_ROWS:,}-row sample) | "
        f"{f['parts']['read_csv']:.3f} s | {csv_read_per_row * 1e6:.2f} us |",
        "",
        f"- Model file: {f['model_bytes']:,} bytes ({model_mb:.2f} MB), most of it the "
        f"{FIT_ROWS:,} reference rows the neighbors score searches.",
        f"- Input: {parquet_per_row:.0f} bytes per row as Parquet ({args.features} float64 "
        f"values, which do not compress), {f['csv_per_row']:.0f} bytes per row as CSV.",
        f"- Scoring on one core: {one_core:,.0f} rows/s.",
        "",
        "## 100 machines: an estimate",
        "",
        f"Assumed: {MACHINES} machines of {CORES_PER_MACHINE} cores, one single-threaded "
        f"worker per core, {NETWORK_BYTES_PER_S * 8 / 1e9:.0f} Gbit/s of network per "
        "machine, input on storage that serves every machine at that rate, and a scheduler "
        f"that dispatches about {SCHEDULER_TASKS_PER_S:,} tasks per second. Measured (above): "
        f"{one_core:,.0f} rows/s per core, {parquet_per_row:.0f} bytes per row read, a "
        f"{model_mb:.2f} MB model.",
        "",
        f"- Compute: {CORES_PER_MACHINE} cores score {machine_rows:,.0f} rows/s per machine, "
        f"{cluster_rows:,.0f} rows/s for {MACHINES} machines "
        f"({cluster_rows * 3600 / 1e9:,.0f} billion rows an hour).",
        f"- Reading: at that rate a machine reads {machine_read / 1e6:,.0f} MB/s, "
        f"{machine_read / NETWORK_BYTES_PER_S:.0%} of its network; as CSV "
        f"{machine_rows * f['csv_per_row'] / 1e6:,.0f} MB/s, and parsing CSV takes "
        f"{csv_read_per_row / score_per_row:.0%} of the scoring time per row. Reading Parquet is "
        f"{f['parts']['read'] / f['parts']['score']:.0%} of the scoring time here "
        "(local disk, page cache); from remote storage it is bandwidth, and it stays below "
        "the compute while the storage serves each machine "
        f"{machine_read / 1e6:,.0f} MB/s or more.",
        f"- Shipping the model: {MACHINES * CORES_PER_MACHINE:,} worker processes fetch "
        f"{model_mb:.2f} MB each (from the scheduler's key and from each other), "
        f"{MACHINES * CORES_PER_MACHINE * model_mb / 1e3:.1f} GB in all, under a second of "
        "each machine's network, once per job; loading it is "
        f"{f['parts']['load'] * 1e3:.0f} ms per worker. Negligible.",
        f"- The scheduler: with partitions of {n // args.files:,} rows (these files), a "
        f"task lasts {n // args.files / one_core:.2f} s, and "
        f"{MACHINES * CORES_PER_MACHINE:,} workers would ask for "
        f"{MACHINES * CORES_PER_MACHINE / (n // args.files / one_core):,.0f} tasks per "
        "second, more than a scheduler dispatches: partitions must be large enough that a "
        f"task lasts a few seconds, {int(5 * one_core):,} rows or more (5 s).",
        "",
        "So compute dominates, as long as partitions are large (millions of rows per file) "
        "and the input is Parquet on storage that keeps up; shipping the model does not "
        "matter. Without id columns, every partition's length is gathered before any row "
        "is numbered, so the cluster holds all score tables (about 56 bytes a row) until "
        "the last partition is scored; with `--id-column` each partition is written as "
        "soon as it is scored.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "scale-dask.md")
    args = parser.parse_args()
    import dask

    figures: dict = {"load": os.getloadavg()[0], "dask": dask.__version__}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = root / "model.aae"
        AAEDetector(epochs=5, random_state=0).fit(rows_table(FIT_ROWS, args.features, rng)).save(
            model
        )
        figures["model_bytes"] = model.stat().st_size
        rows = rows_table(args.rows, args.features, rng)
        folder = root / "rows"
        folder.mkdir()
        for i, piece in enumerate(np.array_split(np.arange(args.rows), args.files)):
            rows.iloc[piece].to_parquet(folder / f"part.{i}.parquet", index=False)
        figures["parquet_bytes"] = sum(f.stat().st_size for f in folder.iterdir())
        whole = root / "whole.parquet"
        rows.to_parquet(whole, index=False)
        warm = root / "warm"
        warm.mkdir()
        for i in range(4):
            rows.iloc[i * 1000 : (i + 1) * 1000].to_parquet(warm / f"{i}.parquet", index=False)
        sample = root / "sample.csv"
        rows.iloc[:CSV_SAMPLE_ROWS].to_csv(sample, index=False)
        figures["csv_per_row"] = sample.stat().st_size / CSV_SAMPLE_ROWS
        del rows

        out = root / "scores.parquet"
        figures["runs"] = {
            f"one process, {torch.get_num_threads()} threads": one_process(
                model, whole, out, args.repeats, torch.get_num_threads()
            ),
            "one process, 1 thread": one_process(model, whole, out, args.repeats, 1),
        }
        figures["startup"], figures["fixed"] = {}, {}
        for workers in (1, 2):
            seconds, startup, fixed = on_dask(
                model, folder, warm, root / "scores", args.repeats, workers
            )
            name = f"dask, {workers} worker{'s' if workers > 1 else ''}"
            figures["runs"][name] = seconds
            figures["startup"][workers] = startup
            figures["fixed"][workers] = fixed
        figures["parts"] = parts_on_one_core(model, folder, sample, out, args.repeats)
    text = report(args, figures)
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
