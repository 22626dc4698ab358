"""Streaming ``score``: throughput and peak memory against the size of the input.

    python benchmarks/scale.py [--sizes-gb 0.1,0.4] [--formats csv,npy,parquet]
                               [--chunk-rows N] [--output docs/scale.md] [--data-dir DIR]
                               [--whole-up-to-gb 0.2] [--report-only] [--with dask,ddp]

For each format and size it writes an input file of about that size under a temporary
folder (16 numeric columns of random normal rows, a block of rows repeated: the content
does not matter for speed or memory), runs ``aae-anomaly score MODEL DATA -o scores.csv``
under ``/usr/bin/time -f %M`` in a fresh process, and records the wall time, rows per
second and peak resident memory (the kernel's high-water mark of the whole process: the
interpreter, torch, the model and the chunks). The model is fitted first on 2,000 rows.
Two reference runs show what does not depend on the input: a 1,000-row file (the
process's own memory), and the smallest CSV read in one chunk (what scoring the whole
file at once holds; only up to ``--whole-up-to-gb``).

Every measurement is kept in ``benchmarks/results/scale.json`` (by format, size and chunk
size), so a run with other sizes adds rows; the report below the marker line in
``--output`` is rewritten from all of them, the text above it kept. Files are deleted as
soon as they are measured, and the temporary folder at the end.

``--with dask,ddp`` first runs ``scale_dask.py`` (Dask scoring with 1 and 2 worker
processes, the overhead against one process, and the estimate for 100 machines) and
``scale_ddp.py`` (training time per epoch with 1 and 2 torchrun processes); their
reports, also kept in their own files, follow the streaming figures in ``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
MARKER = "<!-- everything below is written by benchmarks/scale.py -->"
N_FEATURES = 16
BLOCK_ROWS = 65_536
COLUMNS = [f"x{i}" for i in range(N_FEATURES)]


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "aae-anomaly"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aae_anomaly"]


def _block() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(BLOCK_ROWS, N_FEATURES))


def write_csv(path: Path, size: int) -> int:
    import pandas as pd

    text = pd.DataFrame(_block(), columns=COLUMNS).to_csv(index=False, header=False).encode()
    repeats = max(1, math.ceil(size / len(text)))
    with open(path, "wb") as handle:
        handle.write((",".join(COLUMNS) + "\n").encode())
        for _ in range(repeats):
            handle.write(text)
    return repeats * BLOCK_ROWS


def write_npy(path: Path, size: int) -> int:
    block = _block()
    repeats = max(1, math.ceil(size / block.nbytes))
    with open(path, "wb") as handle:
        header = {"descr": "<f8", "fortran_order": False,
                  "shape": (repeats * BLOCK_ROWS, N_FEATURES)}  # fmt: skip
        np.lib.format.write_array_header_1_0(handle, header)
        for _ in range(repeats):
            handle.write(block.tobytes())
    return repeats * BLOCK_ROWS


def write_parquet(path: Path, size: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: column for name, column in zip(COLUMNS, _block().T, strict=True)})
    repeats = max(1, math.ceil(size / (BLOCK_ROWS * N_FEATURES * 8)))  # random floats: ~raw
    with pq.ParquetWriter(path, table.schema) as writer:
        for _ in range(repeats):
            writer.write_table(table)  # one row group of BLOCK_ROWS rows each
    return repeats * BLOCK_ROWS


WRITERS = {"csv": write_csv, "npy": write_npy, "parquet": write_parquet}


def measure(model: Path, data: Path, output: Path, chunk_rows: int) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of one ``score`` process."""
    command = ["/usr/bin/time", "-f", "%M", *_cli(), "score", str(model), str(data),
               "-o", str(output), "--chunk-rows", str(chunk_rows)]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"score failed on {data}:\n{result.stderr}")
    peak_kb = int(result.stderr.strip().splitlines()[-1])
    output.unlink(missing_ok=True)
    return wall, peak_kb * 1024


