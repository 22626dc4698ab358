"""Data-parallel training over ``torch.distributed`` processes (one per CPU or GPU).

Launched with ``torchrun --nproc-per-node N``, each process (rank) trains the same
networks on its own shard of the training rows. The encoder, the decoder and the
discriminator are each wrapped in their own ``DistributedDataParallel``
(:meth:`ProcessGroup.data_parallel`), and every phase of a step runs its forward through
the wrappers, so DDP's autograd hooks average the gradients over the ranks during the
backward pass. Each backward touches exactly the wrappers whose outputs its loss used:

- reconstruction: encoder and decoder, every parameter of both;
- discriminator: the discriminator alone (the codes are detached from the encoder);
- generator: the encoder; the discriminator's weights are frozen there and its forward
  runs under ``no_sync``, so DDP expects no gradient of them.

So no wrapper needs ``find_unused_parameters`` (an encoder plugin with a parameter that
no output depends on makes DDP stop with its own error), and the real and fake codes go
through the discriminator in one forward. DDP broadcasts rank 0's parameters and buffers
when it wraps a network, and a network's buffers (none in the built-in ones) again before
each forward (``broadcast_buffers``); the module's own buffers (the input scaling, the
reference rows) sit outside the wrapped networks and are broadcast once by
:meth:`ProcessGroup.broadcast_buffers`. Every rank starts from rank 0's weights and
applies the same averaged gradients with the same optimizer state, so the weights stay
the same on every rank (:meth:`ProcessGroup.check_same_weights` makes sure at the end);
each rank draws its own shuffles and prior samples from a generator seeded with the fit's
seed and its rank. The epoch's metrics are averaged over the ranks too, so every rank
takes the same decisions (a rollback after divergence, the end of the fit).

The wrappers only route the forward and backward passes: the optimizers, checkpoints and
model files hold the plain module's parameters, under the same names as in a fit on one
process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

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

    def data_parallel(self, network: nn.Module) -> nn.Module:
        """``network`` wrapped in ``DistributedDataParallel``: its forward passes go
        through the wrapper, whose backward averages its gradients over the ranks. The
        wrapper shares the network's parameters (it broadcasts rank 0's on creation)."""
        device = next(network.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=device_ids)

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

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's values of ``module``'s own buffers (not those of its
        networks, which their wrappers broadcast): every rank computes the same input
        scaling, and this makes sure the model file's is what every rank trained with."""
        for tensor in module.buffers(recurse=False):
            dist.broadcast(tensor.data, src=0)

    def shard(self, n_rows: int) -> slice:
        """This rank's rows of ``n_rows``: equal shards, so that every rank takes the same
        number of steps (the last ``n_rows % world_size`` rows are left out)."""
        per_rank = n_rows // self.world_size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def gather(self, value):
        """Every rank's ``value`` (a small picklable object), in rank order, on every
        rank."""
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, value):
        """Rank 0's ``value`` (a small picklable object), on every rank."""
        values = [value]
        dist.broadcast_object_list(values, src=0)
        return values[0]

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
