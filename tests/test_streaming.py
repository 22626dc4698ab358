"""``score`` streams .csv, .parquet and .npy files in chunks: the output is the bytes a
whole-file score writes, errors in a late chunk leave no output, warnings come once."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
from conftest import assert_bad_input, run

import aae_anomaly
from aae_anomaly import Dataset, hookimpl
from aae_anomaly.cli.reports import score_table
from aae_anomaly.io.chunks import csv_chunks, parquet_chunks
from aae_anomaly.io.tables import read_csv_table, write_table
from aae_anomaly.plugin_system.datasets import load_dataset_chunks
from aae_anomaly.plugin_system.manager import get_plugin_manager

FAST = ["--epochs", "2", "--batch-size", "64", "--quiet"]
N_ROWS = 250
CHUNK = 7  # does not divide N_ROWS: the last chunk is short


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"tx-{i:05d}" for i in range(n)],
        "amount": rng.normal(50, 10, n).round(3),
        "count": rng.integers(0, 20, n),  # whole numbers: int in a chunk without gaps
        "shop": rng.choice(["north", "south", "east", "7", "12"], n),
        "online": rng.choice(["true", "false"], n),
        "ratio": rng.random(n),
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    train = _table(300, 0)
    train.loc[::17, "amount"] = np.nan
    train.to_csv(root / "train.csv", index=False)
    result = run("fit", root / "train.csv", "-o", root / "model.aae", "--id-column", "id",
                 "--missing", "impute", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    test = _table(N_ROWS, 1)
    # empty cells (imputed), in some chunks only; a category never seen in training; and
    # a text column whose chunks hold only numbers (12, 7) or only text
    test.loc[[3, 40, 41, 200], "amount"] = np.nan
    test.loc[[10, 130], "count"] = np.nan
    test.loc[0:20, "shop"] = "12"  # pandas alone would read 12, and 12.0 beside a gap
    test.loc[[5, 99], "shop"] = np.nan
    test.loc[77, "shop"] = "west"
    test.loc[[60, 180], "amount"] = 1e9  # far outside the training data: a warning
    test.to_csv(root / "test.csv", index=False)
    test.drop(columns="id").to_parquet(root / "test.parquet", row_group_size=40)
    numbers = test[["amount", "ratio"]].fillna(0).to_numpy()
    np.save(root / "test.npy", numbers)
    return root


def _read_scores(text: str) -> pd.DataFrame:
    """With Python's float(), which reads back exactly what repr() wrote."""
    table = pd.read_csv(io.StringIO(text), dtype=str)
    return table.astype({c: float for c in table.columns if c not in ("id", "row")})


def _whole_file_score(files, destination, data="test.csv"):
    """What `score` wrote before it streamed: the whole table read, scored, written."""
    detector = aae_anomaly.load(files / "model.aae")
    frame = read_csv_table(files / data)
    keys = {"id": frame["id"].to_numpy()}
    write_table(score_table(detector, frame.drop(columns="id")), str(destination), keys)


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".parquet"])
def test_chunked_score_writes_what_a_whole_file_score_writes(files, tmp_path, suffix):
    chunked, single, whole = (tmp_path / f"{n}{suffix}" for n in ("chunked", "single", "whole"))
    for output, rows in ((chunked, CHUNK), (single, 10 * N_ROWS)):
        result = run("score", files / "model.aae", files / "test.csv", "-o", output,
                     "--chunk-rows", rows)  # fmt: skip
        assert result.exit_code == 0, result.output
    _whole_file_score(files, whole)
    if suffix == ".parquet":
        # a parquet file's row groups follow the chunks; its values are the same
        expected = pd.read_parquet(whole)
        pd.testing.assert_frame_equal(pd.read_parquet(chunked), expected)
        pd.testing.assert_frame_equal(pd.read_parquet(single), expected)
    else:
        assert chunked.read_bytes() == whole.read_bytes() == single.read_bytes()
    if suffix == ".csv":
        table = pd.read_csv(chunked)
        assert list(table["id"]) == [f"tx-{i:05d}" for i in range(N_ROWS)]  # copied, in order