def run(args) -> list[dict]:
    import pandas as pd

    folder = Path(tempfile.mkdtemp(prefix="aae-scale-", dir=args.data_dir))
    rows_out = []
    try:
        train, small = folder / "train.csv", folder / "small.csv"
        rng = np.random.default_rng(0)
        for path, n in ((train, 2000), (small, 1000)):
            frame = pd.DataFrame(rng.normal(size=(n, N_FEATURES)), columns=COLUMNS)
            frame.to_csv(path, index=False)
        model = folder / "model.aae"
        subprocess.run([*_cli(), "fit", str(train), "-o", str(model), "--epochs", "2", "--quiet"],
                       check=True)  # fmt: skip
        output = folder / "scores.csv"

        wall, peak = measure(model, small, output, args.chunk_rows)
        note = "1,000 rows: the process alone"
        rows_out.append(_row("csv", small, 1000, args.chunk_rows, wall, peak, note))
        print(_line(rows_out[-1]), flush=True)

        for fmt in args.formats:
            for i, gigabytes in enumerate(sorted(args.sizes_gb)):
                data = folder / f"input.{fmt}"
                rows = WRITERS[fmt](data, int(gigabytes * 1e9))
                wall, peak = measure(model, data, output, args.chunk_rows)
                rows_out.append(_row(fmt, data, rows, args.chunk_rows, wall, peak, ""))
                print(_line(rows_out[-1]), flush=True)
                if fmt == "csv" and i == 0 and gigabytes <= args.whole_up_to_gb:
                    wall, peak = measure(model, data, output, rows)
                    note = "whole file in one chunk"
                    rows_out.append(_row(fmt, data, rows, rows, wall, peak, note))
                    print(_line(rows_out[-1]), flush=True)
                data.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows_out


COMMAND = "python benchmarks/scale.py " + " ".join(sys.argv[1:])


def _row(fmt, data: Path, rows, chunk_rows, wall, peak, note) -> dict:
    return {"command": COMMAND.strip(), "format": fmt, "input_bytes": data.stat().st_size,
            "rows": rows, "chunk_rows": chunk_rows, "wall_s": round(wall, 2),
            "rows_per_s": round(rows / wall), "peak_rss_bytes": peak, "note": note,
            "date": time.strftime("%Y-%m-%d"), "environment": _environment(),
            "load": " / ".join(f"{x:.1f}" for x in os.getloadavg())}  # fmt: skip


def _line(row: dict) -> str:
    size = row["input_bytes"] / 1e9
    return (f"{row['format']:8} {size:7.3f} GB {row['rows']:>11,} rows  {row['wall_s']:8.1f} s  "
            f"{row['rows_per_s']:>9,} rows/s  peak {row['peak_rss_bytes'] / 2**20:7.0f} MiB "
            f"{row['note']}")  # fmt: skip


def _merge(new: list[dict]) -> list[dict]:
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    key = lambda r: (r["format"], r["rows"], r["chunk_rows"], r["note"])  # noqa: E731
    kept = {key(r): r for r in old}
    kept.update({key(r): r for r in new})
    return sorted(kept.values(), key=lambda r: (r["note"] == "", r["format"], r["input_bytes"]))


def _environment() -> str:
    import pandas
    import pyarrow
    import torch

    from aae_anomaly import __version__

    return (f"Python {platform.python_version()}, torch {torch.__version__}, pandas "
            f"{pandas.__version__}, pyarrow {pyarrow.__version__}, numpy {np.__version__}, "
            f"aae-anomaly {__version__}; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores")  # fmt: skip


