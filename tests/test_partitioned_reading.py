"""Reading one part of a file, as each process of a distributed ``fit --stream`` does: the
parts together hold every row exactly once, whatever the split."""

import threading

import numpy as np
import pandas as pd
import pytest

from aae_anomaly import Dataset, PartitionError, get_plugin_manager, hookimpl
from aae_anomaly.estimators import streaming
from aae_anomaly.io.chunks import csv_chunks, parquet_chunks
from aae_anomaly.plugin_system.datasets import load_dataset_chunks


def read_parts(read, count):
    """Each part's rows (a DataFrame per part), ``read(part)`` giving its chunks."""
    return [pd.concat(list(read((index, count))), ignore_index=True) for index in range(count)]


@pytest.fixture
def quoted_csv(tmp_path):
    # quoted fields with delimiters and doubled quotes, rows of very different lengths,
    # so that equal byte ranges hold unequal numbers of rows and cut through lines
    rows = pd.DataFrame({
        "id": np.arange(301),
        "note": [
            f'"said {i}", then, ""more""' if i % 5 == 0 else "x" * (i % 37) for i in range(301)
        ],
        "value": np.linspace(-1, 1, 301),
    })  # fmt: skip
    path = tmp_path / "quoted.csv"
    rows.to_csv(path, index=False)
    return path, rows


@pytest.mark.parametrize("count", [2, 3, 7])
def test_the_parts_of_a_csv_file_hold_every_row_once(quoted_csv, count):
    path, rows = quoted_csv
    parts = read_parts(lambda part: csv_chunks(path, 16, part=part), count)
    together = pd.concat(parts, ignore_index=True)
    whole = pd.concat(list(csv_chunks(path, 16)), ignore_index=True)
    pd.testing.assert_frame_equal(together, whole)  # in the file's order, every cell alike
    assert list(together["id"]) == list(rows["id"])
    assert all(len(part) for part in parts)
    if count == 7:  # unequal rows: the split is by bytes, not by rows
        assert len({len(part) for part in parts}) > 1


