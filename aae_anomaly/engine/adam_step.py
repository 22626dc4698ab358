"""A lean ``Adam.step`` for the training loop's many small steps.

Small networks make the kernel of a fused Adam step cheap (about 12 us on the CPU) and
the Python around it dear: ``Optimizer.step`` runs hooks, a profiler record, a dynamo
guard and ``_init_group``, which rebuilds the lists of parameters, gradients and moments
on every call (about 120 us, three times a batch). :class:`AdamStep` builds those lists
once per epoch and calls the same functional ``adam`` the optimizer calls, with the same
arguments, so the update is bit for bit the optimizer's own. It falls back to
``optimizer.step()`` wherever the lean call would not be the same: before the moments
exist, when a parameter has no gradient, or on a torch whose ``adam`` takes other
arguments.
"""

from __future__ import annotations

import inspect

import torch
from torch.optim import adam as adam_module

# the keyword arguments ``Optimizer.step`` passes to the functional ``adam`` in the torch
# versions this was written against; any other signature takes the fallback
_EXPECTED_ARGUMENTS = {
    "params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs", "state_steps",
    "foreach", "capturable", "differentiable", "fused", "grad_scale", "found_inf",
    "has_complex", "decoupled_weight_decay", "amsgrad", "beta1", "beta2", "lr",
    "weight_decay", "eps", "maximize",
}  # fmt: skip
_FUNCTIONAL = getattr(adam_module, "adam", None)
SUPPORTED = _FUNCTIONAL is not None and (
    set(inspect.signature(_FUNCTIONAL).parameters) == _EXPECTED_ARGUMENTS
)


class AdamStep:
    """Calls ``step()`` on one ``torch.optim.Adam`` with a single parameter group."""

    _lists: tuple[list, list, list, list] | None

    def __init__(self, optimizer: torch.optim.Adam):
        self.optimizer = optimizer
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the lists from the optimizer's state: call after the state may have
        been replaced (``load_state_dict``) and at the start of an epoch."""
        self._lists = None
        optimizer = self.optimizer
        if not SUPPORTED or len(optimizer.param_groups) != 1:
            return
        group = optimizer.param_groups[0]
        if group["amsgrad"] or group["differentiable"] or group["capturable"]:
            return
        if getattr(optimizer, "grad_scale", None) is not None:
            return
        params = group["params"]
        states = [optimizer.state.get(p) for p in params]
        if any(not state or "exp_avg" not in state for state in states):
            return
        if any(p.is_complex() for p in params):
            return
        self._lists = (
            params,
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [state["step"] for state in states],
        )

    def step(self) -> None:
        if self._lists is None:
            self.optimizer.step()
            self.refresh()
            return
        params, exp_avgs, exp_avg_sqs, steps = self._lists
        grads = [p.grad for p in params]
        if any(grad is None for grad in grads):
            self.optimizer.step()
            return
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            _FUNCTIONAL(
                params, grads, exp_avgs, exp_avg_sqs, [], steps,
                foreach=group["foreach"], capturable=False, differentiable=False,
                fused=group["fused"], grad_scale=None, found_inf=None, has_complex=False,
                decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=False,
                beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                eps=group["eps"], maximize=group["maximize"],
            )  # fmt: skip

    def step_on(self, loss: torch.Tensor) -> None:
        """One training step on ``loss``: fresh gradients, then the update (in a
        distributed fit, the backward pass averages the gradients over the ranks)."""
        self.zero_grad()
        loss.backward()
        self.step()

    def zero_grad(self) -> None:
        """``zero_grad(set_to_none=True)`` without its per-call bookkeeping."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
