"""Notifications for dashboard users: one row per user who manages the repository; each user sees only their own."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from storage.db import Database

MAX_PER_PAGE = 100


@dataclass(frozen=True)
class Notification:
    """One notification of one user."""

    id: int
    repo: str | None
    kind: str
    title: str
    url: str | None
    data: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    read_at: float | None = None

    @property
    def read(self) -> bool:
        """True once the user marked it read."""
        return self.read_at is not None


# One notification per user who manages the repository; a key a user already has writes nothing for them. Why a
# conflict target: any other constraint broken (a NOT NULL) must still fail loudly.
NOTIFY_MANAGERS = ("INSERT INTO notifications (user_id, repo, kind, title, url, data, created_at, dedupe_key) "
                   "SELECT user_id, ?, ?, ?, ?, ?, ?, ? FROM user_repositories WHERE repo = ? COLLATE NOCASE "
                   "ON CONFLICT (user_id, dedupe_key) DO NOTHING")


async def notify_repo_managers(db: Database, repo: str, kind: str, title: str, *, url: str | None = None,
                               data: Mapping[str, Any] | None = None, now: float | None = None,
                               key: str | None = None) -> int:
    """Write one notification per user who manages `repo` (from user_repositories); return the rows written.

    With `key` (the fact told, e.g. "installed:42:octo/a"), a user who already has a notification of that key gets
    none: a job run again after a crash, or a retry, tells each user once. Keys are unique per user, whatever the
    kind or repository, so a key names those too.
    """
    at = time.time() if now is None else now
    payload = json.dumps(dict(data)) if data else None
    async with db.transaction() as conn:
        cursor = await conn.execute(NOTIFY_MANAGERS, (repo, kind, title, url, payload, at, key, repo))
        return max(cursor.rowcount, 0)


async def notify_repos_managers(db: Database, notes: Sequence[tuple[str, str, str | None]], kind: str, *,
                                now: float | None = None) -> int:
    """notify_repo_managers for many repositories at once, (repo, title, key) each, in one transaction; return the
    rows written. Why: an organization installing the App on 600 repositories wrote 600 transactions (each a
    commit, and a turn of the one writer every other job waits for)."""
    if not notes:
        return 0
    at = time.time() if now is None else now
    async with db.transaction() as conn:
        cursor = await conn.executemany(
            NOTIFY_MANAGERS, [(repo, kind, title, None, None, at, key, repo) for repo, title, key in notes])
        return max(cursor.rowcount, 0)


@dataclass(frozen=True)
class Staged:
    """A notification decided with the state it tells of (notification_outbox), not yet sent."""

    key: str
    repo: str
    kind: str
    title: str
    url: str | None
    data: dict[str, Any]


def new_key(kind: str, subject: str) -> str:
    """A key for a staged notification: the outbox row carries it to every rerun, so it need only be unique."""
    return f"{kind}:{subject}:{secrets.token_hex(8)}"


async def stage(conn: aiosqlite.Connection, *, subject: str, repo: str, kind: str, title: str,
                url: str | None = None, data: Mapping[str, Any] | None = None, now: float | None = None) -> str:
    """Keep a notification to send once the transaction of `conn` commits (the one storing the change it tells
    of); return its key. Why: a job killed between storing a change and notifying found nothing changed when it
    ran again, and told nobody; staged with the change, the notification waits for whichever run gets to send it.
    """
    key = new_key(kind, subject)
    await conn.execute(
        "INSERT INTO notification_outbox (key, subject, repo, kind, title, url, data, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (key, subject, repo, kind, title, url, json.dumps(dict(data)) if data else None,
         time.time() if now is None else now),
    )
    return key


async def staged(db: Database, subject: str) -> list[Staged]:
    """The notifications staged about `subject` and not sent yet, oldest first."""
    rows = await db.fetchall("SELECT key, repo, kind, title, url, data FROM notification_outbox WHERE subject = ? "
                             "ORDER BY created_at, rowid", (subject,))
    return [Staged(row["key"], row["repo"], row["kind"], row["title"], row["url"],
                   json.loads(row["data"]) if row["data"] else {}) for row in rows]


async def unstage(db: Database, key: str) -> None:
    """Forget a staged notification once it was sent (sent again by a rerun first, its key writes nothing)."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM notification_outbox WHERE key = ?", (key,))


async def rename_repository(conn: aiosqlite.Connection, old: str, new: str) -> None:
    """Name a renamed or transferred repository anew in its notifications: they are shown only for repositories in
    the user's access set, which GitHub lists under the new name, so they were hidden after the rename."""
    await conn.execute("UPDATE notifications SET repo = ? WHERE repo = ?", (new, old))
    await conn.execute("UPDATE notification_outbox SET repo = ? WHERE repo = ?", (new, old))


def _page_bounds(page: int, per_page: int) -> tuple[int, int]:
    size = min(max(per_page, 1), MAX_PER_PAGE)
    return size, (max(page, 1) - 1) * size


