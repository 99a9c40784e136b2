"""Staged work no run sent (a rerun returned before sending: the issue was gone) is dropped by the retention job
after a day; what is younger waits for the run that sends it."""

from __future__ import annotations

import logging
import time

import pytest

from handlers.retention import prune_old_deliveries
from quantumreview.retention import PRUNE_EVENT
from quantumreview.testing.context import make_context
from storage import jobs as job_store
from storage import notifications
from storage.db import Database
from storage.retention import STAGED_DAYS, prune_staged

DAY = 86400.0
NOW = 1_800_000_000.0


async def stage(db: Database, subject: str, at: float) -> None:
    async with db.transaction() as conn:
        await notifications.stage(conn, subject=subject, repo="o/r", kind="checklist", title=subject, now=at)
        await job_store.owe(conn, subject, "revalidate", at)


async def test_staged_notifications_and_owed_follow_ups_older_than_a_day_are_dropped(db: Database) -> None:
    await stage(db, "o/r#1", NOW - STAGED_DAYS * DAY - 1)
    await stage(db, "o/r#2", NOW - STAGED_DAYS * DAY + 60)
    assert await prune_staged(db, NOW) == (1, 1)
    assert [n.title for n in await notifications.staged(db, "o/r#1")] == []
    assert not await job_store.is_owed(db, "o/r#1", "revalidate")
    assert [n.title for n in await notifications.staged(db, "o/r#2")] == ["o/r#2"]  # its run may still send it
    assert await job_store.is_owed(db, "o/r#2", "revalidate")
    assert await prune_staged(db, NOW) == (0, 0)


async def test_the_retention_job_drops_them_and_says_so(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    await stage(db, "o/r#1", time.time() - 2 * DAY)
    ctx, _ = make_context(PRUNE_EVENT, {}, db=db)
    caplog.set_level(logging.INFO)
    await prune_old_deliveries(ctx.event, ctx)
    assert await notifications.staged(db, "o/r#1") == []
    assert any("dropped 1 staged notification(s) and 1 owed follow-up(s)" in r.getMessage() for r in caplog.records)


async def test_they_are_kept_while_a_job_of_their_subject_still_waits(db: Database) -> None:
    """A suspended installation's jobs wait uncounted for days: the job that sends what was staged must find it."""
    await stage(db, "o/r#1", NOW - 3 * DAY)
    async with db.transaction() as conn:  # the job, queued 3 days ago and still waiting
        waiting = await job_store.insert_job(conn, job_store.NewJob("handlers.checklists:build_checklist", "o/r#1",
                                                                    NOW - 3 * DAY, NOW - 3 * DAY, payload="{}"))
    assert await prune_staged(db, NOW) == (0, 0)
    assert [n.title for n in await notifications.staged(db, "o/r#1")] == ["o/r#1"]
    async with db.transaction() as conn:
        await conn.execute("UPDATE jobs SET status = 'done' WHERE id = ?", (waiting,))
    assert await prune_staged(db, NOW) == (1, 1)
