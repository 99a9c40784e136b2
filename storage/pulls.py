"""Pull requests as last seen, and their test manifests and verdicts per head SHA."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.db import Database, storable


@dataclass(frozen=True)
class PullRow:
    """One pull request: head, state, the issues it links ({repo, number, source}) and the bot comment's id."""

    repo: str
    number: int
    installation_id: int | None
    title: str
    state: str
    merged: bool
    head_sha: str | None
    head_ref: str | None
    base_ref: str | None
    comment_id: int | None
    linked: list[dict[str, Any]]
    updated_at: float
    flagged_by: str | None = None
    flagged_at: float | None = None


@dataclass(frozen=True)
class ManifestRow:
    """The manifest of one head SHA, its check run, and the verdict once CI results arrived."""

    repo: str
    pr_number: int
    head_sha: str
    manifest: dict[str, Any]
    check_run_id: int | None
    verdict: dict[str, Any] | None
    conclusion: str | None
    run_id: int | None
    run_attempt: int | None
    created_at: float
    updated_at: float
    run_started_at: float | None = None  # when the verdict's run attempt started (None: unknown, stored before)
    ci_workflows: str | None = None  # "none" | "some" | "unknown" (see set_ci_workflows); None: not asked yet


def _dumps(value: Any) -> str:
    # Why ensure_ascii: lone surrogates from hostile titles or patches become escapes SQLite can store.
    return json.dumps(value, ensure_ascii=True, sort_keys=True)


def _linked(text: str | None) -> list[dict[str, Any]]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def pull_from_row(row: aiosqlite.Row) -> PullRow:
    """A pull_requests row (SELECT *) as a PullRow."""
    return PullRow(
        repo=row["repo"], number=row["number"], installation_id=row["installation_id"], title=row["title"],
        state=row["state"], merged=bool(row["merged"]), head_sha=row["head_sha"], head_ref=row["head_ref"],
        base_ref=row["base_ref"], comment_id=row["comment_id"], linked=_linked(row["linked"]),
        updated_at=row["updated_at"], flagged_by=row["flagged_by"], flagged_at=row["flagged_at"],
    )


def _manifest(row: aiosqlite.Row) -> ManifestRow:
    return ManifestRow(
        repo=row["repo"], pr_number=row["pr_number"], head_sha=row["head_sha"], manifest=json.loads(row["manifest"]),
        check_run_id=row["check_run_id"], verdict=None if row["verdict"] is None else json.loads(row["verdict"]),
        conclusion=row["conclusion"], run_id=row["run_id"], run_attempt=row["run_attempt"],
        created_at=row["created_at"], updated_at=row["updated_at"], run_started_at=row["run_started_at"],
        ci_workflows=row["ci_workflows"],
    )


async def upsert_pull(
    conn: aiosqlite.Connection, *, repo: str, number: int, installation_id: int | None, title: str, state: str,
    merged: bool, head_sha: str | None, head_ref: str | None, base_ref: str | None,
    linked: Sequence[Mapping[str, Any]], now: float,
) -> None:
    """Insert or refresh a pull request; its comment id is kept."""
    await conn.execute(
        """
        INSERT INTO pull_requests (repo, number, installation_id, title, state, merged, head_sha, head_ref,
                                   base_ref, linked, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (repo, number) DO UPDATE SET installation_id = excluded.installation_id,
            title = excluded.title, state = excluded.state, merged = excluded.merged,
            head_sha = excluded.head_sha, head_ref = excluded.head_ref, base_ref = excluded.base_ref,
            linked = excluded.linked, updated_at = excluded.updated_at
        """,
        (repo, number, installation_id, storable(title), state, int(merged), head_sha, storable(head_ref),
         storable(base_ref), _dumps([dict(item) for item in linked]), now),
    )
    # Why a separate table: "which PRs link issue N" must be an index lookup, not a scan of every PR's JSON.
    await conn.execute("DELETE FROM pr_links WHERE pr_repo = ? AND pr_number = ?", (repo, number))
    await conn.executemany(
        "INSERT OR IGNORE INTO pr_links (issue_repo, issue_number, pr_repo, pr_number) VALUES (?, ?, ?, ?)",
        [(str(item["repo"]), int(item["number"]), repo, number) for item in linked
         if isinstance(item.get("repo"), str) and isinstance(item.get("number"), int)],
    )


