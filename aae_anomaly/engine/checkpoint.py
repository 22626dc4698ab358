"""Checkpoints of a fit in progress: one safetensors file, rewritten atomically each epoch.

The file holds no pickle. Its tensors are the networks' state dict (``module/NAME``), each
optimizer's per-parameter state (``optimizer/OPTIMIZER/INDEX/KEY``, e.g. Adam's
``exp_avg``) and the random generator's state (``generator``, a uint8 tensor). Its
``__metadata__`` holds, under ``"aae_anomaly_checkpoint"``, one JSON document: the format,
the epochs done, the learning-rate scale and retries (see
:mod:`aae_anomaly.engine.training`), the history so far, the optimizers' param groups and
non-tensor state, and the identity of the fit: the estimator's parameters and a SHA-256 of
the training rows. A checkpoint resumes only the fit it was written by, and a resumed fit
ends with the same model, bit for bit on CPU, as one that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize_tensors

from ..errors import CheckpointError
from ..io.atomic import atomic_write_bytes
from .training import OPTIMIZERS, Trainer

FILENAME = "checkpoint.safetensors"
FORMAT_NAME = "aae-anomaly-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "aae_anomaly_checkpoint"


def data_digest(rows: np.ndarray) -> str:
    """SHA-256 of the training rows' dtype, shape and bytes."""
    rows = np.ascontiguousarray(rows)
    digest = hashlib.sha256(f"{rows.dtype.str}|{rows.shape}|".encode())
    digest.update(rows.tobytes())
    return digest.hexdigest()


