"""Tables as users export them (ids, timestamps, text categories, booleans, empty cells,
other delimiters), on the command line and in Python: what goes in, what comes out."""

import io
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import assert_bad_input, run

import aae_anomaly
from aae_anomaly import AAEDetector, RowKeyWarning
from aae_anomaly.io.modelfile import METADATA_KEY
from aae_anomaly.io.tables import read_csv_table

FAST = {"epochs": 8, "batch_size": 128, "random_state": 0}
FAST_CLI = ["--epochs", 8, "-q"]


def orders(first_id: int, n: int, seed: int) -> pd.DataFrame:
    """A month of orders, as a shop's database exports them: an increasing id, a
    timestamp, a city, an amount that depends on the city, a membership flag."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["Paris", "Lyon", "Nice"], size=n, p=[0.5, 0.3, 0.2])
    amount = pd.Series(city).map({"Paris": 50.0, "Lyon": 35.0, "Nice": 20.0}).to_numpy()
    amount = amount + rng.normal(0, 5, n)
    return pd.DataFrame({
        "order id": np.arange(first_id, first_id + n),
        "created": pd.date_range("2024-01-01", periods=n, freq="17min").astype(str),
        "city": city,
        "amount": amount.round(2),
        "items": np.maximum(1, (amount / 10 + rng.normal(0, 1, n))).round(),
        "member": rng.choice([True, False], n),
    })


def flagged_share(path) -> float:
    return pd.read_csv(path)["is_anomaly"].mean()


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orders")
    january, february = orders(1, 2000, seed=1), orders(2001, 1000, seed=2)
    january.to_csv(folder / "jan.csv", index=False)
    february.to_csv(folder / "feb.csv", index=False)
    return folder


# -- ids ---------------------------------------------------------------------------------------
def test_next_months_ids_are_not_flagged_when_passed_as_ids(months, tmp_path):
    model, scores = tmp_path / "m.aae", tmp_path / "s.csv"
    fit = run("fit", months / "jan.csv", "-o", model, "--id-column", "order id",
              "--id-column", "created", *FAST_CLI)  # fmt: skip
    assert fit.exit_code == 0, fit.output
    assert "Warning" not in fit.output
    result = run("score", model, months / "feb.csv", "-o", scores)
    assert result.exit_code == 0, result.output
    # the threshold flags 1% of normal rows; 1,000 rows estimate a share within 0.9%
    # (3 standard deviations)
    assert flagged_share(scores) <= 0.01 + 3 * np.sqrt(0.01 * 0.99 / 1000)
    table = pd.read_csv(scores)
    assert list(table.columns[:3]) == ["order id", "created", "score"]
    assert table["order id"].tolist() == list(range(2001, 3001))
    assert table["created"][0] == "2024-01-01 00:00:00"


def test_an_id_trained_on_is_warned_about_with_the_option_that_excludes_it(months, tmp_path):
    model, scores = tmp_path / "m.aae", tmp_path / "s.csv"
    fit = run("fit", months / "jan.csv", "-o", model, "--drop-column", "created", *FAST_CLI)
    assert fit.exit_code == 0, fit.output
    assert "column 'order id' holds unique integers in increasing order, like a row key" in (
        fit.stderr
    )
    assert "--id-column 'order id'" in fit.stderr
    # what the warning is for: next month's higher ids look anomalous
    assert run("score", model, months / "feb.csv", "-o", scores).exit_code == 0
    assert flagged_share(scores) > 0.3


def test_the_index_column_that_to_csv_writes_is_warned_about():
    frame = orders(1, 300, seed=0).drop(columns=["order id", "created"])
    reread = pd.read_csv(io.StringIO(frame.to_csv()))
    with pytest.warns(RowKeyWarning, match=r"column 'Unnamed: 0' is unnamed.*id_columns"):
        AAEDetector(epochs=1).fit(reread)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RowKeyWarning)
        AAEDetector(epochs=1, id_columns=["Unnamed: 0"]).fit(reread)


def test_id_columns_in_python_stay_out_of_the_features():
    january = orders(1, 500, seed=1)
    detector = AAEDetector(id_columns=["order id", "created"], **FAST).fit(january)
    assert list(detector.feature_names_in_) == ["city", "amount", "items", "member"]
    assert detector.n_features_in_ == 4
    assert detector.schema_.encoded_names() == [
        "city=Paris", "city=Lyon", "city=Nice", "city=<other>", "amount", "items", "member",
    ]
    # a table scored later may hold the ids or not
    without = january.drop(columns=["order id", "created"])
    np.testing.assert_array_equal(detector.score_samples(january), detector.score_samples(without))


# -- types -------------------------------------------------------------------------------------
def test_timestamps_are_refused_with_a_hint(months, tmp_path):
    assert_bad_input(
        run("fit", months / "jan.csv", "-o", tmp_path / "m.aae", "--id-column", "order id"),
        "column 'created' holds timestamps", "--id-column", "derive numbers",
    )
    assert not (tmp_path / "m.aae").exists()
    frame = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=20), "x": np.arange(20.0)})
    with pytest.raises(ValueError, match="column 'when' holds timestamps"):
        AAEDetector(epochs=1).fit(frame)


def test_unseen_categories_share_one_bucket():
    january = orders(1, 500, seed=1).drop(columns=["order id", "created"])
    detector = AAEDetector(**FAST).fit(january)
    rows = january.iloc[:3].copy()
    berlin, rome = rows.assign(city="Berlin"), rows.assign(city="Rome")
    assert np.isfinite(detector.score_samples(berlin)).all()
    np.testing.assert_array_equal(detector.score_samples(berlin), detector.score_samples(rome))
    assert detector.schema_.columns[0].categories == ["Paris", "Lyon", "Nice"]


def test_categorical_dtype_text_and_booleans_as_text_are_the_same_table():
    table = orders(1, 400, seed=3).drop(columns=["order id", "created"])
    as_category = table.assign(city=table["city"].astype("category"))
    as_text = table.assign(member=table["member"].map({True: "true", False: "false"}))
    scores = [AAEDetector(**FAST).fit(t).score_samples(t) for t in (table, as_category, as_text)]
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores[0], scores[2])


def test_booleans_read_the_same_from_csv_and_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    table = orders(1, 300, seed=4).drop(columns=["order id", "created"])
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet", index=False)
    model = tmp_path / "m.aae"
    assert run("fit", tmp_path / "t.csv", "-o", model, *FAST_CLI).exit_code == 0
    for name in ("t.csv", "t.parquet"):
        result = run("score", model, tmp_path / name, "-o", tmp_path / f"{name}.csv")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "t.csv.csv").read_text() == (tmp_path / "t.parquet.csv").read_text()


@pytest.mark.parametrize("cell", ["", "nan", "NA", "NULL"], ids=["empty", "nan", "NA", "NULL"])
def test_every_kind_of_missing_cell_gets_one_message(tmp_path, cell):
    rows = [f"{i},{i % 3},{'yes' if i % 2 else 'no'}" for i in range(30)]
    rows[7] = f"7,{cell},no"
    (tmp_path / "d.csv").write_text("x,y,kind\n" + "\n".join(rows) + "\n")
    assert_bad_input(
        run("fit", tmp_path / "d.csv", "-o", tmp_path / "m.aae"),
        "column 'y' has 1 missing cell (NaN, None or empty; the first in row 7)",
        "--missing impute",
    )


@pytest.mark.parametrize("missing", [np.nan, None, pd.NA], ids=["nan", "None", "NA"])
def test_missing_cells_in_python_get_the_same_message(missing):
    frame = pd.DataFrame({"a": np.arange(10.0), "b": pd.array(range(10), dtype=object)})
    frame.loc[4, "b"] = missing
    with pytest.raises(ValueError) as caught:
        AAEDetector(epochs=1).fit(frame)
    assert str(caught.value).startswith(
        "column 'b' has 1 missing cell (NaN, None or empty; the first in row 4)"
    )


def test_the_missing_cell_row_is_right_with_a_label_column(tmp_path):
    rows = [f"0,{i},{i * 2}" for i in range(20)]
    rows[3] = "1,3,6"  # an anomaly, left out of training before row 12
    rows[12] = "0,12,"
    (tmp_path / "d.csv").write_text("label,x,y\n" + "\n".join(rows) + "\n")
    assert_bad_input(
        run("fit", tmp_path / "d.csv", "-o", tmp_path / "m.aae", "--label-column", "label", "-q"),
        "column 'y' has 1 missing cell", "the first in row 12",
    )


def test_imputed_cells_score_like_the_training_median(tmp_path):
    table = orders(1, 400, seed=5).drop(columns=["order id", "created"])
    table.loc[[3, 50, 90], "amount"] = np.nan
    table.loc[[4, 60], "city"] = None
    detector = AAEDetector(missing="impute", **FAST).fit(table)
    amount = next(c for c in detector.schema_.columns if c.name == "amount")
    assert amount.fill == pytest.approx(table["amount"].median())
    gap = table.iloc[[3]]
    filled = gap.assign(amount=amount.fill)
    np.testing.assert_array_equal(detector.score_samples(gap), detector.score_samples(filled))
    table.to_csv(tmp_path / "t.csv", index=False)
    result = run("fit", tmp_path / "t.csv", "-o", tmp_path / "m.aae", "--missing", "impute",
                 *FAST_CLI)  # fmt: skip
    assert result.exit_code == 0, result.output


# -- columns by name ---------------------------------------------------------------------------
def test_reordered_columns_give_identical_scores_and_missing_ones_are_named(months, tmp_path):
    model = tmp_path / "m.aae"
    ids = ["--id-column", "order id", "--id-column", "created"]
    assert run("fit", months / "jan.csv", "-o", model, *ids, *FAST_CLI).exit_code == 0
    february = pd.read_csv(months / "feb.csv")
    february[list(reversed(february.columns))].to_csv(tmp_path / "reversed.csv", index=False)
    outputs = []
    for name, data in (("a.csv", months / "feb.csv"), ("b.csv", tmp_path / "reversed.csv")):
        assert run("score", model, data, "-o", tmp_path / name).exit_code == 0
        outputs.append(pd.read_csv(tmp_path / name).drop(columns=["order id", "created"]))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    february.drop(columns=["amount"]).to_csv(tmp_path / "short.csv", index=False)
    assert_bad_input(run("score", model, tmp_path / "short.csv"),
                     "no column 'amount', which the model was fitted on")  # fmt: skip
    february.assign(note="x").to_csv(tmp_path / "wide.csv", index=False)
    assert_bad_input(run("score", model, tmp_path / "wide.csv"),
                     "column 'note' that the model was not fitted on", "--drop-column")  # fmt: skip
    result = run("score", model, tmp_path / "wide.csv", "--drop-column", "note")
    assert result.exit_code == 0, result.output


def test_a_dropped_column_is_not_a_feature(months, tmp_path):
    model = tmp_path / "m.aae"
    result = run("fit", months / "jan.csv", "-o", model, "--id-column", "order id",
                 "--drop-column", "created", "--drop-column", "items", *FAST_CLI)  # fmt: skip
    assert result.exit_code == 0, result.output
    names = aae_anomaly.load(model).schema_.names
    assert names == ["city", "amount", "member"]
    assert_bad_input(run("fit", months / "jan.csv", "-o", model, "--drop-column", "itmes"),
                     "no column 'itmes' (drop_columns, --drop-column)")  # fmt: skip


# -- files -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "delimiter", "decimal"),
    [
        ("a;b;c\n1,5;2;x\n3,25;4;y\n", ";", ","),
        ("a\tb\tc\n1.5\t2\tx\n3.25\t4\ty\n", "\t", "."),
        ("\ufeffa|b|c\n1.5|2|x\n3.25|4|y\n", "|", "."),
        ("\ufeffa,b,c\n1.5,2,x\n3.25,4,y\n", ",", "."),
    ],
    ids=["semicolon-decimal-comma", "tab", "pipe-bom", "comma-bom"],
)
def test_delimiter_decimal_mark_and_bom_are_detected(tmp_path, text, delimiter, decimal):
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    frame = read_csv_table(path)
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["a"].tolist() == [1.5, 3.25]
    assert frame["c"].tolist() == ["x", "y"]


def test_table_options_combine_with_a_label_column(tmp_path):
    rows = "\n".join(f"{i % 7},{i % 5};{int(i % 10 == 0)}" for i in range(40))
    (tmp_path / "d.csv").write_text("a;b;y\n" + rows.replace(",", ";") + "\n")
    model = tmp_path / "m.aae"
    result = run("fit", tmp_path / "d.csv", "-o", model, "--delimiter", ";",
                 "--label-column", "y", *FAST_CLI)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert aae_anomaly.load(model).schema_.names == ["a", "b"]


def test_string_class_labels_on_the_command_line(tmp_path):
    rng = np.random.default_rng(0)
    centres = {"cat": (-4.0, 0.0), "dog": (4.0, 0.0), "owl": (0.0, 5.0)}
    kinds = rng.choice(list(centres), 300)
    points = np.array([centres[k] for k in kinds]) + rng.normal(0, 0.5, (300, 2))
    labels = np.where(np.arange(300) % 10 == 0, kinds, "")  # a tenth labelled
    frame = pd.DataFrame({"x": points[:, 0], "y": points[:, 1], "kind": labels})
    frame.to_csv(tmp_path / "pets.csv", index=False)
    result = run("classify", tmp_path / "pets.csv", "--classes-column", "kind", "-o",
                 tmp_path / "p.csv", "--epochs", 30, "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert set(predicted["label"]) <= set(centres)
    assert (predicted["label"].to_numpy() == kinds).mean() > 0.9
    # the supervised AAE learns from labelled rows; unlabelled ones are left out
    frame.assign(kind=np.where(np.arange(300) % 50 == 0, "", kinds)).to_csv(
        tmp_path / "labelled.csv", index=False
    )
    result = run("generate", tmp_path / "labelled.csv", "--classes-column", "kind", "--class",
                 "owl", "-n", 50, "-o", tmp_path / "owls.csv", "--epochs", 3)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fitted on 294 rows (leaving out 6 unlabelled) of classes ['cat', 'dog', 'owl']" in (
        result.stderr
    )
    owls = pd.read_csv(tmp_path / "owls.csv")
    assert len(owls) == 50 and set(owls["class"]) == {"owl"}
    assert list(owls.columns) == ["x", "y", "class"]
    assert_bad_input(
        run("generate", tmp_path / "pets.csv", "--classes-column", "kind", "--class", "bat",
            "-o", tmp_path / "bats.csv", "--epochs", 1),
        "--class bat is not a class", "its classes: cat, dog, owl",
    )


def test_flat_image_rows_that_declare_a_shape_get_the_image_scaling(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits().data[:300]
    np.save(tmp_path / "digits.npy", digits)
    model = tmp_path / "m.aae"
    result = run("fit", tmp_path / "digits.npy", "-o", model, "--input-shape", "8,8", *FAST_CLI)
    assert result.exit_code == 0, result.output
    detector = aae_anomaly.load(model)
    assert detector.input_shape_ == (1, 8, 8)
    scale = detector.module_.scale.numpy()
    assert (scale == scale[0]).all()  # one scale for every pixel, as for image rows
    assert_bad_input(run("fit", tmp_path / "digits.npy", "-o", model, "--input-shape", "7,8"),
                     "(1, 7, 8) holds 56 values but the data has 64")  # fmt: skip


def test_output_paths_are_checked_before_any_work(months, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the fit started")

    monkeypatch.setattr(AAEDetector, "fit", no_training)
    assert_bad_input(run("fit", months / "jan.csv", "-o", tmp_path / "no" / "m.aae"),
                     "no such directory")  # fmt: skip
    assert_bad_input(run("fit", months / "jan.csv", "-o", tmp_path), "is a directory")


def test_score_output_path_is_checked_before_scoring(months, tmp_path, monkeypatch):
    model = tmp_path / "m.aae"
    ids = ["--id-column", "order id", "--id-column", "created"]
    assert run("fit", months / "jan.csv", "-o", model, *ids, *FAST_CLI).exit_code == 0

    def no_scoring(*args, **kwargs):
        raise AssertionError("scoring started")

    monkeypatch.setattr(AAEDetector, "score_components", no_scoring)
    assert_bad_input(run("score", model, months / "feb.csv", "-o", tmp_path / "no" / "s.csv"),
                     "no such directory")  # fmt: skip


def test_verbose_logs_each_epoch_and_every_fit_says_how_long_it_took(tmp_path):
    result = run("fit", "synthetic:n=300", "-o", tmp_path / "m.aae", "--epochs", 3, "-v")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    epochs = [line for line in lines if " epoch " in f" {line}"]
    assert len(epochs) == 3 and "epoch 3/3" in epochs[-1]
    assert "recon" in epochs[0] and "elapsed" in epochs[0]
    assert lines[-1].startswith("saved ") and lines[-1].endswith(" s")
    assert "; took " in lines[-1]


# -- Python errors name the column -------------------------------------------------------------
@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.array([[1.0, "a"], [2.0, "b"]], dtype=object), "column 1 of X holds text"),
        (np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]").reshape(-1, 1),
         "timestamps"),
    ],
    ids=["object-text", "datetime64"],
)
def test_numpy_rows_that_are_not_numbers_are_named(X, message):
    with pytest.raises(ValueError, match=message):
        AAEDetector(epochs=1).fit(X)


def test_a_text_cell_in_a_numeric_column_is_named_at_scoring():
    train = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    detector = AAEDetector(epochs=1).fit(train)
    with pytest.raises(ValueError, match=r"column 'b': 'x' in row 1 is not a number"):
        detector.score_samples(pd.DataFrame({"a": [1.0, 2.0], "b": ["1", "x"]}))


# -- model files -------------------------------------------------------------------------------
def test_a_table_model_file_round_trips_bit_identically(tmp_path):
    table = orders(1, 300, seed=6)
    table.loc[[5, 9], "amount"] = np.nan
    detector = AAEDetector(id_columns=["order id", "created"], missing="impute", **FAST)
    detector.fit(table)
    detector.save(tmp_path / "m.aae")
    loaded = aae_anomaly.load(tmp_path / "m.aae")
    assert loaded.schema_.to_dict() == detector.schema_.to_dict()
    np.testing.assert_array_equal(loaded.score_samples(table), detector.score_samples(table))


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["columns"][0].update(kind="timestamp"),
        lambda s: s["columns"][0].update(categories=["Paris", "Paris"]),
        lambda s: s.update(missing="guess"),
        lambda s: s.pop("ignored"),
    ],
    ids=["kind", "repeated-category", "missing", "no-ignored"],
)
def test_a_tampered_schema_is_refused(tmp_path, change):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    table = orders(1, 200, seed=7).drop(columns=["order id", "created"])
    AAEDetector(**FAST).fit(table).save(tmp_path / "m.aae")
    tensors = load_file(tmp_path / "m.aae")
    with safe_open(tmp_path / "m.aae", framework="pt") as handle:
        document = json.loads(handle.metadata()[METADATA_KEY])
    change(document["columns"])
    save_file(tensors, tmp_path / "bad.aae", metadata={METADATA_KEY: json.dumps(document)})
    with pytest.raises(aae_anomaly.ModelFileError, match="columns"):
        aae_anomaly.load(tmp_path / "bad.aae")


def test_columns_and_missing_cells_can_be_set_in_a_config_file(months, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text('id_columns = ["order id", "created"]\nmissing = "impute"\nepochs = 2\n')
    model = tmp_path / "m.aae"
    result = run("fit", months / "jan.csv", "-o", model, "--config", config, "-q")
    assert result.exit_code == 0, result.output
    detector = aae_anomaly.load(model)
    assert detector.schema_.ignored == ["order id", "created"]
    assert detector.schema_.missing == "impute"


def test_numbers_with_thousands_separators_are_not_taken_for_categories(tmp_path):
    amounts = [f'"{v:,.2f}"' for v in np.linspace(300.0, 9000.0, 40)]
    (tmp_path / "t.csv").write_text("amount,n\n" + "".join(f"{a},{i}\n" for i, a in
                                                          enumerate(amounts)))  # fmt: skip
    assert_bad_input(run("fit", tmp_path / "t.csv", "-o", tmp_path / "m.aae", "-q"),
                     "column 'amount' holds numbers written as text", "--thousands")  # fmt: skip
    result = run("fit", tmp_path / "t.csv", "-o", tmp_path / "m.aae", "--thousands", ",",
                 "--drop-column", "n", *FAST_CLI)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert aae_anomaly.load(tmp_path / "m.aae").schema_.columns[0].kind == "numeric"


def test_a_header_that_names_a_column_twice_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,a\n1,2,3\n4,5,6\n")
    assert_bad_input(run("fit", tmp_path / "t.csv", "-o", tmp_path / "m.aae"),
                     "the header names column 'a' twice")  # fmt: skip


def test_the_family_takes_tables_with_text_columns():
    from aae_anomaly import AAEClustering

    table = orders(1, 300, seed=8).drop(columns=["order id", "created"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no feature-name warning from the fit's own rows
        model = AAEClustering(n_clusters=3, epochs=2, random_state=0).fit(table)
    np.testing.assert_array_equal(model.labels_, model.predict(table))


def test_family_commands_and_plot_check_the_output_first_and_say_how_long(months, tmp_path):
    pytest.importorskip("matplotlib")
    result = run("cluster", months / "feb.csv", "--id-column", "order id", "--id-column",
                 "created", "-o", tmp_path / "c.csv", "--epochs", 2)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1].endswith(" s") and "; took " in result.stderr
    assert pd.read_csv(tmp_path / "c.csv").columns.tolist() == ["order id", "created", "cluster"]
    model = tmp_path / "m.aae"
    ids = ["--id-column", "order id", "--id-column", "created"]
    assert run("fit", months / "jan.csv", "-o", model, *ids, *FAST_CLI).exit_code == 0
    assert_bad_input(run("plot", model, months / "feb.csv", "-o", tmp_path / "no" / "map.png"),
                     "no such directory")  # fmt: skip
