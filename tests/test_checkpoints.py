"""WAL checkpoints wait for a pause in writes (storage.checkpoints), on the writer connection only."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from quantumreview import keys
from quantumreview.testing.signing import signed_delivery
from storage.checkpoints import checkpoint_when_idle
from storage.db import Database
from tests.conftest import WEBHOOK_SECRET
from tests.github_support import wait_until


def rows_in_main_file(db: Database, tmp_path: Path) -> int:
    """Rows of t that are in the database file itself, not only in its WAL."""
    copy = tmp_path / "main-file-only.db"
    shutil.copyfile(db.path, copy)  # without -wal and -shm: what a checkpoint has copied, nothing else
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:  # the table's creation itself is still only in the WAL
        return 0
    finally:
        conn.close()


async def test_a_checkpoint_moves_committed_writes_into_the_database_file(db: Database, tmp_path: Path) -> None:
    await db.execute("CREATE TABLE t (v INTEGER)")
    for n in range(20):
        await db.execute("INSERT INTO t VALUES (?)", (n,))
    assert rows_in_main_file(db, tmp_path) == 0  # the backstop is far away: nothing checkpointed yet

    busy, frames, copied = await db.checkpoint()

    assert (busy, copied) == (0, frames) and frames > 0
    assert rows_in_main_file(db, tmp_path) == 20


async def test_the_checkpointer_waits_until_writes_pause(db: Database, tmp_path: Path) -> None:
    await db.execute("CREATE TABLE t (v INTEGER)")
    task = asyncio.create_task(checkpoint_when_idle(db, idle=1.0))
    try:
        for n in range(12):  # a write every 50 ms for 0.6 s: never a 1 s pause
            await db.execute("INSERT INTO t VALUES (?)", (n,))
            await asyncio.sleep(0.05)
        assert db.checkpoints == 0

        await wait_until(lambda: db.checkpoints == 1, timeout=10.0)

        assert rows_in_main_file(db, tmp_path) == 12
        await asyncio.sleep(1.3)  # nothing written since: no second checkpoint
        assert db.checkpoints == 1
    finally:
        task.cancel()


async def test_writes_through_run_also_count_as_activity(db: Database, tmp_path: Path) -> None:
    await db.execute("CREATE TABLE t (v INTEGER)")
    task = asyncio.create_task(checkpoint_when_idle(db, idle=0.05))
    try:
        await wait_until(lambda: db.checkpoints == 1, timeout=10.0)
        await db.run(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))

        await wait_until(lambda: db.checkpoints == 2, timeout=10.0)

        assert rows_in_main_file(db, tmp_path) == 1
    finally:
        task.cancel()


async def test_a_failed_checkpoint_is_logged_and_retried_at_the_next_pause(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = db.checkpoint
    calls: list[str] = []

    async def flaky() -> tuple[int, int, int]:
        calls.append("call")
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return await real()

    monkeypatch.setattr(db, "checkpoint", flaky)
    task = asyncio.create_task(checkpoint_when_idle(db, idle=0.05))
    try:
        with caplog.at_level(logging.WARNING, logger="quantumreview.storage"):
            await db.execute("CREATE TABLE t (v INTEGER)")
            await wait_until(lambda: len(calls) == 1, timeout=10.0)
            await db.execute("INSERT INTO t VALUES (1)")
            await wait_until(lambda: db.checkpoints == 1, timeout=10.0)
        assert not task.done()
        assert "WAL checkpoint failed: OperationalError" in caplog.text
    finally:
        task.cancel()


async def test_the_app_checkpoints_after_deliveries_stop(client: Any, tmp_path: Path) -> None:
    db: Database = client.app[keys.db]
    headers, body = signed_delivery("ping", {"zen": "x", "hook_id": 1}, WEBHOOK_SECRET)
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 200

    await wait_until(lambda: db.checkpoints >= 1, timeout=10.0)

    shutil.copyfile(db.path, tmp_path / "copy.db")
    conn = sqlite3.connect(tmp_path / "copy.db")
    try:
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 1
    finally:
        conn.close()
