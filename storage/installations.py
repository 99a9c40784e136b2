"""Installations of the App and the repositories each one reaches."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage import audit as audit_store
from storage import checklists as checklist_store
from storage import notifications as notification_store
from storage import pulls as pull_store
from storage import runs as run_store
from storage.db import Database, placeholders


@dataclass(frozen=True)
class Installation:
    """One installation as stored."""

    id: int
    account_login: str
    account_type: str | None
    repository_selection: str | None
    suspended: bool
    deleted: bool


def _repo_rows(installation_id: int, repos: Iterable[Mapping[str, Any]], now: float) -> list[tuple[Any, ...]]:
    return [
        (int(r["id"]), installation_id, str(r["full_name"]), 1 if r.get("private") else 0, now)
        for r in repos
        if isinstance(r, Mapping) and isinstance(r.get("id"), int) and isinstance(r.get("full_name"), str)
    ]


async def upsert_installation(
    conn: aiosqlite.Connection, installation: Mapping[str, Any], now: float
) -> int | None:
    """Insert or refresh an installation from a webhook's `installation` object; return its id.

    None, leaving the row as it is, when the installation was deleted: GitHub gives a reinstall a new id, so a
    later event for a deleted id is late or redelivered and must not bring it (and its repositories) back.
    """
    account = installation.get("account") or {}
    inst_id = int(installation["id"])
    suspended = now if installation.get("suspended_at") else None
    cursor = await conn.execute(
        """
        INSERT INTO installations (id, account_login, account_type, repository_selection, permissions,
                                   suspended_at, deleted_at, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)
        ON CONFLICT (id) DO UPDATE SET account_login = excluded.account_login,
            account_type = excluded.account_type, repository_selection = excluded.repository_selection,
            permissions = excluded.permissions, suspended_at = excluded.suspended_at,
            updated_at = excluded.updated_at
        WHERE installations.deleted_at IS NULL
        """,
        (
            inst_id,
            str(account.get("login") or ""),
            account.get("type") or installation.get("target_type"),
            installation.get("repository_selection"),
            json.dumps(installation.get("permissions") or {}),
            suspended,
            now,
            now,
        ),
    )
    return inst_id if cursor.rowcount == 1 else None


async def replace_repositories(
    conn: aiosqlite.Connection, installation_id: int, repos: Iterable[Mapping[str, Any]], now: float
) -> None:
    """Make the installation's repository set exactly `repos` (removed ones are marked, not deleted)."""
    rows = _repo_rows(installation_id, repos, now)
    await _upsert_repo_rows(conn, rows)
    keep = [row[0] for row in rows]
    await conn.execute(
        f"UPDATE repositories SET removed_at = ?, updated_at = ? "  # noqa: S608 - placeholders only
        f"WHERE installation_id = ? AND removed_at IS NULL AND id NOT IN ({placeholders(keep)})",
        (now, now, installation_id, *keep),
    )


async def add_repositories(
    conn: aiosqlite.Connection, installation_id: int, repos: Iterable[Mapping[str, Any]], now: float
) -> None:
    """Add (or restore) repositories to an installation."""
    await _upsert_repo_rows(conn, _repo_rows(installation_id, repos, now))


