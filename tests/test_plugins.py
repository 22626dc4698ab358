"""The plugin manager: built-ins through the entry-point group, errors, third parties."""

import importlib
import re
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from aae_anomaly import AAEDetector, PluginError, UnknownPluginError, hookimpl
from aae_anomaly.plugin_system.manager import PluginManager, get_plugin_manager


def test_builtins_arrive_through_the_entry_point_group():
    manager = get_plugin_manager()
    assert manager.names("prior") == ["gaussian", "mixture", "swiss_roll", "uniform"]
    assert manager.names("encoder") == ["conv", "mlp"]
    assert {"csv", "npy", "npz", "sklearn", "synthetic"} <= set(manager.names("dataset"))
    registration = manager.get("prior", "gaussian")
    assert registration.distribution == "aae-anomaly"
    assert registration.plugin == "builtin_priors"
    assert registration.version


def test_without_entry_points_nothing_is_registered():
    # the core itself names no plugin: built-ins exist only through the entry points
    assert PluginManager(load_entry_points=False).names("prior") == []


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(UnknownPluginError) as info:
        get_plugin_manager().get("prior", "laplace")
    message = str(info.value)
    assert "unknown prior 'laplace'" in message
    assert "gaussian, mixture, swiss_roll, uniform" in message


def test_estimator_reports_unknown_encoder():
    with pytest.raises(UnknownPluginError, match="unknown encoder 'transformer'.*conv, mlp"):
        AAEDetector(encoder="transformer", epochs=1).fit(np.zeros((10, 3)))


def test_unknown_plugin_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown plugin kind"):
        get_plugin_manager().names("decoder")


def _plugin(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def test_a_raising_hook_is_named_and_the_others_still_work():
    manager = PluginManager()

    def register_priors(register):
        raise RuntimeError("no GPU here")

    manager.register(_plugin("broken", register_priors=register_priors), "broken", "broken-dist")
    assert "gaussian" in manager.names("prior")
    (failure,) = manager.failures
    assert failure.plugin == "broken" and failure.distribution == "broken-dist"
    assert "register_priors raised RuntimeError: no GPU here" in failure.message


def test_a_name_registered_twice_keeps_the_first_and_records_the_second():
    manager = PluginManager()

    def register_priors(register):
        register("gaussian", lambda latent_dim: None)

    manager.register(_plugin("copycat", register_priors=register_priors), "copycat")
    assert manager.get("prior", "gaussian").plugin == "builtin_priors"
    assert "already registers" in manager.failures[0].message


def test_a_non_callable_factory_is_rejected_with_the_plugin_named():
    manager = PluginManager()

    def register_encoders(register):
        register("weird", 42)

    manager.register(_plugin("odd", register_encoders=register_encoders), "odd")
    assert "weird" not in manager.names("encoder")
    assert manager.failures[0].plugin == "odd"
    assert "callable" in manager.failures[0].message


def test_factory_rejecting_options_names_the_plugin():
    with pytest.raises(PluginError, match="prior 'gaussian' \\(plugin 'builtin_priors'\\)"):
        get_plugin_manager().create("prior", "gaussian", 2, colour="red")


THIRD_PARTY_MODULE = textwrap.dedent(
    '''
    import torch
    from aae_anomaly import Prior, hookimpl


    class ShiftedGaussian(Prior):
        has_density = True

        def __init__(self, latent_dim, shift=3.0):
            super().__init__(latent_dim)
            self.shift = shift

        def sample(self, n, generator, labels=None):
            noise = torch.randn(n, self.latent_dim, generator=generator, device=generator.device)
            return noise + self.shift

        def log_prob(self, z):
            return torch.distributions.Normal(self.shift, 1.0).log_prob(z).sum(dim=1)


    @hookimpl
    def register_priors(register):
        register("shifted_gaussian", ShiftedGaussian)
    '''
)


def install_fake_distribution(folder, monkeypatch, dist, version, entry, module, source):
    """A module and its dist-info on sys.path: what ``pip install`` leaves behind."""
    (folder / f"{module}.py").write_text(source)
    dist_info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    (dist_info / "METADATA").write_text(metadata)
    (dist_info / "entry_points.txt").write_text(f"[aae_anomaly]\n{entry} = {module}\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)
    importlib.invalidate_caches()


@pytest.fixture
def third_party_distribution(tmp_path, monkeypatch, fresh_plugins):
    install_fake_distribution(
        tmp_path, monkeypatch, "acme-priors", "1.2.3", "acme", "acme_priors", THIRD_PARTY_MODULE
    )


def test_a_third_party_prior_is_discovered_and_fits(third_party_distribution, small_rows):
    registration = get_plugin_manager().get("prior", "shifted_gaussian")
    assert (registration.distribution, registration.version) == ("acme-priors", "1.2.3")
    detector = AAEDetector(
        prior="shifted_gaussian", prior_params={"shift": 2.0}, latent_dim=2, epochs=3,
        random_state=0,
    ).fit(small_rows)
    scores = detector.score_components(small_rows)
    assert set(scores) == {
        "reconstruction", "discriminator", "density", "neighbors", "inputs", "score",
    }
    assert np.isfinite(scores["score"]).all()


def test_a_plugin_that_fails_to_import_is_recorded(tmp_path, monkeypatch, fresh_plugins):
    install_fake_distribution(
        tmp_path, monkeypatch, "broken-plugin", "0.1", "broken", "broken_plugin",
        "raise ImportError('needs libfoo')\n",
    )
    manager = get_plugin_manager()
    assert "gaussian" in manager.names("prior")
    (failure,) = manager.failures
    assert (failure.plugin, failure.distribution) == ("broken", "broken-plugin")
    assert "import failed: ImportError: needs libfoo" in failure.message


def test_the_documented_plugin_example_works(tmp_path, monkeypatch, fresh_plugins):
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    source = re.search(r"`aae_laplace.py`:\n\n```python\n(.*?)```", guide, re.S).group(1)
    install_fake_distribution(
        tmp_path, monkeypatch, "aae-laplace", "0.1.0", "laplace", "aae_laplace", source
    )
    prior = get_plugin_manager().create("prior", "laplace", 2, scale=0.5)
    z = prior.sample(20000, torch.Generator().manual_seed(0))
    reference = torch.distributions.Laplace(0.0, 0.5)
    torch.testing.assert_close(prior.log_prob(z[:5]), reference.log_prob(z[:5]).sum(dim=1))
    assert abs(z.abs().mean().item() - 0.5) < 0.02  # E|z| = scale
    detector = AAEDetector(prior="laplace", prior_params={"scale": 0.5}, latent_dim=2,
                           epochs=2, random_state=0)
    assert np.isfinite(detector.fit(np.random.default_rng(0).normal(size=(60, 3)))
                       .score_samples(np.zeros((2, 3)))).all()
