"""Scale probe: the per-request access filter (users.gone_repositories) reads only the asking user's installations,
however many repositories the App was ever removed from elsewhere."""

from __future__ import annotations

import time
from typing import Any

import pytest

from storage import users
from storage.db import Database

OTHER_INSTALLATIONS = 200
REMOVED_EACH = 50


async def seed(db: Database) -> None:
    """Installations 1 and 2 (the user's), 200 others with 50 removed repositories each; 3 and 4 deleted."""
    now = time.time()
    installations = [(i, now if i in (3, 4) else None) for i in range(1, OTHER_INSTALLATIONS + 3)]
    repos = [(i * 1000 + n, i, f"org{i}/r{n}", now) for i, _ in installations for n in range(REMOVED_EACH)]
    repos += [(1 * 1000 + 999, 1, "org1/live", None), (1 * 1000 + 998, 1, "org1/R0", None)]  # R0: live again
    async with db.transaction() as conn:
        await conn.executemany("INSERT INTO installations (id, account_login, deleted_at, created_at, updated_at) "
                               "VALUES (?, 'o', ?, 0, 0)", installations)
        await conn.executemany("INSERT INTO repositories (id, installation_id, full_name, private, removed_at, "
                               "updated_at) VALUES (?, ?, ?, 0, ?, 0)", repos)


async def test_gone_repositories_reads_only_the_asked_installations(
        handler_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await seed(handler_db)
    fetched: list[int] = []
    fetchall = handler_db.fetchall

    async def counting(sql: str, params: Any = ()) -> Any:
        rows = await fetchall(sql, params)
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(handler_db, "fetchall", counting)
    deleted, removed = await users.gone_repositories(handler_db, {1, 2, 3})
    assert deleted == {3}
    assert removed == {(i, f"org{i}/r{n}") for i in (1, 2) for n in range(REMOVED_EACH)} - {(1, "org1/r0")}
    # Rows of the 199 other installations (9,950 removed repositories, one deleted installation) stay in SQLite.
    assert sum(fetched) == len(deleted) + len(removed)
    assert await users.gone_repositories(handler_db, set()) == (set(), set())