async def set_pull_state(
    conn: aiosqlite.Connection, repo: str, number: int, *, state: str, merged: bool, now: float
) -> bool:
    """Record that a pull request closed (merged or not) or reopened; False if it was never stored."""
    cursor = await conn.execute(
        "UPDATE pull_requests SET state = ?, merged = ?, updated_at = ? WHERE repo = ? AND number = ?",
        (state, int(merged), now, repo, number),
    )
    return cursor.rowcount > 0


async def get_pull(db: Database, repo: str, number: int) -> PullRow | None:
    """The stored pull request, or None."""
    row = await db.fetchone("SELECT * FROM pull_requests WHERE repo = ? AND number = ?", (repo, number))
    return None if row is None else pull_from_row(row)


async def set_pull_comment_id(conn: aiosqlite.Connection, repo: str, number: int, comment_id: int) -> None:
    """Remember the bot comment that shows this pull request's manifest."""
    await conn.execute(
        "UPDATE pull_requests SET comment_id = ? WHERE repo = ? AND number = ?", (comment_id, repo, number)
    )


async def save_manifest(
    conn: aiosqlite.Connection, *, repo: str, pr_number: int, head_sha: str, manifest: Mapping[str, Any], now: float
) -> None:
    """Store the manifest of a head SHA; the check run id and verdict columns are kept."""
    await conn.execute(
        """
        INSERT INTO manifests (repo, pr_number, head_sha, manifest, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (repo, pr_number, head_sha) DO UPDATE SET manifest = excluded.manifest,
            updated_at = excluded.updated_at
        """,
        (repo, pr_number, head_sha, _dumps(dict(manifest)), now, now),
    )


async def get_manifest(db: Database, repo: str, pr_number: int, head_sha: str) -> ManifestRow | None:
    """The manifest stored for a pull request's head SHA, or None."""
    row = await db.fetchone(
        "SELECT * FROM manifests WHERE repo = ? AND pr_number = ? AND head_sha = ?", (repo, pr_number, head_sha)
    )
    return None if row is None else _manifest(row)


async def set_check_run_id(
    conn: aiosqlite.Connection, repo: str, pr_number: int, head_sha: str, check_run_id: int
) -> None:
    """Remember the one check run of a head SHA."""
    await conn.execute(
        "UPDATE manifests SET check_run_id = ? WHERE repo = ? AND pr_number = ? AND head_sha = ?",
        (check_run_id, repo, pr_number, head_sha),
    )


async def save_verdict(
    conn: aiosqlite.Connection, *, repo: str, pr_number: int, head_sha: str, verdict: Mapping[str, Any],
    conclusion: str, run_id: int, run_attempt: int, now: float, started_at: float | None = None,
) -> bool:
    """Store a verdict; False (nothing written) when the stored one came from a later run or attempt.

    Later means, as runs.LATEST_RUN_FIRST ranks a commit's runs: of the same run, a later attempt; of another, one
    that started later (`started_at`, a Unix time), since re-running an older run makes it the newest result. A
    verdict stored without a start time ranks below one with it; between two without, the higher run id wins.
    """
    cursor = await conn.execute(
        """
        UPDATE manifests SET verdict = :verdict, conclusion = :conclusion, run_id = :run, run_attempt = :attempt,
            run_started_at = :started, updated_at = :now
        WHERE repo = :repo AND pr_number = :number AND head_sha = :sha
          AND (run_id IS NULL OR (run_id = :run AND run_attempt <= :attempt) OR (run_id <> :run AND (
               (:started IS NOT NULL AND (run_started_at IS NULL OR run_started_at < :started
                                          OR (run_started_at = :started AND run_id < :run)))
               OR (:started IS NULL AND run_started_at IS NULL AND run_id < :run))))
        """,
        {"verdict": _dumps(dict(verdict)), "conclusion": conclusion, "run": run_id, "attempt": run_attempt,
         "started": started_at, "now": now, "repo": repo, "number": pr_number, "sha": head_sha},
    )
    return cursor.rowcount > 0


async def set_ci_workflows(conn: aiosqlite.Connection, repo: str, pr_number: int, head_sha: str, found: str) -> None:
    """Remember whether the head's repository had Actions workflows when its check was first published: "none"
    (the check was concluded neutral, as no CI will report), "some", or "unknown" (GitHub refused to list them)."""
    await conn.execute(
        "UPDATE manifests SET ci_workflows = ? WHERE repo = ? AND pr_number = ? AND head_sha = ?",
        (found, repo, pr_number, head_sha),
    )


