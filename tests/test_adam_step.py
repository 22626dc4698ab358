"""The training loop's lean Adam step must update exactly as ``Adam.step`` does."""

import numpy as np
import pytest
import torch

import aae_anomaly.engine.adam_step as adam_step
from aae_anomaly import AAEDetector
from aae_anomaly.engine.adam_step import AdamStep


def _steps(use_lean: bool, lr_changes: bool = False, skip_grad: bool = False):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999), fused=True)
    stepper = AdamStep(optimizer)
    data = torch.randn(20, 64, 5)
    for i, x in enumerate(data):
        if lr_changes and i == 10:
            optimizer.param_groups[0]["lr"] = 1e-3
            stepper.refresh()
        stepper.zero_grad() if use_lean else optimizer.zero_grad(set_to_none=True)
        loss = net(x).square().mean()
        loss.backward()
        if skip_grad and i % 3 == 0:
            net[0].bias.grad = None  # Adam leaves a parameter without a gradient alone
        stepper.step() if use_lean else optimizer.step()
    return [p.detach().clone() for p in net.parameters()], optimizer.state_dict()


@pytest.mark.parametrize("lr_changes", [False, True])
@pytest.mark.parametrize("skip_grad", [False, True])
def test_lean_steps_equal_the_optimizers_own_bit_for_bit(lr_changes, skip_grad):
    assert adam_step.SUPPORTED, "this torch's functional adam changed: update AdamStep"
    lean, lean_state = _steps(True, lr_changes, skip_grad)
    plain, plain_state = _steps(False, lr_changes, skip_grad)
    for a, b in zip(lean, plain, strict=True):
        assert torch.equal(a, b)
    for key, state in plain_state["state"].items():
        for name, value in state.items():
            assert torch.equal(lean_state["state"][key][name], value), (key, name)


def test_a_fit_is_the_same_with_and_without_lean_steps(monkeypatch):
    X = np.random.default_rng(0).normal(size=(300, 6))
    lean = AAEDetector(epochs=3, random_state=0).fit(X).score_samples(X)
    monkeypatch.setattr(adam_step, "SUPPORTED", False)
    plain = AAEDetector(epochs=3, random_state=0).fit(X).score_samples(X)
    np.testing.assert_array_equal(lean, plain)
