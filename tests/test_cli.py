"""The aae-anomaly command line, end to end: through click's runner and through the
installed console script in a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_bad_input, run
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

import aae_anomaly
from aae_anomaly import AAEDetector, load_dataset
from aae_anomaly.io.modelfile import METADATA_KEY
from aae_anomaly.plugin_system.manager import get_plugin_manager

FAST = ["--epochs", "3", "--batch-size", "64", "--quiet"]
FEATURES = [f"x{i}" for i in range(5)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Training and test files, and a model fitted on the training file by the CLI."""
    root = tmp_path_factory.mktemp("cli")
    data = load_dataset("synthetic:n=400,n_features=5,anomalies=0.1,seed=3")
    normal = data.X[data.y == 0][:200]
    pd.DataFrame(normal, columns=FEATURES).to_csv(root / "train.csv", index=False)
    test = pd.DataFrame(data.X[200:], columns=FEATURES)
    test["label"] = data.y[200:].astype(int)
    test.to_csv(root / "test.csv", index=False)
    np.save(root / "test.npy", data.X[200:])
    np.savez(root / "labelled.npz", X=data.X, y=data.y)
    result = run("fit", root / "train.csv", "-o", root / "model.aae", *FAST)
    assert result.exit_code == 0, result.output
    return {name: root / name for name in os.listdir(root)} | {"root": root}


def read_csv_scores(text: str) -> pd.DataFrame:
    """Parse with Python's float(), which reads back exactly what repr() wrote."""
    rows = list(csv.reader(io.StringIO(text)))
    return pd.DataFrame([[float(cell) for cell in row] for row in rows[1:]], columns=rows[0])


# -- fit -------------------------------------------------------------------------------------
def test_fit_matches_the_python_estimator_and_keeps_column_names(files):
    loaded = aae_anomaly.load(files["model.aae"])
    X = pd.read_csv(files["train.csv"])
    # the command's defaults are the estimator's, with seed 0
    reference = AAEDetector(epochs=3, batch_size=64, random_state=0).fit(X)
    np.testing.assert_array_equal(loaded.score_samples(X), reference.score_samples(X))
    assert list(loaded.feature_names_in_) == FEATURES


