"""The example pictures of ``aae-anomaly plot`` in ``docs/cli.md``.

Two cases a person should read at a glance, both from scikit-learn's bundled data (no
download; about a minute on one CPU core):

- breast cancer (569 rows, 30 columns): a detector fitted on 70% of the benign rows;
  drawn are the other rows, malignant ones labelled anomalies, plus five benign rows
  multiplied by 30 to 400, the extreme rows anomaly detection is about. Their codes lie
  hundreds of units out and their scores reach 10^4: the map keeps the bulk in its frame
  and draws those rows on its edge; scores get a log colour scale and log bins.
- digits (8x8 images, 0 black to 16 white): a conv model fitted on all digits but 3;
  its decoded samples on the training data's grey scale.

    OMP_NUM_THREADS=1 python benchmarks/plot_figures.py

The command line draws the same pictures from the same files:

    aae-anomaly plot bc.aae test.csv -o map.png --label-column label --id-column patient
    aae-anomaly plot bc.aae test.csv -o histogram.png --kind histogram --label-column label \\
        --id-column patient
    aae-anomaly plot digits.aae -o samples.png --kind samples
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits

from aae_anomaly import AAEDetector
from aae_anomaly.plotting import plot_histogram, plot_map, plot_samples

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
SEED = 0
SIZE, DPI = (6.4, 4.8), 80


def breast_cancer_case():
    """The fitted detector, and the rows to draw (a DataFrame) with their labels."""
    frame = load_breast_cancer(as_frame=True).frame
    labels = 1 - frame.pop("target").to_numpy()  # sklearn's 1 is benign
    normal = np.flatnonzero(labels == 0)
    rng = np.random.default_rng(SEED)
    train = rng.choice(normal, size=int(0.7 * len(normal)), replace=False)
    rest = np.setdiff1d(np.arange(len(frame)), train)
    extreme = frame.iloc[rest[labels[rest] == 0][:5]] * np.array([30, 60, 100, 200, 400])[:, None]
    test = pd.concat([frame.iloc[rest], extreme], ignore_index=True)
    test_labels = np.append(labels[rest], np.ones(5, dtype=int))
    detector = AAEDetector(latent_dim=2, epochs=60, random_state=SEED).fit(frame.iloc[train])
    return detector, test, test_labels


def main() -> None:
    detector, test, labels = breast_cancer_case()
    drawn = plot_map(detector, test, FIGURES / "plot-map.png", color="label", labels=labels,
                     size=SIZE, dpi=DPI)
    print(f"map: {drawn['clipped'].sum()} of {len(test)} rows beyond the frame")
    drawn = plot_map(detector, test, FIGURES / "plot-map-score.png", size=SIZE, dpi=DPI)
    print(f"map by score: {drawn['scale']} colour scale")
    drawn = plot_histogram(detector, test, FIGURES / "plot-histogram.png", labels=labels,
                           size=SIZE, dpi=DPI)
    print(f"histogram: {drawn['scale']} bins, scores up to {drawn['scores'].max():.4g}")
    digits = load_digits()
    images = digits.images[digits.target != 3].reshape(-1, 1, 8, 8)
    image_model = AAEDetector(encoder="conv", latent_dim=4, epochs=100, random_state=SEED)
    drawn = plot_samples(image_model.fit(images), FIGURES / "plot-samples.png", size=(5, 5),
                         dpi=DPI)
    print(f"samples: grey scale {drawn['range'][0][0]:g} to {drawn['range'][1][0]:g} "
          f"({drawn['range_source']})")


if __name__ == "__main__":
    main()
