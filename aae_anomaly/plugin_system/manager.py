"""Finding plugins and looking up what they register.

Every plugin, the built-in ones included, arrives through the ``aae_anomaly`` entry-point
group, so the core never names a plugin. A plugin that fails to import, raises in a hook,
registers a name twice or registers something that is not callable is recorded in
:attr:`PluginManager.failures` with its name and distribution; the others keep working.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from ..errors import PluginError, UnknownPluginError
from . import hookspecs

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

# kind -> the hook that registers it
KINDS = {
    "prior": "register_priors",
    "encoder": "register_encoders",
    "dataset": "register_datasets",
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
        """Import and register every plugin of every installed distribution in ``group``."""
        for entry_point in sorted(importlib.metadata.entry_points(group=group), key=_load_order):
            dist = entry_point.dist
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            if self._pm.has_plugin(entry_point.name):
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken plugin must not break the others
                self._load_failures.append(
                    PluginFailure(entry_point.name, dist_name, f"import failed: {_describe(exc)}")
                )
                continue
            self.register(plugin, entry_point.name, dist_name, version)

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
        """Every registration of ``kind`` ("prior", "encoder" or "dataset"), by name."""
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

        try:
            impl.function(register=register)
        except Exception as exc:
            message = f"hook {hook_name} raised {_describe(exc)}"
            self._hook_failures.append(PluginFailure(plugin_name, distribution, message))
            return
        for registration in pending:
            existing = registry.get(registration.name)
            if existing is not None:
                message = (
                    f"hook {hook_name} registered {kind} {registration.name!r}, which "
                    f"plugin {existing.plugin!r} already registers; the first one is kept"
                )
                self._hook_failures.append(PluginFailure(plugin_name, distribution, message))
                continue
            registry[registration.name] = registration


def _load_order(entry_point) -> tuple[bool, str, str]:
    """This package's own plugins first, then by distribution and name: when two plugins
    register one name the first is kept, so a third party can never replace a built-in,
    and which one wins does not depend on the order of ``sys.path``."""
    dist = entry_point.dist
    name = dist.metadata["Name"] if dist is not None else ""
    return (name != hookspecs.PROJECT_NAME.replace("_", "-"), name or "", entry_point.name)


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
