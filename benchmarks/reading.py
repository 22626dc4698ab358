"""How long the command line takes to read a CSV table, against pandas' own reader.

    python benchmarks/reading.py [--rows 200000] [--columns 20] [--output docs/reading.md]

It writes two CSV files into a temporary folder: ``--rows`` x ``--columns`` numbers, and a
table as users export it (an id, a timestamp, a text category, a boolean, numbers with
some empty cells). For each it times, best of ``--repeats`` runs in this process:

- ``pandas``: ``pandas.read_csv(path)`` with its defaults, the reference;
- ``read_data``: what every command runs on a ``.csv`` DATA (``aae_anomaly.io.tables``):
  the delimiter and decimal mark sniffed from the first 64 KiB, a byte-order mark dropped,
  pandas' C parser, and the check for short lines;
- ``+ encode``: ``read_data`` and then the encoding a fitted model applies to the table
  (``TableSchema.transform``: columns by name, categories one-hot, booleans as numbers,
  missing cells imputed), which the networks need and pandas alone does not do.

The ratio is against pandas' time. It prints a Markdown report and writes it to
``--output``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from aae_anomaly.estimators.columns import TableSchema
from aae_anomaly.io.tables import read_data

ROOT = Path(__file__).resolve().parents[1]


def numbers_table(rows: int, columns: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"x{i}" for i in range(columns)])


def exported_table(rows: int, columns: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = numbers_table(rows, max(columns - 4, 1), rng).round(4)
    frame.iloc[rng.choice(rows, rows // 100, replace=False), 0] = np.nan
    frame.insert(0, "order id", np.arange(rows))
    frame.insert(1, "created", pd.date_range("2024-01-01", periods=rows, freq="min").astype(str))
    frame["city"] = rng.choice(["Paris", "Lyon", "Nice", "Lille"], rows)
    frame["member"] = rng.choice([True, False], rows)
    return frame


def best_of(repeats: int, task) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = task()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(path: Path, repeats: int, ids: list[str]) -> dict[str, float]:
    reference, _ = best_of(repeats, lambda: pd.read_csv(path))
    ours, dataset = best_of(repeats, lambda: read_data(str(path)))
    schema, _ = TableSchema.fit_frame(dataset.X, ids, "impute")

    def read_and_encode():
        return schema.transform(read_data(str(path)).X)

    encoded, _ = best_of(repeats, read_and_encode)
    return {"pandas": reference, "read_data": ours, "encode": encoded}


def report(rows: int, columns: int, figures: dict[str, dict[str, float]], repeats: int) -> str:
    lines = [
        "# Reading tables",
        "",
        "Written by `python benchmarks/reading.py"
        f" --rows {rows} --columns {columns}` (best of {repeats} runs each; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"pandas {pd.__version__}).",
        "",
        "The command line reads a `.csv` DATA with pandas' C parser after sniffing the "
        "delimiter and decimal mark; the goal is at most 1.5x pandas' own `read_csv`. "
        "`+ encode` adds what a fitted model does to the table before its networks see it.",
        "",
        "| file | pandas.read_csv | read_data | ratio | read_data + encode | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {f['pandas']:.3f} s | {f['read_data']:.3f} s | "
            f"{f['read_data'] / f['pandas']:.2f}x | {f['encode']:.3f} s | "
            f"{f['encode'] / f['pandas']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reading.md")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        numbers = Path(folder) / "numbers.csv"
        numbers_table(args.rows, args.columns, rng).to_csv(numbers, index=False)
        exported = Path(folder) / "exported.csv"
        exported_table(args.rows, args.columns, rng).to_csv(exported, index=False)
        figures[f"{args.rows:,} x {args.columns} numbers"] = measure(numbers, args.repeats, [])
        figures[f"{args.rows:,} x {args.columns} exported (id, timestamp, text, empty cells)"] = (
            measure(exported, args.repeats, ["order id", "created"])
        )
    text = report(args.rows, args.columns, figures, args.repeats)
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
