"""The environment variables of the plugin manager: ``AAE_ANOMALY_LOAD_PLUGINS`` chooses
which distributions' plugins load, ``AAE_ANOMALY_TRACE_PLUGINS`` traces every hook call."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest
from test_plugins import _plugin, install_fake_distribution

from aae_anomaly.plugin_system.manager import (
    LOAD_PLUGINS_VARIABLE,
    TRACE_PLUGINS_VARIABLE,
    PluginManager,
    get_plugin_manager,
)

BUILTIN_PRIORS = ["gaussian", "mixture", "swiss_roll", "uniform"]


def _prior_module(prior_name):
    return textwrap.dedent(
        f"""
        from aae_anomaly import hookimpl
        from aae_anomaly_builtins.priors import GaussianPrior

        @hookimpl
        def register_priors(register):
            register({prior_name!r}, GaussianPrior)
        """
    )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    # a variable set in the shell running the tests must not change what they see
    monkeypatch.delenv(LOAD_PLUGINS_VARIABLE, raising=False)
    monkeypatch.delenv(TRACE_PLUGINS_VARIABLE, raising=False)


@pytest.fixture
def two_distributions(tmp_path, monkeypatch, fresh_plugins):
    """acme-priors registers the prior 'acme', zen-priors the prior 'zen'."""
    for dist, module in [("acme-priors", "acme_priors"), ("zen-priors", "zen_priors")]:
        folder = tmp_path / dist
        folder.mkdir()
        prior = dist.split("-")[0]
        install_fake_distribution(
            folder, monkeypatch, dist, "1.0", prior, module, _prior_module(prior)
        )
    return tmp_path


def _install_distribution_without_plugins(folder, monkeypatch, dist):
    dist_info = folder / f"{dist.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(folder))


# -- AAE_ANOMALY_LOAD_PLUGINS ------------------------------------------------------------------
def test_unset_every_installed_plugin_loads(two_distributions):
    manager = get_plugin_manager()
    assert manager.names("prior") == sorted(["acme", "zen", *BUILTIN_PRIORS])
    assert manager.failures == []


def test_only_the_named_distributions_load_and_the_builtins(two_distributions, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_VARIABLE, "acme-priors")
    manager = get_plugin_manager()
    assert manager.names("prior") == sorted(["acme", *BUILTIN_PRIORS])
    assert manager.names("encoder") == ["conv", "mlp"]
    assert manager.get("prior", "acme").distribution == "acme-priors"
    assert manager.failures == []


@pytest.mark.parametrize(
    "value", ["Acme_Priors", "acme.priors", " ACME-priors , ", "x-y,acme__priors"]
)
def test_names_match_the_way_pip_matches_them(two_distributions, monkeypatch, value):
    monkeypatch.setenv(LOAD_PLUGINS_VARIABLE, value)
    names = get_plugin_manager().names("prior")
    assert "acme" in names and "zen" not in names


@pytest.mark.parametrize("value", ["", " ", ","])
def test_an_empty_list_loads_only_the_builtins(two_distributions, monkeypatch, value):
    monkeypatch.setenv(LOAD_PLUGINS_VARIABLE, value)
    manager = get_plugin_manager()
    assert manager.names("prior") == BUILTIN_PRIORS
    assert {"csv", "synthetic"} <= set(manager.names("dataset"))
    assert manager.failures == []


def test_naming_the_builtin_distribution_changes_nothing(two_distributions, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_VARIABLE, "aae_anomaly")
    manager = get_plugin_manager()
    assert manager.names("prior") == BUILTIN_PRIORS
    assert manager.failures == []


def test_a_named_distribution_that_is_not_installed_is_a_failure(two_distributions, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_VARIABLE, "acme-priors,ghost-plugin")
    manager = get_plugin_manager()
    assert "acme" in manager.names("prior")  # the others named still load
    (failure,) = manager.failures
    assert (failure.plugin, failure.distribution) == ("ghost-plugin", "ghost-plugin")
    assert failure.message == (
        "AAE_ANOMALY_LOAD_PLUGINS names 'ghost-plugin', which is not installed"
    )


def test_a_named_distribution_without_plugins_is_a_failure(tmp_path, monkeypatch, fresh_plugins):
    _install_distribution_without_plugins(tmp_path, monkeypatch, "plain-library")
    monkeypatch.setenv(LOAD_PLUGINS_VARIABLE, "Plain_Library")
    (failure,) = get_plugin_manager().failures
    assert failure.distribution == "Plain_Library"  # as the user wrote it
    assert "which has no plugins in the 'aae_anomaly' entry-point group" in failure.message


def _plugins_command(environment, *args):
    """``aae-anomaly plugins ARGS`` in a new process that sees this one's sys.path (and so
    the fake distributions) and, of the plugin variables, only ``environment``."""
    env = {
        name: value for name, value in os.environ.items() if not name.startswith("AAE_ANOMALY_")
    }
    env.update(environment, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "aae_anomaly", "plugins", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_the_plugins_command_notes_a_distribution_that_is_not_installed(two_distributions):
    result = _plugins_command({LOAD_PLUGINS_VARIABLE: "ghost-plugin"})
    assert result.returncode == 0, result.stderr
    assert "gaussian" in result.stdout and "acme" not in result.stdout
    assert "ghost-plugin" in result.stderr and "is not installed" in result.stderr


def test_the_plugins_command_says_when_the_variable_limits_what_loads(two_distributions):
    limited = _plugins_command({LOAD_PLUGINS_VARIABLE: "acme-priors"})
    assert "note: AAE_ANOMALY_LOAD_PLUGINS loads only the built-ins, acme-priors" in (
        limited.stderr.splitlines()
    )
    assert "AAE_ANOMALY_LOAD_PLUGINS" not in _plugins_command({}).stderr


# -- AAE_ANOMALY_TRACE_PLUGINS -----------------------------------------------------------------
# hook, plugin, "distribution version", what it registered or raised, milliseconds
TRACE_LINE = re.compile(
    r"^aae-anomaly trace: (\w+) in plugin '(\w+)' \((.*?)\): (.*) \[(\d+\.\d\d) ms\]$"
)


def _trace_lines(capsys):
    captured = capsys.readouterr()
    assert captured.out == "", "tracing must not write to stdout"
    lines = captured.err.splitlines()
    for line in lines:
        assert TRACE_LINE.match(line), line
    return lines


def test_every_hook_call_is_traced_on_stderr(monkeypatch, capsys, fresh_plugins):
    monkeypatch.setenv(TRACE_PLUGINS_VARIABLE, "1")
    manager = get_plugin_manager()
    manager.names("prior")
    version = manager.get("prior", "gaussian").version
    lines = _trace_lines(capsys)
    ours = [line for line in lines if "'builtin_" in line]
    assert len(ours) == 4  # one per built-in hook implementation
    hook, plugin, origin, outcome, _ = TRACE_LINE.match(ours[0]).groups()
    assert (hook, plugin, origin) == ("register_priors", "builtin_priors", f"aae-anomaly {version}")
    assert outcome == "registered priors gaussian, mixture, swiss_roll, uniform"
    assert any("register_encoders in plugin 'builtin_encoders'" in line for line in ours)
    assert any("registered datasets csv, parquet, npy, npz, sklearn" in line for line in ours)
    assert any("registered dataset_readers csv, parquet, npy" in line for line in ours)
    manager.names("encoder")
    assert capsys.readouterr().err == "", "hooks are called once, not at every lookup"


def _traced_manager(monkeypatch, name, distribution=None, version=None, **hooks):
    monkeypatch.setenv(TRACE_PLUGINS_VARIABLE, "yes")
    manager = PluginManager(load_entry_points=False)
    manager.register(_plugin(name, **hooks), name, distribution, version)
    return manager


def test_a_hook_that_raised_is_traced(monkeypatch, capsys):
    def register_priors(register):
        raise RuntimeError("no GPU here")

    manager = _traced_manager(monkeypatch, "broken", "broken-dist", "2.0",
                              register_priors=register_priors)  # fmt: skip
    assert manager.names("prior") == []
    (line,) = _trace_lines(capsys)
    assert line.startswith(
        "aae-anomaly trace: register_priors in plugin 'broken' (broken-dist 2.0): "
        "raised RuntimeError: no GPU here ["
    )


def test_refused_names_and_a_missing_distribution_are_traced(monkeypatch, capsys):
    def register_priors(register):
        register("copy", lambda latent_dim: None)
        register("copy", lambda latent_dim: None)

    _traced_manager(monkeypatch, "copycat", register_priors=register_priors).names("prior")
    (line,) = _trace_lines(capsys)
    assert "in plugin 'copycat' (no distribution): registered prior copy; " in line
    assert "refused copy (plugin 'copycat' has it)" in line


def test_the_trace_says_how_long_the_hook_took(monkeypatch, capsys):
    def register_encoders(register):
        time.sleep(0.05)

    _traced_manager(monkeypatch, "slow", register_encoders=register_encoders).names("encoder")
    (line,) = _trace_lines(capsys)
    assert "registered nothing" in line
    assert float(TRACE_LINE.match(line).group(5)) >= 45


@pytest.mark.parametrize("value", [None, "", "0"])
def test_nothing_is_traced_unless_asked(monkeypatch, capsys, fresh_plugins, value):
    if value is not None:
        monkeypatch.setenv(TRACE_PLUGINS_VARIABLE, value)
    get_plugin_manager().names("prior")
    assert capsys.readouterr().err == ""


def test_tracing_leaves_the_json_output_alone(two_distributions):
    result = _plugins_command({TRACE_PLUGINS_VARIABLE: "1"}, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert any(p["name"] == "acme" for p in document["plugins"])
    traced = result.stderr.splitlines()
    assert any("register_priors in plugin 'acme' (acme-priors 1.0)" in line for line in traced)
    assert all(line.startswith("aae-anomaly trace: ") for line in traced)
