"""Scoring on Dask (``aae_anomaly.dask``, ``score --dask``): the scores are bit-identical to
a single-process score of the same rows, a worker killed while scoring costs a retry, and
an unreadable partition is named with nothing left at OUTPUT.

One module-wide ``distributed.LocalCluster`` of 2 worker processes (1 thread each) on
loopback; one test starts its own through ``--dask local:1``.
"""

from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_bad_input, run

import aae_anomaly
from aae_anomaly import AAEDetector
from aae_anomaly.estimators.scoretable import score_table

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

import dask  # noqa: E402
import dask.array as da  # noqa: E402

import aae_anomaly.dask as aae_dask  # noqa: E402

TINY = {"epochs": 2, "batch_size": 64, "random_state": 0}


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


def events(n: int, seed: int) -> pd.DataFrame:
    """Rows as users export them: a text id, a text category, numbers."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "event id": [f"ev-{seed}-{i}" for i in range(n)],
            "amount": rng.gamma(2.0, 10.0, n).round(2),
            "latency": rng.normal(50, 5, n),
            "channel": rng.choice(["web", "shop", "phone"], n),
        }
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model fitted with the id column ``event id`` (so ``score`` copies it)."""
    path = tmp_path_factory.mktemp("model") / "model.aae"
    AAEDetector(id_columns=["event id"], **TINY).fit(events(300, 0)).save(path)
    return path


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return events(420, 1)


def one_process(model, frame: pd.DataFrame) -> pd.DataFrame:
    """The score table a single process gives for ``frame``, ids first."""
    table = score_table(aae_anomaly.load(model), frame.drop(columns=["event id"]))
    return pd.DataFrame({"event id": frame["event id"].to_numpy(), **table})


def computed(client, collection) -> pd.DataFrame:
    return client.compute(collection).result().reset_index(drop=True)


# -- aae_anomaly.dask ------------------------------------------------------------------------
def test_partition_scores_are_those_of_one_process(client, model, rows):
    scores = aae_dask.score_partitions(model, dd.from_pandas(rows, npartitions=5))
    assert list(scores.columns) == [
        "event id", "score", "reconstruction", "discriminator", "density", "neighbors",
        "is_anomaly",
    ]
    pd.testing.assert_frame_equal(computed(client, scores), one_process(model, rows))


def test_rows_without_ids_are_numbered_across_partitions(client, model, rows):
    pieces = [rows.iloc[:100], rows.iloc[:0], rows.iloc[100:101], rows.iloc[101:]]
    frame = dd.from_delayed([dask.delayed(p.reset_index(drop=True)) for p in pieces])
    scores = computed(client, aae_dask.score_partitions(model, frame.drop(columns="event id")))
    expected = one_process(model, rows).drop(columns="event id")
    expected.insert(0, "row", np.arange(len(rows)))
    pd.testing.assert_frame_equal(scores, expected)


def test_an_array_is_scored_by_blocks_of_rows(client, tmp_path):
    X = np.random.default_rng(2).normal(size=(230, 5))
    path = tmp_path / "array.aae"
    detector = AAEDetector(**TINY).fit(X)
    detector.save(path)
    # blocks across the features too: they are joined into whole rows
    scores = computed(client, aae_dask.score_partitions(path, da.from_array(X, chunks=(70, 2))))
    np.testing.assert_array_equal(scores["row"], np.arange(len(X)))
    for name, values in score_table(detector, X).items():
        np.testing.assert_array_equal(scores[name].to_numpy(), values, name)


def test_the_model_travels_as_bytes_and_each_worker_loads_it_once(client, model, rows):
    scores = aae_dask.score_partitions(model.read_bytes(), dd.from_pandas(rows, npartitions=8))
    graph = pickle.dumps(dict(scores.__dask_graph__()))
    # a pickled torch module or tensor would name torch's classes and rebuild functions
    assert b"torch.nn" not in graph and b"torch._utils" not in graph
    computed(client, scores)
    digest = aae_dask.ModelBytes.of(model).digest
    loads = client.run(lambda: aae_dask.loads[digest])
    assert set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1, loads


