"""Checklists: one per issue, its items (test IDs with criteria and statuses), retired IDs and history."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiosqlite

from storage.db import Database, storable

STATUSES = ("pending", "passed", "failed", "skipped", "missing")


class ItemLike(Protocol):
    """What a checklist item needs to be stored: its ID, criterion text and detail."""

    @property
    def tid(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class Checklist:
    """A stored checklist's header."""

    id: int
    repo: str
    issue_number: int
    installation_id: int | None
    title: str
    state: str
    comment_id: int | None
    next_number: int
    truncated: bool
    total_found: int
    retired: bool


@dataclass(frozen=True)
class ChecklistItem:
    """A live item: test ID, criterion, detail and status."""

    tid: str
    text: str
    detail: str
    status: str
    position: int


def _checklist(row: aiosqlite.Row) -> Checklist:
    return Checklist(
        id=row["id"], repo=row["repo"], issue_number=row["issue_number"], installation_id=row["installation_id"],
        title=row["title"], state=row["state"], comment_id=row["comment_id"], next_number=row["next_number"],
        truncated=bool(row["truncated"]), total_found=row["total_found"], retired=row["retired_at"] is not None,
    )


async def get_checklist(db: Database, repo: str, issue_number: int) -> Checklist | None:
    """The issue's checklist, or None. GitHub's owner and repository names ignore case, so a link written
    `codertocat/HELLO-world#4` finds the checklist stored as `Codertocat/Hello-World`."""
    row = await db.fetchone("SELECT * FROM checklists WHERE repo = ? AND issue_number = ?", (repo, issue_number))
    if row is None:
        # Why a second look: NOCASE cannot use the (repo, issue_number) index, and most links are spelled as stored.
        row = await db.fetchone("SELECT * FROM checklists WHERE issue_number = ? AND repo = ? COLLATE NOCASE "
                                "ORDER BY id DESC LIMIT 1", (issue_number, repo))
    return None if row is None else _checklist(row)


async def get_items(db: Database, checklist_id: int) -> tuple[list[ChecklistItem], dict[str, str]]:
    """Live items in order, and retired IDs with their last text."""
    rows = await db.fetchall(
        "SELECT tid, text, detail, status, position, retired_at FROM checklist_items WHERE checklist_id = ?",
        (checklist_id,),
    )
    live = sorted(
        (ChecklistItem(r["tid"], r["text"], r["detail"], r["status"], r["position"]) for r in rows
         if r["retired_at"] is None),
        key=lambda item: item.position,
    )
    retired = {r["tid"]: r["text"] for r in rows if r["retired_at"] is not None}
    return live, retired


async def save_checklist(
    conn: aiosqlite.Connection,
    *,
    repo: str,
    issue_number: int,
    installation_id: int | None,
    title: str,
    state: str,
    items: Sequence[ItemLike],
    next_number: int,
    truncated: bool,
    total_found: int,
    change: Mapping[str, Any],
    now: float,
) -> int:
    """Write the checklist and its live items; items not in `items` become retired. Returns the checklist id."""
    cursor = await conn.execute(
        """
        INSERT INTO checklists (repo, issue_number, installation_id, title, state, next_number, truncated,
                                total_found, retired_at, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
        ON CONFLICT (repo, issue_number) DO UPDATE SET installation_id = excluded.installation_id,
            title = excluded.title, state = excluded.state, next_number = excluded.next_number,
            truncated = excluded.truncated, total_found = excluded.total_found, retired_at = NULL,
            updated_at = excluded.updated_at
        RETURNING id
        """,
        (repo, issue_number, installation_id, storable(title), state, next_number, int(truncated), total_found, now,
         now),
    )
    row = await cursor.fetchone()
    assert row is not None
    checklist_id = int(row[0])
    await conn.execute(
        "UPDATE checklist_items SET position = NULL, retired_at = ?, updated_at = ? "
        "WHERE checklist_id = ? AND retired_at IS NULL",
        (now, now, checklist_id),
    )
    await conn.executemany(
        """
        INSERT INTO checklist_items (checklist_id, tid, text, detail, position, status, retired_at, updated_at)
        VALUES (?, ?, ?, ?, ?, 'pending', NULL, ?)
        ON CONFLICT (checklist_id, tid) DO UPDATE SET text = excluded.text, detail = excluded.detail,
            position = excluded.position, retired_at = NULL, updated_at = excluded.updated_at
        """,
        [(checklist_id, item.tid, item.text, item.detail, pos, now) for pos, item in enumerate(items)],
    )
    if change:
        await conn.execute(
            "INSERT INTO checklist_history (checklist_id, at, change) VALUES (?, ?, ?)",
            (checklist_id, now, json.dumps(change)),
        )
    return checklist_id


