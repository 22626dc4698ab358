"""Finding plugins and looking up what they register.

Every plugin, the built-in ones included, arrives through the ``aae_anomaly`` entry-point
group, so the core never names a plugin. A plugin that fails to import, raises in a hook,
registers a name twice or registers something that is not callable is recorded in
:attr:`PluginManager.failures` with its name and distribution; the others keep working.

Two environment variables, read when the manager loads plugins and calls their hooks:

``AAE_ANOMALY_LOAD_PLUGINS``
    A comma-separated list of distribution names. When set, only those distributions'
    plugins load, plus the built-in ones of ``aae-anomaly`` itself (the core's own priors,
    encoders and datasets); set to an empty string, no third-party plugin loads. Names
    match the way pip matches them: case-insensitive, ``-``, ``_`` and ``.`` alike. A
    named distribution that is not installed, or has no plugins, is a failure.
``AAE_ANOMALY_TRACE_PLUGINS``
    Any value but empty or ``0``: one line on stderr for every hook implementation the
    manager calls, with the plugin, its distribution, what it registered (or what it
    raised) and how long it took.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from ..errors import PluginError, UnknownPluginError
from . import hookspecs

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
LOAD_PLUGINS_VARIABLE = "AAE_ANOMALY_LOAD_PLUGINS"
TRACE_PLUGINS_VARIABLE = "AAE_ANOMALY_TRACE_PLUGINS"
# the distribution that ships the built-in plugins, its name normalized as pip does
BUILTIN_DISTRIBUTION = hookspecs.PROJECT_NAME.replace("_", "-")

# kind -> the hook that registers it
KINDS = {
    "prior": "register_priors",
    "encoder": "register_encoders",
    "dataset": "register_datasets",
    "dataset_reader": "register_dataset_readers",
}


@dataclass(frozen=True)
class Registration:
    """One named thing a plugin registered."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def source(self) -> str:
        """``plugin 'acme' from acme-priors 1.2.3``: where the registration came from."""
        if self.distribution is None:
            return f"plugin {self.plugin!r}, from no installed distribution"
        return f"plugin {self.plugin!r} from {self.distribution} {self.version}"


@dataclass(frozen=True)
class PluginFailure:
    """What went wrong with one plugin; shown by ``aae-anomaly plugins``."""

    plugin: str
    distribution: str | None
    message: str


