"""Webhook deliveries as received: the raw signed body plus the fields jobs are routed by."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from storage.db import Database, placeholders
from storage.jobs import insert_rows

INSERT_SQL = (
    "INSERT INTO deliveries (id, event, action, installation_id, repository, received_at, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class DeliveryRecord(NamedTuple):
    """One delivery to store (or as stored); `body` is the raw signed bytes.

    A NamedTuple in INSERT_SQL's column order: the intake makes one per delivery, and the tuple is the row.
    """

    id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    received_at: float
    body: bytes


def known_ids_now(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    """Which of `ids` are already stored (inside `Database.run`, in the batch's own transaction)."""
    if not ids:
        return set()
    sql = f"SELECT id FROM deliveries WHERE id IN ({placeholders(ids)})"  # noqa: S608 - placeholders only
    return {row[0] for row in conn.execute(sql, tuple(ids)).fetchall()}


def insert_deliveries_now(conn: sqlite3.Connection, records: Sequence[DeliveryRecord]) -> None:
    """Insert new deliveries (inside `Database.run`): multi-row statements, one step each; the caller has
    filtered out known ids."""
    insert_rows(conn, INSERT_SQL, records)


async def get_delivery(db: Database, delivery_id: str) -> DeliveryRecord | None:
    """The stored delivery with this X-GitHub-Delivery id, or None."""
    row = await db.fetchone(
        "SELECT id, event, action, installation_id, repository, received_at, body FROM deliveries WHERE id = ?",
        (delivery_id,),
    )
    if row is None:
        return None
    return DeliveryRecord(
        id=row["id"],
        event=row["event"],
        action=row["action"],
        installation_id=row["installation_id"],
        repository=row["repository"],
        received_at=row["received_at"],
        body=bytes(row["body"]),
    )
