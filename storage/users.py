"""Dashboard users: profile, encrypted GitHub tokens, session version, and the repositories each can reach."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from storage.db import Database, placeholders


@dataclass(frozen=True)
class User:
    """A dashboard user as stored (GitHub user id and profile; never tokens)."""

    id: int
    login: str
    name: str | None = None
    email: str | None = field(default=None, repr=False)
    avatar_url: str | None = None
    session_version: int = 1


@dataclass(frozen=True)
class StoredTokens:
    """A user's GitHub tokens as ciphertext (the caller decrypts), with absolute expiry times."""

    token_enc: bytes = field(repr=False)
    refresh_enc: bytes | None = field(default=None, repr=False)
    token_expires_at: float | None = None
    refresh_expires_at: float | None = None


@dataclass(frozen=True)
class UserRepository:
    """One repository a user reaches through an installation of the App, with the user's permission."""

    repo: str
    installation_id: int
    permission: str


USER_COLUMNS = "id, login, name, email, avatar_url, session_version"


async def save_user(db: Database, user: User, tokens: StoredTokens, *, now: float | None = None) -> User:
    """Insert or update the user's profile and tokens; the session version is kept; return the stored user."""
    at = time.time() if now is None else now
    async with db.transaction() as conn:
        await conn.execute(
            """
            INSERT INTO users (id, login, name, email, avatar_url, token_enc, refresh_enc, token_expires_at,
                               refresh_expires_at, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET login = excluded.login, name = excluded.name, email = excluded.email,
                avatar_url = excluded.avatar_url, token_enc = excluded.token_enc, refresh_enc = excluded.refresh_enc,
                token_expires_at = excluded.token_expires_at, refresh_expires_at = excluded.refresh_expires_at,
                updated_at = excluded.updated_at
            """,
            (user.id, user.login, user.name, user.email, user.avatar_url, tokens.token_enc, tokens.refresh_enc,
             tokens.token_expires_at, tokens.refresh_expires_at, at, at),
        )
    stored = await get_user(db, user.id)
    assert stored is not None  # just written
    return stored


async def get_user(db: Database, user_id: int) -> User | None:
    """The user with this GitHub id, or None."""
    row = await db.fetchone(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,))  # noqa: S608
    if row is None:
        return None
    return User(id=row["id"], login=row["login"], name=row["name"], email=row["email"],
                avatar_url=row["avatar_url"], session_version=row["session_version"])


async def get_tokens(db: Database, user_id: int) -> StoredTokens | None:
    """The user's stored token ciphertext, or None when they have no token (logged out or revoked)."""
    row = await db.fetchone(
        "SELECT token_enc, refresh_enc, token_expires_at, refresh_expires_at FROM users WHERE id = ?", (user_id,))
    if row is None or row["token_enc"] is None:
        return None
    refresh = row["refresh_enc"]
    return StoredTokens(token_enc=bytes(row["token_enc"]), refresh_enc=None if refresh is None else bytes(refresh),
                        token_expires_at=row["token_expires_at"], refresh_expires_at=row["refresh_expires_at"])


async def replace_tokens(db: Database, user_id: int, tokens: StoredTokens, *, session_version: int,
                         now: float | None = None) -> bool:
    """Store a refreshed token pair (GitHub rotates the refresh token too) if the user's sessions are still at
    `session_version`; False, storing nothing, when they ended meanwhile (logout, revocation)."""
    at = time.time() if now is None else now
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "UPDATE users SET token_enc = ?, refresh_enc = ?, token_expires_at = ?, refresh_expires_at = ?, "
            "updated_at = ? WHERE id = ? AND session_version = ?",
            (tokens.token_enc, tokens.refresh_enc, tokens.token_expires_at, tokens.refresh_expires_at, at, user_id,
             session_version),
        )
        return cursor.rowcount > 0


async def end_sessions(db: Database, user_id: int, *, now: float | None = None) -> None:
    """Reject every session cookie issued so far (bump the version) and forget the user's tokens."""
    at = time.time() if now is None else now
    await db.execute(
        "UPDATE users SET session_version = session_version + 1, token_enc = NULL, refresh_enc = NULL, "
        "token_expires_at = NULL, refresh_expires_at = NULL, updated_at = ? WHERE id = ?",
        (at, user_id),
    )


