"""``aae-anomaly`` for the distributed tests, run by ``torchrun``: the real command line,
with one more prior plugin, ``stopping``, a standard normal prior that raises on the
ranks listed in ``AAE_TEST_STOP_RANKS`` once it has drawn ``AAE_TEST_STOP_AFTER``
samples (a fault in the middle of a fit, on chosen processes)."""

import os
import sys
import types

import torch

from aae_anomaly import Prior, get_plugin_manager, hookimpl
from aae_anomaly.cli import main


class StoppingPrior(Prior):
    has_density = True

    def __init__(self, latent_dim):
        super().__init__(latent_dim)
        self.calls = 0
        ranks = os.environ.get("AAE_TEST_STOP_RANKS", "")
        self.stops = os.environ.get("RANK", "0") in ranks.split(",")
        self.after = int(os.environ.get("AAE_TEST_STOP_AFTER", "0"))

    def sample(self, n, generator, labels=None):
        self.calls += 1
        if self.stops and self.calls > self.after:
            raise RuntimeError(f"rank {os.environ['RANK']} stopped on purpose")
        return torch.randn(n, self.latent_dim, generator=generator, device=generator.device)

    def log_prob(self, z):
        return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=1)

    def options(self):
        return {}


def register() -> None:
    plugin = types.ModuleType("stopping")
    plugin.register_priors = hookimpl(lambda register: register("stopping", StoppingPrior))
    get_plugin_manager().register(plugin, "stopping", "stopping-test", "0.1")


if __name__ == "__main__":
    register()
    sys.exit(main())
