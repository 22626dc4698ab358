"""Training time per epoch with torch.distributed: one process against several.

    python benchmarks/scale_ddp.py [--rows 40000] [--columns 32] [--epochs 4]
                                   [--output docs/scale-ddp.md]

It writes ``--rows`` x ``--columns`` normal rows to a temporary ``.npy`` file and fits
the default detector on them with the command line, ``--verbose`` so that rank 0 logs
each epoch's elapsed time:

- one process with one thread, and one process with two threads (torch's intra-op
  parallelism, what a plain ``fit`` uses on this machine);
- ``torchrun --nproc-per-node 2``, each process with one thread (gloo);

once with the default networks and once with wider ones (``--wide``), whose steps cost
more compute against the same number of gradient exchanges.

The time per epoch is the elapsed time at the last epoch over the number of epochs
(reading the data, building the networks and calibrating excluded). The global batch is
the same in every run (``--batch-size``; each of N ranks takes batch / N rows a step),
so every run takes the same number of optimizer steps. It prints a Markdown report and
writes it to ``--output``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ELAPSED = re.compile(r"epoch (\d+)/(\d+) .*elapsed ([0-9.]+) s")


def epoch_seconds(
    data: Path, model: Path, epochs: int, batch: int, processes: int, threads: int,
    hidden: str | None = None,
) -> float:
    fit = ["fit", str(data), "-o", str(model), "--epochs", str(epochs), "--batch-size",
           str(batch), "--device", "cpu", "-v"]  # fmt: skip
    if hidden:
        fit += ["--encoder-option", f"hidden={hidden}"]
    if processes == 1:
        command = [sys.executable, "-m", "aae_anomaly", *fit]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", "-m", "aae_anomaly", *fit]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    matches = [ELAPSED.search(line) for line in result.stderr.splitlines()]
    last = [m for m in matches if m is not None][-1]
    return float(last.group(3)) / int(last.group(1))


def measure(
    rows: int, columns: int, epochs: int, batch: int, hidden: str | None
) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "rows.npy"
        np.save(data, rng.normal(size=(rows, columns)).astype(np.float32))
        runs = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
                ("2 processes (torchrun, gloo), 1 thread each", 2, 1)]  # fmt: skip
        return [
            (name, epoch_seconds(data, Path(folder) / "m.aae", epochs, batch, p, t, hidden))
            for name, p, t in runs
        ]


def report(tables: list[tuple[str, list[tuple[str, float]]]], args) -> str:
    lines = [
        "# Training with torch.distributed",
        "",
        f"Written by `python benchmarks/scale_ddp.py --rows {args.rows} --columns "
        f"{args.columns} --epochs {args.epochs} --batch-size {args.batch_size}` "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}). The same global batch in every run; seconds "
        "per epoch from rank 0's `--verbose` log.",
    ]
    for title, figures in tables:
        base = figures[0][1]
        lines += ["", f"{title}:", "", "| run | s / epoch | speed-up over 1 process, 1 thread |",
                  "|---|---|---|"]  # fmt: skip
        for name, seconds in figures:
            lines.append(f"| {name} | {seconds:.3f} | {base / seconds:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--columns", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--wide", default="[1024,1024]", help="hidden layers of the wide run")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "scale-ddp.md")
    args = parser.parse_args()
    tables = [
        ("The default networks", measure(args.rows, args.columns, args.epochs,
                                         args.batch_size, None)),
        (f"Wider networks (`--encoder-option hidden={args.wide}`)",
         measure(args.rows, args.columns, args.epochs, args.batch_size, args.wide)),
    ]  # fmt: skip
    text = report(tables, args)
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
