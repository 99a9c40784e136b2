"""Retention: a delivery and its jobs are deleted once they are older than the retention period and every job of
theirs has finished well (done or cancelled); a delivery with a failed, dead or unfinished job is kept (it can be
replayed). Enqueued jobs (scheduled sweeps, API work) go once finished before the cutoff, failed or dead ones too but
for the latest failed or dead one of each handler, which `quantumreview jobs` shows."""

from __future__ import annotations

import asyncio
import sqlite3

from storage.db import Database

# Why batches: each is one short writer transaction (about 10 ms for 100 deliveries of 12 KB), so deliveries
# arriving meanwhile are not held up.
PRUNE_BATCH = 100
# Why: the redelivery sweep only looks at GitHub's last 3 days; its records older than that are never read again.
REDELIVERY_RECORDS_DAYS = 4
FINISHED_WELL = "('done', 'cancelled')"
FINISHED_BADLY = "('failed', 'dead')"

OLD_DELIVERIES = f"""
DELETE FROM deliveries WHERE rowid IN (
    SELECT d.rowid FROM deliveries d
    WHERE d.received_at < ?
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id AND j.status NOT IN {FINISHED_WELL})
    ORDER BY d.received_at LIMIT ?
)"""  # noqa: S608 - constant text
OLD_ENQUEUED_JOBS = f"""
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE delivery_id IS NULL AND status IN {FINISHED_WELL} AND finished_at < ? LIMIT ?
)"""  # noqa: S608 - constant text
# Why keep each handler's latest: a sweep failing every 10 minutes added a row each time, for ever; its latest error
# is all an operator needs.
OLD_FAILED_ENQUEUED_JOBS = f"""
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE delivery_id IS NULL AND status IN {FINISHED_BADLY} AND finished_at < ?
      AND id NOT IN (SELECT max(id) FROM jobs WHERE delivery_id IS NULL AND status IN {FINISHED_BADLY} GROUP BY handler)
    LIMIT ?
)"""  # noqa: S608 - constant text


def prune_batch(conn: sqlite3.Connection, cutoff: float, limit: int) -> tuple[int, int]:
    """Delete up to `limit` deliveries received before `cutoff` whose jobs all finished well (their jobs go with
    them, ON DELETE CASCADE) and up to `limit` enqueued jobs finished before it (but each handler's latest failed
    or dead one): (deliveries, jobs) deleted."""
    deliveries = conn.execute(OLD_DELIVERIES, (cutoff, limit)).rowcount
    jobs = conn.execute(OLD_ENQUEUED_JOBS, (cutoff, limit)).rowcount
    if jobs < limit:
        jobs += conn.execute(OLD_FAILED_ENQUEUED_JOBS, (cutoff, limit - jobs)).rowcount
    return deliveries, jobs


async def prune(db: Database, cutoff: float, *, now: float, batch: int = PRUNE_BATCH) -> tuple[int, int]:
    """Prune in batches until nothing older than `cutoff` is left to delete: (deliveries, enqueued jobs) deleted."""
    deliveries = jobs = 0
    while True:
        gone = await db.run(lambda conn: prune_batch(conn, cutoff, batch), relaxed=True)
        deliveries, jobs = deliveries + gone[0], jobs + gone[1]
        if max(gone) < batch:
            break
        await asyncio.sleep(0)  # let queued intake batches in between
    records = now - REDELIVERY_RECORDS_DAYS * 86400

    def prune_redelivery_records(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM redeliveries WHERE requested_at < ?", (records,))
        # A pass not moved on for that long points into a log GitHub no longer keeps: the next sweep starts anew.
        conn.execute("DELETE FROM redelivery_pass WHERE saved_at < ?", (records,))

    await db.run(prune_redelivery_records, relaxed=True)
    return deliveries, jobs


# Staged work older than this is dropped: a notification staged with its change (notification_outbox, m015) or a
# follow-up owed by it (followups_owed, m016) is sent or queued by the job that staged it, or its rerun after a kill,
# within minutes (every retry of a job is spent within hours). One still there after a day is left by reruns that
# returned early on purpose (the issue or pull request is gone, the repository left the installation).
STAGED_DAYS = 1
# Why kept while a job of its subject waits (the subject is the or pull request's ordering key): jobs of a
# suspended installation, or under credentials not yet shown right, wait uncounted for days; the one that stages
# or owes the row must still find it when it runs. Uses the jobs_active index.
NO_JOB_WAITING = (" AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.ordering_key = subject "
                  "AND jobs.status IN ('queued', 'running'))")


async def prune_staged(db: Database, now: float) -> tuple[int, int]:
    """Drop outbox notifications and owed follow-ups staged over STAGED_DAYS ago: (notifications, follow-ups).

    Why dropped, not sent: no run would send them, since each one that could decided the subject was gone; a
    notification a day late about an issue or pull request that no longer exists tells a manager nothing true,
    and a revalidation of a pull request that is gone would only fail.
    """
    cutoff = now - STAGED_DAYS * 86400

    def drop(conn: sqlite3.Connection) -> tuple[int, int]:
        notes = conn.execute(f"DELETE FROM notification_outbox WHERE created_at < ?{NO_JOB_WAITING}",  # noqa: S608
                             (cutoff,)).rowcount
        owed = conn.execute(f"DELETE FROM followups_owed WHERE created_at < ?{NO_JOB_WAITING}",  # noqa: S608
                            (cutoff,)).rowcount
        return notes, owed

    return await db.run(drop, relaxed=True)