def test_columns_the_frame_lacks_are_named_before_any_work(model, rows):
    frame = dd.from_pandas(rows, npartitions=2)
    with pytest.raises(ValueError, match="no id column 'order'"):
        aae_dask.score_partitions(model, frame, id_columns=["order"])
    with pytest.raises(ValueError, match="no classes column 'kind'"):
        aae_dask.score_partitions(model, frame, classes_column="kind")


def test_a_bad_model_file_fails_before_any_work(tmp_path, rows):
    bad = tmp_path / "bad.aae"
    bad.write_bytes(b"not a model")
    with pytest.raises(aae_anomaly.ModelFileError, match="bad.aae is not an aae-anomaly model"):
        aae_dask.score_partitions(bad, dd.from_pandas(rows, npartitions=2))


# -- score --dask ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def csv_parts(tmp_path_factory, rows):
    """``rows`` in 4 CSV files (``part-2`` before ``part-10``), and in one."""
    folder = tmp_path_factory.mktemp("csv")
    for number, piece in zip((1, 2, 10, 11), np.array_split(np.arange(len(rows)), 4), strict=True):
        rows.iloc[piece].to_csv(folder / f"part-{number}.csv", index=False)
    rows.to_csv(folder / "whole.csv", index=False)
    (folder / "whole.csv.all").write_bytes((folder / "whole.csv").read_bytes())
    return folder


