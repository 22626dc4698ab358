"""How many neighbours the default score should average: mean ROC-AUC / AP for k = 1 to 20.

Same protocol and splits as ``benchmarks/quality.py``. For each data set and seed, one
default ``AAEDetector`` is fitted on the training rows; the score of a test row is its
mean distance to the k nearest training rows in the model's (code, residual)
coordinates, for several k from the same fit. Prints one Markdown table: seed 0, seeds 1
and 2, and all three, so that a choice made on one half can be checked on the other.
Also scores scikit-learn's bundled data sets as one-class tasks (``--bundled``), data the
choice was not made on.

    python benchmarks/neighbor_counts.py --data ../shared/data/adbench
    python benchmarks/neighbor_counts.py --data ../shared/data/mnist-oneclass
    python benchmarks/neighbor_counts.py --bundled
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (the protocol's split)

KS = (1, 2, 3, 5, 10, 20)


def bundled_sets():
    """One-class tasks from scikit-learn's bundled data: breast cancer (malignant rows
    are the anomalies), and each class of digits, wine and iris as the normal one."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine

    X, y = load_breast_cancer(return_X_y=True)
    yield "breast_cancer", X, (y == 0).astype(int)
    for loader, name in ((load_digits, "digits"), (load_wine, "wine"), (load_iris, "iris")):
        X, y = loader(return_X_y=True)
        for c in np.unique(y):
            yield f"{name}{c}", X, (y != c).astype(int)


def bundled_split(X, y, seed):
    """60% of the normal rows train; the test set is the rest and as many anomalies at
    most (classes of these sets outnumber the normal one)."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    n = int(0.6 * len(normal))
    anomalies = np.flatnonzero(y == 1)
    if len(anomalies) > len(normal):
        anomalies = rng.choice(anomalies, len(normal) - n, replace=False)
    train, test = normal[:n], np.concatenate([normal[n:], anomalies])
    scaler = StandardScaler().fit(X[train])
    return scaler.transform(X[train]), scaler.transform(X[test]), y[test]


def measure(X_train, X_test, y_test, seed) -> dict[int, tuple[float, float]]:
    from aae_anomaly import AAEDetector
    from aae_anomaly.scoring.components import joint_coordinates

    detector = AAEDetector(random_state=seed).fit(X_train)
    device = torch.device("cpu")
    flat = [np.asarray(X, dtype=np.float32).reshape(len(X), -1) for X in (X_train, X_test)]
    reference = joint_coordinates(detector.module_, flat[0], 1024, device).numpy()
    queries = joint_coordinates(detector.module_, flat[1], 1024, device).numpy()
    distances = NearestNeighbors(n_neighbors=max(KS)).fit(reference).kneighbors(queries)[0]
    out = {}
    for k in KS:
        score = distances[:, :k].mean(axis=1)
        out[k] = (roc_auc_score(y_test, score), average_precision_score(y_test, score))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a folder of ADBench .npz sets")
    parser.add_argument("--bundled", action="store_true", help="scikit-learn's data sets")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.bundled:
        tasks = [
            (name, lambda s, X=X, y=y: bundled_split(X, y, s)) for name, X, y in bundled_sets()
        ]
    elif args.data:
        shape = quality.IMAGE_SHAPES.get(args.data.name)  # images: one shared scale first

        def protocol_split(seed, X, y):
            X_train, X_test, y_test = quality.protocol_split(X, y, seed, images=bool(shape))
            if shape:
                X_train, X_test = X_train.reshape(-1, *shape), X_test.reshape(-1, *shape)
            return X_train, X_test, y_test

        tasks = []
        for path in sorted(args.data.glob("*.npz")):
            X, y = quality.load_npz(path)
            tasks.append((path.stem, lambda s, X=X, y=y: protocol_split(s, X, y)))
    else:
        parser.error("give --data DIR or --bundled")
    results = {}  # (name, seed) -> {k: (roc, ap)}
    for name, split in tasks:
        for seed in seeds:
            results[name, seed] = measure(*split(seed), seed)
            print(f"{name} seed {seed}: " + ", ".join(
                f"k={k} {v[0]:.3f}" for k, v in results[name, seed].items()), flush=True)

    def mean(chosen_seeds, k):
        # each set's mean over the chosen seeds, then the mean over sets
        per_set = [np.mean([results[name, s][k] for s in chosen_seeds], axis=0)
                   for name, _ in tasks]
        roc, ap = np.mean(per_set, axis=0)
        return f"{roc:.4f} / {ap:.4f}"

    halves = [("seed 0", [s for s in seeds if s == 0]), ("other seeds", [s for s in seeds if s]),
              ("all", seeds)]
    halves = [(label, chosen) for label, chosen in halves if chosen]
    print(f"\n{len(tasks)} data sets, mean ROC-AUC / AP\n")
    print("| k | " + " | ".join(label for label, _ in halves) + " |")
    print("|---|" + "---|" * len(halves))
    for k in KS:
        print(f"| {k} | " + " | ".join(mean(chosen, k) for _, chosen in halves) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
