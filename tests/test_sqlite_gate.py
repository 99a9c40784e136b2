"""RELIABILITY DB-02: the WAL-reset bug of the linked SQLite is flagged, at start and beside a running server."""

from __future__ import annotations

import io
import logging
import sqlite3
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from quantumreview import cli
from quantumreview.app import create_app
from quantumreview.plugins import HandlerRegistry
from quantumreview.serve_lock import holder_of, serve_lock
from storage.sqlite_gate import BUG_URL, version_tuple, wal_reset_safe, wal_reset_warning
from tests.conftest import SettingsFactory


@pytest.mark.parametrize(("version", "safe"), [
    ("3.7.0", False), ("3.40.1", False), ("3.44.5", False), ("3.44.6", True), ("3.44.10", True),
    ("3.45.0", False), ("3.46.1", False), ("3.50.6", False), ("3.50.7", True), ("3.51.0", False),
    ("3.51.2", False), ("3.51.3", True), ("3.52.0", True), ("4.0.0", True), ("3.51.3.1", True),
])
def test_the_gate_knows_the_fix_and_its_backports(version: str, safe: bool) -> None:
    assert wal_reset_safe(version) is safe
    assert (wal_reset_warning(version) is None) is safe


def test_the_linked_sqlite_is_judged_and_its_risk_shown_not_hidden() -> None:
    """CI's SQLite (3.40.1 on the dev machine) has the bug: this test says so in pytest's warnings summary."""
    risk = wal_reset_warning()
    assert (risk is None) is wal_reset_safe(sqlite3.sqlite_version)
    if version_tuple(sqlite3.sqlite_version) < (3, 44, 6):
        assert risk is not None  # nothing that old has the fix
    if risk is not None:
        assert f"SQLite {sqlite3.sqlite_version} has the WAL-reset bug" in risk and BUG_URL in risk
        warnings.warn(risk, UserWarning, stacklevel=1)


@pytest.mark.parametrize(("version", "warned"), [("3.40.1", True), ("3.51.3", False)])
async def test_the_server_warns_at_start_on_a_sqlite_with_the_bug(
        make_settings: SettingsFactory, aiohttp_client: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, version: str, warned: bool) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version", version)
    caplog.set_level(logging.WARNING)
    await aiohttp_client(create_app(make_settings(), registry=HandlerRegistry.from_routers([])))
    assert (f"SQLite {version} has the WAL-reset bug" in caplog.text) is warned


def run_replay(db: Path) -> str:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        cli.main(["replay", "no-such-delivery"], {"DATABASE_PATH": str(db)})
    return err.getvalue()


def test_replay_beside_a_running_server_warns_only_when_the_sqlite_has_the_bug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "qr.db"
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.40.1")
    assert holder_of(db) is None
    assert "WAL-reset" not in run_replay(db)  # no server: no second writer
    with serve_lock(db, wait=0):
        assert holder_of(db) is not None
        err = run_replay(db)
        assert "a server (pid" in err and "SQLite 3.40.1 has the WAL-reset bug" in err
        monkeypatch.setattr(sqlite3, "sqlite_version", "3.51.3")
        assert "WAL-reset" not in run_replay(db)
    assert holder_of(db) is None