def test_score_on_local_workers_writes_the_csv_one_process_writes(model, csv_parts, tmp_path):
    expected = run("score", model, csv_parts / "whole.csv", "-o", tmp_path / "one.csv")
    assert expected.exit_code == 0, expected.output
    result = run(
        "score", model, csv_parts / "part-*.csv", "-o", tmp_path / "dask.csv", "--dask", "local:1"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dask.csv").read_text() == (tmp_path / "one.csv").read_text()


def address(client) -> str:
    return client.scheduler.address


def test_a_parquet_folder_gives_the_parquet_table_one_process_writes(
    client, model, rows, tmp_path
):
    rows = rows.drop(columns="event id")  # so that the rows are numbered across the files
    data = tmp_path / "events"
    data.mkdir()
    for i, piece in enumerate(np.array_split(np.arange(len(rows)), 3)):
        rows.iloc[piece].to_parquet(data / f"part.{i}.parquet", index=False)
    rows.to_parquet(tmp_path / "whole.parquet", index=False)
    one = run("score", model, tmp_path / "whole.parquet", "-o", tmp_path / "one.parquet")
    assert one.exit_code == 0, one.output
    result = run("score", model, data, "-o", tmp_path / "scores", "--dask", address(client))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == [
        "part.00000.parquet", "part.00001.parquet", "part.00002.parquet",
    ]
    scores = pd.read_parquet(tmp_path / "scores")
    np.testing.assert_array_equal(scores["row"], np.arange(len(rows)))
    pd.testing.assert_frame_equal(scores, pd.read_parquet(tmp_path / "one.parquet"))


def test_a_file_with_other_columns_is_named(client, model, csv_parts, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_bytes((csv_parts / "part-1.csv").read_bytes())
    pd.read_csv(csv_parts / "part-2.csv").drop(columns="latency").to_csv(data / "b.csv")
    result = run("score", model, data, "-o", tmp_path / "s", "--dask", address(client))
    assert_bad_input(result, "partition 1 of 2: ", "b.csv has the columns")


class KillOnce(distributed.WorkerPlugin):
    """Kill the worker process running the first scoring task (once in the cluster's
    life: the marker file says it happened)."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "score_frame" in str(key) and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_while_scoring_costs_a_retry_not_the_result(
    client, model, csv_parts, tmp_path
):
    expected = run("score", model, csv_parts / "whole.csv", "-o", tmp_path / "one.csv")
    assert expected.exit_code == 0, expected.output
    before = set(client.scheduler_info()["workers"])
    marker = tmp_path / "killed"
    client.register_plugin(KillOnce(str(marker)), name="kill-once")
    try:
        result = run(
            "score", model, csv_parts / "part-*.csv", "-o", tmp_path / "dask.csv",
            "--dask", address(client),
        )
    finally:
        client.unregister_worker_plugin("kill-once")
    assert result.exit_code == 0, result.output
    assert marker.exists()  # a worker did die while scoring
    client.wait_for_workers(2, timeout=60)  # the nanny started a new one
    assert set(client.scheduler_info()["workers"]) != before
    assert (tmp_path / "dask.csv").read_text() == (tmp_path / "one.csv").read_text()


def test_an_unreadable_partition_is_named_and_nothing_is_written(
    client, model, csv_parts, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("part-1.csv", "part-2.csv"):
        (data / name).write_bytes((csv_parts / name).read_bytes())
    lines = (csv_parts / "part-10.csv").read_text().splitlines()
    (data / "part-10.csv").write_text("\n".join([*lines[:5], "ev-x,3.5", *lines[5:]]) + "\n")
    out = tmp_path / "out"
    for output in (out, tmp_path / "out.csv"):
        result = run("score", model, data / "*.csv", "-o", output, "--dask", address(client))
        assert_bad_input(result, "partition 2 of 3", "part-10.csv", "line 6 has 2 fields")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no output, no temporary


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--dask", "somewhere:8786"], "expected a scheduler address such as tcp://"),
        (["--dask", "local:0"], "local:N needs a number of workers N >= 1"),
        (["-o", "{tmp}/scores.npy", "--dask", "local:1"], "OUTPUT is a folder of Parquet"),
        (["-o", "{tmp}/full", "--dask", "local:1"], "full is a folder with files in it"),
        (["-o", "{tmp}/absent/scores", "--dask", "local:1"], "no such directory"),
    ],
    ids=["address", "no-workers", "npy", "full-folder", "no-directory"],
)
def test_bad_dask_options_are_one_line_errors(model, csv_parts, tmp_path, arguments, problem):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("kept")
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    if "-o" not in arguments:
        arguments += ["-o", str(tmp_path / "scores")]
    result = run("score", model, csv_parts / "part-*.csv", *arguments)
    assert_bad_input(result, problem)
    assert (tmp_path / "full" / "old.txt").read_text() == "kept"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{csv}/nothing-*.csv", "no files match"),
        ("{csv}/whole.*", "all .csv or all .parquet, not .all, .csv"),
        ("{csv}/absent", "no such file or folder"),
    ],
    ids=["no-match", "mixed", "absent"],
)
def test_data_that_is_not_partitions_is_a_one_line_error(model, csv_parts, tmp_path, data, problem):
    data = data.replace("{csv}", str(csv_parts))
    result = run("score", model, data, "-o", tmp_path / "scores", "--dask", "local:1")
    assert_bad_input(result, problem)


def test_an_id_column_the_files_lack_is_named_before_any_work(model, csv_parts, tmp_path):
    result = run(
        "score", model, csv_parts / "part-*.csv", "-o", tmp_path / "s", "--dask", "local:1",
        "--id-column", "order",
    )
    assert_bad_input(result, "part-1.csv has no column 'order' (--id-column)")


def test_a_bad_model_file_is_named_before_the_cluster_is_reached(csv_parts, tmp_path):
    bad = tmp_path / "bad.aae"
    bad.write_bytes(b"not a model")
    # nothing listens on port 1: reaching for the cluster first would fail otherwise
    result = run(
        "score", bad, csv_parts / "part-*.csv", "-o", tmp_path / "s", "--dask", "tcp://127.0.0.1:1"
    )
    assert_bad_input(result, "bad.aae is not an aae-anomaly model file")
