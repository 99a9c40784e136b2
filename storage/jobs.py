"""The durable job queue: insert, claim in key order, and record each outcome."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import aiosqlite

from storage.db import Database, placeholders

# Why: one statement per chunk, not one per row: each sqlite3 step releases and retakes the GIL.
ROWS_PER_STATEMENT = 256
# A claimed job's delivery body comes with its claim up to this size. A larger one is left out (None) and read when
# the job's turn comes to parse it: claiming eight 24 MiB deliveries must not hold 192 MB of bodies.
CLAIM_BODY_MAX = 1024 * 1024

JOB_COLUMNS = "id, delivery_id, handler, payload, ordering_key, installation_id, attempts"
# jobs_active's WHERE (migration m008), spelled the same in every query that should use that index.
ACTIVE = "status IN ('queued', 'running')"
# A job may start only when no earlier unfinished job shares its key: it must be the first unfinished job of its
# key. A full claim finds those two ways, whichever suits the backlog:
# - PROBE_CLAIM_SQL takes each due queued job and probes jobs_active for an earlier unfinished one of its key: cheap
#   while few jobs are due (the usual case, or an outage with everything waiting out its backoff);
# - HEADS_CLAIM_SQL reads the first unfinished job of every key in one pass over jobs_active, which holds only
#   unfinished jobs: with 15,000 due jobs, 2 to 8 times faster than probing them (bench/claim.py).
PROBE_LIMIT = 1000
DUE_JOBS = "SELECT id FROM jobs WHERE status = 'queued' AND run_after <= ?"
DUE_COUNT = f"SELECT count(*) FROM ({DUE_JOBS} LIMIT ?)"  # noqa: S608 - constant text
HEADS = f"SELECT min(id) FROM jobs INDEXED BY jobs_active WHERE {ACTIVE} GROUP BY ordering_key"  # noqa: S608
CLAIM_TEMPLATE = """
UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1
WHERE id IN (
    SELECT j.id FROM jobs j
    WHERE j.id IN ({candidates}) AND +j.status = 'queued' AND +j.run_after <= ?{unless_behind}
    ORDER BY j.id LIMIT ?
)
RETURNING {columns}
"""
UNLESS_BEHIND = (
    f"\n      AND NOT EXISTS (SELECT 1 FROM jobs e "  # noqa: S608 - constant text
    f"WHERE e.ordering_key = j.ordering_key AND e.{ACTIVE} AND e.id < j.id)")
HEADS_CLAIM_SQL = CLAIM_TEMPLATE.format(candidates=HEADS, unless_behind="", columns=JOB_COLUMNS)
PROBE_CLAIM_SQL = CLAIM_TEMPLATE.format(candidates=DUE_JOBS, unless_behind=UNLESS_BEHIND, columns=JOB_COLUMNS)
# While a job of a large delivery is in progress, claims take only jobs whose delivery body is at most the bound
# parameter (CLAIM_BODY_MAX), so large ones run one at a time without holding the slots small ones need. length()
# of a blob reads only its record header.
SMALL_BODIES_ONLY = ("\n      AND (j.delivery_id IS NULL OR "
                     "(SELECT length(body) FROM deliveries WHERE id = j.delivery_id) <= ?)")
HEADS_SMALL_CLAIM_SQL = CLAIM_TEMPLATE.format(candidates=HEADS, unless_behind=SMALL_BODIES_ONLY, columns=JOB_COLUMNS)
PROBE_SMALL_CLAIM_SQL = CLAIM_TEMPLATE.format(candidates=DUE_JOBS, unless_behind=UNLESS_BEHIND + SMALL_BODIES_ONLY,
                                              columns=JOB_COLUMNS)


class NewJob(NamedTuple):
    """A job to insert: for a delivery (`delivery_id`) or enqueued work (`payload` JSON).

    A NamedTuple in INSERT_SQL's column order: the intake makes one per job, and the tuple is the row.
    """

    handler: str
    ordering_key: str
    run_after: float
    created_at: float
    delivery_id: str | None = None
    payload: str | None = None
    installation_id: int | None = None


@dataclass(frozen=True)
class Job:
    """A claimed job; `attempts` already counts the run about to start."""

    id: int
    delivery_id: str | None
    handler: str
    payload: str | None
    ordering_key: str
    installation_id: int | None
    attempts: int


@dataclass(frozen=True)
class JobState:
    """A job's status as stored, for tests, health and the API."""

    id: int
    delivery_id: str | None
    handler: str
    status: str
    attempts: int
    run_after: float
    last_error: str | None


