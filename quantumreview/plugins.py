"""Handler discovery: each module in handlers/ with a `router`, plus entry points, in one gidgethub Router."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from gidgethub import routing, sansio

ENTRY_POINT_GROUP = "quantumreview.handlers"
Handler = Callable[[sansio.Event, Any], Awaitable[None]]


class PluginError(Exception):
    """A handler module could not be loaded; the message names it."""


def handler_name(callback: Callable[..., Any]) -> str:
    """Name a handler `module:function`, as stored in job rows (an instance: its class, a partial: its function)."""
    # Why not __qualname__ alone: an instance or a partial has none, and loading one was an AttributeError.
    target = callback.func if isinstance(callback, functools.partial) else callback
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{target.__module__}:{qualname}"


@dataclass
class HandlerRegistry:
    """The combined router and a name → callback index so jobs can find their handler again."""

    router: routing.Router
    by_name: dict[str, Handler] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)

    @classmethod
    def from_routers(cls, routers: Iterable[routing.Router], modules: Iterable[str] = ()) -> HandlerRegistry:
        """Combine routers; index each registered callback by name."""
        routers = list(routers)
        registry = cls(routing.Router(*routers), modules=list(modules))
        for router in routers:
            for callback in _callbacks(router):
                registry.by_name[handler_name(callback)] = callback
        return registry

    def handlers_for(self, event: sansio.Event) -> list[str]:
        """Names of the handlers that match `event`, deduplicated, in a stable order."""
        callbacks = self.router.fetch(event)
        if not callbacks:  # most deliveries of most events: nothing to name or sort
            return []
        return sorted({handler_name(cb) for cb in callbacks})

    def routed_keys(self) -> set[str]:
        """The payload keys handlers are routed by (`register(event, action=...)` routes by "action")."""
        deep: dict[str, dict[str, Any]] = getattr(self.router, "_deep_routes", {})
        return {key for by_key in deep.values() for key in by_key}

    def get(self, name: str) -> Handler | None:
        """The handler callback named `name`, or None if no loaded module has it any more."""
        return self.by_name.get(name)


def _callbacks(router: routing.Router) -> Iterable[Handler]:
    # Why: gidgethub keeps registrations in two private maps; reading them is the only way to list callbacks.
    shallow: dict[str, list[Handler]] = getattr(router, "_shallow_routes", {})
    deep: dict[str, dict[str, dict[Any, list[Handler]]]] = getattr(router, "_deep_routes", {})
    for callbacks in shallow.values():
        yield from callbacks
    for by_key in deep.values():
        for by_value in by_key.values():
            for callbacks in by_value.values():
                yield from callbacks


def _router_of(module: ModuleType) -> routing.Router | None:
    router = getattr(module, "router", None)
    return router if isinstance(router, routing.Router) else None


def load_handlers(package: str = "handlers", *, entry_point_group: str | None = ENTRY_POINT_GROUP) -> HandlerRegistry:
    """Import every public module of `package` (sorted) and every entry point; raise PluginError on failure."""
    routers: list[routing.Router] = []
    names: list[str] = []
    try:
        pkg = importlib.import_module(package)
    except Exception as exc:
        raise PluginError(f"cannot import handler package {package!r}: {type(exc).__name__}: {exc}") from exc
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module_name = f"{package}.{info.name}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(f"handler module {module_name} failed to import: {type(exc).__name__}: {exc}") from exc
        if (router := _router_of(module)) is not None:
            routers.append(router)
            names.append(module_name)
    if entry_point_group:
        for ep in sorted(entry_points(group=entry_point_group), key=lambda e: e.name):
            try:
                loaded = ep.load()
            except Exception as exc:
                raise PluginError(f"handler entry point {ep.name} ({ep.value}) failed to load: {exc}") from exc
            router = loaded if isinstance(loaded, routing.Router) else _router_of(loaded)
            if router is None:
                raise PluginError(f"handler entry point {ep.name} ({ep.value}) is not a Router and has no `router`")
            routers.append(router)
            names.append(ep.value)
    return HandlerRegistry.from_routers(routers, names)