class Checkpoint:
    """The checkpoint file of one fit, in ``directory``.

    ``identity`` (JSON-able) says which fit it belongs to: resuming with a different one
    is an error rather than a silently different model.
    """

    def __init__(self, directory: str | os.PathLike, identity: dict[str, Any], rank: int = 0):
        """``rank``: the process's rank in a distributed fit; ranks other than 0 keep
        their own file beside rank 0's."""
        self.directory = Path(directory)
        name = FILENAME if rank == 0 else FILENAME.replace(".", f"-rank{rank}.", 1)
        self.path = self.directory / name
        self.identity = json.loads(json.dumps(identity))  # as it reads back from the file

    def exists(self) -> bool:
        return self.path.is_file()

    # -- writing ---------------------------------------------------------------------------
    def save(self, trainer: Trainer) -> None:
        """Write the trainer's state; a crash mid-write leaves the previous checkpoint."""
        state = trainer.state_dict()
        tensors = {
            f"module/{name}": tensor.detach().cpu().contiguous()
            for name, tensor in state["module"].items()
        }
        optimizers = {}
        for name, optimizer_state in state["optimizers"].items():
            scalars: dict[str, dict[str, Any]] = {}
            for index, entry in optimizer_state["state"].items():
                for key, value in entry.items():
                    if isinstance(value, torch.Tensor):
                        tensor = value.detach().cpu().contiguous()
                        tensors[f"optimizer/{name}/{index}/{key}"] = tensor
                    else:
                        scalars.setdefault(str(index), {})[key] = value
            optimizers[name] = {
                "param_groups": optimizer_state["param_groups"],
                "scalars": scalars,
            }
        tensors["generator"] = state["generator"].cpu().contiguous()
        document = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "identity": self.identity,
            "epoch": state["epoch"],
            "lr_scale": state["lr_scale"],
            "retries": state["retries"],
            "history": state["history"],
            "optimizers": optimizers,
        }
        try:
            header = json.dumps(document, allow_nan=False)
            self.directory.mkdir(parents=True, exist_ok=True)
            data = serialize_tensors(tensors, metadata={METADATA_KEY: header})
            atomic_write_bytes(self.path, data)
        except (OSError, TypeError, ValueError) as exc:
            raise CheckpointError(f"cannot write the checkpoint {self.path}: {exc}") from None

    # -- reading ---------------------------------------------------------------------------
    def epochs_done(self) -> int:
        """The epochs the stored checkpoint holds (after checking it is this fit's)."""
        return int(self._read(load_tensors=False)[0]["epoch"])

    def restore(self, trainer: Trainer) -> int:
        """Put the stored state into ``trainer``; return the epochs it had done."""
        document, tensors = self._read(load_tensors=True)
        state = {
            "module": {
                name.removeprefix("module/"): tensor
                for name, tensor in tensors.items()
                if name.startswith("module/")
            },
            "optimizers": {
                name: _optimizer_state(name, document["optimizers"][name], tensors)
                for name in OPTIMIZERS
            },
            "generator": tensors["generator"],
            "epoch": document["epoch"],
            "lr_scale": document["lr_scale"],
            "retries": document["retries"],
            "history": document["history"],
        }
        try:
            _check_optimizer_shapes(trainer, state["optimizers"])
            trainer.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise CheckpointError(
                f"the checkpoint {self.path} does not fit the networks this fit builds: "
                f"{' '.join(str(exc).split())[:300]}"
            ) from None
        return int(document["epoch"])

    def _read(self, load_tensors: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if not self.exists():
            raise CheckpointError(f"no checkpoint to resume from: {self.path} does not exist")
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as handle:
                metadata = handle.metadata() or {}
                tensors = (
                    {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
                    if load_tensors
                    else {}
                )
            document = json.loads(metadata[METADATA_KEY])
        except (SafetensorError, OSError, RuntimeError, KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"{self.path} is not a readable aae-anomaly checkpoint ({exc}); remove it to "
                "start the fit over"
            ) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{self.path} is not an aae-anomaly checkpoint")
        if document.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{self.path} has checkpoint format version {document.get('format_version')!r}"
                f"; this aae-anomaly reads version {FORMAT_VERSION}"
            )
        stored = document.get("identity")
        if stored != self.identity:
            raise CheckpointError(
                f"the checkpoint {self.path} belongs to a different fit (differs in: "
                f"{', '.join(_differences(stored, self.identity))}); resume with the same "
                "data and settings, or remove the checkpoint to start over"
            )
        _check_document(self.path, document)
        if load_tensors and "generator" not in tensors:
            raise CheckpointError(f"{self.path} is damaged: it has no generator state")
        return document, tensors


def _optimizer_state(name: str, stored: dict[str, Any], tensors: dict[str, torch.Tensor]):
    per_parameter: dict[int, dict[str, Any]] = {}
    prefix = f"optimizer/{name}/"
    for key, tensor in tensors.items():
        if key.startswith(prefix):
            index, _, field = key.removeprefix(prefix).partition("/")
            per_parameter.setdefault(int(index), {})[field] = tensor
    for index, fields in stored["scalars"].items():
        per_parameter.setdefault(int(index), {}).update(fields)
    groups = [
        {key: tuple(value) if key == "betas" else value for key, value in group.items()}
        for group in stored["param_groups"]
    ]
    return {"state": per_parameter, "param_groups": groups}


def _check_optimizer_shapes(trainer: Trainer, stored: dict[str, Any]) -> None:
    """Adam's per-parameter tensors must have their parameter's shape; torch does not check
    this on loading, only at the next step, deep inside the fit."""
    for name, optimizer in trainer.optimizers.items():
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        for index, fields in stored[name]["state"].items():
            if not 0 <= index < len(parameters):
                raise ValueError(f"optimizer {name} has no parameter {index}")
            for field, value in fields.items():
                if not isinstance(value, torch.Tensor) or value.dim() == 0:
                    continue  # the step count
                if value.shape != parameters[index].shape or not value.is_floating_point():
                    raise ValueError(
                        f"optimizer/{name}/{index}/{field} is {value.dtype} "
                        f"{tuple(value.shape)}, but its parameter is "
                        f"{parameters[index].dtype} {tuple(parameters[index].shape)}"
                    )


def _check_document(path: Path, document: dict[str, Any]) -> None:
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    optimizers = document.get("optimizers")
    history = document.get("history")
    valid = (
        isinstance(document.get("epoch"), int)
        and document["epoch"] >= 0
        and number(document.get("lr_scale"))
        and isinstance(document.get("retries"), int)
        and isinstance(history, dict)
        and all(isinstance(v, list) and all(map(number, v)) for v in history.values())
        and isinstance(optimizers, dict)
        and set(optimizers) == set(OPTIMIZERS)
        and all(
            isinstance(o, dict)
            and isinstance(o.get("param_groups"), list)
            and all(isinstance(g, dict) for g in o["param_groups"])
            and isinstance(o.get("scalars"), dict)
            and all(isinstance(s, dict) and k.isdigit() for k, s in o["scalars"].items())
            for o in optimizers.values()
        )
    )
    if not valid:
        raise CheckpointError(f"{path} is damaged: its metadata has unexpected fields or types")


def _differences(stored: Any, expected: dict[str, Any]) -> list[str]:
    if not isinstance(stored, dict):
        return ["everything"]
    keys = sorted(set(stored) | set(expected))
    out = []
    for key in keys:
        if stored.get(key) == expected.get(key):
            continue
        if isinstance(stored.get(key), dict) and isinstance(expected.get(key), dict):
            out += [f"{key}.{k}" for k in _differences(stored[key], expected[key])]
        else:
            out.append(key)
    return out or ["unknown"]