async def forget_no_ci(conn: aiosqlite.Connection, repo: str, pr_number: int, head_sha: str) -> bool:
    """Forget a "none" answer of set_ci_workflows for the head, so its next publish asks GitHub again; False when
    the answer stored was another (or none)."""
    cursor = await conn.execute(
        "UPDATE manifests SET ci_workflows = NULL WHERE repo = ? AND pr_number = ? AND head_sha = ? "
        "AND ci_workflows = 'none'",
        (repo, pr_number, head_sha),
    )
    return cursor.rowcount > 0


async def clear_report_less_verdict(conn: aiosqlite.Connection, repo: str, pr_number: int, head_sha: str) -> bool:
    """Drop the head's verdict when it came from a run without a report (stored as run 0), so the check shows the
    manifest in progress again while the commit's other runs are still going; False when there was none."""
    cursor = await conn.execute(
        "UPDATE manifests SET verdict = NULL, conclusion = NULL, run_id = NULL, run_attempt = NULL, "
        "run_started_at = NULL WHERE repo = ? AND pr_number = ? AND head_sha = ? AND run_id = 0",
        (repo, pr_number, head_sha),
    )
    return cursor.rowcount > 0


async def open_pulls_for_sha(db: Database, repo: str, head_sha: str) -> list[int]:
    """Numbers of the open pull requests whose stored head is this commit."""
    rows = await db.fetchall(
        "SELECT number FROM pull_requests WHERE repo = ? AND head_sha = ? AND state = 'open' ORDER BY number",
        (repo, head_sha),
    )
    return [int(row["number"]) for row in rows]


async def open_pulls_linking(db: Database, issue_repo: str, issue_number: int) -> list[tuple[str, int, int | None]]:
    """(repo, number, installation id) of the open pull requests that link this issue, as last stored (a pull
    request in another repository may belong to another installation)."""
    rows = await db.fetchall(
        "SELECT l.pr_repo, l.pr_number, p.installation_id FROM pr_links l JOIN pull_requests p "
        "ON p.repo = l.pr_repo AND p.number = l.pr_number WHERE l.issue_repo = ? AND l.issue_number = ? "
        "AND p.state = 'open' ORDER BY l.pr_repo, l.pr_number",
        (issue_repo, issue_number),
    )
    return [(str(row[0]), int(row[1]), None if row[2] is None else int(row[2])) for row in rows]


async def rename_repository(conn: aiosqlite.Connection, old: str, new: str) -> None:
    """Re-key the pull requests, manifests and links of a repository renamed or transferred from `old` to `new`,
    and the links other pull requests hold to its issues.

    Why rows already kept under the new name win and the old ones go: they came from events carrying the new name
    (so later); an old one left open was still revalidated, under the old name, whenever a linked issue changed.
    """
    await _relink(conn, old, new)
    newer = "SELECT number FROM pull_requests WHERE repo = ?"
    await conn.execute(f"DELETE FROM pr_links WHERE pr_repo = ? AND pr_number IN ({newer})", (old, new))  # noqa: S608
    await conn.execute(f"DELETE FROM pull_requests WHERE repo = ? AND number IN ({newer})", (old, new))  # noqa: S608
    for table, column in (("pull_requests", "repo"), ("manifests", "repo"), ("pr_links", "pr_repo")):
        await conn.execute(f"UPDATE OR IGNORE {table} SET {column} = ? WHERE {column} = ?", (new, old))  # noqa: S608
        await conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (old,))  # noqa: S608
    # Why `<> new`: issue_repo compares ignoring case, so after a rename in case only `= old` matches new rows too.
    await conn.execute("UPDATE OR IGNORE pr_links SET issue_repo = ? WHERE issue_repo = ?", (new, old))
    await conn.execute("DELETE FROM pr_links WHERE issue_repo = ? AND issue_repo <> ?", (old, new))


async def _relink(conn: aiosqlite.Connection, old: str, new: str) -> None:
    """Name `new` in each stored link to an issue of `old` (a CI verdict reads a pull request's criteria through
    them: under the old name they were 'not visible to the app')."""
    cursor = await conn.execute(
        "SELECT p.repo, p.number, p.linked FROM pull_requests p WHERE EXISTS (SELECT 1 FROM pr_links l "
        "WHERE l.pr_repo = p.repo AND l.pr_number = p.number AND l.issue_repo = ?)", (old,))
    for repo, number, text in await cursor.fetchall():
        # Why ignoring case: links are kept as written (`codertocat/HELLO-world#4`), and GitHub's names ignore it.
        linked = [{**item, "repo": new} if str(item.get("repo", "")).lower() == old.lower() else item
                  for item in _linked(text)]
        await conn.execute("UPDATE pull_requests SET linked = ? WHERE repo = ? AND number = ?",
                           (_dumps(linked), repo, number))
