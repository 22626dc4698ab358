"""``info``: without a model, the environment; with one, what its file holds, including the
table columns it was fitted on."""

from __future__ import annotations

import json
from importlib import metadata
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from aae_anomaly import AAEDetector
from aae_anomaly.cli import main, reports

FAST = dict(epochs=1, batch_size=32, random_state=0)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def lines_by_label(output: str) -> dict[str, str]:
    """``info``'s text as {label: value}; labels are the first 15 characters."""
    return {line[:15].strip(): line[15:] for line in output.splitlines()}


def test_environment_names_versions_build_device_and_plugins():
    result = run("info")
    assert result.exit_code == 0, result.output
    shown = lines_by_label(result.output)
    assert shown["aae-anomaly"] == metadata.version("aae-anomaly")
    for name in ("torch", "numpy", "scikit-learn", "pandas", "pluggy", "click"):
        assert f"{name} {metadata.version(name)}" in shown["packages"]
    assert f"matplotlib {metadata.version('matplotlib')}" in shown["optional"]
    assert f"pyarrow {metadata.version('pyarrow')}" in shown["optional"]
    build = "CPU only" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    assert shown["torch build"].startswith(f"{torch.__version__}, {build}")
    assert f"{torch.get_num_threads()} threads" in shown["torch build"]
    if not torch.cuda.is_available():
        assert shown["cuda devices"] == "none" and shown["device auto"] == "cpu"
    # the plugins, as `plugins` lists them
    listed = json.loads(run("plugins", "--json").output)["plugins"]
    for kind in ("prior", "encoder", "dataset"):
        names = sorted(p["name"] for p in listed if p["kind"] == kind)
        assert shown[f"{kind}s"] == f"{len(names)}: {', '.join(names)}"


def test_environment_as_json():
    result = run("info", "--json")
    assert result.exit_code == 0, result.output
    environment = json.loads(result.output)
    assert environment["versions"]["numpy"] == np.__version__
    assert environment["torch"]["version"] == torch.__version__
    assert environment["torch"]["cuda"] == torch.version.cuda
    assert environment["auto_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert len(environment["cuda_devices"]) == (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    assert "gaussian" in environment["plugins"]["prior"]
    assert set(environment["optional"]) >= {"matplotlib", "pyarrow"}


def test_environment_with_cuda_devices_and_a_missing_extra(monkeypatch):
    # a CUDA machine as torch would describe it, without needing one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: SimpleNamespace(name=f"Test GPU {i}", total_memory=(80 + i) * 2**30),
    )
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    real_version = metadata.version

    def version(name):
        if name == "pyarrow":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(reports.metadata, "version", version)
    shown = lines_by_label(run("info").output)
    assert shown["cuda devices"] == "cuda:0 Test GPU 0 (80.0 GiB); cuda:1 Test GPU 1 (81.0 GiB)"
    assert shown["device auto"] == "cuda"
    assert "CUDA 12.4, cuDNN 90100" in shown["torch build"]
    assert "pyarrow not installed" in shown["optional"]
    environment = json.loads(run("info", "--json").output)
    assert environment["optional"]["pyarrow"] is None
    assert environment["cuda_devices"][1] == {
        "index": 1, "name": "Test GPU 1", "memory_bytes": 81 * 2**30
    }


# -- info MODEL -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 120
    table = pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.integers(18, 90, n).astype(float),
            "city": rng.choice(["Oslo", "Lima", "Pune"], n),
            "member": rng.choice([True, False], n),
        }
    )
    path = tmp_path_factory.mktemp("info") / "table.aae"
    AAEDetector(id_columns=["id"], **FAST).fit(table).save(path)
    return path


def test_info_of_a_table_model_shows_its_columns(table_model):
    result = run("info", table_model)
    assert result.exit_code == 0, result.output
    shown = lines_by_label(result.output)
    assert shown["columns"] == (
        "age (numeric), city (categorical, 3 categories + other), member (boolean); "
        "ignored: id; missing cells refused"
    )
    assert shown["model file"] == str(table_model)
    document = json.loads(run("info", table_model, "--json").output)
    columns = document["columns"]
    assert [(c["name"], c["kind"]) for c in columns["columns"]] == [
        ("age", "numeric"), ("city", "categorical"), ("member", "boolean")
    ]
    assert columns["ignored"] == ["id"]
    assert sorted(columns["columns"][1]["categories"]) == ["Lima", "Oslo", "Pune"]


def test_info_of_many_columns_counts_them():
    schema = {
        "missing": "impute",
        "named": True,
        "ignored": [],
        "columns": [{"name": f"x{i}", "kind": "numeric", "fill": 0.0, "categories": []}
                    for i in range(40)]
        + [{"name": "shop", "kind": "categorical", "fill": "a", "categories": ["a"]}],
    }
    assert reports.format_columns(schema) == (
        "40 numeric, 1 categorical: shop (categorical, 1 category + other); missing cells imputed"
    )


def test_info_of_an_array_model_has_no_columns_line(tmp_path):
    path = tmp_path / "array.aae"
    AAEDetector(**FAST).fit(np.random.default_rng(0).normal(size=(60, 4))).save(path)
    result = run("info", path)
    assert result.exit_code == 0, result.output
    shown = lines_by_label(result.output)
    assert "columns" not in shown and shown["features"] == "(unnamed)"
    assert "columns" not in json.loads(run("info", path, "--json").output)


def test_info_of_a_missing_model_is_one_error_line(tmp_path):
    result = run("info", tmp_path / "absent.aae")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "no such model file" in lines[0]
