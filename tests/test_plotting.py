"""Pictures: valid PNG files of the size asked for, from the API and the command line."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aae_anomaly import AAEDetector, MissingDependencyError, load_dataset
from aae_anomaly.cli import main
from aae_anomaly.plotting import (
    bulk_range,
    is_heavy_tailed,
    plot_histogram,
    plot_map,
    plot_samples,
    project_codes,
    score_norm,
)

pytest.importorskip("matplotlib")
from matplotlib import colors  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = dict(epochs=2, batch_size=64, random_state=0)


def png_size(path) -> tuple[int, int]:
    """Width and height from the PNG header, after checking the signature and IHDR."""
    with open(path, "rb") as handle:
        data = handle.read(24)
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic:n=300,n_features=6,anomalies=0.1,seed=1")


@pytest.fixture(scope="module")
def detector(data):
    return AAEDetector(latent_dim=3, **FAST).fit(data.X[data.y == 0])


@pytest.fixture(scope="module")
def image_detector():
    images = np.random.default_rng(0).random((64, 1, 8, 8))
    return AAEDetector(encoder="conv", latent_dim=2, reconstruction_loss="bce", **FAST).fit(images)


def test_map_coloured_by_score_is_a_png_of_the_size_asked(detector, data, tmp_path):
    drawn = plot_map(detector, data.X, tmp_path / "map.png", size=(4, 3), dpi=50)
    assert png_size(tmp_path / "map.png") == (200, 150)
    # three-dimensional codes are projected, and the title says how
    assert drawn["points"].shape == (len(data.X), 2)
    assert drawn["title"].startswith("PCA of the 3-D latent codes")


def test_map_coloured_by_label_and_two_dimensional_codes(data, tmp_path):
    detector = AAEDetector(latent_dim=2, **FAST).fit(data.X)
    drawn = plot_map(detector, data.X, tmp_path / "map.png", color="label", labels=data.y)
    assert png_size(tmp_path / "map.png") == (640, 480)
    np.testing.assert_array_equal(drawn["points"], detector.transform(data.X))
    assert drawn["title"].startswith("latent code")
    with pytest.raises(ValueError, match="needs labels"):
        plot_map(detector, data.X, tmp_path / "x.png", color="label")
    with pytest.raises(ValueError, match="color must be"):
        plot_map(detector, data.X, tmp_path / "x.png", color="hue")


def test_projection_of_one_dimensional_codes():
    points, prior, how = project_codes(np.ones((4, 1)), np.zeros((3, 1)))
    assert points.shape == (4, 2) and prior.shape == (3, 2) and how == "1-D latent code"


def test_histogram_marks_the_threshold(detector, data, tmp_path):
    drawn = plot_histogram(detector, data.X, tmp_path / "h.png", labels=data.y, dpi=40)
    assert png_size(tmp_path / "h.png") == (256, 192)
    assert drawn["threshold"] == -detector.offset_
    np.testing.assert_array_equal(drawn["scores"], -detector.score_samples(data.X))


def test_samples_grid_for_image_models_only(image_detector, detector, tmp_path):
    drawn = plot_samples(image_detector, tmp_path / "s.png", rows=3, columns=4, size=(4, 3))
    assert png_size(tmp_path / "s.png") == (400, 300)
    assert drawn["images"].shape == (12, 8, 8)
    with pytest.raises(ValueError, match="image model"):
        plot_samples(detector, tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


def test_missing_matplotlib_names_the_extra(detector, data, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"aae-anomaly\[plot\]"):
        plot_map(detector, data.X, tmp_path / "m.png")


# -- read at a glance: robust frames, heavy tails, real ranges, named labels ----------------------
def legend_texts(figure) -> list[str]:
    return [t.get_text() for axes in figure.axes if axes.get_legend()
            for t in axes.get_legend().get_texts()]


@pytest.fixture(scope="module")
def heavy(data):
    """A 2-D model, and test rows with three far beyond the training data: their codes and
    scores are thousands of times further out than the rest."""
    detector = AAEDetector(latent_dim=2, **FAST).fit(data.X[data.y == 0])
    extreme = data.X[:3] * np.array([[300.0], [1000.0], [3000.0]])
    return detector, np.vstack([data.X, extreme])


def test_bulk_range_ignores_a_few_extreme_values():
    values = np.append(np.random.default_rng(0).normal(size=500), [1e4, -1e3])
    low, high = bulk_range(values)
    assert -5 < low < -2 and 2 < high < 5
    assert bulk_range(np.arange(10.0)) == (0.0, 9.0)  # without outliers: everything


def test_map_frame_holds_the_bulk_and_marks_the_rows_beyond_it(heavy, tmp_path):
    detector, X = heavy
    drawn = plot_map(detector, X, tmp_path / "m.png")
    points, limits = drawn["points"], drawn["limits"]
    bulk = points[:-3]
    for axis in range(2):
        low, high = np.quantile(bulk[:, axis], [0.01, 0.99])
        assert limits[axis, 0] < low and high < limits[axis, 1]
        # the frame is about the size of the bulk and the prior's samples (drawn as the
        # reference), not stretched towards the extreme codes
        reference = max(np.ptp(bulk[:, axis]), np.ptp(drawn["prior"][:, axis]))
        assert limits[axis, 1] - limits[axis, 0] < 1.5 * reference
    far = np.abs(points[-3:] - points[:-3].mean(axis=0)).max(axis=1) > 20 * bulk.std()
    assert far.all()  # the extreme rows' codes really are far out
    assert drawn["clipped"][-3:].all() and drawn["clipped"].sum() < 10
    axes = drawn["figure"].axes[0]
    np.testing.assert_allclose([axes.get_xlim(), axes.get_ylim()], limits)
    assert f"{drawn['clipped'].sum()} beyond the frame (on its edge)" in legend_texts(
        drawn["figure"]
    )
    # the clipped rows are drawn on the frame's edge, inside the limits' bounds
    edge_offsets = np.vstack([c.get_offsets() for c in axes.collections[2:]])
    assert len(edge_offsets) == drawn["clipped"].sum()
    on_edge = np.isclose(edge_offsets, limits[:, 0]) | np.isclose(edge_offsets, limits[:, 1])
    assert on_edge.any(axis=1).all()


def test_map_without_outliers_clips_nothing(detector, data, tmp_path):
    drawn = plot_map(detector, data.X[data.y == 0], tmp_path / "m.png")
    assert not drawn["clipped"].any()
    assert not any("beyond" in t for t in legend_texts(drawn["figure"]))


def test_which_tails_are_heavy():
    rng = np.random.default_rng(0)
    assert not is_heavy_tailed(rng.normal(size=100_000))
    assert not is_heavy_tailed(rng.exponential(size=100_000))  # skewed, but not far out
    assert is_heavy_tailed(rng.lognormal(sigma=2.0, size=10_000))
    assert is_heavy_tailed(np.append(rng.normal(size=1000), 50.0))
    assert not is_heavy_tailed(np.ones(10))


def test_heavy_tailed_scores_get_a_log_colour_scale(heavy, tmp_path):
    detector, X = heavy
    scores = -detector.score_samples(X)
    assert is_heavy_tailed(scores)
    drawn = plot_map(detector, X, tmp_path / "m.png")
    norm = drawn["figure"].axes[0].collections[1].norm
    assert drawn["scale"] == "log"
    assert isinstance(norm, colors.SymLogNorm if scores.min() <= 0 else colors.LogNorm)
    # the bulk spreads over the colours instead of sharing the bottom one
    bulk = norm(scores[:-3])
    assert np.ptp(bulk) > 0.3 and np.ptp(colors.Normalize(scores.min(), scores.max())(
        scores[:-3])) < 0.01
    linear = plot_map(detector, X, tmp_path / "m.png", scale="linear")
    assert type(linear["figure"].axes[0].collections[1].norm) is colors.Normalize


def test_rank_colour_scale_puts_tied_values_at_their_mid_rank():
    # 60 of 100 rows share one value, rows 10 to 69 in order: its colour is their middle
    # rank, 39.5 of 99 (ranking the 41 distinct values alone would give 10 of 40)
    values = np.r_[np.arange(10.0), np.full(60, 50.0), np.arange(100.0, 130.0)]
    norm = score_norm(values, "rank")
    assert norm(50.0) == pytest.approx(39.5 / 99)
    assert norm(values.min()) == 0 and norm(values.max()) == 1


def test_rank_colour_scale_colours_by_rank(heavy, tmp_path):
    detector, X = heavy
    scores = -detector.score_samples(X)
    drawn = plot_map(detector, X, tmp_path / "m.png", scale="rank")
    norm = drawn["figure"].axes[0].collections[1].norm
    assert isinstance(norm, colors.FuncNorm)
    assert norm(np.median(scores)) == pytest.approx(0.5, abs=0.01)
    assert norm(scores.max()) == pytest.approx(1.0) and norm(scores.min()) == pytest.approx(0)
    with pytest.raises(ValueError, match="scale must be"):
        plot_map(detector, X, tmp_path / "m.png", scale="loud")


def test_histogram_of_heavy_tailed_scores_has_log_bins(heavy, tmp_path):
    detector, X = heavy
    drawn = plot_histogram(detector, X, tmp_path / "h.png")
    assert drawn["scale"] == "log"
    axes = drawn["figure"].axes[0]
    assert axes.get_xscale() in ("log", "symlog")
    # evenly spaced on the log axis: each bin as wide on the picture as the others
    widths = np.diff(axes.xaxis.get_transform().transform(drawn["edges"]))
    np.testing.assert_allclose(widths, widths[0], rtol=1e-6)
    counts = np.histogram(drawn["scores"], bins=drawn["edges"])[0]
    assert counts.max() < 0.5 * len(X)  # not everything in the first bin
    threshold_lines = [line for line in axes.lines if line.get_linestyle() == "--"]
    assert threshold_lines[0].get_xdata()[0] == drawn["threshold"]
    linear = plot_histogram(detector, X, tmp_path / "h.png", scale="linear")
    assert linear["figure"].axes[0].get_xscale() == "linear"
    assert np.histogram(linear["scores"], bins=linear["edges"])[0][0] > 0.9 * len(X)
    with pytest.raises(ValueError, match="scale must be"):
        plot_histogram(detector, X, tmp_path / "h.png", scale="rank")


def test_legends_say_normal_and_anomaly(detector, data, tmp_path):
    drawn = plot_map(detector, data.X, tmp_path / "m.png", color="label", labels=data.y)
    texts = legend_texts(drawn["figure"])
    n_anomalies = int(data.y.sum())
    assert f"normal ({len(data.y) - n_anomalies})" in texts
    assert f"anomaly ({n_anomalies})" in texts
    drawn = plot_histogram(detector, data.X, tmp_path / "h.png", labels=data.y.astype(bool))
    texts = legend_texts(drawn["figure"])
    assert texts[:2] == [f"normal ({len(data.y) - n_anomalies})", f"anomaly ({n_anomalies})"]
    # classes other than 0/1 keep their names
    classes = np.arange(len(data.X)) % 3 + 5
    drawn = plot_map(detector, data.X, tmp_path / "m.png", color="label", labels=classes)
    assert {"5", "6", "7"} <= set(legend_texts(drawn["figure"]))


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_samples_are_drawn_on_the_training_datas_range(loss, tmp_path):
    # digits' pixel values: 0 (black) to 16 (white), most of them 0
    images = np.random.default_rng(0).integers(0, 17, (64, 1, 8, 8)).astype(float)
    images[:, :, :, :2] = 0.0
    detector = AAEDetector(encoder="conv", latent_dim=2, reconstruction_loss=loss, **FAST)
    detector.fit(images)
    drawn = plot_samples(detector, tmp_path / "s.png", rows=2, columns=2)
    assert drawn["range_source"] == "training data"
    np.testing.assert_allclose(np.concatenate(drawn["range"]), [0.0, 16.0])
    for axes in drawn["figure"].axes[:4]:
        assert axes.images[0].get_clim() == (0.0, 16.0)
    # the images are in the data's units: as the model decodes them
    np.testing.assert_allclose(
        drawn["images"], detector.sample(4, random_state=0).reshape(4, 8, 8)
    )


def test_samples_of_model_files_without_a_training_range(image_detector, tmp_path):
    detector = AAEDetector(encoder="conv", latent_dim=2, **FAST).fit(
        np.random.default_rng(0).random((64, 1, 8, 8)) * 5
    )
    del detector.input_range_, image_detector.__dict__["input_range_"]
    try:
        drawn = plot_samples(detector, tmp_path / "s.png", rows=2, columns=2)
        # mse: the samples' own range, and the picture says so
        assert drawn["range_source"] == "samples"
        low, high = drawn["range"]
        assert low[0] >= drawn["images"].min() and high[0] <= drawn["images"].max()
        # bce: its scaling is the training minimum and maximum
        drawn = plot_samples(image_detector, tmp_path / "s.png", rows=2, columns=2)
        center = image_detector.module_.center.numpy()
        scale = image_detector.module_.scale.numpy()
        np.testing.assert_allclose(np.concatenate(drawn["range"]),
                                   [center.min(), (center + scale).max()], rtol=1e-6)
        assert drawn["range_source"] == "training data"
    finally:
        image_detector.input_range_ = np.array([[0.0], [1.0]])


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, detector, image_detector, data):
    root = tmp_path_factory.mktemp("plot")
    detector.save(root / "model.aae")
    image_detector.save(root / "images.aae")
    np.savez(root / "test.npz", X=data.X, y=data.y)
    np.save(root / "test.npy", data.X)
    # a table as users export it: a text id, a free-text column, semicolons, labels
    table = pd.DataFrame(data.X, columns=[f"x{i}" for i in range(data.X.shape[1])])
    AAEDetector(latent_dim=2, **FAST).fit(table[data.y == 0]).save(root / "table.aae")
    table.insert(0, "order", [f"A-{i:04d}" for i in range(len(table))])
    table["note"] = "checked"
    table["is_fraud"] = data.y
    table.to_csv(root / "table.csv", sep=";", index=False)
    return root


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(
    "args",
    [
        ("test.npz",),
        ("test.npz", "--color", "label"),
        ("test.npy", "--kind", "histogram"),
        ("test.npz", "--kind", "histogram"),
    ],
)
def test_cli_plot(files, tmp_path, args):
    data, *options = args
    result = run("plot", files / "model.aae", files / data, "-o", tmp_path / "p.png", *options,
                 "--dpi", "30")
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "p.png") == (192, 144)


TABLE_OPTIONS = ("--id-column", "order", "--drop-column", "note", "--label-column", "is_fraud",
                 "--delimiter", ";")


@pytest.mark.parametrize(
    "options",
    [("--color", "label"), ("--scale", "rank"), ("--kind", "histogram", "--scale", "log")],
)
def test_cli_plot_of_a_table_with_ids_and_text(files, tmp_path, options):
    result = run("plot", files / "table.aae", files / "table.csv", "-o", tmp_path / "t.png",
                 *TABLE_OPTIONS, *options)
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "t.png") == (640, 480)


def test_cli_plot_help_shows_the_defaults():
    result = run("plot", "--help")
    assert "--scale [auto|linear|log|rank]" in result.output
    assert "[default: auto]" in " ".join(result.output.split())


def test_cli_plot_samples(files, tmp_path):
    result = run("plot", files / "images.aae", "-o", tmp_path / "s.png", "--kind", "samples")
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "s.png") == (600, 600)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("model.aae", "test.npy", "--color", "label"), "--color label needs labels"),
        (("model.aae",), "needs DATA"),
        (("model.aae", "--kind", "samples"), "image model"),
        (("images.aae", "test.npy", "--kind", "samples"), "takes no DATA"),
        (("model.aae", "test.npy", "--dpi", "0"), "dpi must be"),
        (("missing.aae", "test.npy"), "no such model file"),
        (("model.aae", "test.npz", "--kind", "histogram", "--scale", "rank"),
         "--scale rank colours a map"),
        (("table.aae", "table.csv", "--id-column", "ref"), "no column 'ref'"),
        (("table.aae", "table.csv", "--drop-column", "order"), "columns 'note'"),
        (("model.aae", "test.npy", "--id-column", "order"), "applies to .csv and .parquet"),
    ],
)
def test_cli_plot_errors(files, tmp_path, args, fragment):
    model, *rest = args
    result = run("plot", files / model,
                 *[files / a if a.startswith(("test", "table")) else a for a in rest],
                 "-o", tmp_path / "p.png")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines
    assert not (tmp_path / "p.png").exists()


def test_cli_plot_wants_png_and_the_extra(files, tmp_path, monkeypatch):
    result = run("plot", files / "model.aae", files / "test.npy", "-o", tmp_path / "p.jpg")
    assert result.exit_code == 2 and "name it *.png" in result.stderr
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run("plot", files / "model.aae", files / "test.npy", "-o", tmp_path / "p.png")
    assert result.exit_code == 2 and "pip install 'aae-anomaly[plot]'" in result.stderr