INSERT_SQL = (
    "INSERT INTO jobs (handler, ordering_key, run_after, created_at, delivery_id, payload, installation_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def insert_rows(conn: sqlite3.Connection, insert_sql: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Run `INSERT … VALUES (?, …)` for many rows as few multi-row statements (on the writer's thread)."""
    if not rows:
        return
    group = "(" + ", ".join("?" * len(rows[0])) + ")"
    head = insert_sql.partition("VALUES")[0] + "VALUES "
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start:start + ROWS_PER_STATEMENT]
        conn.execute(head + ", ".join([group] * len(chunk)), [value for row in chunk for value in row])


def insert_jobs_now(conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> None:
    """Insert many jobs from inside `Database.run` (the intake's batch path)."""
    insert_rows(conn, INSERT_SQL, jobs)


async def insert_job(conn: aiosqlite.Connection, job: NewJob) -> int:
    """Insert one job and return its id."""
    cursor = await conn.execute(INSERT_SQL, job)
    return int(cursor.lastrowid or 0)


# Why: a claim after a finish or an insert only looks where those can have freed work, not at the whole backlog:
# the new jobs (each checked for an earlier unfinished job of its key) and the head of each key that just ended.
# The unary + keeps the planner on the candidates' rowids instead of walking jobs_due.
NARROW_CLAIM_SQL = CLAIM_TEMPLATE.format(candidates="{candidates}", unless_behind=UNLESS_BEHIND, columns=JOB_COLUMNS)
NARROW_SMALL_CLAIM_SQL = CLAIM_TEMPLATE.format(
    candidates="{candidates}", unless_behind=UNLESS_BEHIND + SMALL_BODIES_ONLY, columns=JOB_COLUMNS)
NEW_SINCE = "SELECT id FROM jobs WHERE id > ?"
HEAD_OF_KEY = f"SELECT min(id) FROM jobs WHERE ordering_key = ? AND {ACTIVE}"  # noqa: S608 - constant text


@dataclass(frozen=True)
class Claim:
    """Jobs claimed in one transaction, which of their installations are 'deleted' or 'suspended', the
    highest job id when claimed (the next narrow claim looks past it), and the event name and raw body of
    each claimed job's delivery (a delivery missing here is gone)."""

    jobs: list[Job]
    blocked: dict[int, str]
    last_id: int = 0
    # delivery id -> (event, body), body None when over CLAIM_BODY_MAX
    deliveries: dict[str, tuple[str, bytes | None]] = field(default_factory=dict)


def settle_and_claim(conn: sqlite3.Connection, done: Sequence[int], now: float, limit: int, *,
                     after_id: int | None = None, keys: Sequence[str] = (), large_ok: bool = True) -> Claim:
    """Mark `done` jobs done, then claim up to `limit` due jobs (inside `Database.run`): one commit for both.

    With `after_id` None every queued job is a candidate (the probe or the heads claim, see above). Otherwise only
    jobs added after `after_id` and the first queued job of each of `keys` (those whose previous job just ended).
    Without `large_ok`, jobs of deliveries over CLAIM_BODY_MAX are passed over.
    """
    for start in range(0, len(done), ROWS_PER_STATEMENT):
        chunk = done[start:start + ROWS_PER_STATEMENT]
        conn.execute("UPDATE jobs SET status = 'done', finished_at = ?, last_error = NULL "  # noqa: S608
                     f"WHERE id IN ({placeholders(chunk)})", (now, *chunk))
    last_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()[0])
    if limit <= 0:
        return Claim([], {}, last_id)
    tail = (limit,) if large_ok else (CLAIM_BODY_MAX, limit)
    if after_id is None:
        if conn.execute(DUE_COUNT, (now, PROBE_LIMIT + 1)).fetchone()[0] <= PROBE_LIMIT:
            sql = PROBE_CLAIM_SQL if large_ok else PROBE_SMALL_CLAIM_SQL
            rows = conn.execute(sql, (now, now, now, *tail)).fetchall()
        else:
            sql = HEADS_CLAIM_SQL if large_ok else HEADS_SMALL_CLAIM_SQL
            rows = conn.execute(sql, (now, now, *tail)).fetchall()
    else:
        candidates = " UNION ALL ".join([NEW_SINCE] + [HEAD_OF_KEY] * len(keys))
        sql = (NARROW_CLAIM_SQL if large_ok else NARROW_SMALL_CLAIM_SQL).format(candidates=candidates)
        rows = conn.execute(sql, (now, after_id, *keys, now, *tail)).fetchall()
    jobs = sorted((Job(*row) for row in rows), key=lambda j: j.id)
    return Claim(jobs, _blocked_installations(conn, {j.installation_id for j in jobs} - {None}), last_id,
                 _deliveries(conn, {j.delivery_id for j in jobs if j.delivery_id is not None}))


