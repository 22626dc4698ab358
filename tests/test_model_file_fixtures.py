"""Model files written by an earlier version (0.1.0, committed under tests/fixtures) still
load and score as they did when they were written.

The expected values were computed on the machine that wrote the files. Another CPU kind
may round a float32 product differently in the last place, so they are compared to
within float32 rounding; what must be bit-identical on every machine (a loaded model
against the same model saved and loaded again) is compared exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import aae_anomaly
from aae_anomaly.io.modelfile import read_header

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FILES = {"detector-v1": 1, "conditioned-v2": 2}
# float32 networks: scores a few ulps apart on another CPU; relative to the spread of the
# scores (several units), 1e-4 is far below any difference a change of behaviour makes
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(FILES))
def test_an_earlier_versions_model_file_loads_and_scores_as_it_did(name):
    path = FIXTURES / f"{name}.aae"
    expected = np.load(FIXTURES / f"{name}-expected.npz")
    assert read_header(path).document["format_version"] == FILES[name]
    detector = aae_anomaly.load(path)
    X = expected["X"]
    np.testing.assert_allclose(detector.score_samples(X), expected["score_samples"], **TOLERANCE)
    np.testing.assert_allclose(detector.transform(X), expected["transform"], **TOLERANCE)
    components = detector.score_components(X)
    for key in expected.files:
        if key.startswith("component_"):
            component = key.removeprefix("component_")
            np.testing.assert_allclose(components[component], expected[key], **TOLERANCE)
    if name == "conditioned-v2":
        assert detector.normal_classes_.tolist() == ["a", "b", "c"]
        assert set(components["class"]) <= {"a", "b", "c"}


@pytest.mark.parametrize("name", sorted(FILES))
def test_an_earlier_versions_model_file_saved_again_scores_bit_identically(name, tmp_path):
    detector = aae_anomaly.load(FIXTURES / f"{name}.aae")
    detector.save(tmp_path / "again.aae")
    again = aae_anomaly.load(tmp_path / "again.aae")
    X = np.load(FIXTURES / f"{name}-expected.npz")["X"]
    np.testing.assert_array_equal(again.score_samples(X), detector.score_samples(X))
    np.testing.assert_array_equal(again.transform(X), detector.transform(X))
    assert again.offset_ == detector.offset_


# Format 3 (a table model) and 4 (the class-and-style family), on the rows they were
# written with: a CSV of an id, a text category, a boolean and numbers with gaps.
def _table_rows():
    import pandas as pd

    return pd.read_csv(FIXTURES / "table-rows.csv")


def test_a_table_model_file_loads_and_scores_as_it_did():
    path = FIXTURES / "table-v3.aae"
    assert read_header(path).document["format_version"] == 3
    expected = np.load(FIXTURES / "table-v3-expected.npz")
    detector = aae_anomaly.load(path)
    frame = _table_rows()
    assert detector.schema_.ignored == ["order id"]
    np.testing.assert_allclose(detector.score_samples(frame), expected["score_samples"],
                               **TOLERANCE)  # fmt: skip
    np.testing.assert_allclose(detector.transform(frame), expected["transform"], **TOLERANCE)


def test_a_family_model_file_loads_and_answers_as_it_did():
    path = FIXTURES / "clustering-v4.aae"
    assert read_header(path).document["format_version"] == 4
    expected = np.load(FIXTURES / "clustering-v4-expected.npz")
    model = aae_anomaly.load(path)
    rows = _table_rows().drop(columns=["order id"]).fillna(0.0)
    np.testing.assert_allclose(model.predict_proba(rows), expected["predict_proba"], **TOLERANCE)
    np.testing.assert_allclose(model.transform(rows), expected["transform"], **TOLERANCE)
    np.testing.assert_array_equal(model.labels_, expected["labels_"])
