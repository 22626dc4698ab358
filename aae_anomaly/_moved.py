"""Modules that moved when the package was laid out by part (0.2), importable under their
old names: ``import aae_anomaly.estimator`` gives ``aae_anomaly.estimators.detector``.

A finder on ``sys.meta_path`` answers for the old names only, and imports the new module
when an old name is first asked for, so nothing is imported that a program does not use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old module -> where it lives now
MOVED = {
    "aae_anomaly.architectures": "aae_anomaly.plugin_system.architectures",
    "aae_anomaly.atomic": "aae_anomaly.io.atomic",
    "aae_anomaly.conditioning": "aae_anomaly.scoring.conditioning",
    "aae_anomaly.datasets": "aae_anomaly.plugin_system.datasets",
    "aae_anomaly.demo": "aae_anomaly.cli.demo",
    "aae_anomaly.estimator": "aae_anomaly.estimators.detector",
    "aae_anomaly.family": "aae_anomaly.estimators.family",
    "aae_anomaly.fitconfig": "aae_anomaly.cli.fitconfig",
    "aae_anomaly.hookspecs": "aae_anomaly.plugin_system.hookspecs",
    "aae_anomaly.modelfile": "aae_anomaly.io.modelfile",
    "aae_anomaly.neighbors": "aae_anomaly.scoring.neighbors",
    "aae_anomaly.plugins": "aae_anomaly.plugin_system.manager",
    "aae_anomaly.priors": "aae_anomaly.plugin_system.priors",
    "aae_anomaly.reports": "aae_anomaly.cli.reports",
    "aae_anomaly.selection_kernel": "aae_anomaly.scoring.selection_kernel",
    "aae_anomaly.tabular_io": "aae_anomaly.io.tables",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        """The module ran when it was imported under its own name. Importing it under the
        old one set its ``__spec__`` to the old name's: put its own back, which its
        relative imports resolve against."""
        module.__spec__ = self.own_spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old names of :data:`MOVED`; every other name is left to the next finder."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
