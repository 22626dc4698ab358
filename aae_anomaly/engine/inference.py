"""Running a fitted network over many rows: fixed-size batches, streamed from the host."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .model import AAEModule


def padded_batches(
    rows: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(where, batch)`` with every batch exactly ``batch_size`` rows long.

    A short last batch is padded with zeros (drop the padding with ``[:len(where)]``).
    Matrix-product kernels round differently for different batch sizes; giving them one
    size makes a row's result independent of which rows it is scored with, so scoring a
    subset gives bit-identical values to scoring the whole.

    One float32 buffer is filled in place for every batch (the conversion from the caller's
    dtype and the copy are one pass), so memory stays flat however many rows there are.
    The same tensor is yielded each time: use it before asking for the next batch.
    """
    n, width = rows.shape
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


@torch.inference_mode()
def encode_rows(
    module: AAEModule, rows: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    """Latent codes (posterior means) of flat rows, shape ``(n, latent_dim)``."""
    codes = np.empty((len(rows), module.latent_dim), dtype=np.float64)
    module.eval()
    for where, batch in padded_batches(rows, batch_size, device):
        z = module.encode(module.scale_input(batch))
        codes[where] = z[: where.stop - where.start].cpu().numpy()  # float32 -> 64: exact
    return codes
