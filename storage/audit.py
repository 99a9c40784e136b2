"""The audit log: who did what to which repository from the dashboard (regenerate, revalidate, flag)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from storage.db import Database, placeholders

MAX_PER_PAGE = 100
INT_MAX = 2**63 - 1


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    id: int
    repo: str | None
    actor: str
    action: str
    target: str | None
    details: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


async def record(db: Database, *, repo: str | None, actor: str, action: str, target: str | None,
                 details: Mapping[str, Any] | None, now: float | None = None) -> int:
    """Append an entry; return its id."""
    at = time.time() if now is None else now
    return await db.execute(
        "INSERT INTO audit_log (repo, actor, action, target, details, at) VALUES (?, ?, ?, ?, ?, ?)",
        (repo, actor, action, target, json.dumps(dict(details)) if details else None, at),
    )


async def rename_repository(conn: aiosqlite.Connection, old: str, new: str) -> None:
    """File a renamed or transferred repository's entries under its new name: the log is read by the name GitHub
    gives the repository now, so its history before the rename disappeared from it."""
    await conn.execute("UPDATE audit_log SET repo = ? WHERE repo = ?", (new, old))


async def list_for_repo(db: Database, repo: str, page: int = 1, per_page: int = 30, *,
                        also: Sequence[str] = (), before: int | None = None) -> tuple[list[AuditEntry], int]:
    """One page of the repository's entries, newest first, and the total (pages from 1); with `also`, the entries
    kept under those names too (e.g. a renamed repository's name before an event re-keyed its rows); with
    `before`, only the entries older than that id.

    Why `before`: new entries come first, so with pages by offset one recorded between two requests pushed the
    rows down and the next page repeated the last entry of the page before; the last id shown is a stable cursor.
    """
    size = min(max(per_page, 1), MAX_PER_PAGE)
    offset = (max(page, 1) - 1) * size
    names = list(dict.fromkeys(name.lower() for name in (repo, *also)))
    where = f"repo COLLATE NOCASE IN ({placeholders(names)}) AND id < ?"
    params = (*names, INT_MAX if before is None else before)
    total = int(await db.fetchvalue(f"SELECT COUNT(*) FROM audit_log WHERE {where}", params))  # noqa: S608
    rows = await db.fetchall(
        f"SELECT id, repo, actor, action, target, details, at FROM audit_log WHERE {where} "  # noqa: S608
        "ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, size, offset),
    )
    entries = []
    for row in rows:
        details = json.loads(row["details"]) if row["details"] else {}
        entries.append(AuditEntry(id=row["id"], repo=row["repo"], actor=row["actor"], action=row["action"],
                                  target=row["target"], details=details if isinstance(details, dict) else {},
                                  at=row["at"]))
    return entries, total
