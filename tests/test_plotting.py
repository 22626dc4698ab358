"""Pictures: valid PNG files of the size asked for, from the API and the command line."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from aae_anomaly import AAEDetector, MissingDependencyError, load_dataset
from aae_anomaly.cli import main
from aae_anomaly.plotting import plot_histogram, plot_map, plot_samples, project_codes

pytest.importorskip("matplotlib")

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
    images = plot_samples(image_detector, tmp_path / "s.png", rows=3, columns=4, size=(4, 3))
    assert png_size(tmp_path / "s.png") == (400, 300)
    assert images.shape == (12, 8, 8) and images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match="image model"):
        plot_samples(detector, tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


def test_missing_matplotlib_names_the_extra(detector, data, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"aae-anomaly\[plot\]"):
        plot_map(detector, data.X, tmp_path / "m.png")


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, detector, image_detector, data):
    root = tmp_path_factory.mktemp("plot")
    detector.save(root / "model.aae")
    image_detector.save(root / "images.aae")
    np.savez(root / "test.npz", X=data.X, y=data.y)
    np.save(root / "test.npy", data.X)
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
    ],
)
def test_cli_plot_errors(files, tmp_path, args, fragment):
    model, *rest = args
    result = run("plot", files / model, *[files / a if a.startswith("test") else a for a in rest],
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