async def _upsert_repo_rows(conn: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> None:
    # Why: a renamed or transferred repository keeps its id; what was stored under its old name must follow, or
    # the dashboard showed it without its checklists and an edit built an issue's checklist again from T1; its
    # pull requests were listed under neither name and a CI verdict found no criteria through their links; its
    # health history was no baseline for its pull requests.
    for old, new in await _renamed(conn, rows):
        await checklist_store.rename_repository(conn, old, new)
        await pull_store.rename_repository(conn, old, new)
        await run_store.rename_repository(conn, old, new)
        await audit_store.rename_repository(conn, old, new)
        await notification_store.rename_repository(conn, old, new)
    await conn.executemany(
        """
        INSERT INTO repositories (id, installation_id, full_name, private, removed_at, updated_at)
        VALUES (?, ?, ?, ?, NULL, ?)
        ON CONFLICT (id) DO UPDATE SET installation_id = excluded.installation_id,
            full_name = excluded.full_name, private = excluded.private, removed_at = NULL,
            updated_at = excluded.updated_at
        """,
        rows,
    )
    # Why: a reinstall gets a new id, and a link from another repository counts only within one installation, so
    # checklists left on the deleted id were "not visible to the app" until their issue was edited.
    await checklist_store.follow_installation(conn, [(str(row[2]), int(row[1])) for row in rows])


async def _renamed(conn: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    """(stored name, name now) of each of these repository rows whose full name changed."""
    ids = [row[0] for row in rows]
    cursor = await conn.execute(
        f"SELECT id, full_name FROM repositories WHERE id IN ({placeholders(ids)})", ids)  # noqa: S608
    stored = {int(row[0]): str(row[1]) for row in await cursor.fetchall()}
    return [(stored[row[0]], row[2]) for row in rows if stored.get(row[0], row[2]) != row[2]]


async def repository_name(db: Database, repo_id: int) -> str | None:
    """The full name stored for the repository with this GitHub id, or None if never seen."""
    value = await db.fetchvalue("SELECT full_name FROM repositories WHERE id = ?", (repo_id,))
    return None if value is None else str(value)


async def remove_repositories(
    conn: aiosqlite.Connection, installation_id: int, repos: Iterable[Mapping[str, Any]], now: float
) -> None:
    """Mark repositories as no longer reachable by the installation."""
    ids = [(now, now, int(r["id"]), installation_id) for r in repos if isinstance(r.get("id"), int)]
    await conn.executemany(
        "UPDATE repositories SET removed_at = ?, updated_at = ? WHERE id = ? AND installation_id = ?", ids
    )


async def mark_deleted(conn: aiosqlite.Connection, installation_id: int, now: float, *,
                       account_login: str = "") -> None:
    """Mark an installation deleted, its repositories removed and its queued jobs cancelled.

    One never stored is recorded deleted too. Why: GitHub does not order deliveries; a `created` arriving after
    its `deleted` brought the removed installation in as live (repositories listed, "installed" notices sent).
    """
    await conn.execute(
        "INSERT INTO installations (id, account_login, deleted_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET deleted_at = excluded.deleted_at, updated_at = excluded.updated_at",
        (installation_id, account_login, now, now, now),
    )
    await conn.execute(
        "UPDATE repositories SET removed_at = ?, updated_at = ? WHERE installation_id = ? AND removed_at IS NULL",
        (now, now, installation_id),
    )
    await conn.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = ?, last_error = 'installation deleted' "
        "WHERE installation_id = ? AND status = 'queued'",
        (now, installation_id),
    )


async def set_suspended(conn: aiosqlite.Connection, installation_id: int, suspended_at: float | None) -> None:
    """Record that an installation is suspended (a time) or active again (None)."""
    await conn.execute(
        "UPDATE installations SET suspended_at = ?, updated_at = COALESCE(?, updated_at) WHERE id = ?",
        (suspended_at, suspended_at, installation_id),
    )


async def get_installation(db: Database, installation_id: int) -> Installation | None:
    """The stored installation, or None if never seen."""
    row = await db.fetchone(
        "SELECT id, account_login, account_type, repository_selection, suspended_at, deleted_at "
        "FROM installations WHERE id = ?",
        (installation_id,),
    )
    if row is None:
        return None
    return Installation(
        id=row["id"],
        account_login=row["account_login"],
        account_type=row["account_type"],
        repository_selection=row["repository_selection"],
        suspended=row["suspended_at"] is not None,
        deleted=row["deleted_at"] is not None,
    )


async def active_repositories(db: Database, installation_id: int) -> list[str]:
    """Full names of the repositories the installation reaches now, sorted."""
    rows = await db.fetchall(
        "SELECT full_name FROM repositories WHERE installation_id = ? AND removed_at IS NULL ORDER BY full_name",
        (installation_id,),
    )
    return [row["full_name"] for row in rows]


async def installation_for_repo(db: Database, full_name: str) -> int | None:
    """The live installation that reaches `owner/name`, or None."""
    value = await db.fetchvalue(
        "SELECT r.installation_id FROM repositories r JOIN installations i ON i.id = r.installation_id "
        "WHERE r.full_name = ? COLLATE NOCASE AND r.removed_at IS NULL AND i.deleted_at IS NULL LIMIT 1",
        (full_name,),
    )
    return int(value) if value is not None else None
