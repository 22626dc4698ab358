"""``fit`` as one of several processes that ``torchrun`` started (data-parallel training,
see :mod:`aae_anomaly.engine.distributed`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist

from ..engine.distributed import (
    ProcessGroup,
    current_group,
    finish,
    init_from_environment,
    launched_by_torchrun,
    local_rank,
)
from ..engine.runtime import resolve_device
from .app import BadInput


def rank_device(device: str) -> str:
    """This rank's device: ``auto`` and ``cuda`` mean the GPU of the rank's local number
    where there are GPUs (torchrun starts one process per GPU), else the CPU."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank()}"
    return "cpu" if device == "auto" else device


@contextlib.contextmanager
def torchrun_processes(settings: dict) -> Iterator[ProcessGroup | None]:
    """Under torchrun: set this rank's device in ``settings``, join the process group,
    and leave it at the end; a failure of another rank (its connection closes in the
    middle of a gradient exchange) becomes one error line. None outside torchrun."""
    if not launched_by_torchrun():
        yield None
        return
    settings["device"] = rank_device(settings["device"])
    init_from_environment(resolve_device(settings["device"]))
    try:
        yield current_group()
    except RuntimeError as exc:
        if not _peer_failed(exc):
            raise
        raise BadInput(
            "another process of this distributed fit stopped, so this one cannot go on "
            f"({type(exc).__name__}); no model file is written. The failing rank's own "
            "error is above"
        ) from None
    finally:
        finish()


def _peer_failed(exc: RuntimeError) -> bool:
    """Whether ``exc`` says another rank went away (gloo raises a plain RuntimeError for a
    closed connection; newer torch a DistError)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or "Connection closed by peer" in text or (
        "remote worker" in text
    )
