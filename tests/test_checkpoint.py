"""Checkpoints: a fit interrupted at any point (an exception, SIGINT, SIGTERM, SIGKILL)
resumes to the model an uninterrupted fit gives, bit for bit, and an interrupted run never
leaves a model file at the output path."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from aae_anomaly import AAEDetector, CheckpointError
from aae_anomaly.engine import checkpoint as checkpoint_module
from aae_anomaly.engine.checkpoint import FILENAME, METADATA_KEY, Checkpoint

ROWS = np.random.default_rng(5).normal(size=(200, 5))


class Stop(BaseException):
    """Stands in for a crash right after a checkpoint was written."""


def _stopping_after(epoch, monkeypatch, run_fit):
    """Run ``run_fit()``, crashing it right after the checkpoint of ``epoch`` is written."""
    save = Checkpoint.save

    def save_then_stop(self, trainer):
        save(self, trainer)
        if trainer.epoch == epoch:
            raise Stop

    monkeypatch.setattr(Checkpoint, "save", save_then_stop)
    with pytest.raises(Stop):
        run_fit()
    monkeypatch.setattr(Checkpoint, "save", save)


def _fit_stopping_after(epoch, monkeypatch, directory, **params):
    _stopping_after(
        epoch, monkeypatch, lambda: AAEDetector(**params).fit(ROWS, checkpoint_dir=directory)
    )


PARAMS = {"epochs": 6, "random_state": 3, "posterior": "gaussian"}


@pytest.fixture(scope="module")
def uninterrupted():
    return AAEDetector(**PARAMS).fit(ROWS)


@pytest.mark.parametrize("stop_after", [1, 4, 6])
def test_a_resumed_fit_gives_the_uninterrupted_model_bit_for_bit(
    tmp_path, monkeypatch, uninterrupted, stop_after
):
    _fit_stopping_after(stop_after, monkeypatch, tmp_path, **PARAMS)
    resumed = AAEDetector(**PARAMS).fit(ROWS, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(resumed.score_samples(ROWS), uninterrupted.score_samples(ROWS))
    assert resumed.history_ == uninterrupted.history_
    for name, tensor in uninterrupted.module_.state_dict().items():
        assert torch.equal(resumed.module_.state_dict()[name], tensor), name


def test_the_checkpoint_holds_optimizer_and_generator_state_exactly(tmp_path, monkeypatch):
    _fit_stopping_after(2, monkeypatch, tmp_path, **PARAMS)
    with safe_open(str(tmp_path / FILENAME), framework="pt") as handle:
        names = set(handle.keys())
        document = json.loads(handle.metadata()[METADATA_KEY])
        generator_state = handle.get_tensor("generator")
    assert generator_state.dtype == torch.uint8
    assert {"optimizer/autoencoder/0/exp_avg", "optimizer/autoencoder/0/exp_avg_sq"} <= names
    assert any(name.startswith("module/encoder.") for name in names)
    assert document["epoch"] == 2 and len(document["history"]["reconstruction"]) == 2
    assert document["identity"]["params"]["epochs"] == 6
    assert [g["betas"] for g in document["optimizers"]["generator"]["param_groups"]] == [
        [0.5, 0.999]
    ]


def test_resume_with_other_settings_or_data_is_refused(tmp_path, monkeypatch):
    _fit_stopping_after(2, monkeypatch, tmp_path, **PARAMS)
    with pytest.raises(CheckpointError, match="different fit \\(differs in: params.epochs\\)"):
        AAEDetector(**{**PARAMS, "epochs": 7}).fit(ROWS, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="differs in: training_rows_sha256"):
        AAEDetector(**PARAMS).fit(ROWS + 1e-9, checkpoint_dir=tmp_path, resume=True)


def test_an_existing_checkpoint_is_not_overwritten_without_resume(tmp_path, monkeypatch):
    _fit_stopping_after(2, monkeypatch, tmp_path, **PARAMS)
    before = (tmp_path / FILENAME).read_bytes()
    with pytest.raises(CheckpointError, match="already holds a checkpoint \\(2 of 6 epochs\\)"):
        AAEDetector(**PARAMS).fit(ROWS, checkpoint_dir=tmp_path)
    assert (tmp_path / FILENAME).read_bytes() == before


def test_checkpointing_needs_a_seed_and_resume_needs_a_directory(tmp_path):
    with pytest.raises(ValueError, match="needs an integer random_state"):
        AAEDetector(epochs=1).fit(ROWS, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_dir"):
        AAEDetector(epochs=1, random_state=0).fit(ROWS, resume=True)


def test_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path, uninterrupted):
    resumed = AAEDetector(**PARAMS).fit(ROWS, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(resumed.score_samples(ROWS), uninterrupted.score_samples(ROWS))
    assert (tmp_path / FILENAME).is_file()


# -- a fit on rows read in parts (fit_chunks, fit --stream) ------------------------------------
STREAM_ROWS = np.random.default_rng(6).normal(size=(600, 5))
STREAM_PARAMS = {"epochs": 5, "batch_size": 32, "random_state": 3}
# fewer sample rows than rows, so that the statistics come from a sampled pass
STREAM_SIZES = {"sample_rows": 200, "shuffle_rows": 100}


def _parts(rows=STREAM_ROWS, size=70):
    return lambda: (rows[i : i + size] for i in range(0, len(rows), size))


def _streamed(directory=None, resume=False, parts=None, **sizes):
    return AAEDetector(**STREAM_PARAMS).fit_chunks(
        parts or _parts(), **{**STREAM_SIZES, **sizes}, checkpoint_dir=directory, resume=resume
    )


@pytest.fixture(scope="module")
def uninterrupted_streamed():
    return _streamed()


def _streamed_stopping_after(epoch, monkeypatch, directory):
    _stopping_after(epoch, monkeypatch, lambda: _streamed(directory))


@pytest.mark.parametrize("stop_after", [1, 4])
def test_a_resumed_streamed_fit_gives_the_uninterrupted_model_bit_for_bit(
    tmp_path, monkeypatch, uninterrupted_streamed, stop_after
):
    _streamed_stopping_after(stop_after, monkeypatch, tmp_path)
    resumed = _streamed(tmp_path, resume=True)
    whole = uninterrupted_streamed
    # the resumed fit's own statistics pass drew the same sample: the same scaling,
    # calibration and reference rows (module buffers), then the same training
    assert resumed.calibration_.to_dict() == whole.calibration_.to_dict()
    for name, tensor in whole.module_.state_dict().items():
        assert torch.equal(resumed.module_.state_dict()[name], tensor), name
    np.testing.assert_array_equal(resumed.score_samples(STREAM_ROWS),
                                  whole.score_samples(STREAM_ROWS))  # fmt: skip
    assert resumed.history_ == whole.history_ and resumed.offset_ == whole.offset_


def test_resume_of_a_streamed_fit_on_other_rows_or_settings_is_refused(tmp_path, monkeypatch):
    from aae_anomaly.estimators.streaming import reservoir

    _streamed_stopping_after(2, monkeypatch, tmp_path)
    # a row the sample does not hold: only the digest of every row tells the change
    _, sampled, _ = reservoir(_parts()(), STREAM_SIZES["sample_rows"], np.random.RandomState(3))
    outside = int(np.setdiff1d(np.arange(len(STREAM_ROWS)), sampled)[0])
    changed = STREAM_ROWS.copy()
    changed[outside, 0] += 1e-9
    with pytest.raises(CheckpointError, match=r"differs in: stream.rows_sha256\)"):
        _streamed(tmp_path, resume=True, parts=_parts(changed))
    # other parts give other batches: a resume would not end with the same model
    with pytest.raises(CheckpointError, match="stream.part_sizes_sha256"):
        _streamed(tmp_path, resume=True, parts=_parts(size=50))
    with pytest.raises(CheckpointError, match=r"differs in: stream.shuffle_rows\)"):
        _streamed(tmp_path, resume=True, shuffle_rows=90)
    with pytest.raises(CheckpointError, match="params.epochs"):
        AAEDetector(**{**STREAM_PARAMS, "epochs": 6}).fit_chunks(
            _parts(), **STREAM_SIZES, checkpoint_dir=tmp_path, resume=True
        )


def test_a_streamed_fit_refuses_a_checkpoint_before_reading_the_rows(tmp_path, monkeypatch):
    _streamed_stopping_after(1, monkeypatch, tmp_path)

    def unread():
        raise AssertionError("the rows were read")

    with pytest.raises(CheckpointError, match="already holds a checkpoint; resume it"):
        _streamed(tmp_path, parts=unread)
    with pytest.raises(ValueError, match="needs an integer random_state"):
        AAEDetector(epochs=1).fit_chunks(unread, checkpoint_dir=tmp_path / "other")
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_dir"):
        AAEDetector(epochs=1, random_state=0).fit_chunks(unread, resume=True)


def _rewrite(path, change_document=None, change_tensors=None):
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()[METADATA_KEY])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    if change_document:
        change_document(document)
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(document)})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a readable aae-anomaly checkpoint"),
        (lambda p: p.write_bytes(b"\xff" * 8 + p.read_bytes()[8:]), "not a readable"),
        (lambda p: p.write_bytes(b""), "not a readable"),
        (lambda p: _rewrite(p, lambda d: d.update(format="other")), "not an aae-anomaly"),
        (lambda p: _rewrite(p, lambda d: d.update(format_version=9)), "format version 9"),
        (lambda p: _rewrite(p, lambda d: d.update(epoch="2")), "damaged: its metadata"),
        (lambda p: _rewrite(p, lambda d: d.update(history=[1, 2])), "damaged: its metadata"),
        (lambda p: _rewrite(p, lambda d: d.pop("optimizers")), "damaged: its metadata"),
        (lambda p: _rewrite(p, change_tensors=lambda t: t.pop("generator")), "no generator"),
        (
            lambda p: _rewrite(
                p,
                change_tensors=lambda t: t.update(
                    {"module/encoder.net.0.weight": t["generator"].clone()}
                ),
            ),
            "does not fit the networks",
        ),
        (
            lambda p: _rewrite(
                p,
                change_tensors=lambda t: t.update(
                    {"optimizer/generator/0/exp_avg": t["generator"].clone()}
                ),
            ),
            "does not fit the networks",
        ),
    ],
    ids=[
        "truncated",
        "bad-header-length",
        "empty",
        "foreign-format",
        "newer-version",
        "epoch-as-string",
        "history-as-list",
        "no-optimizers",
        "no-generator",
        "wrong-module-tensor",
        "wrong-optimizer-tensor",
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, monkeypatch, damage, message):
    _fit_stopping_after(2, monkeypatch, tmp_path, **PARAMS)
    damage(tmp_path / FILENAME)
    with pytest.raises(CheckpointError, match=message):
        AAEDetector(**PARAMS).fit(ROWS, checkpoint_dir=tmp_path, resume=True)


def test_checkpoint_write_failure_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
        AAEDetector(epochs=1, random_state=0).fit(ROWS, checkpoint_dir=blocker / "sub")


def test_checkpoint_module_uses_no_pickle():
    source = Path(checkpoint_module.__file__).read_text()
    assert "pickle" not in source.replace("holds no pickle", "")
    assert "torch.load" not in source


# -- the command line, in real processes, with real signals ----------------------------------
EPOCHS = 15
CLI_FIT = ["--epochs", str(EPOCHS), "--batch-size", "16", "--seed", "2", "-q"]


def _cli(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "aae_anomaly", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _epochs_in(path: Path) -> int:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads(handle.metadata()[METADATA_KEY])["epoch"]
    except Exception:  # not there yet
        return -1


def _interrupt(process, checkpoint: Path, after_epoch: int, signum: int) -> tuple[int, str]:
    """Send ``signum`` once the checkpoint holds more than ``after_epoch`` epochs; return
    the epochs it held just before, and what the process wrote on stderr."""
    deadline = time.monotonic() + 120
    while _epochs_in(checkpoint) <= after_epoch:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    epochs = _epochs_in(checkpoint)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)  # also closes the pipes
    return epochs, stderr


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signals")
    np.save(folder / "rows.npy", np.random.default_rng(1).normal(size=(300, 6)))
    reference = folder / "reference.aae"
    process = _cli("fit", str(folder / "rows.npy"), "-o", str(reference), *CLI_FIT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return folder / "rows.npy", reference.read_bytes()


def _finish(data, output, checkpoint_dir):
    process = _cli("fit", str(data), "-o", str(output), *CLI_FIT, "--checkpoint",
                   str(checkpoint_dir), "--resume")  # fmt: skip
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "resuming from the checkpoint" not in stderr  # -q: no notes
    return output.read_bytes()


@pytest.mark.slow
def test_cli_sigterm_then_resume_gives_the_same_model_file(tmp_path, cli_data):
    data, reference = cli_data
    output, checkpoints = tmp_path / "model.aae", tmp_path / "ckpt"
    process = _cli("fit", str(data), "-o", str(output), *CLI_FIT, "--checkpoint", str(checkpoints))
    done, stderr = _interrupt(process, checkpoints / FILENAME, 0, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert 1 <= done < EPOCHS
    assert "Error: fit interrupted by SIGTERM" in stderr and "--resume" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert _finish(data, output, checkpoints) == reference


@pytest.mark.slow
def test_cli_sigint_and_sigkill_then_resume_gives_the_same_model_file(tmp_path, cli_data):
    data, reference = cli_data
    output, checkpoints = tmp_path / "model.aae", tmp_path / "ckpt"
    output.write_bytes(b"an older model")  # an interrupted fit leaves it as it was
    args = ["fit", str(data), "-o", str(output), *CLI_FIT, "--checkpoint", str(checkpoints)]
    process = _cli(*args)
    first, stderr = _interrupt(process, checkpoints / FILENAME, 0, signal.SIGINT)
    assert process.returncode == 128 + signal.SIGINT
    assert "Error: fit interrupted by SIGINT" in stderr
    # resume, and kill that one outright after it has done at least one more epoch
    process = _cli(*args, "--resume")
    second, _ = _interrupt(process, checkpoints / FILENAME, first, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert first < second < EPOCHS
    assert output.read_bytes() == b"an older model"
    assert _finish(data, output, checkpoints) == reference


def test_cli_resume_needs_a_checkpoint_dir_and_refuses_a_foreign_one(tmp_path, cli_data):
    from click.testing import CliRunner

    from aae_anomaly.cli import main

    data, _ = cli_data
    result = CliRunner().invoke(main, ["fit", str(data), "-o", str(tmp_path / "m.aae"), "--resume"])
    assert result.exit_code == 2 and "--resume needs --checkpoint DIR" in result.output
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / FILENAME).write_bytes(b"\x08" + os.urandom(100))
    result = CliRunner().invoke(
        main,
        ["fit", str(data), "-o", str(tmp_path / "m.aae"), "--epochs", "1", "--checkpoint",
         str(tmp_path / "ckpt"), "--resume"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "is not a readable aae-anomaly checkpoint" in result.output
    assert not (tmp_path / "m.aae").exists()
