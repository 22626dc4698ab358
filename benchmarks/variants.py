"""Figures and measurements of the AAE variants in ``docs/variants.md``.

Every number in that page is what this script printed; every figure is what it drew.
It uses scikit-learn's bundled ``digits`` (1,797 8x8 images of the digits 0-9), so it
needs no download, and runs in about a minute on one CPU core.

    OMP_NUM_THREADS=1 python benchmarks/variants.py            # all parts
    OMP_NUM_THREADS=1 python benchmarks/variants.py --part map  # one part (see below)

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
``semi`` (semi-supervised anomaly detection, ADBench)
    The ADBench sets in ``../shared/data/adbench``. Per data set and seed: the normal rows
    split 60% training / 40% test as in ``benchmarks/quality.py``; the anomalies are
    shuffled and split in half, a labelled pool and the test anomalies, so the test set is
    the same for every labelled share. With 0%, 1% and 5% of the data set's anomalies
    labelled (at least one for a non-zero share), those are drawn from the pool and passed
    as ``anomaly_labels``; ROC-AUC of the default score on the test set. Needs the data
    (``--data DIR``); skipped when it is absent. Figure: ROC-AUC with 5% against 0%
    labelled, per data set (``docs/figures/semi-supervised.png``).
``supervised`` (supervised AAE, the decoder is given the class)
    ``SupervisedAAE`` fitted on the digits' training half. Measured: how often a logistic
    regression fitted on the real training half recognises ``sample(n, y=k)`` as digit
    ``k`` (100 samples per digit, prior styles). Figure: rows = the styles of ten test
    digits (``transform``), columns = the ten classes (``docs/figures/digits-styles.png``).
``classifier`` (semi-supervised classification, MNIST)
    MNIST assembled from the normal rows of ``../shared/data/mnist-oneclass/mnistK.npz``
    (digit K), shuffled with seed 0: 10,000 test rows, the rest for training. With 100
    and 1000 labels (10 / 100 per digit, the first of each digit in the shuffled training
    rows), ``AAEClassifier`` on all training rows (the others labelled -1), one fit per
    seed of ``--seeds``; test error beside the paper's, the time per epoch, and the
    training FLOPs per epoch (counted by torch's FlopCounterMode) against the machine's
    matrix-product limit. Results cached in ``benchmarks/results/variants-mnist.json``
    under ``TASK[-epochs-E]/seed-S``.
``clustering`` (unsupervised clustering, MNIST)
    ``AAEClustering`` with 16 and 30 clusters on the same training rows, no labels. Each
    cluster takes the majority digit of its training rows; the error is the share of test
    rows whose cluster's digit is not theirs. Cached as for ``classifier``.
``mnist-table``
    The cached MNIST runs as one table, a row per task and budget run with at least two
    seeds (their mean and each), printed and written into ``docs/variants.md`` between its
    ``mnist-table`` marker lines.

The MNIST parts run one task per process side by side (the cache is locked):

    OMP_NUM_THREADS=1 python benchmarks/variants.py --part classifier --labels 100 --seeds 0,1 &
    OMP_NUM_THREADS=1 python benchmarks/variants.py --part clustering --clusters 16 --seeds 0,1

``--mnist-rows N`` and ``--set NAME=JSON`` make a probe: fewer training rows or one
estimator parameter changed, printed but not cached.
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
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "adbench"
LABELLED_SHARES = (0.0, 0.01, 0.05)
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist-oneclass"
MNIST_RESULTS = ROOT / "benchmarks" / "results" / "variants-mnist.json"
MNIST_TEST_ROWS = 10_000
# Makhzani et al. (2015), tables 2 and 3: test error (%) of the semi-supervised AAE with
# 100 and 1000 labels, and of the unsupervised clustering with 16 and 30 clusters
MNIST_EPOCHS = 40
PAPER_ERROR = {"labels-100": 1.90, "labels-1000": 1.60, "clusters-16": 9.55, "clusters-30": 4.10}
# This floors for the same four figures (test error, %)
FLOOR_ERROR = {"labels-100": 5.0, "labels-1000": 3.0, "clusters-16": 15.0, "clusters-30": 10.0}
# One CPU budget for every MNIST run: an MLP of 512 and 256 units (the paper's networks are
# larger, trained on a GPU for far longer), pixels scaled to [0, 1] with a sigmoid/bce
# output, Gaussian noise on the scaled inputs, and the terms on q(y|x) that the MNIST
# probes kept (docs/variants.md): virtual adversarial training and per-row sharpness.
MNIST_SETTINGS = dict(
    encoder_params={"hidden": [512, 256]},
    reconstruction_loss="bce",
    batch_size=256,
    input_noise=0.3,
    consistency_weight=1.0,
    sharpness_weight=1.0,
)
MNIST_CLASSIFIER = dict(MNIST_SETTINGS, style_dim=10, labelled_batch_size=64)
MNIST_CLUSTERING = dict(MNIST_SETTINGS, style_dim=5)
# docs/variants.md's MNIST table sits between these lines; the mnist-table part rewrites it
TABLE_START = "<!-- mnist-table: written by benchmarks/variants.py --part mnist-table -->"
TABLE_END = "<!-- end of mnist-table -->"
VARIANTS_PAGE = ROOT / "docs" / "variants.md"


def digits_halves(seed: int = SEED):
    """The digits split in two halves at random: (X_train, y_train, X_test, y_test)."""
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    half = len(order) // 2
    X, y = digits.data.astype(np.float64), digits.target
    return X[order[:half]], y[order[:half]], X[order[half:]], y[order[half:]]


def timed_fit(model, *args, **kwargs):
    """``model`` fitted, and the seconds the fit took."""
    start = time.perf_counter()
    model.fit(*args, **kwargs)
    return model, time.perf_counter() - start


def first_labels(y: np.ndarray, per_digit: int) -> np.ndarray:
    """``y`` with only the first ``per_digit`` rows of each digit labelled, the others -1."""
    labels = np.full(len(y), -1)
    for digit in range(10):
        labels[np.flatnonzero(y == digit)[:per_digit]] = digit
    return labels


def knn_accuracy(train_codes, y_train, test_codes, y_test) -> float:
    classifier = KNeighborsClassifier(n_neighbors=5).fit(train_codes, y_train)
    return float((classifier.predict(test_codes) == y_test).mean())


def part_map(args) -> None:
    from aae_anomaly import AAEDetector
    from aae_anomaly.plotting import plot_map

    X_train, y_train, X_test, y_test = digits_halves()
    detector, seconds = timed_fit(
        AAEDetector(
            latent_dim=2,
            prior="mixture",
            prior_params={"n_components": 10},
            epochs=args.epochs,
            random_state=SEED,
        ),
        X_train,
    )
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
        detector, seconds = timed_fit(AAEDetector(**params), X_fit, classes=fit_classes)
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


def semi_split(X: np.ndarray, y: np.ndarray, seed: int):
    """Training rows, the labelled-anomaly pool, test rows and test labels (scaled)."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    anomalies = rng.permutation(np.flatnonzero(y != 0))
    n_train = int(0.6 * len(normal))
    train, test_normal = normal[:n_train], normal[n_train:]
    pool, test_anomalies = anomalies[: len(anomalies) // 2], anomalies[len(anomalies) // 2 :]
    if len(train) > 20_000:
        train = rng.choice(train, 20_000, replace=False)
    if len(test_normal) > 20_000:
        test_normal = rng.choice(test_normal, 20_000, replace=False)
    test = np.concatenate([test_normal, test_anomalies])
    scaler = StandardScaler().fit(X[train])
    return (
        scaler.transform(X[train]),
        scaler.transform(X[pool]),
        scaler.transform(X[test]),
        (y[test] != 0).astype(int),
        len(anomalies),
    )


def part_semi(args) -> None:
    from aae_anomaly import AAEDetector

    folder = Path(args.data)
    paths = sorted(folder.glob("*.npz"), key=lambda p: int(p.stem.split("_")[0]))
    if not paths:
        print(f"semi: no ADBench data in {folder}; skipped")
        return
    if args.datasets:
        paths = [p for p in paths if p.stem in args.datasets.split(",")]
    header = " | ".join(f"{share:.0%} labelled" for share in LABELLED_SHARES)
    print(f"semi: ROC-AUC of the default score, mean over seeds {list(args.seeds)}")
    print(f"semi: | data set | labelled anomalies (1% / 5%) | {header} |")
    table = {}
    for path in paths:
        with np.load(path, allow_pickle=False) as archive:
            X = archive["X"].reshape(len(archive["X"]), -1).astype(np.float64)
            y = archive["y"].reshape(-1).astype(int)
        aucs = {share: [] for share in LABELLED_SHARES}
        counts = {}
        for seed in args.seeds:
            X_train, pool, X_test, y_test, n_anomalies = semi_split(X, y, seed)
            order = np.random.default_rng(seed + 1000).permutation(len(pool))
            for share in LABELLED_SHARES:
                n_labelled = min(len(pool), max(1, round(share * n_anomalies))) if share else 0
                counts[share] = n_labelled
                known = pool[order[:n_labelled]]
                rows = np.vstack([X_train, known])
                labels = np.r_[np.zeros(len(X_train)), np.ones(len(known))]
                detector = AAEDetector(random_state=seed).fit(
                    rows, anomaly_labels=labels if n_labelled else None
                )
                scores = -detector.score_samples(X_test)
                aucs[share].append(roc_auc_score(y_test, scores))
        means = {share: float(np.mean(values)) for share, values in aucs.items()}
        table[path.stem] = means
        cells = " | ".join(f"{means[share]:.3f}" for share in LABELLED_SHARES)
        print(f"semi: | {path.stem} | {counts[0.01]} / {counts[0.05]} | {cells} |", flush=True)
    mean = {share: np.mean([row[share] for row in table.values()]) for share in LABELLED_SHARES}
    cells = " | ".join(f"{mean[share]:.3f}" for share in LABELLED_SHARES)
    print(f"semi: | mean of {len(table)} | | {cells} |")
    _semi_figure(table)


def _semi_figure(table: dict) -> None:
    from aae_anomaly.plotting import _figure, _save

    figure = _figure((5.5, 4.5), 80)
    axes = figure.add_subplot()
    names = list(table)
    none = np.array([table[n][0.0] for n in names])
    for share, marker in ((0.01, "o"), (0.05, "s")):
        axes.scatter(none, [table[n][share] for n in names], marker=marker,
                     label=f"{share:.0%} of anomalies labelled")
    low = min(none.min(), min(min(v.values()) for v in table.values())) - 0.02
    axes.plot([low, 1.0], [low, 1.0], color="0.5", linestyle="--", label="no change")
    axes.set_xlabel("ROC-AUC, no labelled anomalies")
    axes.set_ylabel("ROC-AUC with labelled anomalies")
    axes.set_title(f"semi-supervised detection, {len(names)} ADBench sets")
    axes.legend(fontsize="small")
    path = FIGURES / "semi-supervised.png"
    _save(figure, path, 80)
    print(f"semi: wrote {path.relative_to(ROOT)}")


def part_supervised(args) -> None:
    from sklearn.linear_model import LogisticRegression

    from aae_anomaly import SupervisedAAE
    from aae_anomaly.plotting import _figure, _save

    X_train, y_train, X_test, y_test = digits_halves()
    model, seconds = timed_fit(
        SupervisedAAE(style_dim=4, epochs=args.epochs, random_state=SEED), X_train, y_train
    )
    judge = LogisticRegression(max_iter=5000).fit(X_train, y_train)
    wanted = np.repeat(np.arange(10), 100)
    samples = model.sample(len(wanted), classes=wanted, random_state=SEED)
    recognised = float((judge.predict(samples) == wanted).mean())
    real = float((judge.predict(X_test) == y_test).mean())
    print(
        f"supervised: digits, {len(X_train)} training rows, {args.epochs} epochs, "
        f"fit {seconds:.1f} s"
    )
    print(
        f"supervised: sample(100, y=k) recognised as k by a logistic regression: "
        f"{recognised:.3f} (the same classifier on the real test half: {real:.3f})"
    )
    styles = model.transform(X_test[[np.flatnonzero(y_test == k)[0] for k in range(10)]])
    figure = _figure((6.0, 6.4), 80)
    grid = figure.subplots(10, 11)
    for row, style in enumerate(styles):
        source = X_test[np.flatnonzero(y_test == row)[0]]
        images = [source, *model.sample(10, classes=np.arange(10), style=style)]
        for column, image in enumerate(images):
            axes = grid[row, column]
            axes.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title("style of" if column == 0 else str(column - 1), fontsize=8)
    figure.suptitle("SupervisedAAE: style of the left digit, decoded as each class")
    path = FIGURES / "digits-styles.png"
    _save(figure, path, 80)
    print(f"supervised: wrote {path.relative_to(ROOT)}")


def mnist_split(folder: Path):
    """MNIST from the one-class files (digit K = rows labelled 0 of mnistK.npz), shuffled
    with seed 0: (X_train, y_train, X_test, y_test), pixels 0-255 as float32."""
    images, digits = [], []
    for digit in range(10):
        with np.load(folder / f"mnist{digit}.npz", allow_pickle=False) as archive:
            normal = archive["y"].reshape(-1) == 0
            images.append(archive["x"][normal])
            digits.append(np.full(int(normal.sum()), digit))
    X = np.concatenate(images).astype(np.float32)
    y = np.concatenate(digits)
    order = np.random.default_rng(SEED).permutation(len(y))
    X, y = X[order], y[order]
    return X[MNIST_TEST_ROWS:], y[MNIST_TEST_ROWS:], X[:MNIST_TEST_ROWS], y[:MNIST_TEST_ROWS]


def _mnist_data(args, part: str):
    folder = Path(args.mnist_data)
    if not (folder / "mnist0.npz").is_file():
        print(f"{part}: no MNIST in {folder}; skipped")
        return None
    X_train, y_train, X_test, y_test = mnist_split(folder)
    rows = args.mnist_rows or len(X_train)
    return X_train[:rows], y_train[:rows], X_test, y_test


def _mnist_key(name: str, args, seed: int) -> str:
    """The cache key of one MNIST run: ``name`` and its seed, plus its epochs when not
    the default."""
    budget = "" if args.mnist_epochs == MNIST_EPOCHS else f"-epochs-{args.mnist_epochs}"
    return f"{name}{budget}/seed-{seed}"


def _record_mnist(key: str, result: dict) -> None:
    """Add one run to the cache; runs of other parts may write it at the same time (one
    process per task), so the read-modify-write holds a lock."""
    import fcntl
    import json

    MNIST_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(MNIST_RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(MNIST_RESULTS.read_text()) if MNIST_RESULTS.is_file() else {}
        results[key] = result
        MNIST_RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def epoch_flops(model, X: np.ndarray, labels: np.ndarray | None) -> float:
    """Floating-point operations of one training epoch of ``model`` on ``X``: counted by
    torch's FlopCounterMode (matrix products, forward and backward) on one epoch of an
    identical model over two mini-batches of rows, then scaled to ``len(X)`` rows."""
    from unittest import mock

    from sklearn.base import clone
    from torch.utils.flop_counter import FlopCounterMode

    from aae_anomaly.engine.categorical import CategoricalTrainer

    counts = []
    run_epoch = CategoricalTrainer.run_epoch

    def counted(trainer):
        with FlopCounterMode(display=False) as counter:
            result = run_epoch(trainer)
        counts.append(counter.get_total_flops())
        return result

    rows = 2 * model.batch_size
    probe = clone(model).set_params(epochs=1, verbose=False)
    with mock.patch.object(CategoricalTrainer, "run_epoch", counted):
        if labels is None:
            probe.fit(X[:rows])
        else:
            # keep the labelled rows among the probe's, so the classification step runs
            chosen = np.concatenate([np.flatnonzero(labels != -1), np.arange(rows)])[:rows]
            probe.fit(X[chosen], labels[chosen])
    return counts[0] * len(X) / rows


def _mnist_run(args, name: str, model, X_train, labels, seed: int, measure) -> None:
    """Fit one MNIST model, print and cache its figures: ``measure(model)`` gives the test
    error (%) and any other figures to keep; also the time per epoch, and the
    matrix-product rate reached against the machine's limit on as many threads."""
    import torch

    fit_args = (X_train,) if labels is None else (X_train, labels)
    model, seconds = timed_fit(model, *fit_args)
    error, extra = measure(model)
    flops = epoch_flops(model, X_train, labels)
    per_epoch = seconds / model.epochs
    rate, limit = flops / per_epoch, args.matmul_limit
    paper = PAPER_ERROR[name]
    key = _mnist_key(name, args, seed)
    if args.probe:
        key = f"probe {key} on {len(X_train)} rows with {args.set or 'the settings'}"
    print(
        f"{key}: {len(X_train)} training rows, {model.epochs} epochs, fit "
        f"{seconds / 60:.1f} min ({per_epoch:.1f} s an epoch, {flops / 1e12:.2f} TFLOP an "
        f"epoch, {rate / 1e9:.1f} GFLOP/s = {100 * rate / limit:.0f}% of the "
        f"{limit / 1e9:.0f} GFLOP/s matrix-product limit on {torch.get_num_threads()} "
        f"thread(s)): test error {error:.2f}% (paper {paper:.2f}%)"
        + "".join(f"; {k.replace('_', ' ')} {v}" for k, v in extra.items()), flush=True,
    )
    if args.probe:  # a probe's figures are printed, never cached nor tabled
        return
    _record_mnist(key, dict(
        error_percent=round(error, 2), paper_error_percent=paper, fit_seconds=round(seconds, 1),
        epoch_seconds=round(per_epoch, 2), epoch_tflop=round(flops / 1e12, 3),
        gflops=round(rate / 1e9, 1), limit_gflops=round(limit / 1e9, 1),
        threads=torch.get_num_threads(), training_rows=len(X_train),
        settings=model.get_params(), **extra,
    ))


def part_classifier(args) -> None:
    from aae_anomaly import AAEClassifier

    data = _mnist_data(args, "classifier")
    if data is None:
        return
    X_train, y_train, X_test, y_test = data
    for n_labels in args.labels:
        labels = first_labels(y_train, n_labels // 10)
        baseline = round(labelled_only_error(X_train, labels, X_test, y_test), 2)

        def measure(model, baseline=baseline):
            error = 100.0 * float((model.predict(X_test) != y_test).mean())
            return error, {"labelled_only_error_percent": baseline}

        for seed in args.seeds:
            settings = dict(
                MNIST_CLASSIFIER, epochs=args.mnist_epochs, random_state=seed, **args.set
            )
            model = AAEClassifier(**settings)
            _mnist_run(args, f"labels-{n_labels}", model, X_train, labels, seed, measure)


def labelled_only_error(X_train, labels, X_test, y_test) -> float:
    """Test error (%) of a logistic regression fitted on the labelled rows alone (pixels
    scaled to [0, 1]): what the unlabelled rows have to improve on."""
    from sklearn.linear_model import LogisticRegression

    labelled = labels != -1
    judge = LogisticRegression(max_iter=2000).fit(X_train[labelled] / 255.0, labels[labelled])
    return 100.0 * float((judge.predict(X_test / 255.0) != y_test).mean())


def part_clustering(args) -> None:
    from aae_anomaly import AAEClustering

    data = _mnist_data(args, "clustering")
    if data is None:
        return
    X_train, y_train, X_test, y_test = data

    def measure(model):
        test = model.predict(X_test)
        error = 100.0 * clustering_error(model.labels_, y_train, test, y_test)
        return error, {"clusters_used": len(np.unique(model.labels_))}

    for n_clusters in args.clusters:
        for seed in args.seeds:
            settings = dict(
                MNIST_CLUSTERING, n_clusters=n_clusters, epochs=args.mnist_epochs,
                random_state=seed, **args.set,
            )
            model = AAEClustering(**settings)
            _mnist_run(args, f"clusters-{n_clusters}", model, X_train, None, seed, measure)


def mnist_table(results: dict, min_seeds: int = 2) -> str:
    """The Markdown table of the cached MNIST runs: one row per task and budget (epochs)
    with at least ``min_seeds`` seeds, the mean test error over them, each seed's, and
    the times."""
    lines = [
        "| task | epochs | test error, mean | per seed | fit time per run | time per epoch | "
        "share of the matrix-product limit | floor | paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {
        "labels-100": "semi-supervised, 100 labels", "labels-1000": "semi-supervised, 1,000 labels",
        "clusters-16": "clustering, 16 clusters", "clusters-30": "clustering, 30 clusters",
    }  # fmt: skip
    for name, title in names.items():
        budgets: dict[int, list] = {}
        for key, run in results.items():
            task, _, seed = key.partition("/seed-")
            if not seed or not (task == name or task.startswith(f"{name}-epochs-")):
                continue
            epochs = int(task.split("-epochs-")[1]) if "-epochs-" in task else MNIST_EPOCHS
            budgets.setdefault(epochs, []).append((int(seed), run))
        for epochs, runs in sorted(budgets.items()):
            if len(runs) < min_seeds:
                continue
            runs.sort(key=lambda pair: pair[0])
            errors = [run["error_percent"] for _, run in runs]
            seeds = ", ".join(f"{run['error_percent']:.2f}% (seed {seed})" for seed, run in runs)
            minutes = ", ".join(f"{run['fit_seconds'] / 60:.1f}" for _, run in runs)
            epoch = ", ".join(f"{run['epoch_seconds']:.1f}" for _, run in runs)
            share = ", ".join(
                f"{100 * run['gflops'] / run['limit_gflops']:.0f}%" for _, run in runs
            )
            lines.append(
                f"| {title} | {epochs} | **{np.mean(errors):.2f}%** | {seeds} | {minutes} min "
                f"| {epoch} s | {share} | {FLOOR_ERROR[name]:.1f}% | {PAPER_ERROR[name]:.2f}% |"
            )
    return "\n".join(lines)


def part_mnist_table(args) -> None:
    """Print the cached MNIST runs' table and write it into docs/variants.md."""
    import json

    if not MNIST_RESULTS.is_file():
        print("mnist-table: no MNIST runs cached; skipped")
        return
    table = mnist_table(json.loads(MNIST_RESULTS.read_text()))
    print(table)
    page = VARIANTS_PAGE.read_text()
    if TABLE_START in page and TABLE_END in page:
        head, rest = page.split(TABLE_START, 1)
        tail = rest.split(TABLE_END, 1)[1]
        VARIANTS_PAGE.write_text(f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}")
        print(f"mnist-table: wrote {VARIANTS_PAGE.relative_to(ROOT)}")


def clustering_error(train_clusters, y_train, test_clusters, y_test) -> float:
    """Share of test rows whose cluster's majority digit (over the training rows) is not
    their own; a cluster no training row fell in counts as wrong."""
    digit_of = np.full(max(train_clusters.max(), test_clusters.max()) + 1, -1)
    for cluster in np.unique(train_clusters):
        digit_of[cluster] = np.bincount(y_train[train_clusters == cluster]).argmax()
    return float((digit_of[test_clusters] != y_test).mean())


def part_classifier_digits(args) -> None:
    """AAEClassifier on scikit-learn's digits: test error against the number of labels,
    beside a logistic regression on the labelled rows alone (the figure of the classifier
    section)."""
    from aae_anomaly import AAEClassifier
    from aae_anomaly.plotting import _figure, _save

    X_train, y_train, X_test, y_test = digits_halves()
    counts = (10, 20, 50, 100)
    errors, baselines = [], []
    for n_labels in counts:
        labels = first_labels(y_train, n_labels // 10)
        model, seconds = timed_fit(
            AAEClassifier(epochs=args.epochs, random_state=SEED), X_train, labels
        )
        errors.append(100.0 * float((model.predict(X_test) != y_test).mean()))
        baselines.append(labelled_only_error(X_train / 16.0 * 255.0, labels, X_test / 16.0 * 255.0,
                                             y_test))
        print(
            f"classifier-digits: {n_labels} labels of {len(X_train)} rows, {args.epochs} "
            f"epochs, fit {seconds:.1f} s: test error {errors[-1]:.2f}% (logistic regression "
            f"on the labelled rows alone {baselines[-1]:.2f}%)", flush=True,
        )
    figure = _figure((5.0, 3.6), 100)
    axes = figure.subplots()
    axes.plot(counts, errors, "o-", label="AAEClassifier (all rows, few labels)")
    axes.plot(counts, baselines, "s--", label="logistic regression (labelled rows only)")
    axes.set_xscale("log")
    axes.set_xticks(counts, [str(c) for c in counts])
    axes.set_xlabel("labelled rows (of 898)")
    axes.set_ylabel("test error (%)")
    axes.set_title("digits: semi-supervised classification")
    axes.legend(fontsize=8)
    path = FIGURES / "digits-classifier.png"
    _save(figure, path, 100)
    print(f"classifier-digits: wrote {path.relative_to(ROOT)}")


def part_clustering_digits(args) -> None:
    """AAEClustering on scikit-learn's digits with 16 clusters: each cluster's training
    digits in a row (the figure of the clustering section), and the clustering error."""
    from sklearn.metrics import adjusted_rand_score

    from aae_anomaly import AAEClustering
    from aae_anomaly.plotting import _figure, _save

    X_train, y_train, X_test, y_test = digits_halves()
    model, seconds = timed_fit(
        AAEClustering(n_clusters=16, epochs=args.epochs, random_state=SEED), X_train
    )
    test_clusters = model.predict(X_test)
    error = 100.0 * clustering_error(model.labels_, y_train, test_clusters, y_test)
    used = np.unique(model.labels_)
    ari = adjusted_rand_score(y_test, test_clusters)
    print(
        f"clustering-digits: 16 clusters ({len(used)} used), {len(X_train)} rows, "
        f"{args.epochs} epochs, fit {seconds:.1f} s: test error {error:.2f}%, adjusted rand "
        f"index {ari:.3f}", flush=True,
    )
    columns = 12
    figure = _figure((6.0, 0.5 * len(used) + 0.6), 80)
    grid = figure.subplots(len(used), columns, squeeze=False)
    for row, cluster in enumerate(used):
        members = np.flatnonzero(model.labels_ == cluster)[:columns]
        for column in range(columns):
            axes = grid[row, column]
            axes.set_xticks([])
            axes.set_yticks([])
            axes.axis("off")
            if column < len(members):
                axes.imshow(X_train[members[column]].reshape(8, 8), cmap="gray_r", vmin=0,
                            vmax=16)
    figure.suptitle(f"AAEClustering, 16 clusters: each row one cluster ({len(used)} used)")
    path = FIGURES / "digits-clusters.png"
    _save(figure, path, 80)
    print(f"clustering-digits: wrote {path.relative_to(ROOT)}")


PARTS = {
    "map": part_map, "conditioned": part_conditioned, "semi": part_semi,
    "supervised": part_supervised, "classifier": part_classifier,
    "clustering": part_clustering, "classifier-digits": part_classifier_digits,
    "clustering-digits": part_clustering_digits, "mnist-table": part_mnist_table,
}  # fmt: skip


def _setting(parser, text: str) -> tuple[str, object]:
    import json

    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        parser.error(f"--set {text}: expected NAME=JSON, e.g. sharpness_weight=0.5")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, action="append", help="default: all")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ADBench .npz folder")
    parser.add_argument("--datasets", help="semi: comma-separated names (default: all)")
    integers = lambda text: [int(s) for s in text.split(",")]  # noqa: E731
    parser.add_argument("--seeds", type=integers, default=[0])
    parser.add_argument("--mnist-data", default=str(DEFAULT_MNIST), help="mnistK.npz folder")
    parser.add_argument(
        "--mnist-epochs", type=int, default=MNIST_EPOCHS,
        help="results of other budgets are cached under keys that name their epochs",
    )
    parser.add_argument(
        "--mnist-rows", type=int, help="a probe on the first N training rows (not cached)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=JSON",
        help="a probe with one estimator parameter changed, e.g. sharpness_weight=0 (not "
        "cached); repeatable",
    )
    parser.add_argument("--labels", type=integers, default=[100, 1000], help="classifier")
    parser.add_argument("--clusters", type=integers, default=[16, 30], help="clustering")
    args = parser.parse_args(argv)
    args.set = dict(_setting(parser, text) for text in args.set)
    args.probe = bool(args.set or args.mnist_rows)
    FIGURES.mkdir(parents=True, exist_ok=True)
    import torch
    from speed import matmul_limit

    args.matmul_limit = matmul_limit()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), seed {SEED}, "
        f"matrix products {args.matmul_limit / 1e9:.0f} GFLOP/s"
    )
    for part in args.part or PARTS:
        PARTS[part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
