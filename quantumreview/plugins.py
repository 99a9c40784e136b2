"""Handler discovery: each module in handlers/ with a `router`, plus entry points, in one gidgethub Router."""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from gidgethub import routing, sansio

ENTRY_POINT_GROUP = "quantumreview.handlers"
# The intake reads routed keys as quoted SQLite JSON path labels, which have no escape for these characters.
ROUTABLE_KEY = re.compile(r'[^"\\\']+')
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
        try:
            callbacks = self.router.fetch(event)
        except TypeError:  # gidgethub looks a routed key's value up in a dict: a list or object is unhashable
            # Why route without it: GitHub sends many keys as objects (label, sender); such a value matches no
            # handler's value, as the intake reads it (delivery_fields). An action that is one still raises.
            routed = self.routed_keys() - {"action"}
            data = {key: value for key, value in event.data.items()
                    if not (key in routed and isinstance(value, dict | list))}
            callbacks = self.router.fetch(sansio.Event(data, event=event.event, delivery_id=event.delivery_id))
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
    """The module's `router`; PluginError if it has one that is no Router (`Router` without the call, say)."""
    router = getattr(module, "router", None)
    if router is None or isinstance(router, routing.Router):
        return router
    raise PluginError(f"handler module {module.__name__}: `router` is of type {type(router).__name__}, not a "
                      "gidgethub.routing.Router() (write `router = routing.Router()`)")


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    # Why SystemExit too: a module calling sys.exit() at import ended the start with no word of which one.
    except (Exception, SystemExit) as exc:
        raise PluginError(f"handler module {module_name} failed to import: {type(exc).__name__}: {exc}") from exc


def check_router(router: routing.Router, source: str) -> None:
    """PluginError naming the handler of `source` that the job runner could not run as `await handler(event, ctx)`.

    Why at load: such a handler loaded fine and failed each time it ran, retried until dead, in the server, with a
    TypeError or "'NoneType' object has no attribute '__await__'" that named neither the rule nor the fix.
    """
    seen: dict[str, Handler] = {}
    for callback in _callbacks(router):
        name = handler_name(callback)
        if seen.setdefault(name, callback) is not callback:
            raise PluginError(f"{source}: two handlers are named {name}; jobs find their handler by name, so one "
                              "would never run: rename one")
        # A decorator's sync wrapper of an async def (functools.wraps) returns its coroutine: that runs too.
        if not any(inspect.iscoroutinefunction(f) for f in (callback, inspect.unwrap(callback),
                                                              type(callback).__call__)):
            raise PluginError(f"{source}: handler {name} is not a coroutine function: "
                              "write `async def name(event, ctx)`")
        try:
            inspect.signature(callback).bind(None, None)
        except TypeError:
            raise PluginError(f"{source}: handler {name} cannot be called as handler(event, ctx): its signature is "
                              f"{inspect.signature(callback)}") from None
        except ValueError:  # no signature to read (a builtin): left to the call
            pass
    deep: dict[str, dict[str, Any]] = getattr(router, "_deep_routes", {})
    for event, by_key in deep.items():
        for key in by_key:
            if not ROUTABLE_KEY.fullmatch(key):
                raise PluginError(f"{source}: a handler of {event!r} is routed by the payload key {key!r}, which the "
                                  "intake cannot read (no \", \\ or ' in routed keys)")


def load_handlers(package: str = "handlers", *, entry_point_group: str | None = ENTRY_POINT_GROUP) -> HandlerRegistry:
    """Import every public module of `package` (sorted) and every entry point; raise PluginError on failure."""
    routers: list[routing.Router] = []
    names: list[str] = []
    try:
        pkg = importlib.import_module(package)
    except (Exception, SystemExit) as exc:
        raise PluginError(f"cannot import handler package {package!r}: {type(exc).__name__}: {exc}") from exc
    path = getattr(pkg, "__path__", None)
    if path is None:  # Why: a module here (say `myplugin.handlers`) ended the start in an AttributeError traceback
        raise PluginError(f"handler package {package!r} is a module, not a package: name the package whose modules "
                          f"hold the handlers, or publish the module through the entry point group {ENTRY_POINT_GROUP}")
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module_name = f"{package}.{info.name}"
        if (router := _router_of(_import(module_name))) is not None:
            check_router(router, f"handler module {module_name}")
            routers.append(router)
            names.append(module_name)
    if entry_point_group:
        for ep in sorted(entry_points(group=entry_point_group), key=lambda e: e.name):
            source = f"handler entry point {ep.name} ({ep.value})"
            try:
                loaded = ep.load()
            except (Exception, SystemExit) as exc:
                raise PluginError(f"{source} failed to load: {type(exc).__name__}: {exc}") from exc
            router = loaded if isinstance(loaded, routing.Router) else getattr(loaded, "router", None)
            if not isinstance(router, routing.Router):
                raise PluginError(f"{source} is not a Router and has no `router`")
            check_router(router, source)
            routers.append(router)
            names.append(ep.value)
    return HandlerRegistry.from_routers(routers, names)