async def set_comment_id(conn: aiosqlite.Connection, checklist_id: int, comment_id: int) -> None:
    """Remember the bot comment that shows this checklist."""
    await conn.execute("UPDATE checklists SET comment_id = ? WHERE id = ?", (comment_id, checklist_id))


async def set_header(conn: aiosqlite.Connection, checklist_id: int, *, title: str, state: str, now: float) -> None:
    """Record the issue's current title and state (open or closed), when either changed."""
    await conn.execute(
        "UPDATE checklists SET title = ?, state = ?, updated_at = ? "
        "WHERE id = ? AND (title IS NOT ? OR state IS NOT ?)",
        (storable(title), state, now, checklist_id, storable(title), state),
    )


async def retire_checklist(conn: aiosqlite.Connection, repo: str, issue_number: int, now: float) -> bool:
    """Mark the checklist of a deleted or transferred issue as retired; False if there was none."""
    cursor = await conn.execute(
        "UPDATE checklists SET retired_at = ?, updated_at = ? WHERE repo = ? AND issue_number = ? "
        "AND retired_at IS NULL",
        (now, now, repo, issue_number),
    )
    return cursor.rowcount > 0


async def move_checklist(conn: aiosqlite.Connection, repo: str, issue_number: int, new_repo: str, new_number: int,
                         *, installation_id: int | None, now: float) -> bool:
    """Re-key the checklist of a transferred issue to where it went, items, statuses and retired IDs with it;
    False if it has none. One already there is replaced: the new repository's `opened` made it from T1 again."""
    cursor = await conn.execute(
        "SELECT id FROM checklists WHERE repo = ? AND issue_number = ? AND retired_at IS NULL", (repo, issue_number))
    row = await cursor.fetchone()
    if row is None:
        return False
    cursor = await conn.execute(
        "DELETE FROM checklists WHERE repo = ? AND issue_number = ? RETURNING comment_id", (new_repo, new_number))
    replaced = await cursor.fetchone()
    # Why the replaced one's comment first: it was found (or posted) on the issue where it is now.
    await conn.execute(
        "UPDATE checklists SET repo = ?, issue_number = ?, installation_id = ?, comment_id = COALESCE(?, comment_id), "
        "updated_at = ? WHERE id = ?",
        (new_repo, new_number, installation_id, None if replaced is None else replaced[0], now, row[0]),
    )
    await conn.execute("INSERT INTO checklist_history (checklist_id, at, change) VALUES (?, ?, ?)",
                       (row[0], now, json.dumps({"moved_from": f"{repo}#{issue_number}"})))
    # Why a retired one left behind: a pull request linking the old address is told the issue was transferred,
    # not that it has no acceptance criteria.
    await conn.execute(
        "INSERT INTO checklists (repo, issue_number, installation_id, title, state, retired_at, created_at, "
        "updated_at) SELECT ?, ?, installation_id, title, state, ?, ?, ? FROM checklists WHERE id = ?",
        (repo, issue_number, now, now, now, row[0]),
    )
    return True


async def rename_repository(conn: aiosqlite.Connection, old: str, new: str) -> None:
    """Re-key the checklists of a repository renamed or transferred from `old` to `new` (one already kept under
    the new name for the same issue stays as it is, and the old one with it)."""
    await conn.execute("UPDATE OR IGNORE checklists SET repo = ? WHERE repo = ?", (new, old))


async def follow_installation(conn: aiosqlite.Connection, repos: Sequence[tuple[str, int]]) -> None:
    """Record the installation that reaches each (repository, installation id) pair's checklists now."""
    await conn.executemany(
        "UPDATE checklists SET installation_id = ? WHERE repo = ? AND installation_id IS NOT ?",
        [(installation_id, repo, installation_id) for repo, installation_id in repos],
    )


async def set_statuses(
    conn: aiosqlite.Connection, checklist_id: int, statuses: Mapping[str, str], now: float
) -> dict[str, tuple[str, str]]:
    """Set live items' statuses; return {tid: (old, new)} for those that changed."""
    cursor = await conn.execute(
        "SELECT tid, status FROM checklist_items WHERE checklist_id = ? AND retired_at IS NULL", (checklist_id,)
    )
    current = {row[0]: row[1] for row in await cursor.fetchall()}
    changed = {
        tid: (current[tid], status) for tid, status in statuses.items()
        if tid in current and status in STATUSES and current[tid] != status
    }
    await conn.executemany(
        "UPDATE checklist_items SET status = ?, updated_at = ? WHERE checklist_id = ? AND tid = ?",
        [(new, now, checklist_id, tid) for tid, (_old, new) in changed.items()],
    )
    if changed:
        await conn.execute(
            "INSERT INTO checklist_history (checklist_id, at, change) VALUES (?, ?, ?)",
            (checklist_id, now, json.dumps({"statuses": {t: list(v) for t, v in changed.items()}})),
        )
    return changed
