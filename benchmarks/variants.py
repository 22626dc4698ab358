"""Figures and measurements of the AAE variants in ``docs/variants.md``.

Every number in that page is what this script printed; every figure is what it drew.
It uses scikit-learn's bundled ``digits`` (1,797 8x8 images of the digits 0-9), so it
needs no download, and runs in about a minute on one CPU core.

    OMP_NUM_THREADS=1 python benchmarks/variants.py            # all parts
    OMP_NUM_THREADS=1 python benchmarks/variants.py --part map  # one part: map, conditioned

Parts:

``map`` (dimensionality reduction)
    An AAE with a 2-D code fitted on a training half of the digits; the codes of the
    other half are drawn coloured by digit (``docs/figures/digits-map.png``). Measured:
    how well the 2-D code keeps the digits apart, as the accuracy of a 5-nearest-neighbour
    classifier fitted on the training half's codes and tested on the other half's, beside
    the same for a 2-D PCA of the pixels.
``conditioned`` (label-conditioned regularization)
    Digits 0-4 are normal, with their digit as class; digits 5-9 are anomalies. The same
    AAE (10-component mixture prior, 2-D code) fitted without and with ``classes``.
    Measured: ROC-AUC of each score component on the test half, and how often the
    best-matching class of a held-out normal digit is its own. Figure: the conditioned
    model's map of the test half (``docs/figures/digits-conditioned-map.png``) and its
    score histogram with the threshold (``docs/figures/digits-conditioned-histogram.png``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SEED = 0
PARTS = ("map", "conditioned")


def digits_halves(seed: int = SEED):
    """The digits split in two halves at random: (X_train, y_train, X_test, y_test)."""
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    half = len(order) // 2
    X, y = digits.data.astype(np.float64), digits.target
    return X[order[:half]], y[order[:half]], X[order[half:]], y[order[half:]]


def knn_accuracy(train_codes, y_train, test_codes, y_test) -> float:
    classifier = KNeighborsClassifier(n_neighbors=5).fit(train_codes, y_train)
    return float((classifier.predict(test_codes) == y_test).mean())


def part_map(args) -> None:
    from aae_anomaly import AAEDetector
    from aae_anomaly.plotting import plot_map

    X_train, y_train, X_test, y_test = digits_halves()
    start = time.perf_counter()
    detector = AAEDetector(
        latent_dim=2,
        prior="mixture",
        prior_params={"n_components": 10},
        epochs=args.epochs,
        random_state=SEED,
    ).fit(X_train)
    seconds = time.perf_counter() - start
    aae = knn_accuracy(detector.transform(X_train), y_train, detector.transform(X_test), y_test)
    pca = PCA(n_components=2, random_state=SEED).fit(X_train)
    linear = knn_accuracy(pca.transform(X_train), y_train, pca.transform(X_test), y_test)
    print(
        f"map: digits, {len(X_train)} training rows, {args.epochs} epochs, fit {seconds:.1f} s"
    )
    print(f"map: 5-NN digit accuracy in 2-D: AAE code {aae:.3f}, PCA {linear:.3f}")
    path = FIGURES / "digits-map.png"
    plot_map(detector, X_test, path, color="label", labels=y_test, size=(5.5, 4.5), dpi=80)
    print(f"map: wrote {path.relative_to(ROOT)}")


def part_conditioned(args) -> None:
    from aae_anomaly import AAEDetector
    from aae_anomaly.plotting import plot_histogram, plot_map

    X_train, y_train, X_test, y_test = digits_halves()
    normal = y_train < 5
    X_fit, classes = X_train[normal], y_train[normal]
    anomalous = (y_test >= 5).astype(int)
    params = dict(
        latent_dim=2,
        prior="mixture",
        prior_params={"n_components": 10},
        epochs=args.epochs,
        random_state=SEED,
    )
    print(
        f"conditioned: digits 0-4 normal ({len(X_fit)} training rows), digits 5-9 anomalies; "
        f"test half {len(X_test)} rows, {int(anomalous.sum())} anomalies; {args.epochs} epochs"
    )
    for name, fit_classes in (("unconditioned", None), ("conditioned", classes)):
        start = time.perf_counter()
        detector = AAEDetector(**params).fit(X_fit, classes=fit_classes)
        seconds = time.perf_counter() - start
        components = detector.score_components(X_test)
        aucs = ", ".join(
            f"{key} {roc_auc_score(anomalous, components[key]):.3f}"
            for key in ("score", "reconstruction", "discriminator", "density", "neighbors")
        )
        print(f"conditioned: {name:13s} fit {seconds:5.1f} s; ROC-AUC {aucs}")
        if fit_classes is not None:
            test_normal = y_test < 5
            found = components["class"][test_normal]
            accuracy = float((found == y_test[test_normal]).mean())
            print(
                f"conditioned: best-matching class = own digit for {accuracy:.3f} of the "
                f"{int(test_normal.sum())} held-out normal digits"
            )
            given = detector.score_components(
                X_test[test_normal], classes=y_test[test_normal]
            )
            print(
                "conditioned: held-out normal digits scored in their own class: median "
                f"density {np.median(given['density']):.2f} vs best class "
                f"{np.median(components['density'][test_normal]):.2f}"
            )
            path = FIGURES / "digits-conditioned-map.png"
            plot_map(
                detector, X_test, path, color="label", labels=y_test, size=(5.5, 4.5), dpi=80
            )
            print(f"conditioned: wrote {path.relative_to(ROOT)}")
            path = FIGURES / "digits-conditioned-histogram.png"
            plot_histogram(detector, X_test, path, labels=anomalous, size=(5.5, 3.5), dpi=80)
            print(f"conditioned: wrote {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, action="append", help="default: all")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)
    FIGURES.mkdir(parents=True, exist_ok=True)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), seed {SEED}")
    for part in args.part or PARTS:
        {"map": part_map, "conditioned": part_conditioned}[part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
