"""Delivery GUIDs we asked GitHub to redeliver, so each is asked for once."""

from __future__ import annotations

from collections.abc import Collection

from storage.db import Database, placeholders


async def known_guids(db: Database, guids: Collection[str]) -> set[str]:
    """The GUIDs among `guids` that we already stored or already asked to redeliver."""
    known: set[str] = set()
    items = list(guids)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        marks = placeholders(chunk)
        rows = await db.fetchall(
            f"SELECT id FROM deliveries WHERE id IN ({marks}) "  # noqa: S608 - placeholders only
            f"UNION SELECT guid FROM redeliveries WHERE guid IN ({marks})",
            (*chunk, *chunk),
        )
        known.update(row[0] for row in rows)
    return known


async def claim(db: Database, guid: str, github_delivery_id: int, now: float) -> bool:
    """Record that `guid` is being redelivered; False if it already was."""
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO redeliveries (guid, github_delivery_id, requested_at) VALUES (?, ?, ?) "
            "ON CONFLICT (guid) DO NOTHING",
            (guid, github_delivery_id, now),
        )
        return cursor.rowcount == 1
