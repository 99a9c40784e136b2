"""Handlers published through the `quantumreview.handlers` entry point group: a wrong one is named at load."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from quantumreview.plugins import ENTRY_POINT_GROUP, PluginError, load_handlers

GOOD = ("from gidgethub import routing\nrouter = routing.Router()\n\n"
        "@router.register('issues', action='labeled')\nasync def comment(event, ctx):\n    pass\n")


def install(root: Path, monkeypatch: pytest.MonkeyPatch, target: str, source: str) -> str:
    """A distribution of its own under root with one module and one entry point to `target` ({pkg} filled in),
    found as `pip install` would have it; return the package's name."""
    package = f"plug_{uuid.uuid4().hex[:12]}"
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "handlers.py").write_text(source)
    dist = root / f"{package}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmine = {target.format(pkg=package)}\n")
    monkeypatch.syspath_prepend(str(root))
    return package


@pytest.mark.parametrize("target", ["{pkg}.handlers", "{pkg}.handlers:router"])
def test_entry_point_to_the_module_or_its_router_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    package = install(tmp_path, monkeypatch, target, GOOD)
    registry = load_handlers("handlers")
    assert f"{package}.handlers:comment" in registry.by_name
    assert target.format(pkg=package) in registry.modules


@pytest.mark.parametrize(("target", "source", "message"), [
    ("{pkg}.missing", GOOD, r"failed to load: ModuleNotFoundError: No module named '{pkg}\.missing'"),
    ("{pkg}.handlers:nothing", GOOD, r"failed to load: AttributeError: .*nothing"),
    ("{pkg}.handlers:comment", GOOD, r"is not a Router and has no `router`"),
    ("{pkg}.handlers", GOOD.replace("async def", "def"), r"handler {pkg}\.handlers:comment is not a coroutine"),
])
def test_wrong_entry_point_is_refused_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, source: str, message: str) -> None:
    package = install(tmp_path, monkeypatch, target, source)
    expected = rf"^handler entry point mine \({target.format(pkg=package)}\).*{message.format(pkg=package)}"
    with pytest.raises(PluginError, match=expected):
        load_handlers("handlers")
