"""``aae-anomaly`` for the distributed tests, run by ``torchrun``: the real command line,
with one more prior plugin, ``stopping``, a standard normal prior that raises on the
ranks listed in ``AAE_TEST_STOP_RANKS`` once it has drawn ``AAE_TEST_STOP_AFTER``
samples (a fault in the middle of a fit, on chosen processes). With ``AAE_TEST_SAVES``
set to a folder, each rank that saves a model file leaves ``saved-by-rank<R>`` there.
With ``AAE_TEST_READS`` set to a folder, each rank writes ``reads-rank<R>.json`` there at
exit: for every pass it started over DATA in chunks, the part it asked for and the rows
it was given."""

import atexit
import json
import os
import sys
import types

import torch

from aae_anomaly import AAEDetector, Prior, get_plugin_manager, hookimpl
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


def record_saves(folder: str) -> None:
    save = AAEDetector.save

    def recorded(self, path):
        open(os.path.join(folder, f"saved-by-rank{os.environ['RANK']}"), "w").close()
        save(self, path)

    AAEDetector.save = recorded


def record_reads(folder: str) -> None:
    import aae_anomaly.io.tables as tables

    read = tables.read_data_chunks
    passes = []

    def recorded(*args, **kwargs):
        chunks = read(*args, **kwargs)
        if chunks is None:
            return None
        entry = {"part": kwargs.get("part", args[5] if len(args) > 5 else None), "rows": 0}
        passes.append(entry)

        def counted():
            for chunk in chunks:
                entry["rows"] += len(chunk.X)
                yield chunk

        return counted()

    def write():
        with open(os.path.join(folder, f"reads-rank{os.environ['RANK']}.json"), "w") as file:
            json.dump(passes, file)

    tables.read_data_chunks = recorded
    atexit.register(write)


if __name__ == "__main__":
    register()
    if os.environ.get("AAE_TEST_SAVES"):
        record_saves(os.environ["AAE_TEST_SAVES"])
    if os.environ.get("AAE_TEST_READS"):
        record_reads(os.environ["AAE_TEST_READS"])
    sys.exit(main())