def test_fit_prints_nothing_on_stdout_and_a_summary_on_stderr(files):
    result = run("fit", files["train.csv"], "-o", files["root"] / "m.aae", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "saved" in result.stderr and "1 epochs" in result.stderr
    quiet = run("fit", files["train.csv"], "-o", files["root"] / "m.aae", "--epochs", "1", "-q")
    assert (quiet.stdout, quiet.stderr) == ("", "")


def test_fit_on_labelled_data_trains_on_normal_rows_only(files):
    result = run("fit", files["labelled.npz"], "-o", files["root"] / "npz.aae", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "training on its 360 normal rows (leaving out 40 labelled anomalies)" in result.stderr
    result = run(
        "fit", files["test.csv"], "--label-column", "label", "-o", files["root"] / "l.aae", *FAST
    )
    assert result.exit_code == 0, result.output
    assert aae_anomaly.load(files["root"] / "l.aae").n_features_in_ == 5


def test_fit_from_a_dataset_spec_with_plugin_options(files):
    model = files["root"] / "mixture.aae"
    result = run(
        "fit", "synthetic:n=150,n_features=4", "-o", model, "--prior", "mixture",
        "--prior-option", "n_components=3", "--encoder-option", "hidden=[16, 8]",
        "--latent-dim", "2", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(run("info", model, "--json").stdout)
    assert document["prior"]["options"]["n_components"] == 3
    assert document["encoder"]["options"]["hidden"] == [16, 8]
    assert document["params"]["latent_dim"] == 2


def test_fit_on_images_shares_one_scale_unless_told_otherwise(tmp_path):
    images = np.random.default_rng(0).random((60, 1, 4, 4)) * np.linspace(0.1, 1, 16).reshape(4, 4)
    np.save(tmp_path / "images.npy", images)
    for scaling, distinct in (("auto", 1), ("per_feature", 16)):
        model = tmp_path / f"{scaling}.aae"
        result = run("fit", tmp_path / "images.npy", "-o", model, "--scaling", scaling, *FAST)
        assert result.exit_code == 0, result.output
        loaded = aae_anomaly.load(model)
        assert loaded.scaling == scaling and loaded.input_shape_ == (1, 4, 4)
        assert len(set(loaded.module_.scale.tolist())) == distinct
        shown = {"auto": "scaling per_sample (auto)", "per_feature": "scaling per_feature"}
        assert shown[scaling] in run("info", model).stdout
    assert_bad_input(
        run("fit", tmp_path / "images.npy", "-o", tmp_path / "x.aae", "--scaling", "global"),
        "'global' is not one of 'auto', 'per_feature', 'shared', 'per_sample'",
    )


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_file_settings_lose_to_options_given_on_the_command_line(files, suffix):
    config = files["root"] / f"settings{suffix}"
    settings = {
        "prior": "mixture",
        "prior_params": {"n_components": 3, "radius": 3.0},
        "latent_dim": 2,
        "epochs": 2,
        "contamination": 0.1,
    }
    if suffix == ".json":
        config.write_text(json.dumps(settings))
    else:
        config.write_text(
            'prior = "mixture"\nlatent_dim = 2\nepochs = 2\ncontamination = 0.1\n'
            "[prior_params]\nn_components = 3\nradius = 3.0\n"
        )
    model = files["root"] / f"config{suffix}.aae"
    result = run(
        "fit", files["train.csv"], "-o", model, "--config", config,
        "--epochs", "1", "--prior-option", "n_components=4", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(run("info", model, "--json").stdout)
    assert document["params"]["epochs"] == 1  # given on the command line
    assert document["params"]["latent_dim"] == 2  # from the file
    assert document["params"]["contamination"] == 0.1  # from the file
    assert document["params"]["batch_size"] == 128  # the default
    assert document["prior"]["options"]["n_components"] == 4  # merged key by key
    assert document["prior"]["options"]["radius"] == 3.0


# -- score -----------------------------------------------------------------------------------
def test_score_writes_csv_to_stdout_matching_the_model(files):
    result = run("score", files["model.aae"], files["test.csv"], "--label-column", "label")
    assert result.exit_code == 0, result.output
    table = read_csv_scores(result.stdout)
    columns = ["score", "reconstruction", "discriminator", "density", "neighbors", "is_anomaly"]
    # the row key first: each row's number in DATA, to join the scores back on
    assert list(table.columns) == ["row", *columns]
    np.testing.assert_array_equal(table["row"], np.arange(len(table)))
    model = aae_anomaly.load(files["model.aae"])
    X = pd.read_csv(files["test.csv"]).drop(columns="label")
    assert len(table) == len(X) == 200
    np.testing.assert_array_equal(table["score"], -model.score_samples(X))
    np.testing.assert_array_equal(table["is_anomaly"], (model.predict(X) == -1).astype(int))
    components = model.score_components(X)
    np.testing.assert_array_equal(table["density"], components["density"])


def test_score_output_formats_hold_the_same_table(files):
    root = files["root"]
    for name in ("scores.csv", "scores.npy", "scores.parquet"):
        result = run("score", files["model.aae"], files["test.npy"], "-o", root / name)
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
    from_csv = read_csv_scores((root / "scores.csv").read_text())
    from_npy = np.load(root / "scores.npy")
    from_parquet = pd.read_parquet(root / "scores.parquet")
    assert from_npy.shape == (200, 6) and from_npy.dtype == np.float64
    # an .npy file holds the scores alone; the tables start with the row key
    np.testing.assert_array_equal(from_csv.drop(columns="row").to_numpy(dtype=float), from_npy)
    np.testing.assert_array_equal(
        from_parquet.drop(columns="row").to_numpy(dtype=float), from_npy
    )
    assert list(from_parquet.columns) == list(from_csv.columns)
    assert not [f for f in os.listdir(root) if f.endswith(".tmp")]


def test_parquet_input_with_label_column(files):
    pytest.importorskip("pyarrow")
    path = files["root"] / "test.parquet"
    pd.read_csv(files["test.csv"]).to_parquet(path)
    result = run("evaluate", files["model.aae"], path, "--label-column", "label", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_rows"] == 200


def test_parquet_without_pyarrow_names_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    result = run("score", files["model.aae"], files["test.npy"], "-o", files["root"] / "s.parquet")
    assert_bad_input(result, "pip install 'aae-anomaly[parquet]'")


# -- evaluate --------------------------------------------------------------------------------
def test_evaluate_reports_metrics_as_text_and_json(files):
    text = run("evaluate", files["model.aae"], files["test.csv"], "--label-column", "label")
    assert text.exit_code == 0, text.output
    for label in ("ROC-AUC", "avg precision", "precision", "recall", "F1"):
        assert label in text.stdout
    result = run(
        "evaluate", files["model.aae"], files["test.csv"], "--label-column", "label", "--json"
    )
    report = json.loads(result.stdout)
    frame = pd.read_csv(files["test.csv"])
    model = aae_anomaly.load(files["model.aae"])
    scores = -model.score_samples(frame[FEATURES])
    assert report["roc_auc"] == pytest.approx(roc_auc_score(frame["label"], scores))
    flagged = model.predict(frame[FEATURES]) == -1
    assert report["n_flagged"] == flagged.sum()
    assert report["true_positives"] == (flagged & (frame["label"] == 1)).sum()
    assert set(report["component_roc_auc"]) == {
        "reconstruction", "discriminator", "density", "neighbors",
    }


def test_evaluate_with_a_labelled_dataset_plugin(files):
    result = run("evaluate", files["model.aae"], "synthetic:n=300,n_features=5,seed=3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_anomalies"] == 15


# -- info, plugins ---------------------------------------------------------------------------
def test_info_shows_what_the_file_holds(files):
    result = run("info", files["model.aae"])
    assert result.exit_code == 0, result.output
    for fragment in ("version 6", "gaussian (std=1.0) from aae-anomaly", "x0, x1, x2, x3, x4",
                     "the 2 nearest averaged (n_neighbors auto)",
                     "inputs: the 2 nearest in the inputs among the 4 nearest",
                     "3 epochs", "final losses   reconstruction"):  # fmt: skip
        assert fragment in result.stdout
    document = json.loads(run("info", files["model.aae"], "--json").stdout)
    assert document["feature_names_in"] == FEATURES
    assert document["input_shape"] == [5]
    assert len(document["history"]["reconstruction"]) == 3
    assert {t["dtype"] for t in document["tensors"]} == {"F32"}


def test_plugins_lists_every_registration_with_its_source():
    result = run("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["plugins"]
    listed = {(row["kind"], row["name"]) for row in rows}
    manager = get_plugin_manager()
    for kind in ("prior", "encoder", "dataset"):
        assert {(kind, name) for name in manager.names(kind)} <= listed
    gaussian = next(row for row in rows if row["name"] == "gaussian")
    assert gaussian["distribution"] == "aae-anomaly"
    assert gaussian["version"] == aae_anomaly.__version__
    text = run("plugins").stdout
    assert text.splitlines()[0].split() == ["KIND", "NAME", "PLUGIN", "DISTRIBUTION", "VERSION"]
    assert "swiss_roll" in text


def test_plugins_reports_failed_plugins_on_stderr():
    class BrokenPlugin:
        @staticmethod
        @aae_anomaly.hookimpl
        def register_priors(register):
            raise RuntimeError("cannot find its tables")

    manager = get_plugin_manager()
    manager.register(BrokenPlugin(), "broken_plugin", "aae-broken", "0.1")
    try:
        result = run("plugins")
        failures = json.loads(run("plugins", "--json").stdout)["failures"]
    finally:
        manager.unregister("broken_plugin")
    assert result.exit_code == 0
    assert "broken_plugin (aae-broken) failed" in result.stderr
    assert "cannot find its tables" in result.stderr
    assert failures[0]["plugin"] == "broken_plugin"


@pytest.mark.parametrize("command", ["fit", "score", "evaluate", "info", "plugins", "demo"])
def test_every_command_help_has_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    if command in ("fit", "score", "evaluate", "demo"):
        assert "[default:" in result.stdout


# -- errors ----------------------------------------------------------------------------------
def write_model_copy(source: Path, target: Path, change) -> Path:
    tensors = load_file(source)
    with safe_open(str(source), framework="pt") as handle:
        document = json.loads(handle.metadata()[METADATA_KEY])
    change(document)
    save_file(tensors, str(target), metadata={METADATA_KEY: json.dumps(document)})
    return target


def test_fit_errors(files, tmp_path):
    out = tmp_path / "m.aae"
    assert_bad_input(run("fit", tmp_path / "absent.csv", "-o", out), "no such file")
    assert_bad_input(run("fit", "data/absent", "-o", out), "no such file: data/absent")
    assert_bad_input(run("fit", "nosuchset:n=3", "-o", out), "unknown dataset 'nosuchset'")
    assert_bad_input(
        run("fit", files["train.csv"], "-o", out, "--prior", "vonmises", *FAST),
        "unknown prior 'vonmises'",
    )
    assert_bad_input(
        run("fit", files["train.csv"], "-o", out, "--prior-option", "n_components"),
        "--prior-option 'n_components' is not of the form KEY=VALUE",
    )
    assert_bad_input(
        run("fit", files["train.csv"], "-o", out, "--epochs", "0"), "epochs must be a positive"
    )
    assert_bad_input(run("fit", files["train.csv"], "-o", tmp_path / "no" / "m.aae", *FAST),
                     "no such directory")  # fmt: skip
    (tmp_path / "notes.txt").write_text("1,2\n")
    assert_bad_input(run("fit", tmp_path / "notes.txt", "-o", out), "unsupported file format .txt")
    assert not out.exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fit", "x.csv", "-o", "m.aae", "--epochs", "abc"], "'abc' is not a valid integer"),
        (["fit", "x.csv", "-o", "m.aae", "--no-such-option"], "--no-such-option"),
        (["fit", "x.csv"], "Missing option '-o'"),
        (["fitt"], "No such command 'fitt'"),
    ],
)
def test_usage_errors_are_one_line_naming_the_problem(args, fragment):
    assert_bad_input(run(*args), fragment, "--help')")


def test_fit_rejects_a_text_cell_in_a_column_of_numbers(tmp_path):
    rows = "".join(f"{i % 7},{i * 0.5}\n" for i in range(30))
    (tmp_path / "bad.csv").write_text("a,b\n" + rows + "3,oops\n")
    assert_bad_input(
        run("fit", tmp_path / "bad.csv", "-o", tmp_path / "m.aae"),
        "column 'b': 'oops' in row 30 is not a number",
    )
    assert not (tmp_path / "m.aae").exists()


def test_fit_rejects_unknown_and_malformed_config(files, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text("epochs = 2\nlearning_rate = 0.1\nseed = 3\n")
    assert_bad_input(
        run("fit", files["train.csv"], "-o", tmp_path / "m.aae", "--config", config),
        "unknown settings learning_rate, seed",
    )
    config.write_text("epochs = \n")
    assert_bad_input(
        run("fit", files["train.csv"], "-o", tmp_path / "m.aae", "--config", config),
        "is not valid TOML",
    )
    assert_bad_input(
        run("fit", files["train.csv"], "-o", tmp_path / "m.aae", "--config", tmp_path / "x.json"),
        "no such config file",
    )


def test_score_rejects_data_that_does_not_fit_the_model(files, tmp_path):
    model = files["model.aae"]
    (tmp_path / "narrow.csv").write_text("x0,x1\n1,2\n")
    missing = "X has no column 'x2' (and 2 more), which the model was fitted on"
    assert_bad_input(run("score", model, tmp_path / "narrow.csv"), missing)
    (tmp_path / "renamed.csv").write_text("x0,x1,x2,x3,y4\n1,2,3,4,5\n")
    assert_bad_input(run("score", model, tmp_path / "renamed.csv"),
                     "X has no column 'x4', which the model was fitted on")  # fmt: skip
    (tmp_path / "text.csv").write_text("x0,x1,x2,x3,x4\n1,2,3,4,five\n")
    assert_bad_input(run("score", model, tmp_path / "text.csv"),
                     "column 'x4': 'five' in row 0 is not a number")  # fmt: skip
    assert_bad_input(run("score", model, "synthetic:n=20"), "X has 10 features")
    assert_bad_input(run("score", model, files["test.npy"], "-o", tmp_path / "s.xlsx"),
                     "unsupported output format .xlsx")  # fmt: skip
    assert_bad_input(run("score", model, files["test.npy"], "--label-column", "label"),
                     "--label-column applies to .csv and .parquet")  # fmt: skip
    assert_bad_input(run("evaluate", model, files["test.npy"]), "has no labels")


def test_evaluate_checks_labels_before_scoring(files, monkeypatch):
    from aae_anomaly.cli import detect

    def never(*args):
        raise AssertionError("scored before the labels were checked")

    monkeypatch.setattr(detect, "score_table", never)
    assert_bad_input(run("evaluate", files["model.aae"], files["test.npy"]), "has no labels")


@pytest.mark.parametrize("command", ["score", "info"])
def test_bad_model_files_are_one_line_errors(files, tmp_path, command):
    def args(model):
        return (command, model, files["test.npy"]) if command == "score" else (command, model)

    content = files["model.aae"].read_bytes()
    (tmp_path / "random.aae").write_bytes(os.urandom(300))
    (tmp_path / "truncated.aae").write_bytes(content[: len(content) // 2])
    (tmp_path / "model.json").write_text('{"format": "aae-anomaly-model"}')
    for name in ("random.aae", "truncated.aae", "model.json"):
        assert_bad_input(run(*args(tmp_path / name)), name, "is not an aae-anomaly model file")
    assert_bad_input(run(*args(tmp_path / "absent.aae")), "no such model file")
    future = write_model_copy(
        files["model.aae"], tmp_path / "future.aae", lambda d: d.update(format_version=7)
    )
    assert_bad_input(run(*args(future)), "format version 7")


def test_model_needing_a_missing_plugin_names_it(files, tmp_path):
    def foreign(document):
        document["prior"].update(name="vonmises", distribution="aae-circular", version="2.1")

    model = write_model_copy(files["model.aae"], tmp_path / "vonmises.aae", foreign)
    assert_bad_input(
        run("score", model, files["test.npy"]),
        "needs the prior plugin 'vonmises' (from aae-circular 2.1), which is not installed",
    )
    # the file can still be inspected
    info = run("info", model)
    assert info.exit_code == 0 and "vonmises" in info.stdout


def test_a_bug_exits_1_with_its_traceback(files, monkeypatch):
    def broken(*args):
        raise KeyError("bug")

    monkeypatch.setattr("aae_anomaly.cli.detect.score_table", broken)
    result = run("score", files["model.aae"], files["test.npy"])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)


# -- the installed console script ------------------------------------------------------------
SCRIPT = Path(sys.executable).parent / "aae-anomaly"


def script(*args, cwd) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed at {SCRIPT}")
    return subprocess.run(
        [str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_console_script_fit_score_evaluate_info_plugins(files, tmp_path):
    fitted = script("fit", files["train.csv"], "-o", "model.aae", *FAST, cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    assert (fitted.stdout, fitted.stderr) == ("", "")
    scored = script("score", "model.aae", files["test.npy"], cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert len(read_csv_scores(scored.stdout)) == 200
    evaluated = script("evaluate", "model.aae", files["labelled.npz"], "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n_rows"] == 400
    shown = script("info", "model.aae", cwd=tmp_path)
    assert shown.returncode == 0 and "x0, x1, x2, x3, x4" in shown.stdout
    listed = script("plugins", cwd=tmp_path)
    assert listed.returncode == 0 and "synthetic" in listed.stdout


def test_console_script_errors_are_one_line_with_status_2(files, tmp_path):
    for args in (("score", files["model.aae"], "absent.csv"), ("info", "absent.aae")):
        result = script(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
