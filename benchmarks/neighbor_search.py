"""The neighbour search's own figures: where its time goes, and the measurements behind
its constants (``aae_anomaly/scoring/neighbors.py``). ``benchmarks/speed.py`` measures scoring as a
whole against PyOD; this script looks inside the search.

Parts (``--parts``, all by default):

``search``
    one thread, 4,096 queries against 4,096 reference rows of width 40 (the default
    model's (code, residual) coordinates on 32 features), k = 5: milliseconds per 4,096
    queries (best of 15), with the compiled selection (numba, the ``fast`` extra) and
    without it, and ``torch.profiler``'s split of one call by operation.
    With a checkout from before ``aae_anomaly/scoring/neighbors.py`` first on ``PYTHONPATH`` it
    times that version's search instead: how the "before" figures in
    ``docs/performance.md`` were taken (commit 7d492c5).
``selection``
    one thread: the k = 5 smallest of 4,096 ranking values in each of 4,096 rows, by the
    compiled kernel and by the staged torch/NumPy selection; and the k = 5 smallest of 64
    values in each of 4,096 rows (the staged selection's group stage), NumPy's
    ``argpartition`` (what the CPU uses) against ``torch.topk``.
``blocks``
    end to end, rows per second scoring 1,000,000 rows of 32 features with the default
    score (detector fitted on 20,000 rows), best of 3 passes, for query blocks of 64 to
    1,024 rows (of the selection in use).
``threads``
    the same scoring on one thread, on two threads (the default on two cores), and in two
    processes at once with one thread each: how much the two threads of one process lose to
    each other.

Run it on an idle machine: ``python benchmarks/neighbor_search.py``. It prints a Markdown
report and writes it to ``--output`` (default ``docs/neighbor-search.md``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
K = 5
REFERENCE_ROWS, WIDTH, QUERIES = 4096, 40, 4096
SCORED_ROWS, FIT_ROWS, FEATURES = 1_000_000, 20_000, 32
BLOCKS = (64, 128, 256, 512, 1024)


def best_seconds(call, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def search_call(reference: torch.Tensor):
    """This checkout's search, or the older one of a checkout from before
    ``aae_anomaly/scoring/neighbors.py`` (run with that checkout first on ``PYTHONPATH``)."""
    from aae_anomaly.scoring import components as scoring

    if hasattr(scoring, "mean_neighbor_distance"):
        return "aae_anomaly.scoring.mean_neighbor_distance", (
            lambda queries: scoring.mean_neighbor_distance(queries, reference, K)
        )
    from aae_anomaly.scoring.neighbors import NeighborSearch

    search = NeighborSearch(reference, K)
    return "aae_anomaly.scoring.neighbors.NeighborSearch", search.mean_distance


def without_kernel():
    """Within it, searches select with torch and NumPy, as without numba installed."""
    import unittest.mock

    from aae_anomaly.scoring import neighbors

    return unittest.mock.patch.object(neighbors, "compiled_selection", lambda: None)


def has_kernel() -> bool:
    """Whether this checkout has the compiled selection and numba is installed."""
    try:
        from aae_anomaly.scoring.neighbors import compiled_selection
    except ImportError:  # a checkout from before the kernel
        return False
    return compiled_selection() is not None


def kernel_state() -> str:
    if has_kernel():
        import numba

        return f"compiled selection (numba {numba.__version__})"
    return "no compiled selection (numba not installed, or a version without it)"


def part_search() -> list[str]:
    from torch.profiler import profile

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(REFERENCE_ROWS, WIDTH, generator=generator)
    queries = torch.randn(QUERIES, WIDTH, generator=generator)
    name, call = search_call(reference)
    with torch.inference_mode():
        seconds = best_seconds(lambda: call(queries), 15)
        with profile() as profiler:
            start = time.perf_counter()
            call(queries)
            profiled = time.perf_counter() - start
        timings = [f"- {kernel_state()} (the default here): **{seconds * 1e3:.1f} ms**"]
        if has_kernel():
            with without_kernel():
                _, staged = search_call(reference)
                staged_seconds = best_seconds(lambda: staged(queries), 15)
            timings.append(
                f"- without it (staged torch/NumPy selection): {staged_seconds * 1e3:.1f} ms"
            )
    events = sorted(profiler.key_averages(), key=lambda e: -e.self_cpu_time_total)
    in_ops = sum(e.self_cpu_time_total for e in events) / 1e6
    lines = [
        "## The search, one thread",
        "",
        f"`{name}`, {QUERIES:,} queries against {REFERENCE_ROWS:,} reference rows of width "
        f"{WIDTH}, k = {K}, best of 15:",
        "",
        *timings,
        "",
        "One call of the default under `torch.profiler` (which slows it), by operation:",
        "",
        "| operation | calls | ms | share |",
        "|---|---|---|---|",
    ]
    for event in events[:6]:
        share = event.self_cpu_time_total / 1e6 / profiled
        lines.append(
            f"| `{event.key}` | {event.count} | {event.self_cpu_time_total / 1e3:.2f} | "
            f"{share:.0%} |"
        )
    outside = profiled - in_ops
    lines += [
        f"| outside torch's operations (the compiled or NumPy selection, Python) | | "
        f"{outside * 1e3:.2f} | {outside / profiled:.0%} |",
        "",
    ]
    return lines


def part_selection() -> list[str]:
    from aae_anomaly.scoring.neighbors import NeighborSearch, _smallest_by_numpy, _smallest_by_topk

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(REFERENCE_ROWS, WIDTH, generator=generator)
    queries = torch.ones(QUERIES, WIDTH + 1)
    queries[:, :-1] = torch.randn(QUERIES, WIDTH, generator=generator)
    rows = []
    searches = [("staged torch/NumPy selection", without_kernel)]
    if has_kernel():
        searches.insert(0, ("compiled kernel (`aae_anomaly/scoring/selection_kernel.py`)", None))
    for label, context in searches:
        if context is None:
            search = NeighborSearch(reference, K)
        else:
            with context():
                search = NeighborSearch(reference, K)
        step = search.block_rows
        ranking = torch.empty(step, search._ranking_reference.shape[1])

        def products(select, search=search, step=step, ranking=ranking):
            for start in range(0, QUERIES, step):
                torch.mm(queries[start : start + step], search._ranking_reference, out=ranking)
                if select:  # right after its product, as the search does: still in cache
                    search.nearest(ranking)

        alone = best_seconds(lambda products=products: products(False), 15)
        both = best_seconds(lambda products=products: products(True), 15)
        rows.append(
            f"| {label} | {step} | {alone * 1e3:.2f} | {both * 1e3:.2f} | "
            f"{(both - alone) * 1e3:.2f} |"
        )
    values = torch.randn(QUERIES, 64, generator=generator)
    small = []
    for label, select in (("NumPy `argpartition`", _smallest_by_numpy),
                          ("`torch.topk`", _smallest_by_topk)):
        seconds = best_seconds(lambda select=select: select(values, K), 30)
        small.append(f"| {label} | {seconds * 1e3:.2f} |")
    return [
        "## Selection of the k smallest, one thread",
        "",
        f"k = {K} smallest of the {REFERENCE_ROWS:,} ranking values of each of {QUERIES:,} "
        "queries: the block products alone, then each followed by the selection over its "
        "block (ms, best of 15):",
        "",
        "| selection | rows per block | products | products and selection | selection |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Inside the staged selection, k = {K} smallest of 64 values in each of "
        f"{QUERIES:,} rows (the group stage):",
        "",
        "| selection | ms |",
        "|---|---|",
        *small,
        "",
    ]


def scoring_rows_per_second(threads: int, block_rows: int | None = None) -> float:
    """Fit the default detector on 20,000 rows, then score 1,000,000: best of 3 passes
    after a first one."""
    import aae_anomaly.scoring.neighbors as neighbors
    from aae_anomaly import AAEDetector

    torch.set_num_threads(threads)
    if block_rows is not None:  # the block size of the selection in use
        constant = "COMPILED_BLOCK_ROWS" if has_kernel() else "QUERY_BLOCK_ROWS"
        setattr(neighbors, constant, block_rows)
    rng = np.random.default_rng(0)
    detector = AAEDetector(
        encoder_params={"hidden": [64, 32]}, latent_dim=8, epochs=1, random_state=0
    ).fit(rng.normal(size=(FIT_ROWS, FEATURES)))
    rows = rng.normal(size=(SCORED_ROWS, FEATURES))
    return SCORED_ROWS / best_seconds(lambda: detector.score_samples(rows), 3)


def in_child(threads: int, block_rows: int | None = None) -> subprocess.Popen:
    """A fresh process, so that no setting of one measurement leaks into the next."""
    job = json.dumps({"threads": threads, "block_rows": block_rows})
    return subprocess.Popen(
        [sys.executable, __file__, "--child", job], stdout=subprocess.PIPE, text=True
    )


def result(child: subprocess.Popen) -> float:
    out, _ = child.communicate()
    if child.returncode:
        raise SystemExit(f"a measuring process failed (exit {child.returncode})")
    return float(out.strip().splitlines()[-1])


def part_blocks() -> list[str]:
    state = kernel_state()
    constant = "COMPILED_BLOCK_ROWS" if has_kernel() else "QUERY_BLOCK_ROWS"
    lines = [
        "## Query block size, end to end",
        "",
        f"Rows/s scoring {SCORED_ROWS:,} rows (default score, two threads; {state}), by "
        f"rows per block (`aae_anomaly.scoring.neighbors.{constant}`):",
        "",
        "| rows per block | rows/s |",
        "|---|---|",
    ]
    for block_rows in BLOCKS:
        lines.append(f"| {block_rows} | {result(in_child(2, block_rows)):,.0f} |")
    return [*lines, ""]


def part_threads() -> list[str]:
    one = result(in_child(1))
    two = result(in_child(2))
    pair = [in_child(1), in_child(1)]
    apart = [result(child) for child in pair]
    return [
        "## Threads against processes, end to end",
        "",
        f"Rows/s scoring {SCORED_ROWS:,} rows (default score):",
        "",
        "| how | rows/s | x one thread |",
        "|---|---|---|",
        f"| one process, one thread | {one:,.0f} | 1.00 |",
        f"| one process, two threads (the default) | {two:,.0f} | {two / one:.2f} |",
        f"| two processes at once, one thread each (sum) | {sum(apart):,.0f} | "
        f"{sum(apart) / one:.2f} |",
        "",
        f"With {kernel_state()}. The two threads of one process share the GIL, which "
        "each holds between the search's operations; two processes share only the "
        "hardware.",
        "",
    ]


PARTS = {
    "search": part_search, "selection": part_selection,
    "blocks": part_blocks, "threads": part_threads,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "neighbor-search.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(scoring_rows_per_second(job["threads"], job["block_rows"]))
        return
    names = args.parts.split(",")
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    from speed import machine  # this folder is on the path when run as a script

    info = machine()
    lines = [
        "# The neighbour search, measured",
        "",
        "Generated by `python benchmarks/neighbor_search.py"
        + (f" --parts {args.parts}" if names != list(PARTS) else "")
        + "`; rerunning it rewrites this file.",
        "",
        f"- versions: {info['versions']}",
        f"- machine: {info['cpu']}, {info['cores']} cores, load average at start "
        f"{info['load']}",
        "",
    ]
    for name in names:
        lines += PARTS[name]()
        print(f"{name} done", file=sys.stderr)
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
