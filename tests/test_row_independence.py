"""Every per-row output of every estimator is bit-identical for a row whatever rows it is
computed with: a subset, another order, another batch, another position in a batch.

The widths here are odd on purpose (3 and 5 features; codes of 11 values after a hidden
layer of 22): on an AMD EPYC with MKL, a linear layer from 22 to 11 values gave a row one
result at even and another at odd positions of the same batch until every inference input
was laid out with 64-byte aligned rows (``aae_anomaly.engine.inference``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from aae_anomaly import AAEClassifier, AAEClustering, AAEDetector, SupervisedAAE
from aae_anomaly.engine.inference import BATCH_ROWS, aligned_rows, inference_ready


def blobs(n_features: int, n: int = 240):
    return make_blobs(n_samples=n, n_features=n_features, centers=3, random_state=0)


def fitted(kind: str, n_features: int):
    X, y = blobs(n_features)
    settings = dict(epochs=2, batch_size=64, random_state=0)
    if kind == "detector":
        model = AAEDetector(latent_dim=11, **settings).fit(X)
        methods = ("score_samples", "decision_function", "predict", "transform")
    elif kind == "images":
        # flat rows of n_features x n_features one-channel images: per-sample scaling, a
        # mean and deviation computed within each row (9 or 25 values, odd on purpose)
        X, _ = blobs(n_features * n_features)
        model = AAEDetector(latent_dim=11, input_shape=(1, n_features, n_features), **settings)
        model.fit(X)
        assert model.module_.sample_scaling is not None
        methods = ("score_samples", "transform")
    elif kind == "classifier":
        labels = np.where(np.arange(len(y)) % 10 == 0, y, -1)
        model = AAEClassifier(style_dim=8, **settings).fit(X, labels)
        methods = ("predict_proba", "predict", "transform")
    elif kind == "clustering":
        model = AAEClustering(n_clusters=3, style_dim=8, **settings).fit(X)
        methods = ("predict_proba", "predict", "transform")
    else:
        model = SupervisedAAE(style_dim=11, **settings).fit(X, y)
        methods = ("transform",)
    return model, methods, X


@pytest.mark.parametrize("n_features", [3, 5])
@pytest.mark.parametrize("kind", ["detector", "images", "classifier", "clustering", "supervised"])
def test_a_rows_outputs_do_not_depend_on_the_rows_beside_it(kind, n_features):
    model, methods, X = fitted(kind, n_features)
    rng = np.random.RandomState(1)
    order = rng.permutation(len(X))
    subset = order[:37]
    # a call of more than one batch, so that rows land at other offsets of other batches,
    # the last rows of a full batch included
    filler = rng.normal(size=(BATCH_ROWS - 3, X.shape[1])) + X.mean(axis=0)
    large = np.vstack([filler, X[order]])
    for method in methods:
        whole = getattr(model, method)(X)
        np.testing.assert_array_equal(getattr(model, method)(X[order]), whole[order], method)
        np.testing.assert_array_equal(getattr(model, method)(X[subset]), whole[subset], method)
        np.testing.assert_array_equal(getattr(model, method)(X[5:6]), whole[5:6], method)
        in_large = getattr(model, method)(large)[len(filler):]
        np.testing.assert_array_equal(in_large, whole[order], method)


def test_the_detectors_components_do_not_depend_on_the_rows_beside_it():
    model, _, X = fitted("detector", 3)
    order = np.random.RandomState(2).permutation(len(X))
    whole = model.score_components(X)
    shuffled = model.score_components(X[order])
    for name, values in whole.items():
        np.testing.assert_array_equal(shuffled[name], values[order], name)


def test_aligned_rows_start_every_row_on_a_64_byte_boundary_and_keep_the_values():
    x = torch.randn(9, 22)[:, 1:]  # an odd width at an odd offset
    aligned = aligned_rows(x)
    assert aligned.data_ptr() % 64 == 0
    assert (aligned.stride(0) * aligned.element_size()) % 64 == 0
    assert torch.equal(aligned, x)
    ready = torch.randn(4, 32)
    assert aligned_rows(ready).data_ptr() == ready.data_ptr()  # already aligned: no copy


def test_linear_layers_read_aligned_rows_only_in_inference_mode():
    seen = []
    layer = inference_ready(torch.nn.Linear(22, 11))
    layer.register_forward_pre_hook(lambda _, args: seen.append(args[0].stride(0)))
    x = torch.randn(8, 22)
    with torch.inference_mode():
        layer(x)
    layer(x)  # training: left as it is
    assert seen == [32, 22]
    inference_ready(layer)  # idempotent: still one alignment hook
    assert len(layer._forward_pre_hooks) == 2
