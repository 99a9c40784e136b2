"""Delivery GUIDs we asked GitHub to redeliver, and the newest attempt of each that we have acted on.

Two kinds of rows share the table under keys no GUID can take (a GUID never holds '#':
quantumreview.webhook.DELIVERY_ID), so the sweep keeps its state without a schema change:
- `<guid>#asked`: github_delivery_id holds how many redeliveries of <guid> we asked for. GitHub's log shows
  them, but a sweep that reads only the pages new since the last one sees the latest alone.
- `#pass <cursor>`: the pass over GitHub's log under way: the cursor of the page it reads next, and (in
  github_delivery_id) the delivered_at of the newest attempt read before it, where the next sweep's newest
  pages meet what the pass has read.
requested_at is the time of the last write on every row, so retention prunes them all alike.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from storage.db import Database, placeholders

ASKED_ROW = "#asked"
SWEEP_ROW = "#pass "
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
    """For the GUIDs among `guids` whose redelivery we asked for: how many times (records before the count
    was kept read as none)."""
    found = await _lookup(db, "SELECT guid, github_delivery_id FROM redeliveries WHERE guid",
                          [guid + ASKED_ROW for guid in guids])
    return {key.removesuffix(ASKED_ROW): count for key, count in found.items()}


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


async def record(db: Database, guid: str, github_delivery_id: int, now: float) -> None:
    """Remember that we acted on attempt `github_delivery_id` of `guid` (requested it again, or gave up)."""
    await db.execute(UPSERT, (guid, github_delivery_id, now))


async def record_request(db: Database, guid: str, github_delivery_id: int, now: float, *, times: int) -> None:
    """Remember that we asked GitHub to redeliver attempt `github_delivery_id` of `guid`, the `times`th time."""

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(UPSERT, (guid, github_delivery_id, now))
        conn.execute(UPSERT, (guid + ASKED_ROW, times, now))

    await db.run(write)


async def sweep_pass(db: Database) -> SweepPass | None:
    """The pass under way, or None: the next sweep starts one at GitHub's newest page."""
    row = await db.fetchone("SELECT guid, github_delivery_id FROM redeliveries WHERE guid GLOB ? "
                            "ORDER BY requested_at DESC LIMIT 1", (SWEEP_ROW + "*",))
    if row is None:
        return None
    cursor, top = str(row[0]).removeprefix(SWEEP_ROW), row[1]
    if not usable_cursor(cursor) or not isinstance(top, int):
        return None  # not written by save_pass (a hand edit): start over rather than fail every sweep
    return SweepPass(cursor, top)


async def save_pass(db: Database, sweep_pass: SweepPass | None, now: float) -> None:
    """Keep where the pass goes on (None: it is complete, the next sweep starts a new one)."""
    if sweep_pass is not None and not usable_cursor(sweep_pass.cursor):
        raise ValueError("a pass cursor must be printable ASCII of at most 500 characters")

    def write(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM redeliveries WHERE guid GLOB ?", (SWEEP_ROW + "*",))
        if sweep_pass is not None:
            conn.execute(UPSERT, (SWEEP_ROW + sweep_pass.cursor, sweep_pass.top, now))

    await db.run(write)
