"""Where and how tensors run: device choice, seeding, denormal handling, threads."""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA when it is available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here")
    return resolved


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """Seed torch's global generators for the block (weight initialisation uses them) and
    yield a generator on ``device`` for everything else; the caller's RNG state is restored
    afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        yield generator


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero on CPU for the block.

    Late in training, tiny weights and activations become subnormal and make CPU
    arithmetic several times slower; flushing them leaves the results unchanged.
    torch has no getter for this flag, so it is turned back off (its default) afterwards.
    """
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


# Below this many floating-point operations per row (one forward pass of the encoder,
# decoder and discriminator together), the networks' matrix products are too small for
# several CPU threads to share them: each product ends at a barrier where every thread
# waits for the slowest, and on a machine whose cores are busy with other work that wait
# costs more than the product. Measured on a shared 2-core machine with the default mlp on
# 32 features (about 27 kFLOP per row): training 5-7x faster and scoring 4-6x faster on
# one thread than on two. Larger networks (conv on 28x28 images: about 20 MFLOP per row)
# keep torch's thread setting.
SMALL_NETWORK_FLOPS = 1_000_000


_FLOPS_PER_ROW: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_flops_per_row(module, discriminator: bool = True) -> int:
    """Floating-point operations to run one row through every network (the module's
    ``probe``), or through the encoder and decoder only with ``discriminator=False``.

    Counted by torch's FLOP counter on one row (matrix products and convolutions, two per
    multiply-add); element-wise work such as activations and the loss is not counted.
    Counting takes milliseconds, so the counts are kept for as long as the module lives.
    """
    counts = _FLOPS_PER_ROW.setdefault(module, {})
    if discriminator not in counts:
        counts[discriminator] = _count_flops_per_row(module, discriminator)
    return counts[discriminator]


def _count_flops_per_row(module, discriminator: bool) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(module.parameters())
    x = torch.zeros((1, *module.input_shape), dtype=torch.float32, device=parameter.device)
    counter = FlopCounterMode(display=False)
    was_training = module.training
    module.eval()  # batch norm layers would refuse one row in training mode
    try:
        with torch.inference_mode(), counter:
            module.probe(x, discriminator)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


@contextlib.contextmanager
def compute_threads(module, device: torch.device) -> Iterator[int]:
    """Run the block with one intra-op thread when ``module`` is small and on the CPU
    (see :data:`SMALL_NETWORK_FLOPS`); otherwise leave torch's setting alone.

    Yields how many batches may run side by side, each on its own thread: torch's thread
    setting when it was lowered to one, else 1. A fit's results can depend on the thread
    count (a BLAS may split a weight gradient's sum over the batch between threads: one
    and two threads gave fits 2e-6 apart on an AMD EPYC), so small networks, which train
    on one thread, fit the same on any number of cores; larger ones follow torch's
    setting.
    """
    before = torch.get_num_threads()
    if device.type != "cpu" or before == 1 or forward_flops_per_row(module) >= SMALL_NETWORK_FLOPS:
        yield 1
        return
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


@functools.cache
def long_lived_threads(n: int, purpose: str) -> ThreadPoolExecutor:
    """``n`` threads kept for the life of the process, one pool per ``purpose``.

    Starting threads for every call would cost more than a small call takes: a new
    thread's first matrix product sets up the BLAS library's state for that thread, and
    its first search block allocates a 4 MB buffer, together 5 to 15 ms here against 10
    ms for searching 4,096 rows on two threads. A task must not wait on a task of its own
    pool (each purpose has its own, so a batch may wait on searches). Tasks start with
    :func:`worker_thread`."""
    return ThreadPoolExecutor(n, thread_name_prefix=f"aae-anomaly-{purpose}")


# a child made by fork has none of the parent's threads: it starts pools of its own
os.register_at_fork(after_in_child=long_lived_threads.cache_clear)


@contextlib.contextmanager
def worker_thread() -> Iterator[None]:
    """What a task on a :func:`long_lived_threads` thread runs under: inference mode, one
    intra-op thread, and subnormal floats flushed as the estimator's own thread does (the
    flag is per thread; it stays set, since only this package's tasks run on these
    threads).

    One intra-op thread, whatever torch's setting was when the thread started: each task
    is one of several streams side by side, and then computes exactly as the one-stream
    path on a thread that :func:`compute_threads` lowered to one. Torch keeps the setting
    per thread (a new thread starts with the last one set), so it is put back after."""
    torch.set_flush_denormal(True)
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        if before != 1:
            torch.set_num_threads(before)