def _deliveries(conn: sqlite3.Connection, ids: set[str]) -> dict[str, tuple[str, bytes | None]]:
    # Why read here: the claim's hop hands each job its payload, instead of one reader round trip per job.
    # length() of a blob reads only its record header, so a large body's pages are not touched.
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT id, event, CASE WHEN length(body) <= ? THEN body END FROM deliveries "  # noqa: S608
        f"WHERE id IN ({placeholders(ids)})",
        (CLAIM_BODY_MAX, *ids),
    ).fetchall()
    return {str(row[0]): (str(row[1]), None if row[2] is None else bytes(row[2])) for row in rows}


def _blocked_installations(conn: sqlite3.Connection, ids: set[int | None]) -> dict[int, str]:
    # Why read here: the claim's hop answers it, instead of one reader round trip per job.
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT id, CASE WHEN deleted_at IS NOT NULL THEN 'deleted' ELSE 'suspended' END FROM installations "  # noqa: S608
        f"WHERE id IN ({placeholders(ids)}) AND (deleted_at IS NOT NULL OR suspended_at IS NOT NULL)",
        tuple(ids),
    ).fetchall()
    return {int(row[0]): str(row[1]) for row in rows}


async def mark_final(conn: aiosqlite.Connection, job_id: int, status: str, now: float, error: str) -> None:
    """End a job as failed, dead or cancelled with its last error."""
    await conn.execute(
        "UPDATE jobs SET status = ?, finished_at = ?, last_error = ? WHERE id = ?", (status, now, error, job_id)
    )


async def schedule_retry(conn: aiosqlite.Connection, job_id: int, run_after: float, error: str) -> None:
    """Queue the job again, not before `run_after` (the failed run stays counted)."""
    await conn.execute(
        "UPDATE jobs SET status = 'queued', run_after = ?, last_error = ? WHERE id = ?", (run_after, error, job_id)
    )


async def defer(conn: aiosqlite.Connection, job_ids: Sequence[int], run_after: float, reason: str) -> None:
    """Queue jobs again without counting the interrupted run (shutdown, suspended installation)."""
    await conn.executemany(
        "UPDATE jobs SET status = 'queued', attempts = max(attempts - 1, 0), run_after = ?, last_error = ? "
        "WHERE id = ? AND status = 'running'",
        [(run_after, reason, job_id) for job_id in job_ids],
    )


async def recover_interrupted(conn: aiosqlite.Connection, now: float, max_attempts: int) -> tuple[int, int]:
    """Requeue jobs a crash left running; those out of attempts go dead. Return (requeued, dead)."""
    dead = await conn.execute(
        "UPDATE jobs SET status = 'dead', finished_at = ?, last_error = 'interrupted by a restart' "
        "WHERE status = 'running' AND attempts >= ?",
        (now, max_attempts),
    )
    requeued = await conn.execute(
        "UPDATE jobs SET status = 'queued', run_after = ? WHERE status = 'running'", (now,)
    )
    return requeued.rowcount, dead.rowcount


async def cancel_installation_jobs(conn: aiosqlite.Connection, installation_id: int, now: float, reason: str, *,
                                   keep_events: Collection[str] = ()) -> int:
    """Cancel every queued job of an installation but those of deliveries of `keep_events`; return how many."""
    cursor = await conn.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = ?, last_error = ? "  # noqa: S608 - placeholders only
        "WHERE installation_id = ? AND status = 'queued' AND (delivery_id IS NULL OR NOT EXISTS ("
        f"SELECT 1 FROM deliveries d WHERE d.id = jobs.delivery_id AND d.event IN ({placeholders(keep_events)})))",
        (now, reason, installation_id, *keep_events),
    )
    return cursor.rowcount


