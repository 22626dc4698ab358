"""Running a fitted network over many rows: the one inference path of every estimator.

A row's outputs must not depend on the rows it is computed with (a subset, another order,
another call), and that is made true by construction here rather than left to the
kernels: every row reaches every matrix product in the same surroundings.

- **The same shape.** Rows go through the networks in batches of exactly
  :data:`BATCH_ROWS` rows, the last one padded (:func:`padded_batches`): kernels choose
  their blocking and rounding by shape.
- **The same alignment.** Every input of a linear layer has its rows 64 bytes apart
  (:func:`aligned_rows`). A BLAS may split a dot product into an unaligned head and
  aligned vector loads, so where a row starts in memory decides where its sum is split:
  measured here (MKL on an AMD EPYC), a 22-wide row gave one result at even and another
  at odd positions of the same batch. With every row starting on a 64-byte boundary, no
  position differs from another.

Training does not go through this path: it needs no row to match another call's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .model import AAEModule
from .runtime import compute_threads, flush_denormals, long_lived_threads, worker_thread

# Rows per inference batch: large batches keep the small networks' matrix products busy,
# and one fixed size is half of what keeps a row's result independent of its neighbours.
BATCH_ROWS = 4096
# float32 values per 64 bytes: a cache line, and the widest vector load (AVX-512).
ROW_ALIGNMENT = 16


@contextlib.contextmanager
def inference_threads(module: nn.Module, device: torch.device) -> Iterator[int]:
    """The block runs with subnormal floats flushed and the thread setting for
    ``module``'s size (:func:`~aae_anomaly.engine.runtime.compute_threads`); yields how
    many batches may run side by side."""
    with flush_denormals(), compute_threads(module, device) as workers:
        yield workers


def aligned_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` (2-D) as a view whose rows each start on a 64-byte boundary: ``x`` itself when
    they already do, else a copy into a buffer with padded rows (torch allocates buffers
    64-byte aligned; the padding is never read)."""
    rows, width = x.shape
    step = ROW_ALIGNMENT * 4 // x.element_size()
    if x.stride(1) == 1 and x.stride(0) % step == 0 and x.data_ptr() % 64 == 0:
        return x
    buffer = x.new_empty((rows, -(-width // step) * step))
    view = buffer[:, :width]
    view.copy_(x)
    return view


def _align_input(layer: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook of every linear layer: in inference mode, its 2-D input with
    aligned rows (training is left alone: it needs no row-independence)."""
    if not torch.is_inference_mode_enabled() or len(args) != 1 or args[0].dim() != 2:
        return None
    return (aligned_rows(args[0]),)


def inference_ready(module: nn.Module) -> nn.Module:
    """``module`` in eval mode, with every linear layer (a plugin's too) reading aligned
    rows in inference mode. Idempotent: a layer is hooked once for its life."""
    module.eval()
    for layer in module.modules():
        if isinstance(layer, nn.Linear) and not getattr(layer, "_aae_aligned", False):
            layer.register_forward_pre_hook(_align_input)
            layer._aae_aligned = True
    return module


def padded_batches(
    rows: np.ndarray, batch_size: int | None, device: torch.device
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(where, batch)`` with every batch exactly ``batch_size`` rows long
    (``None``: :data:`BATCH_ROWS`).

    A short last batch is padded with zeros (drop the padding with ``[:len(where)]``).
    Matrix-product kernels round differently for different batch sizes; giving them one
    size makes a row's result independent of which rows it is scored with, so scoring a
    subset gives bit-identical values to scoring the whole.

    One float32 buffer is filled in place for every batch (the conversion from the caller's
    dtype and the copy are one pass), so memory stays flat however many rows there are.
    The same tensor is yielded each time: use it before asking for the next batch.
    """
    n, width = rows.shape
    batch_size = batch_size or BATCH_ROWS
    host = torch.zeros((batch_size, width), dtype=torch.float32)
    host_rows = host.numpy()
    batch = host if device.type == "cpu" else torch.empty_like(host, device=device)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        # casting="unsafe" rounds float64 to the nearest float32, as astype does
        np.copyto(host_rows[: stop - start], rows[start:stop], casting="unsafe")
        if stop - start < batch_size:
            host_rows[stop - start :] = 0.0
        if batch is not host:
            batch.copy_(host)
        yield slice(start, stop), batch


# Whole batches go to side-by-side threads only when each thread gets at least this many:
# with fewer, the last batches leave threads idle (three batches on two threads: one
# thread scores two while the other scores a short one), so the caller shares the work
# inside each batch instead (see scoring.raw_components).
BATCHES_PER_STREAM = 4


def batch_streams(n_rows: int, batch_size: int | None, workers: int) -> int:
    """How many threads should stream whole batches of ``n_rows`` side by side, out of
    ``workers``: all of them, or one where the batches are too few to share evenly."""
    batch_size = batch_size or BATCH_ROWS
    n_batches = -(-n_rows // batch_size)
    return workers if n_batches >= BATCHES_PER_STREAM * workers else 1


def for_each_batch(
    rows: np.ndarray,
    batch_size: int | None,
    device: torch.device,
    work: Callable[[slice, torch.Tensor], None],
    workers: int = 1,
) -> None:
    """Call ``work(where, batch)`` for every batch of :func:`padded_batches`, in inference
    mode.

    With ``workers > 1`` on the CPU the rows are cut into that many runs of whole
    batches, each streamed by its own thread (of
    :func:`~aae_anomaly.engine.runtime.long_lived_threads`; see :func:`batch_streams`
    for when that pays). The batches are exactly those one thread would make (same size,
    same rows, padding only in the last), so the results are identical; the threads
    share no barrier, so a busy core slows only its own run. ``work`` must write
    disjoint ``where`` slices only. Worker threads flush denormals, as the estimator
    does.
    """
    batch_size = batch_size or BATCH_ROWS
    n_batches = -(-len(rows) // batch_size)
    workers = max(1, min(workers, n_batches))
    if workers == 1 or device.type != "cpu":
        with torch.inference_mode():
            for where, batch in padded_batches(rows, batch_size, device):
                work(where, batch)
        return
    run = -(-n_batches // workers) * batch_size

    def stream(start: int) -> None:
        with worker_thread():
            for where, batch in padded_batches(rows[start : start + run], batch_size, device):
                work(slice(start + where.start, start + where.stop), batch)

    pool = long_lived_threads(workers, "batches")
    for future in [pool.submit(stream, start) for start in range(0, len(rows), run)]:
        future.result()


def encode_rows(
    module: AAEModule,
    rows: np.ndarray,
    batch_size: int | None,
    device: torch.device,
    workers: int = 1,
) -> np.ndarray:
    """Latent codes (posterior means) of flat rows, shape ``(n, latent_dim)``; batches of
    ``batch_size`` rows (``None``: :data:`BATCH_ROWS`)."""
    codes = np.empty((len(rows), module.latent_dim), dtype=np.float64)
    inference_ready(module)

    def work(where: slice, batch: torch.Tensor) -> None:
        z = module.encode(module.scale_input(batch))
        codes[where] = z[: where.stop - where.start].cpu().numpy()  # float32 -> 64: exact

    for_each_batch(rows, batch_size, device, work, workers)
    return codes
