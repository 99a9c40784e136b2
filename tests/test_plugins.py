"""Handler discovery: one file per feature, no central list; a broken module stops start-up by name."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
from gidgethub import sansio

from quantumreview.plugins import PluginError, load_handlers

HANDLER = textwrap.dedent(
    '''
    from gidgethub import routing
    router = routing.Router()

    @router.register("issues", action="opened")
    @router.register("issues", action="edited")
    async def build_checklist(event, ctx):
        pass

    @router.register("ping")
    async def pong(event, ctx):
        pass
    '''
)


def make_package(root: Path, name: str, modules: dict[str, str]) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module, source in modules.items():
        (pkg / f"{module}.py").write_text(source)


def test_every_public_module_with_a_router_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(tmp_path, "plug_a", {"checklists": HANDLER, "_private": HANDLER, "helpers": "X = 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_handlers("plug_a", entry_point_group=None)
    assert registry.modules == ["plug_a.checklists"]
    assert set(registry.by_name) == {"plug_a.checklists:build_checklist", "plug_a.checklists:pong"}


def test_handlers_for_matches_event_and_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(tmp_path, "plug_b", {"feature": HANDLER})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_handlers("plug_b", entry_point_group=None)
    opened = sansio.Event({"action": "opened"}, event="issues", delivery_id="1")
    closed = sansio.Event({"action": "closed"}, event="issues", delivery_id="2")
    assert registry.handlers_for(opened) == ["plug_b.feature:build_checklist"]
    assert registry.handlers_for(closed) == []
    assert registry.get("plug_b.feature:pong") is not None
    assert registry.get("plug_b.feature:missing") is None


def test_a_key_routed_on_that_github_sends_as_an_object_matches_nothing_and_hides_no_other_handler() -> None:
    # `label="bug"` made handlers_for raise TypeError for every issues.labeled (label is an object): receive
    # refused the payload, as the intake refused the delivery (delivery_fields).
    from gidgethub import routing

    from quantumreview.plugins import HandlerRegistry

    router = routing.Router()

    async def on_bug(event: sansio.Event, ctx: object) -> None: ...

    async def on_issue(event: sansio.Event, ctx: object) -> None: ...

    router.add(on_bug, "issues", label="bug")
    router.add(on_issue, "issues", action="labeled")
    registry = HandlerRegistry.from_routers([router])
    labeled = sansio.Event({"action": "labeled", "label": {"name": "bug"}}, event="issues", delivery_id="1")
    assert [name.rpartition(".")[2] for name in registry.handlers_for(labeled)] == ["on_issue"]
    flat = sansio.Event({"action": "opened", "label": "bug"}, event="issues", delivery_id="2")
    assert [name.rpartition(".")[2] for name in registry.handlers_for(flat)] == ["on_bug"]
    with pytest.raises(TypeError):  # an action that is an object is still refused (receive says so)
        registry.handlers_for(sansio.Event({"action": {"x": 1}}, event="issues", delivery_id="3"))


def test_module_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(tmp_path, "plug_c", {"good": HANDLER, "broken": "import not_a_real_module_xyz\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"plug_c\.broken"):
        load_handlers("plug_c", entry_point_group=None)


def test_project_handlers_package_loads() -> None:
    registry = load_handlers("handlers")
    assert all(":" in name for name in registry.by_name)


def unique_package(root: Path, modules: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A package of its own name (imported modules stay in sys.modules), importable from root."""
    name = f"plug_{uuid.uuid4().hex[:12]}"
    make_package(root, name, modules)
    monkeypatch.syspath_prepend(str(root))
    return name


def body(handler_source: str) -> str:
    return "from gidgethub import routing\nrouter = routing.Router()\n" + textwrap.dedent(handler_source)


@pytest.mark.parametrize(("source", "message"), [
    # Each of these loaded, then failed every time it ran, retried until dead, with no word of the rule.
    ("@router.register('ping')\ndef pong(event, ctx):\n    pass\n", r"PKG\.bad:pong is not a coroutine function"),
    ("router.add(lambda event, ctx: None, 'ping')\n", r"PKG\.bad:<lambda> is not a coroutine function"),
    ("@router.register('ping')\nasync def pong(event):\n    pass\n",
     r"PKG\.bad:pong cannot be called as handler\(event, ctx\): its signature is \(event\)"),
    ("@router.register('ping')\nasync def pong(event, ctx, extra):\n    pass\n", r"PKG\.bad:pong cannot be called"),
    # A copied handler left with the first one's name: jobs find handlers by name, so one never ran.
    ("@router.register('ping')\nasync def pong(event, ctx):\n    pass\n"
     "@router.register('issues')\nasync def pong(event, ctx):\n    pass\n", r"two handlers are named PKG\.bad:pong"),
    # Refused by the server's intake only: `receive` and tests said "no handler matches" instead.
    ("@router.register('issues', **{'we\"ird': 'x'})\nasync def pong(event, ctx):\n    pass\n",
     r"routed by the payload key 'we\"ird'"),
])
def test_handler_the_runner_cannot_run_is_refused_at_load_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str) -> None:
    pkg = unique_package(tmp_path, {"good": HANDLER, "bad": body(source)}, monkeypatch)
    with pytest.raises(PluginError, match=rf"^handler module {pkg}\.bad: .*{message.replace('PKG', pkg)}"):
        load_handlers(pkg, entry_point_group=None)


def test_async_handlers_in_any_form_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = body('''
        import functools

        def logged(func):
            @functools.wraps(func)
            def wrapper(event, ctx):
                return func(event, ctx)
            return wrapper

        class Callable:
            async def __call__(self, event, ctx, *, extra=None):
                pass

        @router.register("ping")
        @logged
        async def pong(event, ctx):
            pass

        @router.register("issues")
        async def anything(*args, **kwargs):
            pass

        async def labelled(label, event, ctx):
            pass

        router.add(Callable(), "issues", action="opened")
        router.add(functools.partial(labelled, "bug"), "issues", action="labeled")
        ''')
    pkg = unique_package(tmp_path, {"forms": source}, monkeypatch)
    # An object or a partial as handler: loading it was an AttributeError (they have no __qualname__).
    assert sorted(load_handlers(pkg, entry_point_group=None).by_name) == [
        f"{pkg}.forms:Callable", f"{pkg}.forms:anything", f"{pkg}.forms:labelled", f"{pkg}.forms:pong"]


@pytest.mark.parametrize(("source", "message"), [
    ("from gidgethub import routing\nrouter = routing.Router\n", r"`router` is of type type, not a"),
    ("import sys\nsys.exit(3)\n", r"failed to import: SystemExit: 3"),  # it ended the start silently
])
def test_broken_module_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str) -> None:
    pkg = unique_package(tmp_path, {"bad": source}, monkeypatch)
    with pytest.raises(PluginError, match=rf"^handler module {pkg}\.bad\b.*{message}"):
        load_handlers(pkg, entry_point_group=None)


def test_handler_package_that_is_a_module_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # QUANTUMREVIEW_HANDLERS=myplugin.handlers, a module: the start ended in an AttributeError traceback.
    pkg = unique_package(tmp_path, {"feature": HANDLER}, monkeypatch)
    with pytest.raises(PluginError, match=rf"^handler package '{pkg}\.feature' is a module, not a package"):
        load_handlers(f"{pkg}.feature", entry_point_group=None)
