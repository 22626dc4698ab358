"""Fixtures, and the command-line helpers the tests import (``from conftest import run``)."""

import numpy as np
import pytest
from click.testing import CliRunner

from aae_anomaly import load_dataset
from aae_anomaly.cli import main
from aae_anomaly.plugin_system.manager import reset_plugin_manager


def run(*args):
    """``aae-anomaly ARGS...`` through click's runner; each argument is passed as text."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_bad_input(result, *fragments: str) -> None:
    """Exit status 2, one `Error:` line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.fixture(autouse=True)
def no_plugin_environment(monkeypatch):
    """The plugin environment variables a developer may have exported do not reach the
    tests (the tests that need them set them)."""
    monkeypatch.delenv("AAE_ANOMALY_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("AAE_ANOMALY_TRACE_PLUGINS", raising=False)


@pytest.fixture
def fresh_plugins():
    """A plugin manager rebuilt from the entry points, before and after the test."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(scope="session")
def synthetic_split():
    """Normal training rows, and a test set of normal rows and known anomalies."""
    data = load_dataset("synthetic:n=1500,n_features=10,anomalies=0.1,seed=0")
    normal, anomalous = data.X[data.y == 0], data.X[data.y == 1]
    X_train, X_test_normal = normal[:900], normal[900:]
    X_test = np.vstack([X_test_normal, anomalous])
    y_test = np.r_[np.zeros(len(X_test_normal)), np.ones(len(anomalous))]
    return X_train, X_test, y_test


@pytest.fixture(scope="session")
def small_rows():
    return np.random.default_rng(0).normal(size=(120, 5))