def report(results: list[dict]) -> str:
    commands = ", ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in results))
    lines = [
        MARKER, "", "## Measurements", "",
        f"- made by: {commands} (the rows of each are dated)",
        # rows measured before environments were stored: this machine, these versions
        "- environment: "
        + "; ".join(dict.fromkeys(r.get("environment") or _environment() for r in results)),
        "- each row is one `aae-anomaly score MODEL DATA -o scores.csv --chunk-rows N` "
        "process; wall time includes starting Python and loading the model (about 4 s "
        "here); peak RSS is `/usr/bin/time -f %M`",
        "- *above the process*: peak RSS less that of the 1,000-row run, which is what "
        "the chunks, and everything that grows with the rows, take; *load*: the shared "
        "machine's load average (1, 5, 15 minutes) as the run ended",
        "",
        "| format | input | rows | chunk rows | wall s | rows/s | peak RSS | above the process "
        "| peak / input | |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    alone = [r["peak_rss_bytes"] for r in results if r["rows"] == 1000]
    for r in results:
        size, peak = r["input_bytes"], r["peak_rss_bytes"]
        reference = r["rows"] == 1000
        shown = f"{size / 1e9:.2f} GB" if size >= 1e7 else f"{size / 1e3:.0f} kB"
        above = "-" if reference or not alone else f"{(peak - alone[-1]) / 2**20:,.0f} MiB"
        ratio = "-" if reference else f"{peak / size:.2f}"
        load = f", load {r['load']}" if "load" in r else ""
        lines.append(
            f"| {r['format']} | {shown} | {r['rows']:,} | {r['chunk_rows']:,} | {r['wall_s']:.1f} "
            f"| {r['rows_per_s']:,} | {peak / 2**20:,.0f} MiB | {above} | {ratio} "
            f"| {r['note'] or 'streamed'} ({r['date']}{load}) |"
        )
    return "\n".join(lines) + "\n"


# The other scale benchmarks: their script, and the report it writes, which is included
# below the streaming figures (whichever of them have been run).
PARTS = {
    "dask": ("scale_dask.py", ROOT / "docs" / "scale-dask.md"),
    "ddp": ("scale_ddp.py", ROOT / "docs" / "scale-ddp.md"),
}


def _included_reports() -> str:
    """The Dask and torchrun reports, their titles one level down."""
    parts = []
    for script, report_path in PARTS.values():
        if report_path.exists():
            text = report_path.read_text().strip()
            text = text.replace("\n## ", "\n### ")
            if text.startswith("# "):
                text = "## " + text[2:]
            parts.append(f"\n{text}\n\n(from `python benchmarks/{script}`, also in "
                         f"[{report_path.name}]({report_path.name}))\n")  # fmt: skip
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-gb", default="0.1,0.4",
                        type=lambda s: [float(x) for x in s.split(",")])  # fmt: skip
    parser.add_argument("--formats", default="csv,npy,parquet",
                        type=lambda s: [x.strip() for x in s.split(",")])  # fmt: skip
    parser.add_argument("--chunk-rows", type=int, default=None,
                        help="default: score's own default")  # fmt: skip
    parser.add_argument("--whole-up-to-gb", type=float, default=0.2,
                        help="also score the smallest CSV in one chunk when it is no larger "
                        "(that run holds the whole file in memory)")  # fmt: skip
    parser.add_argument("--output", default=str(ROOT / "docs" / "scale.md"))
    parser.add_argument("--data-dir", default=None, help="where the inputs are written")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite --output from the stored results alone")  # fmt: skip
    parser.add_argument("--with", dest="parts", default="",
                        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                        help="also run these benchmarks first: dask (scale_dask.py, about 2 "
                        "minutes), ddp (scale_ddp.py, about 2 minutes); their reports are "
                        "included in --output, below the streaming figures")  # fmt: skip
    args = parser.parse_args()
    unknown_parts = set(args.parts) - set(PARTS)
    if unknown_parts:
        parser.error(f"unknown --with parts {sorted(unknown_parts)}; expected some of {PARTS}")
    for part in args.parts:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / PARTS[part][0])], check=True)
    unknown = set(args.formats) - set(WRITERS)
    if unknown:
        parser.error(f"unknown formats {sorted(unknown)}; expected some of {sorted(WRITERS)}")
    if args.chunk_rows is None:
        from aae_anomaly.cli.stream import DEFAULT_CHUNK_ROWS

        args.chunk_rows = DEFAULT_CHUNK_ROWS
    if args.report_only:
        results = _merge([])
    else:
        results = _merge(run(args))
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    output = Path(args.output)
    above = output.read_text().split(MARKER)[0] if output.exists() else "# Scale\n\n"
    output.write_text(above + report(results) + _included_reports())
    print(f"wrote {output}" + ("" if args.report_only else f" and {RESULTS}"))


if __name__ == "__main__":
    main()
