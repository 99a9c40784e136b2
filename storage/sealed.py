"""Values sealed with the secret key (SecretBox), wherever they are stored: re-sealed during a key rotation."""

from __future__ import annotations

from collections.abc import Callable

from storage.db import Database


def _as_bytes(value: object) -> bytes | None:
    """A stored value as bytes. Why: one set by hand in the sqlite3 shell is TEXT (Fernet tokens are ASCII), and
    bytes(str) raised TypeError, stopping the start during a JWT_SECRET rotation; None for NULL."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _rewrapped(rewrap: Callable[[bytes], bytes | None], value: object) -> bytes | None:
    token = _as_bytes(value)
    return None if token is None else rewrap(token)


async def reencrypt_secrets(db: Database, rewrap: Callable[[bytes], bytes | None]) -> int:
    """Replace every encrypted value (secret credentials, users' GitHub tokens) that `rewrap` seals anew, in one
    transaction; return how many were replaced."""
    count = 0
    async with db.transaction() as conn:
        for name, value in await conn.execute_fetchall("SELECT name, value FROM credentials WHERE secret = 1"):
            if (sealed := _rewrapped(rewrap, value)) is not None:
                await conn.execute("UPDATE credentials SET value = ? WHERE name = ?", (sealed, name))
                count += 1
        rows = await conn.execute_fetchall("SELECT id, token_enc, refresh_enc FROM users "
                                           "WHERE token_enc IS NOT NULL OR refresh_enc IS NOT NULL")
        for user_id, *values in rows:
            sealed_values = [_rewrapped(rewrap, v) for v in values]
            if any(v is not None for v in sealed_values):
                await conn.execute("UPDATE users SET token_enc = coalesce(?, token_enc), "
                                   "refresh_enc = coalesce(?, refresh_enc) WHERE id = ?", (*sealed_values, user_id))
                count += sum(v is not None for v in sealed_values)
    return count
