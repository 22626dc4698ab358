"""Model files of the class-and-style family: saved, loaded in a new process, identical."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import assert_bad_input, run
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import aae_anomaly
from aae_anomaly import AAEClassifier, AAEClustering, ModelFileError, SupervisedAAE
from aae_anomaly.io.modelfile import METADATA_KEY

FAST = {"epochs": 3, "batch_size": 64, "random_state": 0}


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    kind = rng.choice(["food", "tools", "toys"], 300)
    centre = pd.Series(kind).map({"food": 0.0, "tools": 3.0, "toys": 6.0}).to_numpy()
    frame = pd.DataFrame({
        "a": centre + rng.normal(0, 0.5, 300),
        "b": centre + rng.normal(0, 0.5, 300),
        "shop": rng.choice(["north", "south"], 300),
    })
    return frame, kind


def fitted(name, table):
    frame, kind = table
    if name == "SupervisedAAE":
        return SupervisedAAE(**FAST).fit(frame, kind)
    if name == "AAEClassifier":
        partly = kind.astype(object)
        partly[np.arange(len(kind)) % 4 != 0] = -1  # three rows in four unlabelled
        return AAEClassifier(**FAST).fit(frame, partly)
    return AAEClustering(n_clusters=4, **FAST).fit(frame)


def outputs(model, frame) -> dict:
    found = {"transform": model.transform(frame)}
    if hasattr(model, "predict"):
        found["predict"] = np.asarray(model.predict(frame)).astype(str)
    if hasattr(model, "predict_proba"):
        found["predict_proba"] = model.predict_proba(frame)
    if isinstance(model, SupervisedAAE):
        found["sample"] = model.sample(5, classes="toys", random_state=3)
    if isinstance(model, AAEClustering):
        found["labels_"] = model.labels_
    return found


NEW_PROCESS = """
import sys, numpy as np, pandas as pd, aae_anomaly
sys.path.insert(0, {tests!r})
from test_family_files import outputs
model = aae_anomaly.load({model!r})
np.savez({out!r}, **outputs(model, pd.read_parquet({frame!r})))
"""


@pytest.mark.parametrize("name", ["SupervisedAAE", "AAEClassifier", "AAEClustering"])
def test_a_saved_model_loads_in_a_new_process_with_identical_outputs(name, table, tmp_path):
    pytest.importorskip("pyarrow")
    frame, _ = table
    model = fitted(name, table)
    model.save(tmp_path / "m.aae")
    frame.to_parquet(tmp_path / "rows.parquet")
    code = NEW_PROCESS.format(tests=str(__import__("pathlib").Path(__file__).parent),
                              model=str(tmp_path / "m.aae"), out=str(tmp_path / "o.npz"),
                              frame=str(tmp_path / "rows.parquet"))  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    there = np.load(tmp_path / "o.npz")
    here = outputs(model, frame)
    assert set(there.files) == set(here)
    for key, value in here.items():
        np.testing.assert_array_equal(there[key], value, err_msg=key)
    loaded = aae_anomaly.load(tmp_path / "m.aae")
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    assert loaded.schema_.to_dict() == model.schema_.to_dict()


def test_a_loaded_classifier_keeps_its_classes(table, tmp_path):
    model = fitted("AAEClassifier", table)
    model.save(tmp_path / "m.aae")
    assert aae_anomaly.load(tmp_path / "m.aae").classes_.tolist() == ["food", "tools", "toys"]


def rewritten(source, target, change):
    tensors = load_file(source)
    with safe_open(source, framework="pt") as handle:
        document = json.loads(handle.metadata()[METADATA_KEY])
    change(document, tensors)
    save_file(tensors, str(target), metadata={METADATA_KEY: json.dumps(document)})
    return target


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d, t: d.update(estimator="KMeans"), "field estimator"),
        (lambda d, t: d.update(classes=["toys", "food", "tools"]), "field 'classes'"),
        (lambda d, t: d.update(n_categories=0), "field 'n_categories'"),
        (lambda d, t: d["params"].update(style_dim=3), "tensor encoder"),
        (lambda d, t: t.pop(next(k for k in t if k.startswith("style_discriminator"))),
         "do not match their checksum"),
    ],
    ids=["estimator", "unsorted-classes", "categories", "style-dim", "missing-tensor"],
)
def test_a_damaged_family_file_is_refused_with_the_field_named(table, tmp_path, change, problem):
    model = fitted("SupervisedAAE", table)
    model.save(tmp_path / "m.aae")
    bad = rewritten(tmp_path / "m.aae", tmp_path / "bad.aae", change)
    with pytest.raises(ModelFileError, match=problem):
        aae_anomaly.load(bad)


def test_info_describes_a_family_file(table, tmp_path):
    fitted("AAEClustering", table).save(tmp_path / "m.aae")
    result = run("info", tmp_path / "m.aae")
    assert result.exit_code == 0, result.output
    assert "AAEClustering" in result.output and "4 clusters" in result.output
    assert_bad_input(run("score", tmp_path / "m.aae", "synthetic:n=20"), "AAEClustering")


def test_family_commands_save_a_model_and_apply_it_without_refitting(table, tmp_path):
    frame, kind = table
    frame.assign(kind=np.where(np.arange(len(kind)) % 3 == 0, kind, "")).to_csv(
        tmp_path / "rows.csv", index=False
    )
    rows, model = tmp_path / "rows.csv", tmp_path / "m.aae"
    fitted_run = run("classify", rows, "--classes-column", "kind", "--epochs", 3, "--save",
                     model, "-o", tmp_path / "a.csv")  # fmt: skip
    assert fitted_run.exit_code == 0, fitted_run.output
    assert f"saved {model}" in fitted_run.stderr
    applied = run("classify", rows, "--drop-column", "kind", "--model", model,
                  "-o", tmp_path / "b.csv")  # fmt: skip
    assert applied.exit_code == 0, applied.output
    assert "applied" in applied.stderr and "fitted" not in applied.stderr
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert_bad_input(run("cluster", rows, "--model", model), "of type AAEClassifier",
                     "one of type AAEClustering")  # fmt: skip
    assert_bad_input(run("score", model, rows), "not an anomaly detector")
    assert_bad_input(run("classify", rows, "--model", model, "--save", tmp_path / "n.aae"),
                     "give one")  # fmt: skip


def test_generate_draws_from_a_saved_model_without_data(table, tmp_path):
    frame, kind = table
    frame.assign(kind=kind).to_csv(tmp_path / "rows.csv", index=False)
    model = tmp_path / "g.aae"
    result = run("generate", tmp_path / "rows.csv", "--classes-column", "kind", "--epochs", 2,
                 "--save", model, "-o", tmp_path / "first.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run("generate", "--model", model, "--class", "toys", "-n", 4, "-o",
                 tmp_path / "toys.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    toys = pd.read_csv(tmp_path / "toys.csv")
    assert len(toys) == 4 and set(toys["class"]) == {"toys"}
    assert_bad_input(run("generate", "--model", model, "--class", "cars"), "--class cars")
    assert_bad_input(run("generate", "-o", tmp_path / "x.csv"), "give DATA")


def test_dask_scoring_refuses_a_family_file(table, tmp_path):
    dask_dataframe = pytest.importorskip("dask.dataframe")
    from aae_anomaly.dask import score_partitions

    frame, _ = table
    fitted("AAEClustering", table).save(tmp_path / "m.aae")
    with pytest.raises(ValueError, match="not an anomaly detector"):
        score_partitions(tmp_path / "m.aae", dask_dataframe.from_pandas(frame, npartitions=2))
