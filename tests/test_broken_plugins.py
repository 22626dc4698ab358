"""Broken plugins: each failure names the plugin and its distribution, the other plugins keep
working, and ``aae-anomaly plugins`` lists what loaded with a note on what failed."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aae_anomaly import AAEDetector, ModelFileError, PluginError, get_plugin_manager, load

GOOD = textwrap.dedent(
    """
    import torch
    from aae_anomaly import Prior, hookimpl

    class Shifted(Prior):
        has_density = True

        def sample(self, n, generator, labels=None):
            return torch.randn(n, self.latent_dim, generator=generator) + 1.0

        def log_prob(self, z):
            return torch.distributions.Normal(1.0, 1.0).log_prob(z).sum(dim=1)

    @hookimpl
    def register_priors(register):
        register("shifted", Shifted)
    """
)
BROKEN = {
    # distribution: (entry-point name, module, source)
    "import-fails": ("importer", "importer_mod", "raise ImportError('needs libfoo')\n"),
    "hook-raises": (
        "raiser",
        "raiser_mod",
        "from aae_anomaly import hookimpl\n\n@hookimpl\ndef register_priors(register):\n"
        "    raise RuntimeError('no GPU here')\n",
    ),
    "name-twice": (
        "twice",
        "twice_mod",
        "from aae_anomaly import hookimpl\n\n@hookimpl\ndef register_priors(register):\n"
        "    register('gaussian', lambda latent_dim: None)\n",
    ),
    "not-callable": (
        "uncallable",
        "uncallable_mod",
        "from aae_anomaly import hookimpl\n\n@hookimpl\ndef register_encoders(register):\n"
        "    register('weird', 42)\n",
    ),
    "wrong-type": (
        "liar",
        "liar_mod",
        "from aae_anomaly import hookimpl\n\n@hookimpl\ndef register_priors(register):\n"
        "    register('liar', lambda latent_dim, **options: 'not a prior')\n"
        "    register('crasher', lambda latent_dim, **options: 1 / 0)\n",
    ),
    "good-one": ("good", "good_mod", GOOD),
}


def _install(folder):
    for dist, (entry, module, source) in BROKEN.items():
        (folder / f"{module}.py").write_text(source)
        dist_info = folder / f"{dist.replace('-', '_')}-0.3.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
        (dist_info / "entry_points.txt").write_text(f"[aae_anomaly]\n{entry} = {module}\n")


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch, fresh_plugins):
    _install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for _, module, _ in BROKEN.values():
        monkeypatch.delitem(sys.modules, module, raising=False)
    importlib.invalidate_caches()
    return tmp_path


def test_each_failure_names_the_plugin_and_its_distribution(broken_plugins):
    manager = get_plugin_manager()
    failures = {f.plugin: f for f in manager.failures}
    assert set(failures) == {"importer", "raiser", "twice", "uncallable"}
    assert failures["importer"].distribution == "import-fails"
    assert "import failed: ImportError: needs libfoo" in failures["importer"].message
    assert failures["raiser"].distribution == "hook-raises"
    assert "register_priors raised RuntimeError: no GPU here" in failures["raiser"].message
    assert failures["twice"].distribution == "name-twice"
    assert "'gaussian', which plugin 'builtin_priors' already registers" in (
        failures["twice"].message
    )
    assert failures["uncallable"].distribution == "not-callable"
    assert "callable factory" in failures["uncallable"].message
    # the others keep working: built-ins, and the good third-party prior
    assert {"gaussian", "mixture", "shifted", "liar"} <= set(manager.names("prior"))
    assert manager.get("prior", "gaussian").plugin == "builtin_priors"
    rows = np.random.default_rng(0).normal(size=(40, 3))
    for prior in ("gaussian", "shifted"):
        detector = AAEDetector(prior=prior, latent_dim=2, epochs=1, random_state=0).fit(rows)
        assert np.isfinite(detector.score_samples(rows)).all()


def test_a_factory_returning_the_wrong_type_is_named_at_fit(broken_plugins):
    rows = np.zeros((10, 3))
    with pytest.raises(
        PluginError,
        match=r"prior 'liar' \(plugin 'liar' from wrong-type 0.3\) returned a str, not an "
        r"aae_anomaly Prior",
    ):
        AAEDetector(prior="liar", epochs=1).fit(rows)
    with pytest.raises(
        PluginError,
        match=r"prior 'crasher' \(plugin 'liar' from wrong-type 0.3\) failed while building: "
        r"ZeroDivisionError",
    ):
        AAEDetector(prior="crasher", epochs=1).fit(rows)


def test_a_model_file_whose_plugin_now_misbehaves_is_a_model_file_error(broken_plugins, tmp_path):
    rows = np.random.default_rng(0).normal(size=(40, 3))
    path = tmp_path / "m.aae"
    AAEDetector(prior="shifted", latent_dim=2, epochs=1, random_state=0).fit(rows).save(path)
    (broken_plugins / "good_mod.py").write_text(
        GOOD.replace('register("shifted", Shifted)', 'register("shifted", lambda d: None)')
    )
    sys.modules.pop("good_mod", None)
    importlib.invalidate_caches()
    from aae_anomaly.plugin_system.manager import reset_plugin_manager

    reset_plugin_manager()
    with pytest.raises(ModelFileError, match="the prior 'shifted' cannot be rebuilt: .*good-one"):
        load(path)


def _plugins_command(folder, *args):
    # AAE_ANOMALY_LOAD_PLUGINS or _TRACE_PLUGINS set in the shell would change the output
    env = {name: value for name, value in os.environ.items() if not name.startswith("AAE_ANOMALY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *sys.path])
    return subprocess.run(
        [sys.executable, "-m", "aae_anomaly", "plugins", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_the_plugins_command_lists_what_loaded_and_notes_what_failed(tmp_path):
    _install(tmp_path)
    result = _plugins_command(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "shifted" in result.stdout and "good-one" in result.stdout
    assert "gaussian" in result.stdout and "aae-anomaly" in result.stdout
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 4
    assert "note: plugin importer (import-fails) failed: import failed: ImportError" in notes[0]
    for plugin, dist in [("raiser", "hook-raises"), ("twice", "name-twice"),
                         ("uncallable", "not-callable")]:  # fmt: skip
        assert any(f"note: plugin {plugin} ({dist}) failed" in note for note in notes)
    document = json.loads(_plugins_command(tmp_path, "--json").stdout)
    assert {f["plugin"] for f in document["failures"]} == {
        "importer", "raiser", "twice", "uncallable",
    }  # fmt: skip
    assert any(p["name"] == "shifted" for p in document["plugins"])
