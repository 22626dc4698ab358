"""The default score against a plain neighbour search in the inputs, and their sum.

Same protocol and splits as ``benchmarks/quality.py`` (the 18 ADBench sets, clean
training). For each data set and seed, one default ``AAEDetector`` is fitted and its
score taken; beside it, the mean distance to the 2 nearest training rows in the scaled
inputs (a kNN of our own, no network), made a robust z-score on the training rows'
leave-one-out distances as the AAE's components are on its held-out rows; the sum of the
two (two searches); and the default plus the same input-space distance taken among the
8 nearest reference rows in (code, residual) coordinates only (one search: the second
view re-ranks its candidates). Prints the mean ROC-AUC / AP of each over sets and seeds.

``--reference-rows N`` caps both searches at N training rows (the AAE's by setting its
cap, ``aae_anomaly.estimators.fitting.MAX_REFERENCE_ROWS``; 4,096 by default): at half
the default cap, the sum costs what the default score costs now. ``--seed-offset``
fits the networks with other seeds on the same splits, to see how far a difference
is the networks' seed.

    python benchmarks/input_views.py --data ../shared/data/adbench
    python benchmarks/input_views.py --data ../shared/data/adbench --seed-offset 100
    python benchmarks/input_views.py --data ../shared/data/adbench --reference-rows 2048
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (the protocol's split)

CANDIDATES = 8  # reference rows the re-ranked input view measures per row
K = 2  # the default score's neighbour count on clean training rows (a search needs K + 1)


def input_knn_score(X_train, X_test, rows: int | None, seed: int) -> np.ndarray:
    """Mean distance to the K nearest of (at most ``rows``) training rows, as a robust
    z-score: the training rows' own distances, measured leave-one-out, give its median
    and spread."""
    if rows is not None and len(X_train) > rows:
        pick = np.random.RandomState(seed).choice(len(X_train), rows, replace=False)
        X_train = X_train[np.sort(pick)]
    search = NearestNeighbors(n_neighbors=K + 1).fit(X_train)
    own = search.kneighbors(X_train)[0][:, 1:].mean(axis=1)  # the row itself left out
    new = search.kneighbors(X_test, n_neighbors=K)[0].mean(axis=1)
    q75, q25 = np.percentile(own, [75, 25])
    return (new - np.median(own)) / max((q75 - q25) / 1.349, 1e-12)


def reranked_input_score(detector, X_test) -> np.ndarray:
    """Mean input-space distance to the K closest, in the inputs, of the row's
    :data:`CANDIDATES` nearest reference rows in the model's (code, residual) space, as a
    robust z-score on the reference rows' own values (each row itself left out). A
    reference row's input is its residual plus its code's reconstruction."""
    import torch

    from aae_anomaly.scoring.components import joint_coordinates, reference_inputs

    module = detector.module_
    reference = module.reference.numpy()
    rows = np.asarray(X_test, dtype=np.float32).reshape(len(X_test), -1)
    inputs = reference_inputs(module).numpy()
    with torch.inference_mode():
        queries = joint_coordinates(module, rows, 1024, torch.device("cpu")).numpy()
        scaled = module.scale_input(torch.from_numpy(rows)).reshape(len(rows), -1).numpy()
    m = min(CANDIDATES, len(reference) - 1)
    search = NearestNeighbors(n_neighbors=m + 1).fit(reference)

    def among(candidates, points):
        distances = np.linalg.norm(inputs[candidates] - points[:, None], axis=2)
        return np.sort(distances, axis=1)[:, :K].mean(axis=1)

    own = among(search.kneighbors(reference, return_distance=False)[:, 1:], inputs)
    new = among(search.kneighbors(queries, n_neighbors=m, return_distance=False), scaled)
    q75, q25 = np.percentile(own, [75, 25])
    return (new - np.median(own)) / max((q75 - q25) / 1.349, 1e-12)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of ADBench .npz sets")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="added to each split's seed for the network's seed")
    parser.add_argument("--reference-rows", type=int, default=None,
                        help="cap both searches at this many training rows")
    args = parser.parse_args(argv)
    paths = sorted(args.data.glob("*.npz"))
    if not paths:
        parser.error(f"no .npz data sets in {args.data}")
    if args.reference_rows is not None and args.reference_rows < K + 1:
        parser.error(f"--reference-rows must be at least {K + 1}")
    from aae_anomaly import AAEDetector
    from aae_anomaly.estimators import fitting

    if args.reference_rows is not None:
        fitting.MAX_REFERENCE_ROWS = args.reference_rows
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {"AAE default": [], f"input kNN (k = {K})": [], "sum": [],
               f"default + input view among {CANDIDATES} candidates": []}
    for path in paths:
        X, y = quality.load_npz(path)
        for seed in seeds:
            X_train, X_test, y_test = quality.protocol_split(X, y, seed)
            detector = AAEDetector(random_state=seed + args.seed_offset).fit(X_train)
            aae = detector.score_components(X_test)["score"]
            plain = input_knn_score(X_train, X_test, args.reference_rows, seed)
            row = []
            reranked = aae + reranked_input_score(detector, X_test)
            scores = (aae, plain, aae + plain, reranked)
            for (name, found), score in zip(results.items(), scores, strict=True):
                found.append((roc_auc_score(y_test, score),
                              average_precision_score(y_test, score)))
                row.append(f"{name} {found[-1][0]:.3f}")
            print(f"{path.stem} seed {seed}: " + ", ".join(row), flush=True)
    cap = (f"both searches capped at {args.reference_rows} rows" if args.reference_rows
           else f"the AAE's reference capped at {fitting.MAX_REFERENCE_ROWS} rows, the "
           "inputs' search over all training rows")
    print(f"\nmean over sets and seeds {seeds} (network seeds + {args.seed_offset}); {cap}\n")
    print("| score | ROC-AUC / AP |\n|---|---|")
    for name, found in results.items():
        roc, ap = np.mean(found, axis=0)
        print(f"| {name} | {roc:.4f} / {ap:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
