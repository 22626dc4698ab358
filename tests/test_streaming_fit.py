"""``AAEDetector.fit_chunks``: a fit on rows that come in parts, with bounded memory."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aae_anomaly import AAEDetector, load_dataset
from aae_anomaly.estimators.streaming import reservoir, training_batches

FAST = {"epochs": 6, "batch_size": 64, "random_state": 0}


@pytest.fixture(scope="module")
def split():
    data = load_dataset("sklearn:name=breast_cancer")
    normal = data.X[data.y == 0][np.random.default_rng(0).permutation(int((data.y == 0).sum()))]
    test = np.vstack([normal[250:], data.X[data.y == 1]])
    labels = np.r_[np.zeros(len(normal) - 250), np.ones(int(data.y.sum()))]
    return normal[:250], test, labels


def parts_of(rows, size):
    return lambda: (rows[i : i + size] for i in range(0, len(rows), size))


def test_the_reservoir_is_a_uniform_sample_in_row_order():
    rows = np.arange(10_000).reshape(-1, 1)
    counts = np.zeros(10_000)
    for seed in range(200):
        sample, numbers, n = reservoir(parts_of(rows, 700)(), 500, np.random.RandomState(seed))
        assert n == 10_000 and len(sample) == 500
        np.testing.assert_array_equal(sample[:, 0], numbers)  # each row with its number
        assert (np.diff(numbers) > 0).all()
        counts[numbers] += 1
    # every row is drawn with probability 500 / 10,000: 10 times in 200 draws on average;
    # the first and the last thousand rows as often as the rest
    assert counts[:1000].mean() == pytest.approx(10, rel=0.1)
    assert counts[-1000:].mean() == pytest.approx(10, rel=0.1)


def test_fewer_rows_than_the_sample_give_the_statistics_of_all_rows(split):
    train, test, _ = split
    whole = AAEDetector(**FAST).fit(train)
    parts = AAEDetector(**FAST).fit_chunks(parts_of(train, 40))
    # the same scaling and the same calibration rows: only the batches differ (a buffer)
    np.testing.assert_array_equal(whole.module_.center, parts.module_.center)
    np.testing.assert_array_equal(whole.module_.scale, parts.module_.scale)
    assert parts.streamed_rows_ == 250


def test_a_fit_in_parts_detects_as_well_as_one_in_memory(split):
    train, test, labels = split
    whole = AAEDetector(**FAST).fit(train)
    parts = AAEDetector(**FAST).fit_chunks(parts_of(train, 30), sample_rows=120, shuffle_rows=60)
    auc = {name: roc_auc_score(labels, -model.score_samples(test))
           for name, model in (("whole", whole), ("parts", parts))}  # fmt: skip
    # other batches and a sampled scaling: within what another seed changes (0.012 here)
    assert abs(auc["parts"] - auc["whole"]) <= 0.03, auc


def test_tables_come_in_parts_too():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({
        "city": rng.choice(["Paris", "Lyon", "Nice"], 900),
        "amount": rng.normal(40, 5, 900),
        "member": rng.choice([True, False], 900),
    })
    table.loc[rng.choice(900, 9, replace=False), "amount"] = np.nan
    detector = AAEDetector(missing="impute", **FAST)
    detector.fit_chunks(lambda: (table.iloc[i : i + 100] for i in range(0, 900, 100)),
                        sample_rows=300)  # fmt: skip
    assert detector.schema_.columns[0].kind == "categorical"
    assert sorted(detector.schema_.columns[0].categories) == ["Lyon", "Nice", "Paris"]
    assert np.isfinite(detector.score_samples(table)).all()


def test_an_image_model_keeps_the_grey_scale_of_its_rows_as_fit_does():
    images = np.random.default_rng(4).uniform(0, 255, size=(120, 1, 4, 4)).round()
    params = {**FAST, "epochs": 1, "encoder": "conv"}
    whole = AAEDetector(**params).fit(images)
    parts = AAEDetector(**params).fit_chunks(parts_of(images, 50))
    np.testing.assert_array_equal(parts.input_range_, whole.input_range_)


def test_every_row_but_the_held_back_ones_is_trained_on_once_an_epoch():
    import torch

    rows = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    held_back = np.array([3, 500, 999])
    generator = torch.Generator().manual_seed(0)
    batches = list(training_batches(lambda part: part, parts_of(rows, 64)(), held_back, 32,
                                    200, generator, torch.device("cpu")))  # fmt: skip
    seen = np.concatenate([b.numpy()[:, 0] for b in batches])
    assert sorted(seen) == sorted(set(range(1000)) - {3, 500, 999})
    assert all(len(b) == 32 for b in batches[:-1])
    # shuffled beyond one part: some batch mixes rows more than a part (64 rows) apart
    assert max(b.max() - b.min() for b in batches) > 64


def test_bad_parts_and_settings_are_named():
    with pytest.raises(TypeError, match="chunks must be a callable"):
        AAEDetector(epochs=1).fit_chunks([np.zeros((5, 2))])
    with pytest.raises(ValueError, match="sample_rows must be a positive integer"):
        AAEDetector(epochs=1).fit_chunks(lambda: iter([np.zeros((5, 2))]), sample_rows=0)
    with pytest.raises(ValueError, match="0 sample"):
        AAEDetector(epochs=1).fit_chunks(lambda: iter([]))
    good, bad = np.ones((50, 2)), np.ones((50, 2))
    bad[7, 1] = np.nan
    good[:, 0] = np.arange(50)
    with pytest.raises(ValueError, match="column 1 has 1 missing cell"):
        AAEDetector(epochs=1).fit_chunks(lambda: iter([good, bad]), sample_rows=10)


# -- fit --stream ------------------------------------------------------------------------------
def test_fit_stream_reads_a_table_a_chunk_at_a_time(tmp_path):
    from conftest import run

    import aae_anomaly

    rng = np.random.default_rng(1)
    n = 1200
    table = pd.DataFrame({
        "order id": np.arange(n),
        "code": rng.choice(["007", "012", "A1"], n),  # "007" stays text in every chunk
        "amount": rng.normal(40, 5, n).round(2),
        "label": (np.arange(n) % 100 == 0).astype(int),
    })
    table.loc[table["label"] == 1, "amount"] = 500.0
    table.to_csv(tmp_path / "rows.csv", index=False)
    model = tmp_path / "m.aae"
    result = run("fit", tmp_path / "rows.csv", "-o", model, "--stream", "--chunk-rows", 100,
                 "--sample-rows", 400, "--id-column", "order id", "--label-column", "label",
                 "--epochs", 3)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1188 rows read a chunk at a time" in result.stderr  # the 12 anomalies left out
    detector = aae_anomaly.load(model)
    assert sorted(detector.schema_.columns[0].categories) == ["007", "012", "A1"]
    scores = run("score", model, tmp_path / "rows.csv", "--drop-column", "label",
                 "-o", tmp_path / "s.csv")  # fmt: skip
    assert scores.exit_code == 0, scores.output
    flagged = pd.read_csv(tmp_path / "s.csv")["is_anomaly"].to_numpy()
    assert flagged[table["label"] == 1].all()


def test_fit_stream_names_what_it_cannot_do(tmp_path):
    from conftest import assert_bad_input, run

    np.savez(tmp_path / "rows.npz", X=np.zeros((20, 3)))
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(50, 3)))
    output = tmp_path / "m.aae"
    assert_bad_input(run("fit", tmp_path / "rows.npz", "-o", output, "--stream"),
                     "is read whole: fit it without --stream")  # fmt: skip
    known = run("fit", tmp_path / "rows.npy", "-o", output, "--stream", "--known-anomalies")
    assert_bad_input(known, "--stream does not combine with --known-anomalies")
    assert_bad_input(run("fit", tmp_path / "rows.npy", "-o", output, "--stream",
                         "--chunk-rows", 0), "Invalid value for '--chunk-rows'")  # fmt: skip
    result = run("fit", tmp_path / "rows.npy", "-o", output, "--stream", "--epochs", 1, "-q")
    assert result.exit_code == 0, result.output


def test_fit_stream_checkpoints_and_resumes_to_the_same_model_file(tmp_path, monkeypatch):
    from conftest import run

    from aae_anomaly.engine.checkpoint import FILENAME, Checkpoint

    rng = np.random.default_rng(2)
    table = pd.DataFrame({"city": rng.choice(["Paris", "Lyon"], 700),
                          "amount": rng.normal(40, 5, 700)})  # fmt: skip
    table.to_csv(tmp_path / "rows.csv", index=False)
    args = ["fit", tmp_path / "rows.csv", "--stream", "--chunk-rows", 90, "--sample-rows",
            300, "--shuffle-rows", 120, "--epochs", 5, "--seed", 1, "-q"]  # fmt: skip
    assert run(*args, "-o", tmp_path / "whole.aae").exit_code == 0
    # an interruption (SIGINT) right after epoch 3's checkpoint
    save = Checkpoint.save

    def save_then_interrupt(self, trainer):
        save(self, trainer)
        if trainer.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_interrupt)
    resumed, checkpoints = tmp_path / "resumed.aae", tmp_path / "ckpt"
    result = run(*args, "-o", resumed, "--checkpoint", checkpoints)
    assert result.exit_code == 130 and "Error: fit interrupted by SIGINT" in result.stderr
    assert not resumed.exists() and (checkpoints / FILENAME).is_file()
    monkeypatch.setattr(Checkpoint, "save", save)
    result = run(*args, "-o", resumed, "--checkpoint", checkpoints, "--resume")
    assert result.exit_code == 0, result.output
    assert resumed.read_bytes() == (tmp_path / "whole.aae").read_bytes()


def test_fit_stream_refuses_to_resume_on_changed_data(tmp_path):
    from conftest import assert_bad_input, run

    rows = np.random.default_rng(3).normal(size=(400, 4))
    np.save(tmp_path / "rows.npy", rows)
    args = ["fit", tmp_path / "rows.npy", "-o", tmp_path / "m.aae", "--stream", "--chunk-rows",
            100, "--epochs", 2, "--checkpoint", tmp_path / "ckpt", "-q"]  # fmt: skip
    assert run(*args).exit_code == 0
    rows[-1, -1] += 1.0
    np.save(tmp_path / "rows.npy", rows)
    assert_bad_input(run(*args, "--resume"), "belongs to a different fit",
                     "stream.rows_sha256")  # fmt: skip
    assert_bad_input(run(*args), "already holds a checkpoint; resume it")
