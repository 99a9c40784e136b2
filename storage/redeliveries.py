"""Delivery GUIDs we asked GitHub to redeliver (how many times, and the newest attempt of each that we acted on),
the requests that failed on the way and are to be tried again (redelivery_retries), and where the sweep's pass over
GitHub's delivery log goes on (redelivery_pass, one row)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from storage.db import Database, placeholders

# Why a bound and printable ASCII: the cursor comes from GitHub's Link header and goes back in a query string.
CURSOR = re.compile(r"[\x21-\x7e]{1,500}")


@dataclass(frozen=True)
class SweepPass:
    """Where the pass over GitHub's delivery log goes on: the page at `cursor`; `top` (epoch seconds) is the
    delivered_at of the newest attempt read before it (the pass has read everything from there to `cursor`)."""

    cursor: str
    top: int


def usable_cursor(cursor: str | None) -> bool:
    """True for a cursor that may be stored and sent back: printable ASCII, at most 500 characters."""
    return cursor is not None and CURSOR.fullmatch(cursor) is not None


async def stored_guids(db: Database, guids: Collection[str]) -> set[str]:
    """The GUIDs among `guids` whose delivery we have stored."""
    return set(await _lookup(db, "SELECT id, 0 FROM deliveries WHERE id", guids))


async def acted_on(db: Database, guids: Collection[str]) -> dict[str, int]:
    """For the GUIDs among `guids` we asked to redeliver (or gave up on): the newest attempt id we acted on."""
    return await _lookup(db, "SELECT guid, github_delivery_id FROM redeliveries WHERE guid", guids)


async def times_asked(db: Database, guids: Collection[str]) -> dict[str, int]:
    """For the GUIDs among `guids` whose redelivery we asked for: how many times (records from before the count
    was kept read as none). Why kept: GitHub's log shows each ask, but a sweep that reads only the pages new since
    the last one sees the latest alone."""
    return await _lookup(db, "SELECT guid, times_asked FROM redeliveries WHERE times_asked > 0 AND guid", guids)


async def _lookup(db: Database, select_where: str, guids: Collection[str]) -> dict[str, int]:
    """Run `select_where IN (…)` (a constant of this module) over `guids` in chunks: SQLite caps parameters."""
    found: dict[str, int] = {}
    items = list(guids)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        rows = await db.fetchall(f"{select_where} IN ({placeholders(chunk)})", chunk)
        found.update((row[0], row[1]) for row in rows)
    return found


UPSERT = ("INSERT INTO redeliveries (guid, github_delivery_id, requested_at) VALUES (?, ?, ?) "
          "ON CONFLICT (guid) DO UPDATE SET github_delivery_id = excluded.github_delivery_id, "
          "requested_at = excluded.requested_at")
UPSERT_ASKED = ("INSERT INTO redeliveries (guid, github_delivery_id, requested_at, times_asked) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (guid) DO UPDATE SET github_delivery_id = excluded.github_delivery_id, "
                "requested_at = excluded.requested_at, times_asked = excluded.times_asked")


DROP_RETRY = "DELETE FROM redelivery_retries WHERE guid = ?"


async def record(db: Database, guid: str, github_delivery_id: int, now: float) -> None:
    """Remember that we acted on attempt `github_delivery_id` of `guid` (requested it again, or gave up); a retry
    of its request that was pending goes in the same transaction."""
    await _write(db, (UPSERT, (guid, github_delivery_id, now)), (DROP_RETRY, (guid,)))


async def record_request(db: Database, guid: str, github_delivery_id: int, now: float, *, times: int) -> None:
    """Remember that we asked GitHub to redeliver attempt `github_delivery_id` of `guid`, the `times`th time; a retry
    of the request that was pending goes in the same transaction (so GitHub is never asked twice for it)."""
    await _write(db, (UPSERT_ASKED, (guid, github_delivery_id, now, times)), (DROP_RETRY, (guid,)))


async def _write(db: Database, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Run `statements` (constants of this module) in one transaction."""

    def work(conn: sqlite3.Connection) -> None:
        for sql, params in statements:
            conn.execute(sql, params)

    await db.run(work)


@dataclass(frozen=True)
class Retry:
    """A redelivery request that failed on the way (not refused by GitHub): attempt `github_delivery_id` of `guid`,
    delivered at `delivered_at` (epoch seconds), `redeliveries` asked before it, `tries` failed requests so far."""

    guid: str
    github_delivery_id: int
    delivered_at: float
    redeliveries: int
    tries: int


async def retries(db: Database) -> list[Retry]:
    """The requests to try again, the first to fail first."""
    rows = await db.fetchall("SELECT guid, github_delivery_id, delivered_at, redeliveries, tries "
                             "FROM redelivery_retries ORDER BY first_failed_at, rowid")
    return [Retry(row[0], row[1], row[2], row[3], row[4]) for row in rows]


async def save_retry(db: Database, retry: Retry, now: float) -> None:
    """Keep `retry` (its failed tries counted) for the next sweep; when it first failed stays as it was."""
    await db.execute(
        "INSERT INTO redelivery_retries (guid, github_delivery_id, delivered_at, redeliveries, tries, first_failed_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guid) DO UPDATE SET github_delivery_id = excluded.github_delivery_id, "
        "delivered_at = excluded.delivered_at, redeliveries = excluded.redeliveries, tries = excluded.tries",
        (retry.guid, retry.github_delivery_id, retry.delivered_at, retry.redeliveries, retry.tries, now))


async def drop_retry(db: Database, guid: str) -> None:
    """Forget the pending retry of `guid` (no longer needed: the delivery arrived, or GitHub resent it since)."""
    await db.execute(DROP_RETRY, (guid,))


async def sweep_pass(db: Database) -> SweepPass | None:
    """The pass under way, or None: the next sweep starts one at GitHub's newest page."""
    row = await db.fetchone("SELECT cursor, top FROM redelivery_pass WHERE id = 1")
    if row is None:
        return None
    cursor, top = row[0], row[1]
    if not isinstance(cursor, str) or not usable_cursor(cursor) or not isinstance(top, int):
        return None  # not written by save_pass (a hand edit): start over rather than fail every sweep
    return SweepPass(cursor, top)


async def save_pass(db: Database, sweep_pass: SweepPass | None, now: float) -> None:
    """Keep where the pass goes on (None: it is complete, the next sweep starts a new one)."""
    if sweep_pass is not None and not usable_cursor(sweep_pass.cursor):
        raise ValueError("a pass cursor must be printable ASCII of at most 500 characters")
    if sweep_pass is None:
        await db.execute("DELETE FROM redelivery_pass")
        return
    await db.execute("INSERT INTO redelivery_pass (id, cursor, top, saved_at) VALUES (1, ?, ?, ?) "
                     "ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor, top = excluded.top, "
                     "saved_at = excluded.saved_at", (sweep_pass.cursor, sweep_pass.top, now))
