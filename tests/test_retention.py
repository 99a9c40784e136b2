"""Retention: old deliveries whose jobs all finished well go, with their jobs; a delivery with a failed, dead or
unfinished job stays; old finished enqueued jobs go, failed or dead ones too but for each handler's latest; the app
prunes at start and every hour, as a job."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from quantumreview import keys
from quantumreview.app import create_app
from quantumreview.retention import PRUNE_EVENT
from quantumreview.settings import Settings, SettingsError
from storage import redeliveries
from storage.db import Database
from storage.retention import prune, prune_batch

DAY = 86400.0
NOW = 1_800_000_000.0


async def add(db: Database, delivery_id: str | None, received_days_ago: float, *statuses: str) -> None:
    """A delivery (None: enqueued work) with one job per status, finished when the delivery came."""
    at = NOW - received_days_ago * DAY
    if delivery_id is not None:
        await db.execute("INSERT INTO deliveries (id, event, received_at, body) VALUES (?, 'issues', ?, ?)",
                         (delivery_id, at, b'{"x": 1}'))
    for n, status in enumerate(statuses):
        finished = at if status in ("done", "cancelled", "failed", "dead") else None
        await db.execute(
            "INSERT INTO jobs (delivery_id, handler, payload, ordering_key, status, run_after, created_at, "
            "finished_at) VALUES (?, ?, ?, 'k', ?, ?, ?, ?)",
            (delivery_id, f"h:{n}", None if delivery_id else '{"event": "e", "data": {}}', status, at, at, finished))


async def left(db: Database) -> tuple[list[str], list[tuple[str | None, str]]]:
    deliveries = [row[0] for row in await db.fetchall("SELECT id FROM deliveries ORDER BY id")]
    jobs = [(row[0], row[1]) for row in await db.fetchall("SELECT delivery_id, status FROM jobs ORDER BY id")]
    return deliveries, jobs


async def test_old_deliveries_whose_jobs_all_finished_well_go_with_their_jobs(db: Database) -> None:
    await add(db, "old-done", 20, "done", "done")
    await add(db, "old-cancelled", 20, "done", "cancelled")
    await add(db, "old-no-jobs", 20)
    await add(db, "old-failed", 20, "done", "failed")
    await add(db, "old-dead", 20, "dead")
    await add(db, "old-queued", 20, "queued")
    await add(db, "old-running", 20, "running")
    await add(db, "recent-done", 10, "done")
    deleted = await prune(db, NOW - 14 * DAY, now=NOW)
    assert deleted == (3, 0)
    deliveries, jobs = await left(db)
    assert deliveries == ["old-dead", "old-failed", "old-queued", "old-running", "recent-done"]
    assert jobs == [("old-failed", "done"), ("old-failed", "failed"), ("old-dead", "dead"), ("old-queued", "queued"),
                    ("old-running", "running"), ("recent-done", "done")]
    assert await db.fetchvalue("PRAGMA foreign_key_check") is None


async def test_old_finished_enqueued_jobs_go_and_the_latest_failed_one_of_each_handler_stays(db: Database) -> None:
    await add(db, None, 20, "done", "cancelled", "dead", "failed", "queued")
    await add(db, None, 10, "done")
    assert await prune(db, NOW - 14 * DAY, now=NOW) == (0, 2)
    assert [status for _, status in (await left(db))[1]] == ["dead", "failed", "queued", "done"]


async def enqueued(db: Database, handler: str, status: str, days_ago: float) -> None:
    """A finished (or unfinished) enqueued job of `handler`, created and finished `days_ago`."""
    at = NOW - days_ago * DAY
    finished = None if status in ("queued", "running") else at
    await db.execute(
        "INSERT INTO jobs (handler, payload, ordering_key, status, run_after, created_at, finished_at, last_error) "
        "VALUES (?, '{}', 'k', ?, ?, ?, ?, ?)", (handler, status, at, at, finished, f"{status} {days_ago:g}d"))


async def enqueued_left(db: Database) -> list[str]:
    rows = await db.fetchall("SELECT handler, last_error FROM jobs WHERE delivery_id IS NULL ORDER BY id")
    return [f"{row[0]} {row[1]}" for row in rows]


async def test_old_failed_or_dead_enqueued_jobs_go_but_each_handlers_latest_and_failed_deliveries_stay(
        db: Database) -> None:
    """A sweep failing every 10 minutes added a failed (or dead) row each time, kept for ever."""
    await add(db, "old-failed", 20, "failed", "dead")  # a delivery's jobs (handlers h:0, h:1): kept to replay
    for handler, status, days in [
        ("sweep", "failed", 30), ("sweep", "dead", 20), ("sweep", "done", 20), ("sweep", "failed", 15),
        ("sweep", "failed", 10), ("sweep", "dead", 1),  # sweep's latest failure is recent
        ("stale", "dead", 30), ("stale", "failed", 20),  # stale's latest failure is old: it stays
        ("once", "dead", 20),  # a handler's only failure stays
        ("h:0", "failed", 25), ("h:0", "failed", 24),  # the delivery's failed job does not count as h:0's latest
        ("busy", "queued", 30), ("busy", "running", 30), ("busy", "failed", 30),
    ]:
        await enqueued(db, handler, status, days)
    assert await prune(db, NOW - 14 * DAY, now=NOW) == (0, 6)
    assert await enqueued_left(db) == [
        "sweep failed 10d", "sweep dead 1d", "stale failed 20d", "once dead 20d", "h:0 failed 24d",
        "busy queued 30d", "busy running 30d", "busy failed 30d"]
    assert (await left(db))[0] == ["old-failed"]
    assert len(await db.fetchall("SELECT 1 FROM jobs WHERE delivery_id = 'old-failed'")) == 2


async def test_old_failed_enqueued_jobs_go_in_batches_with_the_finished_ones(db: Database) -> None:
    for _ in range(4):
        await enqueued(db, "sweep", "done", 20)
    for _ in range(5):
        await enqueued(db, "sweep", "failed", 20)
    await enqueued(db, "sweep", "dead", 2)
    first = await db.run(lambda conn: prune_batch(conn, NOW - 14 * DAY, 3))
    assert first == (0, 3)  # the batch's limit covers both kinds
    assert await prune(db, NOW - 14 * DAY, now=NOW, batch=3) == (0, 6)
    assert await enqueued_left(db) == ["sweep dead 2d"]


async def test_pruning_goes_in_batches_until_nothing_old_is_left(db: Database) -> None:
    for n in range(7):
        await add(db, f"d{n}", 30, "done")
    first = await db.run(lambda conn: prune_batch(conn, NOW - 14 * DAY, 3))
    assert first == (3, 0)
    assert len((await left(db))[0]) == 4
    assert await prune(db, NOW - 14 * DAY, now=NOW, batch=3) == (4, 0)
    assert await left(db) == ([], [])


async def test_redelivery_records_older_than_4_days_go(db: Database) -> None:
    for guid, days in (("g-old", 5), ("g-new", 2)):
        await db.execute("INSERT INTO redeliveries (guid, github_delivery_id, requested_at) VALUES (?, 1, ?)",
                         (guid, NOW - days * DAY))
    await prune(db, NOW - 14 * DAY, now=NOW)
    assert [row[0] for row in await db.fetchall("SELECT guid FROM redeliveries")] == ["g-new"]


@pytest.mark.parametrize(("days", "kept"), [(2, True), (5, False)])
async def test_a_redelivery_pass_not_moved_on_for_4_days_goes(db: Database, days: int, kept: bool) -> None:
    # Its cursor points into a log GitHub no longer keeps; the next sweep starts a new pass.
    await redeliveries.save_pass(db, redeliveries.SweepPass("v1_abc", 1), NOW - days * DAY)
    await prune(db, NOW - 14 * DAY, now=NOW)
    assert (await redeliveries.sweep_pass(db) is not None) is kept


@pytest.mark.parametrize(("value", "ok"), [("4", True), ("3650", True), ("3", False), ("0", False), ("x", False)])
def test_retention_is_at_least_4_days(value: str, ok: bool) -> None:
    env = {"DELIVERY_RETENTION_DAYS": value}
    if ok:
        assert Settings.from_env(env).delivery_retention_days == int(value)
    else:
        with pytest.raises(SettingsError, match="DELIVERY_RETENTION_DAYS"):
            Settings.from_env(env)
    assert Settings.from_env({}).delivery_retention_days == 14


async def test_the_app_prunes_at_start_as_a_job(make_settings: Any, aiohttp_server: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quantumreview.handler")
    settings: Settings = make_settings(delivery_retention_days=7)
    app = create_app(settings)  # the real handlers package: pruning is handlers/retention.py
    now = time.time()
    db = await Database.open(settings.database_path)
    try:
        for delivery_id, days in (("old", 8), ("new", 6)):
            await db.execute("INSERT INTO deliveries (id, event, received_at, body) VALUES (?, 'ping', ?, x'7b7d')",
                             (delivery_id, now - days * DAY))
    finally:
        await db.close()
    await aiohttp_server(app)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = await app[keys.db].fetchvalue(
            "SELECT count(*) FROM jobs WHERE handler = 'handlers.retention:prune_old_deliveries' AND status = 'done'")
        if done:
            break
        await asyncio.sleep(0.05)
    assert done == 1
    assert [row[0] for row in await app[keys.db].fetchall("SELECT id FROM deliveries")] == ["new"]
    events = await app[keys.db].fetchall(
        "SELECT payload ->> 'event' FROM jobs WHERE handler = 'handlers.retention:prune_old_deliveries'")
    assert [row[0] for row in events] == [PRUNE_EVENT]
    assert "retention: deleted 1 deliveries (with their jobs) and 0 enqueued jobs older than 7 days" in caplog.text
