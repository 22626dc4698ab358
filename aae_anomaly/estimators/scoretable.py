"""The score table: what the ``score`` command writes for each row, computed the same way
wherever rows are scored (in this process, or partition by partition on a cluster)."""

from __future__ import annotations

import warnings

import numpy as np

# The score table's columns, in the order of the .npy output's columns.
SCORE_COLUMNS = (
    "score", "reconstruction", "discriminator", "density", "neighbors", "is_anomaly",
)

# scikit-learn's warnings when a table's names meet a model fitted without them, or the
# reverse: the command line matches columns itself, so they would only confuse
NAME_WARNINGS = ("X does not have valid feature names", "X has feature names, but")


def ignore_name_warnings() -> None:
    for message in NAME_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def score_table(detector, X, classes=None) -> dict[str, np.ndarray]:
    """``score``, each component, and ``is_anomaly`` (1 where ``predict`` gives -1);
    ``classes``: each row's class, for a model fitted with classes."""
    components = detector.score_components(X, classes=classes)
    # the same arithmetic as decision_function, from the scores already computed
    flagged = (-components["score"] - detector.offset_) < 0
    table = {name: components[name] for name in SCORE_COLUMNS if name in components}
    table["is_anomaly"] = flagged.astype(np.int64)
    return table
