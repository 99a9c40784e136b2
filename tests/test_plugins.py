"""Handler discovery: one file per feature, no central list; a broken module stops start-up by name."""

from __future__ import annotations

import textwrap
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


def test_module_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(tmp_path, "plug_c", {"good": HANDLER, "broken": "import not_a_real_module_xyz\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"plug_c\.broken"):
        load_handlers("plug_c", entry_point_group=None)


def test_project_handlers_package_loads() -> None:
    registry = load_handlers("handlers")
    assert all(":" in name for name in registry.by_name)
