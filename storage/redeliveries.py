"""Delivery GUIDs we asked GitHub to redeliver, and the newest attempt of each that we have acted on."""

from __future__ import annotations

from collections.abc import Collection

from storage.db import Database, placeholders


async def stored_guids(db: Database, guids: Collection[str]) -> set[str]:
    """The GUIDs among `guids` whose delivery we have stored."""
    return set(await _lookup(db, "SELECT id, 0 FROM deliveries WHERE id", guids))


async def acted_on(db: Database, guids: Collection[str]) -> dict[str, int]:
    """For the GUIDs among `guids` we asked to redeliver (or gave up on): the newest attempt id we acted on."""
    return await _lookup(db, "SELECT guid, github_delivery_id FROM redeliveries WHERE guid", guids)


async def _lookup(db: Database, select_where: str, guids: Collection[str]) -> dict[str, int]:
    """Run `select_where IN (…)` (a constant of this module) over `guids` in chunks: SQLite caps parameters."""
    found: dict[str, int] = {}
    items = list(guids)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        rows = await db.fetchall(f"{select_where} IN ({placeholders(chunk)})", chunk)
        found.update((row[0], row[1]) for row in rows)
    return found


async def record(db: Database, guid: str, github_delivery_id: int, now: float) -> None:
    """Remember that we acted on attempt `github_delivery_id` of `guid` (requested it again, or gave up)."""
    await db.execute(
        "INSERT INTO redeliveries (guid, github_delivery_id, requested_at) VALUES (?, ?, ?) "
        "ON CONFLICT (guid) DO UPDATE SET github_delivery_id = excluded.github_delivery_id, "
        "requested_at = excluded.requested_at",
        (guid, github_delivery_id, now),
    )
