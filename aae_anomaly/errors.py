"""Exceptions a user can catch. Each message names the problem and, where there is one, the fix."""

from __future__ import annotations


class AAEAnomalyError(Exception):
    """Base class of every error this library raises on purpose."""


class PluginError(AAEAnomalyError):
    """A plugin could not be loaded, or its hook failed or returned something unusable."""


class UnknownPluginError(PluginError, KeyError):
    """A prior, encoder or dataset name that no installed plugin registers."""

    def __init__(self, kind: str, name: str, available: list[str]):
        self.kind, self.name, self.available = kind, name, available
        choices = ", ".join(available) if available else "none (is aae-anomaly installed?)"
        super().__init__(f"unknown {kind} {name!r}; available: {choices}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class DensityUnavailableError(AAEAnomalyError, NotImplementedError):
    """The prior can be sampled from but has no closed-form density."""


class TrainingDivergedError(AAEAnomalyError, RuntimeError):
    """A loss became NaN or infinite during fit."""


class TrainingWarning(UserWarning):
    """Training went wrong in a way the fit could work around or finish despite: a diverged
    epoch that was retried with smaller learning rates, or a discriminator that overpowered
    the encoder. The message says what to change."""


class ExtremeValueWarning(UserWarning):
    """Rows with values so far outside the training data that they were saturated."""


class RowKeyWarning(UserWarning):
    """A feature column looks like a row key (an id or a saved index), which would make
    new rows look anomalous for their new keys alone."""


class CheckpointError(AAEAnomalyError, ValueError):
    """A training checkpoint could not be written, read, or does not belong to this fit."""


class ModelFileError(AAEAnomalyError, ValueError):
    """A model file could not be saved or read: missing, truncated, corrupted, foreign, or
    written by an incompatible version. The message names the file and the problem."""


class ModelPluginMissingError(ModelFileError, UnknownPluginError):
    """A model file needs a prior or encoder plugin that is not installed here."""

    def __init__(
        self, path: str, kind: str, name: str, source: str, available: list[str],
        excluded_by: str | None = None,
    ):
        UnknownPluginError.__init__(self, kind, name, available)
        choices = ", ".join(available) if available else "none"
        missing = "which is not installed" if excluded_by is None else f"which {excluded_by}"
        self.args = (
            f"{path}: the model needs the {kind} plugin {name!r} ({source}), {missing}; "
            f"installed {kind}s: {choices}",
        )


class MissingDependencyError(AAEAnomalyError, ImportError):
    """An optional package needed for one file format is not installed."""


class PartitionError(AAEAnomalyError, ValueError):
    """A source of rows cannot be read as exact parts, one per process of a distributed
    fit (a CSV file whose quoted fields hold line breaks, which a split at byte offsets
    can cut through): the fit then reads it whole on every process and keeps every n-th
    row."""