async def revoke_user(db: Database, github_user_id: int) -> None:
    """The user revoked the App: delete their tokens and repository list and end every session."""
    await end_sessions(db, github_user_id)
    await db.execute("DELETE FROM user_repositories WHERE user_id = ?", (github_user_id,))


async def set_user_repositories(db: Database, user_id: int, repos: Iterable[UserRepository], *,
                                now: float | None = None) -> None:
    """Make the user's stored repository set exactly `repos` (as last read from GitHub)."""
    at = time.time() if now is None else now
    rows = [(user_id, r.repo, r.installation_id, r.permission, at) for r in repos]
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM user_repositories WHERE user_id = ?", (user_id,))
        await conn.executemany(
            "INSERT OR REPLACE INTO user_repositories (user_id, repo, installation_id, permission, refreshed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )


async def list_user_repositories(db: Database, user_id: int) -> list[UserRepository]:
    """The repositories stored for the user, by name."""
    rows = await db.fetchall(
        "SELECT repo, installation_id, permission FROM user_repositories WHERE user_id = ? ORDER BY repo",
        (user_id,))
    return [UserRepository(row["repo"], row["installation_id"], row["permission"]) for row in rows]


async def repo_managers(db: Database, repo: str) -> list[int]:
    """Ids of the users who can reach `repo` (names compare case-insensitively, as on GitHub)."""
    rows = await db.fetchall(
        "SELECT user_id FROM user_repositories WHERE repo = ? COLLATE NOCASE ORDER BY user_id", (repo,))
    return [int(row["user_id"]) for row in rows]


# In one statement (one trip to the database thread per request), of the installations given (ids twice, see
# gone_repositories): the deleted ones (id, NULL), and each removed repository row with no live row of the same
# name, whatever its case, in its installation (id, name). Removed rows of deleted installations are left to the
# installation's own entry. Uses m009's indexes (the partial one on removed rows by installation).
GONE = """
SELECT id, NULL FROM installations WHERE deleted_at IS NOT NULL AND id IN ({ids})
UNION ALL
SELECT r.installation_id, lower(r.full_name) FROM repositories r
WHERE r.removed_at IS NOT NULL AND r.installation_id IN ({ids})
  AND r.installation_id NOT IN (SELECT id FROM installations WHERE deleted_at IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM repositories l WHERE l.full_name = r.full_name COLLATE NOCASE
                  AND l.installation_id = r.installation_id AND l.removed_at IS NULL)
"""


async def gone_repositories(db: Database, installation_ids: Iterable[int]) -> tuple[set[int], set[tuple[int, str]]]:
    """Of these installations: the deleted ones, and (installation, lower-cased name) of each repository it no
    longer reaches (removed, with no live row of that name). Only what a webhook recorded as gone: a repository
    this table never heard of is not "gone"."""
    ids = sorted(set(installation_ids))
    if not ids:
        return set(), set()
    # Why only these installations in SQL: removed repository rows are kept for good, across every installation
    # (an organization removing 100 at once adds 100); reading them all on every API request made each request
    # slower the more the App had ever been removed from, whoever asked.
    marks = placeholders(ids)
    deleted: set[int] = set()
    removed: set[tuple[int, str]] = set()
    for installation_id, name in await db.fetchall(GONE.format(ids=marks), (*ids, *ids)):
        if name is None:
            deleted.add(int(installation_id))
        else:
            removed.add((int(installation_id), str(name)))
    return deleted, removed


async def live_repositories_named(db: Database, name: str) -> list[tuple[int, int, str]]:
    """(GitHub id, installation id, full name as stored) of each live repository row named `name`, ignoring case."""
    rows = await db.fetchall(
        "SELECT id, installation_id, full_name FROM repositories WHERE full_name = ? COLLATE NOCASE "
        "AND removed_at IS NULL", (name,))
    return [(int(row[0]), int(row[1]), str(row[2])) for row in rows]


async def active_installation_ids(db: Database) -> set[int]:
    """Ids of the App's installations that are not deleted."""
    rows = await db.fetchall("SELECT id FROM installations WHERE deleted_at IS NULL")
    return {int(row["id"]) for row in rows}
