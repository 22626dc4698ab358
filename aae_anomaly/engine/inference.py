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
    subset gives bit-identical values to scoring the whole. Only one batch is converted to
    float32 at a time, so memory stays flat however many rows there are.
    """
    n = len(rows)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = torch.zeros((batch_size, rows.shape[1]), dtype=torch.float32, device=device)
        batch[: stop - start] = torch.from_numpy(
            np.asarray(rows[start:stop], dtype=np.float32)
        ).to(device, non_blocking=True)
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
        codes[where] = z[: where.stop - where.start].double().cpu().numpy()
    return codes