def test_the_id_column_and_scores_match_the_estimator(files, tmp_path):
    result = run("score", files / "model.aae", files / "test.csv", "--chunk-rows", CHUNK,
                 "--id-column", "id")  # fmt: skip
    assert result.exit_code == 0, result.output
    table = _read_scores(result.stdout)
    detector = aae_anomaly.load(files / "model.aae")
    frame = pd.read_csv(files / "test.csv")
    expected = -detector.score_samples(frame.drop(columns="id"))
    np.testing.assert_array_equal(table["score"].to_numpy(), expected)
    assert table.columns[0] == "id"


def test_row_numbers_continue_across_chunks(files, tmp_path):
    array_model = tmp_path / "array.aae"
    assert run("fit", files / "test.npy", "-o", array_model, *FAST).exit_code == 0
    for data, model in (("test.npy", array_model), ("test.parquet", files / "model.aae")):
        chunked = run("score", model, files / data, "--chunk-rows", CHUNK)
        whole = run("score", model, files / data, "--chunk-rows", 10 * N_ROWS)
        assert chunked.exit_code == 0, chunked.output
        assert chunked.stdout == whole.stdout
        rows = pd.read_csv(io.StringIO(chunked.stdout))["row"]
        assert list(rows) == list(range(N_ROWS)), data


def test_a_bad_row_in_a_late_chunk_leaves_no_output(files, tmp_path):
    frame = pd.read_csv(files / "test.csv", dtype=str, keep_default_na=False)
    frame.loc[150, "ratio"] = "lots"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    output = tmp_path / "scores.csv"
    output.write_text("an older output\n")
    for destination in (output, tmp_path / "new.npy", "-"):
        result = run("score", files / "model.aae", bad, "-o", destination, "--chunk-rows", CHUNK)
        # the row is numbered in the file, not in its chunk (147 to 153)
        assert_bad_input(result, "column 'ratio': 'lots' in row 150 is not a number")
    assert output.read_text() == "an older output\n"
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "scores.csv"]  # no temporary files


def test_a_malformed_line_is_named_by_its_number_in_the_file(files, tmp_path):
    lines = (files / "test.csv").read_text().splitlines()
    lines[120] = lines[120].rsplit(",", 2)[0]  # a line cut short
    (tmp_path / "cut.csv").write_text("\n".join(lines) + "\n")
    result = run("score", files / "model.aae", tmp_path / "cut.csv", "-o",
                 tmp_path / "s.csv", "--chunk-rows", CHUNK)  # fmt: skip
    assert_bad_input(result, "line 121 has 4 fields where the header has 6")
    assert not (tmp_path / "s.csv").exists()


def test_warnings_come_once_with_the_total(files):
    result = run("score", files / "model.aae", files / "test.csv", "--chunk-rows", CHUNK)
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    # rows 60 and 180 are in different chunks
    assert len(warnings) == 1 and warnings[0].startswith("Warning: 2 rows have values"), warnings
    assert "'amount'" in warnings[0]


def test_csv_chunks_parse_every_chunk_alike(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        'n;code;note\n1;007;"two\nlines"\n2;8;x\n;9;y\n3,5;x;"a; b"\n4;010;z\n', "utf-8"
    )
    kinds = {"n": "numeric", "code": "categorical"}
    chunks = list(csv_chunks(path, 2, kinds))
    whole = pd.concat(chunks)
    assert [len(c) for c in chunks] == [1, 2, 2]  # the first line break is in a quoted field
    assert whole["n"].dtype == np.float64 and all(c["n"].dtype == np.float64 for c in chunks)
    np.testing.assert_array_equal(whole["n"], [1, 2, np.nan, 3.5, 4])  # decimal comma found
    assert list(whole["code"]) == ["007", "8", "9", "x", "010"]  # the text in the file
    assert list(whole["note"]) == ["two\nlines", "x", "y", "a; b", "z"]
    assert list(whole.index) == [0, 1, 2, 3, 4]
    # without kinds, pandas guesses per chunk: "007" is the number 7 in a chunk of numbers
    guessed = [list(c["code"]) for c in csv_chunks(path, 2)]
    assert guessed == [[7], [8, 9], ["x", "010"]]
    plain = tmp_path / "plain.csv"
    plain.write_text("\ufeffa , b\n1.5,x\n\n2,y\n3,z\n")
    pd.testing.assert_frame_equal(pd.concat(csv_chunks(plain, 1)), read_csv_table(plain))