def test_a_csv_file_with_few_rows_gives_empty_parts_with_its_columns(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    parts = read_parts(lambda part: csv_chunks(path, 4, part=part), 5)
    assert sum(len(part) for part in parts) == 2
    assert all(list(part.columns) == ["a", "b"] for part in parts)


def test_a_quoted_line_break_makes_the_split_refuse(tmp_path):
    path = tmp_path / "breaks.csv"
    pd.DataFrame({"a": range(40), "t": ["two\nlines" if i == 25 else "one" for i in range(40)]}
                 ).to_csv(path, index=False)  # fmt: skip
    with pytest.raises(PartitionError, match="a quoted field holds a line break"):
        for index in range(2):
            list(csv_chunks(path, 8, part=(index, 2)))


def test_the_parts_of_a_parquet_file_hold_every_row_once(tmp_path):
    pytest.importorskip("pyarrow")
    rows = pd.DataFrame({"a": np.arange(1000), "b": np.arange(1000) * 0.5})
    path = tmp_path / "groups.parquet"
    rows.to_parquet(path, row_group_size=150)  # 7 row groups, the last short
    for count in (2, 3, 9):  # 9: more parts than row groups
        parts = read_parts(lambda part: parquet_chunks(path, 64, part=part), count)
        together = pd.concat(parts, ignore_index=True)
        pd.testing.assert_frame_equal(together, rows)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # a part keeps the rows' numbers in the file
    second = pd.concat(list(parquet_chunks(path, 64, part=(1, 2))))
    assert list(second.index[:2]) == [500, 501]


def test_the_parts_of_an_npy_file_hold_every_row_once(tmp_path):
    rows = np.random.default_rng(0).normal(size=(101, 3))
    np.save(tmp_path / "rows.npy", rows)
    for count in (2, 3, 101, 150):
        parts = [
            np.concatenate([d.X for d in load_dataset_chunks(
                "npy", 10, part=(index, count), path=str(tmp_path / "rows.npy"))])
            for index in range(count)
        ]  # fmt: skip
        np.testing.assert_array_equal(np.concatenate(parts), rows)


def test_a_reader_without_parts_is_read_whole_keeping_every_nth_row(fresh_plugins):
    class Plain:
        @hookimpl
        def register_datasets(self, register):
            register("plain", lambda n=10: Dataset(np.arange(n * 2.0).reshape(n, 2)))

        @hookimpl
        def register_dataset_readers(self, register):
            def read(chunk_rows, columns=None, n: int = 10):
                rows = np.arange(n * 2.0).reshape(n, 2)
                for start in range(0, n, chunk_rows):
                    chunk = rows[start : start + chunk_rows]
                    yield Dataset(chunk, np.zeros(len(chunk)))

            register("plain", read)

    get_plugin_manager().register(Plain(), "plain")
    parts = [
        np.concatenate([d.X[:, 0] for d in load_dataset_chunks("plain:n=23", 4, part=(i, 3))])
        for i in range(3)
    ]
    assert [list(p) for p in parts] == [
        list(range(0, 46, 6)), list(range(2, 46, 6)), list(range(4, 46, 6))
    ]


class ThreadGroup:
    """A stand-in for a ProcessGroup whose ranks are threads (for shared_sample)."""

    def __init__(self, rank, world_size, board, barrier):
        self.rank, self.world_size, self.board, self.barrier = rank, world_size, board, barrier

    @property
    def is_main(self):
        return self.rank == 0

    def gather(self, value):
        self.barrier.wait()
        self.board[self.rank] = value
        self.barrier.wait()
        values = [self.board[r] for r in range(self.world_size)]
        self.barrier.wait()
        return values

    def broadcast(self, value):
        return self.gather(value)[0]


def shared_samples(chunks, size, world_size=2):
    board, barrier, results = {}, threading.Barrier(world_size), [None] * world_size

    def work(rank):
        group = ThreadGroup(rank, world_size, board, barrier)
        results[rank] = streaming.shared_sample(chunks, size, np.random.RandomState(rank), group)

    threads = [threading.Thread(target=work, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_every_process_learns_from_the_same_sample_of_all_parts():
    rows = np.arange(3000.0).reshape(1000, 3)

    def chunks(part=None):
        start, stop = (0, 1000) if part is None else (700 * part[0], [700, 1000][part[0]])
        return (rows[i : min(i + 64, stop)] for i in range(start, stop, 64))

    one, two = shared_samples(chunks, 200)
    np.testing.assert_array_equal(one.sample, two.sample)
    np.testing.assert_array_equal(one.numbers, two.numbers)
    assert list(one.counts) == [700, 300] and one.n_rows == 1000
    # the numbers are the rows' own (part 0 first), the sample shares out like the parts
    np.testing.assert_array_equal(one.sample[:, 0], rows[one.numbers, 0])
    assert len(one.numbers) == 200 and 100 < (one.numbers < 700).sum() < 180
    held = one.numbers[::10]
    assert list(two.own(held)) == list(held[held >= 700] - 700)
    # 700 - 14 and 300 - 6 rows to train on, in batches of 64: 11 and 5, so 5 each
    assert one.steps(held, 64) == two.steps(held, 64) == 5


def test_a_source_that_cannot_be_split_is_read_whole_on_every_process():
    rows = np.arange(200.0).reshape(100, 2)

    def chunks(part=None):
        if part is not None and part[0] == 1:
            raise PartitionError("cannot split")
        return iter([rows])

    with pytest.warns(UserWarning, match="cannot split; every process reads all rows"):
        one, two = shared_samples(chunks, 1000)
    assert list(one.counts) == [50, 50]
    np.testing.assert_array_equal(one.sample, two.sample)
    assert sorted(one.sample[:, 0]) == list(rows[:, 0])  # every row once
    assert list(np.concatenate(list(two.chunks()))[:, 0]) == list(rows[1::2, 0])
