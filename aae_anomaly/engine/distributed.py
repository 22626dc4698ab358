"""Data-parallel training over ``torch.distributed`` processes (one per CPU or GPU).

Launched with ``torchrun --nproc-per-node N``, each process (rank) trains the same
networks on its own shard of the training rows. After every backward pass the gradients
are averaged over the ranks with one ``all_reduce``, as ``DistributedDataParallel``
does; the AAE's three phases step three different parameter sets of one module, which
DDP's one wrapper per module, with its autograd hooks, does not fit, so the averaging is
called where each phase steps. Every rank starts from rank 0's weights and applies the
same averaged gradients with the same optimizer state, so the weights stay the same on
every rank; each rank draws its own shuffles and prior samples from a generator seeded
with the fit's seed and its rank. The epoch's metrics are averaged over the ranks too, so
every rank takes the same decisions (a rollback after divergence, the end of the fit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

# torchrun's variables: this process's rank, the number of processes, the local rank
_RANK, _WORLD_SIZE, _LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a distributed fit: ``rank`` of ``world_size``."""

    rank: int
    world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files and shows progress."""
        return self.rank == 0

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Replace each gradient with its mean over the ranks: one all_reduce on one flat
        buffer (a parameter without a gradient takes part as zeros, so that every rank
        sends the same layout)."""
        grads = [
            p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters
        ]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for p, g in zip(parameters, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g)
            offset += n

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` averaged over the ranks (a new tensor, on ``values``' device)."""
        total = values.to(self._device(), copy=True)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return (total / self.world_size).to(values.device)

    def _device(self) -> torch.device:
        # NCCL reduces CUDA tensors only, gloo CPU ones
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def check_same_weights(self, module: nn.Module) -> None:
        """Raise unless every rank ends with the same weights: they start from rank 0's
        and apply the same averaged gradients, so a difference means the exchange went
        wrong, and the model file (rank 0's) would not be what the ranks trained."""
        with torch.no_grad():
            sums = torch.stack([p.double().sum() for p in module.parameters()])
            sums = sums.to(self._device())
            low, high = sums.clone(), sums.clone()
            dist.all_reduce(low, op=dist.ReduceOp.MIN)
            dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError(
                "the processes of this distributed fit ended with different weights; the "
                "gradient exchange is broken (please report it)"
            )

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def shard(self, n_rows: int) -> slice:
        """This rank's rows of ``n_rows``: equal shards, so that every rank takes the same
        number of steps (the last ``n_rows % world_size`` rows are left out)."""
        per_rank = n_rows // self.world_size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def describe(self) -> dict:
        """What the model file records of how it was trained."""
        return {"world_size": self.world_size, "backend": self.backend}


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that ``torchrun`` started."""
    return int(os.environ.get(_WORLD_SIZE, "1")) > 1


def local_rank() -> int:
    return int(os.environ.get(_LOCAL_RANK, "0"))


def init_from_environment(device: torch.device) -> None:
    """Join the process group that ``torchrun``'s variables describe (gloo for CPU
    training, NCCL for CUDA), unless this process already has one."""
    if dist.is_initialized() or not launched_by_torchrun():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def current_group() -> ProcessGroup | None:
    """This process's group when it trains with others, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), dist.get_backend())


def rank_seed(seed: int, rank: int) -> int:
    """A generator seed of its own for each rank, the same on every run."""
    return (seed * 1_000_003 + rank * 7_919) % (2**63 - 1)


def finish() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