def test_csv_chunks_place_errors_in_the_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 10 + b"1,2,3\n" + b"1,2\n")
    with pytest.raises(ValueError, match="line 12"):
        list(csv_chunks(path, 4))
    path.write_bytes(b"a,b\n" + b"1,2\n" * 10 + b"1,\xff\n")
    with pytest.raises(ValueError, match=r"byte 46 cannot be read"):
        list(csv_chunks(path, 3))


def test_parquet_chunks_keep_the_saved_index(tmp_path):
    frame = pd.DataFrame({"a": np.arange(10.0)}, index=np.arange(10) * 3)
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=4)
    chunks = list(parquet_chunks(tmp_path / "t.parquet", 3))
    assert [len(c) for c in chunks] == [3, 1, 3, 1, 2]  # row group by row group
    pd.testing.assert_frame_equal(pd.concat(chunks), pd.read_parquet(tmp_path / "t.parquet"))
    frame.reset_index(drop=True).iloc[2:].to_parquet(tmp_path / "r.parquet")  # a range 2..10
    chunks = list(parquet_chunks(tmp_path / "r.parquet", 3))
    assert list(pd.concat(chunks).index) == list(range(2, 10))


class CountingPlugin:
    """A dataset with a chunked reader, as a third party would register one."""

    def __init__(self):
        self.calls = []

    @staticmethod
    def load(n: int = 10) -> Dataset:
        X = np.linspace(0, 1, 2 * n).reshape(n, 2)
        return Dataset(X, None, None, "counting")

    def read(self, chunk_rows: int, columns=None, n: int = 10):
        self.calls.append((chunk_rows, columns, n))
        X = self.load(n).X
        for start in range(0, n, chunk_rows):
            yield Dataset(X[start : start + chunk_rows], None, None, "counting")

    @hookimpl
    def register_datasets(self, register):
        register("counting", self.load)

    @hookimpl
    def register_dataset_readers(self, register):
        register("counting", self.read)


def test_a_plugins_chunked_reader_is_used_by_score(fresh_plugins, tmp_path, files):
    plugin = CountingPlugin()
    get_plugin_manager().register(plugin, "counting")
    model = tmp_path / "model.aae"
    assert run("fit", "counting:n=40", "-o", model, *FAST).exit_code == 0
    assert plugin.calls == []  # fit reads whole
    chunked = run("score", model, "counting:n=25", "--chunk-rows", 4)
    assert chunked.exit_code == 0, chunked.output
    assert plugin.calls == [(4, None, 25)]  # a model fitted on an array has no column kinds
    detector = aae_anomaly.load(model)
    rows = _read_scores(chunked.stdout)
    assert list(rows["row"]) == [str(i) for i in range(25)]
    np.testing.assert_array_equal(rows["score"], -detector.score_samples(plugin.load(25).X))
    assert load_dataset_chunks("synthetic:n=10", 4) is None  # no reader: read whole


def test_table_options_reach_every_chunk(files, tmp_path):
    # semicolons, decimal commas and thousands separators, as a spreadsheet exports them
    frame = pd.read_csv(files / "test.csv", dtype=str, keep_default_na=False).iloc[:40]
    frame["amount"] = [f"{1000 + i}.{i:02d}".replace(".", ",") for i in range(40)]
    frame.loc[::3, "amount"] = [f"1.{i:03d},5" for i in range(len(frame.loc[::3]))]
    frame.to_csv(tmp_path / "european.csv", sep=";", index=False)
    args = ["--thousands", ".", "--decimal", ","]
    chunked = run("score", files / "model.aae", tmp_path / "european.csv", *args, "--chunk-rows", 3)
    whole = run("score", files / "model.aae", tmp_path / "european.csv", *args)
    assert chunked.exit_code == 0, chunked.output
    assert chunked.stdout == whole.stdout
    detector = aae_anomaly.load(files / "model.aae")
    expected = pd.read_csv(tmp_path / "european.csv", sep=";", decimal=",", thousands=".")
    assert expected["amount"].iloc[3] == 1001.5
    np.testing.assert_array_equal(
        _read_scores(chunked.stdout)["score"], -detector.score_samples(expected.drop(columns="id"))
    )