def _from_row(row: Any) -> Notification:
    raw = row["data"]
    data = json.loads(raw) if raw else {}
    return Notification(id=row["id"], repo=row["repo"], kind=row["kind"], title=row["title"], url=row["url"],
                        data=data if isinstance(data, dict) else {}, created_at=row["created_at"],
                        read_at=row["read_at"])


# The user's notifications about a repository in their stored access set (user_repositories, which reading their
# access from GitHub rewrites), or about no repository. Why: a notification was written for everyone who managed
# the repository then; one who has lost access since must not read it (OA-17). An uninstall or a removed repository
# (as a webhook recorded it, see users.GONE) hides it at once too, as access.managed_repositories does the
# repository: the stored set keeps it until the user's list is next read from GitHub, minutes later. Why a list
# read once (HIDDEN) rather than a check per notification: it doubled the time of a count over thousands of them.
# Why each of the user's repositories looked up by name (m009's index) rather than a list of every removed row:
# removed rows are kept for good, in every installation, and reading them all took 200 ms a page at 30,000.
# Takes the user id twice (visible_params).
HIDDEN = ("SELECT ur.repo FROM user_repositories ur WHERE ur.user_id = ? AND ("
          "ur.installation_id IN (SELECT id FROM installations WHERE deleted_at IS NOT NULL) "
          "OR (EXISTS (SELECT 1 FROM repositories r WHERE r.full_name = ur.repo COLLATE NOCASE "
          "AND r.installation_id = ur.installation_id AND r.removed_at IS NOT NULL) "
          "AND NOT EXISTS (SELECT 1 FROM repositories l WHERE l.full_name = ur.repo COLLATE NOCASE "
          "AND l.installation_id = ur.installation_id AND l.removed_at IS NULL)))")
VISIBLE = ("n.user_id = ? AND (n.repo IS NULL OR (EXISTS (SELECT 1 FROM user_repositories ur "  # noqa: S608
           "WHERE ur.user_id = n.user_id AND ur.repo = n.repo COLLATE NOCASE) "
           f"AND n.repo COLLATE NOCASE NOT IN ({HIDDEN})))")


def visible_params(user_id: int) -> tuple[int, int]:
    """The parameters of VISIBLE."""
    return user_id, user_id


UNREAD = " AND n.read_at IS NULL"
# Why a cursor (the last id a client was shown): new notifications come first, so with pages by offset one that
# arrived between two requests pushed the rows down and the next page repeated the last ones of the page before.
BEFORE = " AND n.id < ?"
INT_MAX = 2**63 - 1


async def list_notifications(db: Database, user_id: int, *, unread_only: bool, page: int,
                             per_page: int, before: int | None = None) -> tuple[list[Notification], int]:
    """One page of the user's notifications they may still read (see VISIBLE), newest first, and the total
    matching (pages from 1); with `before`, only those older than that id (see BEFORE)."""
    where = VISIBLE + (UNREAD if unread_only else "") + BEFORE
    params = (*visible_params(user_id), INT_MAX if before is None else before)
    size, offset = _page_bounds(page, per_page)
    total = int(await db.fetchvalue(f"SELECT COUNT(*) FROM notifications n WHERE {where}", params))  # noqa: S608
    rows = await db.fetchall(
        f"SELECT id, repo, kind, title, url, data, created_at, read_at FROM notifications n "  # noqa: S608
        f"WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, size, offset),
    )
    return [_from_row(row) for row in rows], total


async def unread_count(db: Database, user_id: int) -> int:
    """How many of the user's notifications they may still read (see VISIBLE) are unread."""
    value = await db.fetchvalue(f"SELECT COUNT(*) FROM notifications n WHERE {VISIBLE}{UNREAD}",  # noqa: S608
                                visible_params(user_id))
    return int(value or 0)


async def mark_read(db: Database, user_id: int, notification_id: int, *, now: float | None = None) -> bool:
    """Mark the user's own notification read; False, changing nothing, when they may not read it (see VISIBLE:
    another's, about a repository no longer theirs) or it does not exist."""
    at = time.time() if now is None else now
    async with db.transaction() as conn:
        cursor = await conn.execute(
            f"UPDATE notifications AS n SET read_at = COALESCE(read_at, ?) WHERE n.id = ? AND {VISIBLE}",  # noqa: S608
            (at, notification_id, *visible_params(user_id)),
        )
        return cursor.rowcount > 0


async def mark_all_read(db: Database, user_id: int, *, now: float | None = None) -> int:
    """Mark every unread notification the user may read (see VISIBLE) read; return how many changed."""
    at = time.time() if now is None else now
    async with db.transaction() as conn:
        cursor = await conn.execute(
            f"UPDATE notifications AS n SET read_at = ? WHERE {VISIBLE}{UNREAD}",  # noqa: S608
            (at, *visible_params(user_id)))
        return max(cursor.rowcount, 0)