async def wake_installation_jobs(conn: aiosqlite.Connection, installation_id: int, now: float, *,
                                 deferred_with: str) -> int:
    """Make due now the installation's queued jobs deferred with a last_error starting `deferred_with`.

    Only those: a job waiting out a retry backoff (a 5xx, a rate limit) keeps its wait. Return how many.
    """
    cursor = await conn.execute(
        "UPDATE jobs SET run_after = ? WHERE installation_id = ? AND status = 'queued' AND run_after > ? "
        "AND substr(last_error, 1, length(?)) = ?",
        (now, installation_id, now, deferred_with, deferred_with),
    )
    return cursor.rowcount


async def status_counts(db: Database) -> dict[str, int]:
    """Number of queued, running and dead jobs."""
    rows = await db.fetchall(
        "SELECT status, count(*) FROM jobs WHERE status IN ('queued', 'running', 'dead') GROUP BY status"
    )
    counts = {"queued": 0, "running": 0, "dead": 0}
    counts.update({row[0]: int(row[1]) for row in rows})
    return counts


async def list_jobs(db: Database, *, delivery_id: str | None = None) -> list[JobState]:
    """Jobs in id order, optionally only a delivery's."""
    sql = "SELECT id, delivery_id, handler, status, attempts, run_after, last_error FROM jobs"
    params: tuple[object, ...] = ()
    if delivery_id is not None:
        sql += " WHERE delivery_id = ?"
        params = (delivery_id,)
    rows = await db.fetchall(sql + " ORDER BY id", params)
    return [JobState(*row) for row in rows]


async def has_pending(db: Database, ordering_key: str) -> bool:
    """Whether a job with `ordering_key` is queued or running (so periodic work is not queued twice)."""
    value = await db.fetchvalue(
        f"SELECT 1 FROM jobs WHERE ordering_key = ? AND {ACTIVE} LIMIT 1", (ordering_key,)  # noqa: S608
    )
    return value is not None


async def requeue_delivery(conn: aiosqlite.Connection, delivery_id: str,
                           jobs: Sequence[NewJob]) -> tuple[list[str], list[str]]:
    """Queue a stored delivery's jobs again from scratch (existing rows reset, missing ones added).

    A running job is left alone. Return the handlers queued and those left running.
    """
    queued: list[str] = []
    running: list[str] = []
    for job in jobs:
        cursor = await conn.execute(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_after = ?, started_at = NULL, "
            "finished_at = NULL, last_error = NULL WHERE delivery_id = ? AND handler = ? AND status != 'running'",
            (job.run_after, delivery_id, job.handler),
        )
        if cursor.rowcount == 0:
            cursor = await conn.execute(INSERT_SQL + " ON CONFLICT (delivery_id, handler) DO NOTHING", job)
        # Why count rows changed: a running job matches neither statement, and was reported as queued again.
        (queued if cursor.rowcount else running).append(job.handler)
    return queued, running


async def failed_jobs(db: Database, *, limit: int = 50) -> list[JobState]:
    """The most recent dead or failed jobs with their errors, newest first."""
    rows = await db.fetchall(
        "SELECT id, delivery_id, handler, status, attempts, run_after, last_error FROM jobs "
        "WHERE status IN ('dead', 'failed') ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [JobState(*row) for row in rows]


# Follow-ups owed (followups_owed, m016): written in the transaction of the change that calls for them, cleared
# once queued. Why: a job killed between storing a change and queueing its follow-up found nothing changed when run
# again, and queued nothing. A follow-up queued twice (killed after queueing, before clearing) is harmless: each
# kind is a job that recomputes from stored state.
async def owe(conn: aiosqlite.Connection, subject: str, kind: str, now: float) -> None:
    """Record that the job about `subject` owes the follow-up `kind` (once, however often the change is stored)."""
    await conn.execute("INSERT OR IGNORE INTO followups_owed (subject, kind, created_at) VALUES (?, ?, ?)",
                       (subject, kind, now))


async def is_owed(db: Database, subject: str, kind: str) -> bool:
    """Whether the follow-up `kind` about `subject` is owed (by this run's change or a killed run's)."""
    value = await db.fetchvalue("SELECT 1 FROM followups_owed WHERE subject = ? AND kind = ?", (subject, kind))
    return value is not None


async def settle_owed(db: Database, subject: str, kind: str) -> None:
    """The follow-up `kind` about `subject` is queued: forget it."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM followups_owed WHERE subject = ? AND kind = ?", (subject, kind))