class PluginManager:
    """A pluggy manager plus the registries its hooks fill."""

    def __init__(self, load_entry_points: bool = True):
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._origin: dict[str, tuple[str | None, str | None]] = {}
        self._load_failures: list[PluginFailure] = []
        self._hook_failures: list[PluginFailure] = []
        self._registries: dict[str, dict[str, Registration]] | None = None
        if load_entry_points:
            self.load_entry_points()

    @property
    def failures(self) -> list[PluginFailure]:
        """Plugins that failed to load, or whose hooks failed, with what went wrong."""
        if self._registries is None:
            self._registries = self._collect()
        return self._load_failures + self._hook_failures

    # -- loading ---------------------------------------------------------------------------
    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import and register every plugin of every installed distribution in ``group``,
        or only those of the distributions ``AAE_ANOMALY_LOAD_PLUGINS`` names."""
        wanted = distributions_to_load()
        entry_points = sorted(importlib.metadata.entry_points(group=group), key=_load_order)
        for entry_point in entry_points:
            if wanted is None or _is_wanted(entry_point, wanted):
                self._load_entry_point(entry_point)
        if wanted is not None:
            self._record_unmatched(wanted, entry_points, group)

    def _load_entry_point(self, entry_point) -> None:
        dist_name, version = _distribution_of(entry_point)
        if self._pm.has_plugin(entry_point.name):
            return  # the same distribution seen twice on sys.path
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken plugin must not break the others
            self._load_failures.append(
                PluginFailure(entry_point.name, dist_name, f"import failed: {_describe(exc)}")
            )
            return
        self.register(plugin, entry_point.name, dist_name, version)

    def _record_unmatched(self, wanted: dict[str, str], entry_points, group: str) -> None:
        # A misspelt or uninstalled name would otherwise just leave its plugins out, which
        # looks exactly like a plugin that registers nothing.
        providers = {normalized_name(_distribution_of(ep)[0] or "") for ep in entry_points}
        for normalized, name in wanted.items():
            if normalized in providers:
                continue
            if _is_installed(normalized):
                reason = f"has no plugins in the {group!r} entry-point group"
            else:
                reason = "is not installed"
            message = f"{LOAD_PLUGINS_VARIABLE} names {name!r}, which {reason}"
            self._load_failures.append(PluginFailure(name, name, message))

    def register(
        self,
        plugin: object,
        name: str,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Add a plugin object (a module or any object with ``@hookimpl`` functions)."""
        try:
            self._pm.register(plugin, name=name)
        except Exception as exc:
            message = f"could not be registered: {_describe(exc)}"
            self._load_failures.append(PluginFailure(name, distribution, message))
            return
        self._origin[name] = (distribution, version)
        self._registries = None  # collect again on next lookup

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._origin.pop(name, None)
        self._registries = None

    # -- lookups ---------------------------------------------------------------------------
    def registrations(self, kind: str) -> dict[str, Registration]:
        """Every registration of ``kind`` ("prior", "encoder", "dataset" or
        "dataset_reader"), by name."""
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(KINDS)}")
        if self._registries is None:
            self._registries = self._collect()
        return self._registries[kind]

    def names(self, kind: str) -> list[str]:
        return sorted(self.registrations(kind))

    def get(self, kind: str, name: str) -> Registration:
        registry = self.registrations(kind)
        if name not in registry:
            raise UnknownPluginError(kind, name, sorted(registry))
        return registry[name]

    def create(self, kind: str, name: str, *args: Any, **options: Any) -> Any:
        """Call the factory registered as ``name``; errors name the plugin that failed."""
        registration = self.get(kind, name)
        try:
            return registration.factory(*args, **options)
        except TypeError as exc:
            raise PluginError(
                f"{kind} {name!r} (plugin {registration.plugin!r}) rejected its options "
                f"{options}: {exc} [{registration.source}]"
            ) from exc
        except ValueError:
            raise  # an option with a bad value: the plugin's message names it
        except Exception as exc:  # a bug in the plugin: name it and where it came from
            raise PluginError(
                f"{kind} {name!r} ({registration.source}) failed while building: "
                f"{_describe(exc)}"
            ) from exc

    # -- internals -------------------------------------------------------------------------
    def _collect(self) -> dict[str, dict[str, Registration]]:
        # Each hook implementation is called on its own, not through pluggy's combined
        # call, so that one plugin raising does not hide what the others register.
        self._hook_failures = []
        registries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        for kind, hook_name in KINDS.items():
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                self._call_hook(kind, hook_name, impl, registries[kind])
        return registries

    def _call_hook(self, kind, hook_name, impl, registry: dict[str, Registration]) -> None:
        plugin_name = impl.plugin_name
        distribution, version = self._origin.get(plugin_name, (None, None))
        pending: list[Registration] = []

        def register(name: str, factory: Callable[..., Any]) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"{kind} names must be non-empty strings, got {name!r}")
            if not callable(factory):
                raise PluginError(
                    f"{kind} {name!r} must be registered with a callable factory, "
                    f"got {type(factory).__name__}"
                )
            pending.append(
                Registration(kind, name, factory, plugin_name, distribution, version)
            )

        started = time.perf_counter()
        error = _call_catching(impl.function, register)
        elapsed = time.perf_counter() - started
        if error is not None:
            message = f"hook {hook_name} raised {_describe(error)}"
            self._hook_failures.append(PluginFailure(plugin_name, distribution, message))
            outcome = f"raised {_describe(error)}"
        else:
            kept, refused = self._add_registrations(hook_name, pending, registry)
            outcome = _describe_registered(kind, kept, refused)
        if tracing_enabled():
            origin = f"{distribution} {version}" if distribution else "no distribution"
            _trace(f"{hook_name} in plugin {plugin_name!r} ({origin}): {outcome}", elapsed)

    def _add_registrations(
        self, hook_name: str, pending: list[Registration], registry: dict[str, Registration]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Add ``pending`` to ``registry``. Returns the names added, and the names refused
        with the plugin that already has each."""
        kept: list[str] = []
        refused: list[tuple[str, str]] = []
        for registration in pending:
            existing = registry.get(registration.name)
            if existing is not None:
                message = (
                    f"hook {hook_name} registered {registration.kind} {registration.name!r}, "
                    f"which plugin {existing.plugin!r} already registers; the first one is kept"
                )
                self._hook_failures.append(
                    PluginFailure(registration.plugin, registration.distribution, message)
                )
                refused.append((registration.name, existing.plugin))
                continue
            registry[registration.name] = registration
            kept.append(registration.name)
        return kept, refused


def _call_catching(hook_function, register) -> Exception | None:
    """Call one hook implementation; what it raised, or ``None``."""
    try:
        hook_function(register=register)
    except Exception as exc:  # a broken plugin must not break the others
        return exc
    return None


def _trace(line: str, elapsed_seconds: float) -> None:
    # stderr only: stdout carries the commands' output (tables, --json) and must not change
    print(f"aae-anomaly trace: {line} [{elapsed_seconds * 1000:.2f} ms]", file=sys.stderr)


def _describe_registered(kind: str, kept: list[str], refused: list[tuple[str, str]]) -> str:
    kinds = kind if len(kept) == 1 else f"{kind}s"
    text = f"registered {kinds} {', '.join(kept)}" if kept else "registered nothing"
    if refused:
        taken = ", ".join(f"{name} (plugin {owner!r} has it)" for name, owner in refused)
        text += f"; refused {taken}"
    return text


def tracing_enabled() -> bool:
    """Whether ``AAE_ANOMALY_TRACE_PLUGINS`` asks for hook calls to be traced."""
    return os.environ.get(TRACE_PLUGINS_VARIABLE, "").strip() not in ("", "0")


def distributions_to_load() -> dict[str, str] | None:
    """The distributions ``AAE_ANOMALY_LOAD_PLUGINS`` names, normalized name -> as written;
    ``None`` when it is unset and every plugin loads."""
    value = os.environ.get(LOAD_PLUGINS_VARIABLE)
    if value is None:
        return None
    names = (name.strip() for name in value.split(","))
    return {normalized_name(name): name for name in names if name}


def _is_wanted(entry_point, wanted: dict[str, str]) -> bool:
    # The built-ins are the core's own priors, encoders and datasets, not an add-on to
    # choose: without them not even the defaults exist.
    normalized = normalized_name(_distribution_of(entry_point)[0] or "")
    return normalized == BUILTIN_DISTRIBUTION or normalized in wanted


def _is_installed(normalized: str) -> bool:
    # Only reached for a name that provides no plugins, so scanning every distribution's
    # metadata costs nothing in the usual case.
    return any(
        normalized_name(dist.metadata["Name"] or "") == normalized
        for dist in importlib.metadata.distributions()
    )


def normalized_name(name: str) -> str:
    """A distribution name the way pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_of(entry_point) -> tuple[str | None, str | None]:
    dist = entry_point.dist
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _load_order(entry_point) -> tuple[bool, str, str]:
    """This package's own plugins first, then by distribution and name: when two plugins
    register one name the first is kept, so a third party can never replace a built-in,
    and which one wins does not depend on the order of ``sys.path``."""
    name = _distribution_of(entry_point)[0] or ""
    return (normalized_name(name) != BUILTIN_DISTRIBUTION, name, entry_point.name)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_manager: PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, built on first use."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins; the next lookup scans the entry points again."""
    global _manager
    with _lock:
        _manager = None
