"""The main job: fit on normal rows, score held-out rows with known anomalies, report."""

from click.testing import CliRunner

from aae_anomaly.cli import main
from aae_anomaly.cli.demo import run_demo


def test_demo_report_on_the_default_bundled_set():
    report = run_demo()
    evaluation = report.evaluation
    assert evaluation.n_anomalies == 212  # malignant rows
    assert report.n_train + evaluation.n_rows - evaluation.n_anomalies == 357  # benign rows
    assert evaluation.roc_auc > 0.9
    assert set(evaluation.component_roc_auc) == {
        "reconstruction", "discriminator", "density", "neighbors",
    }
    text = report.format()
    assert f"ROC-AUC        {evaluation.roc_auc:.4f}" in text
    assert f"trained on     {report.n_train} normal rows" in text


def test_demo_command_prints_the_report():
    result = CliRunner().invoke(main, ["demo", "--dataset", "synthetic:n=600"])
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.output and "synthetic:n=600" in result.output


def test_demo_command_rejects_unknown_dataset_with_status_2():
    result = CliRunner().invoke(main, ["demo", "--dataset", "nope"])
    assert result.exit_code == 2
    assert "unknown dataset 'nope'" in result.output
