"""App credentials from the setup flow: one row per name; secret values arrive and leave as ciphertext."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import aiosqlite

from storage.db import Database


@dataclass(frozen=True)
class StoredValue:
    """One credential as stored: bytes (ciphertext when `secret`)."""

    name: str
    value: bytes = field(repr=False)
    secret: bool


async def save_values(conn: aiosqlite.Connection, values: Iterable[StoredValue], *, now: float) -> None:
    """Insert or replace each value, inside the caller's transaction."""
    await conn.executemany(
        "INSERT INTO credentials (name, value, secret, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = excluded.value, secret = excluded.secret, "
        "updated_at = excluded.updated_at",
        [(v.name, v.value, int(v.secret), now) for v in values],
    )


async def load_values(db: Database) -> dict[str, StoredValue]:
    """Every stored credential by name."""
    rows = await db.fetchall("SELECT name, value, secret FROM credentials")
    return {row["name"]: StoredValue(row["name"], _as_bytes(row["value"]), bool(row["secret"])) for row in rows}


def _as_bytes(value: object) -> bytes:
    """A stored value as bytes. Why: a value set by hand in the sqlite3 shell (UPDATE credentials SET value =
    '123') is TEXT, or INTEGER, not BLOB; bytes() raised TypeError on the first (a traceback at every start)
    and made the second that many zero bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


async def save_webhook_app_id(conn: aiosqlite.Connection, app_id: int, *, now: float) -> None:
    """Keep the App id GitHub put on this server's latest signed webhook (one row), inside the caller's
    transaction."""
    await conn.execute(
        "INSERT INTO webhook_app (id, app_id, seen_at) VALUES (1, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET app_id = excluded.app_id, seen_at = excluded.seen_at",
        (app_id, now),
    )


async def load_webhook_app_id(db: Database) -> int | None:
    """The App id kept by save_webhook_app_id, or None if no webhook named one yet (or the row is unusable: set
    by hand, say, to something that is no App id)."""
    row = await db.fetchone("SELECT app_id FROM webhook_app WHERE id = 1")
    value = row["app_id"] if row is not None else None
    return value if isinstance(value, int) and value > 0 else None


async def wake_credentials_jobs(conn: aiosqlite.Connection, now: float, *, deferred_with: str) -> int:
    """Make due now every queued job deferred with a last_error starting `deferred_with` (jobs waiting for App
    credentials shown to be right, of any installation); return how many. A job waiting out a retry backoff keeps
    its wait."""
    cursor = await conn.execute(
        "UPDATE jobs SET run_after = ? WHERE status = 'queued' AND run_after > ? "
        "AND substr(last_error, 1, length(?)) = ?",
        (now, now, deferred_with, deferred_with),
    )
    return cursor.rowcount
