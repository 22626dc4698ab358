"""The ``aae-anomaly`` command line.

:mod:`.app` holds the click group :func:`main` and the error handling every command
shares; each command lives in the module named after what it is for, and registers on
``main`` when imported here:

=================  ==========================================================
:mod:`.detect`     fit, score, evaluate: anomaly detection
:mod:`.family`     classify, cluster, generate: the categorical AAE family
:mod:`.inspection` info, plugins: what a model file holds, what is installed
:mod:`.plot`       plot: pictures of a model
:mod:`.demo`       demo: the main job on a bundled data set
=================  ==========================================================

:mod:`.options` holds the options several commands share; :mod:`.inputs`, :mod:`.reports`
and :mod:`.fitconfig` read the commands' input and shape their output.
"""

from . import demo, detect, family, inspection, plot  # noqa: F401  (they register commands)
from .app import main

__all__ = ["main"]
