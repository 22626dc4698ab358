"""The hooks a plugin implements. Each takes a ``register`` callback and calls it once per
thing it provides; a plugin implements only the hooks it needs.

A plugin is any module (or object) with functions marked ``@hookimpl``, listed in the
``aae_anomaly`` entry-point group of its distribution::

    [project.entry-points.aae_anomaly]
    my_priors = "my_package.priors"
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "aae_anomaly"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_priors(register):
    """Register latent priors.

    Call ``register(name, factory)`` for each prior. ``factory(latent_dim, **options)``
    returns an :class:`aae_anomaly.Prior`.
    """


@hookspec
def register_encoders(register):
    """Register encoder architectures: an encoder/decoder pair for one kind of input.

    Call ``register(name, factory)`` for each architecture. ``factory(**options)`` returns
    an :class:`aae_anomaly.Architecture`.
    """


@hookspec
def register_datasets(register):
    """Register dataset loaders.

    Call ``register(name, loader)`` for each loader. ``loader(**options)`` returns an
    :class:`aae_anomaly.Dataset`; its keyword arguments, with type annotations,
    are the options a user can pass (``name:key=value,...`` on the command line).
    """


@hookspec
def register_dataset_readers(register):
    """Register chunked readers: datasets read a bounded number of rows at a time, for
    data larger than memory.

    Call ``register(name, reader)`` for each, ``name`` being that of a dataset loader
    (registered with :func:`register_datasets`). ``reader(chunk_rows, columns, **options)``
    takes the loader's options and returns an iterator of :class:`aae_anomaly.Dataset`,
    each of at most ``chunk_rows`` rows and at least one (one with no rows when there are
    none), which put end to end are the rows the loader returns. ``columns`` is ``None``
    or maps column names to their kind (``numeric``, ``boolean``, ``categorical``,
    ``text``), so that a text format can parse every chunk the same way.

    A reader that can read one part of the rows declares a ``part`` parameter (default
    ``None``): given ``part=(index, count)``, it returns only part ``index`` of ``count``,
    the ``count`` parts together holding each row exactly once (one process of a
    distributed ``fit``, under torchrun, reads one part). One that cannot split its rows
    exactly for this source raises :class:`aae_anomaly.PartitionError`, and the fit
    reads the rows whole and keeps every ``count``-th. A reader without the parameter
    is read whole by every process of a ``fit --stream``, which keeps every
    ``count``-th row; a distributed ``fit`` without ``--stream`` loads such a dataset
    whole on every process.
    """
