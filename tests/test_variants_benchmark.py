"""benchmarks/variants.py's MNIST bookkeeping: the table it writes into docs/variants.md
and the training FLOPs it reports per epoch."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import variants  # noqa: E402

from aae_anomaly import AAEClassifier, AAEClustering  # noqa: E402


def run(error, epochs=50, seconds=600.0):
    return {
        "error_percent": error, "fit_seconds": seconds, "epoch_seconds": seconds / epochs,
        "gflops": 45.0, "limit_gflops": 90.0,
    }


def test_table_gives_the_mean_of_each_tasks_seeds_per_budget():
    results = {
        "labels-100-epochs-50/seed-0": run(4.0),
        "labels-100-epochs-50/seed-1": run(5.0),
        "labels-100-epochs-20/seed-0": run(30.0),  # one seed of this budget: left out
        "labels-1000-epochs-50/seed-0": run(2.0),  # a task that starts like another
        "labels-1000-epochs-50/seed-1": run(3.0),
        "clusters-16/seed-0": run(12.5, epochs=40),  # the default budget
        "clusters-16/seed-3": run(13.5, epochs=40),
        "labels-100": run(99.0),  # an older cache entry without a seed
    }
    table = variants.mnist_table(results)
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [(row[0].lstrip("| "), row[1], row[2]) for row in rows] == [
        ("semi-supervised, 100 labels", "50", "**4.50%**"),
        ("semi-supervised, 1,000 labels", "50", "**2.50%**"),
        ("clustering, 16 clusters", str(variants.MNIST_EPOCHS), "**13.00%**"),
    ]
    assert rows[0][3] == "4.00% (seed 0), 5.00% (seed 1)"
    assert rows[2][6] == "50%, 50%"


def test_table_part_rewrites_only_the_marked_lines(tmp_path, monkeypatch, capsys):
    page = tmp_path / "variants.md"
    page.write_text(
        f"before\n{variants.TABLE_START}\nold table\n{variants.TABLE_END}\nafter\n"
    )
    results = tmp_path / "variants-mnist.json"
    results.write_text(json.dumps({
        "clusters-30/seed-0": run(8.0, epochs=40), "clusters-30/seed-1": run(10.0, epochs=40)
    }))
    monkeypatch.setattr(variants, "VARIANTS_PAGE", page)
    monkeypatch.setattr(variants, "MNIST_RESULTS", results)
    monkeypatch.setattr(variants, "ROOT", tmp_path)

    variants.part_mnist_table(None)
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n")
    assert "old table" not in text and "**9.00%**" in text
    assert "**9.00%**" in capsys.readouterr().out


@pytest.mark.parametrize("consistency", [0.0, 1.0])
def test_epoch_flops_grow_with_the_rows_and_count_the_consistency_passes(consistency):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 300)).astype(np.float32)  # the encoder's passes dominate
    model = AAEClustering(n_clusters=4, batch_size=64, consistency_weight=consistency)
    flops = variants.epoch_flops(model, X, None)
    assert flops == pytest.approx(2 * variants.epoch_flops(model, X[:256], None))
    if consistency:
        plain = variants.epoch_flops(model.set_params(consistency_weight=0.0), X, None)
        assert flops > 1.3 * plain


def test_epoch_flops_of_a_classifier_include_its_labelled_step():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 20)).astype(np.float32)
    labels = np.full(512, -1)
    labels[-10:] = np.arange(10) % 2  # the labelled rows come last: they must be found
    model = AAEClassifier(batch_size=64, labelled_batch_size=64)
    with_labels = variants.epoch_flops(model, X, labels)
    clustering = AAEClustering(n_clusters=2, batch_size=64, style_dim=model.style_dim)
    assert with_labels > variants.epoch_flops(clustering, X, None)
