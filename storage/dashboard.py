"""Read queries behind the dashboard API: counts, progress, pull requests, manifests, health, jobs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage import pulls
from storage.db import Database, placeholders
from storage.pulls import PullRow

ISSUE_STATES = ("open", "closed", "all")
HEALTH_TREND_POINTS = 10


@dataclass(frozen=True)
class RepoCounts:
    """Issues with a live checklist (open and closed, and open only) and open pull requests of one repository."""

    issues: int = 0
    open_pulls: int = 0
    open_issues: int = 0


@dataclass(frozen=True)
class Progress:
    """How many live checklist items are in each status."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    missing: int = 0
    pending: int = 0


@dataclass(frozen=True)
class IssueSummary:
    """An issue's checklist header and progress."""

    number: int
    title: str
    state: str
    updated_at: float
    progress: Progress


@dataclass(frozen=True)
class HealthPoint:
    """One code-health score as recorded."""

    score: int
    head_sha: str
    branch: str | None
    counts: dict[str, Any]
    at: float


@dataclass(frozen=True)
class ManifestRecord:
    """A pull request's manifest for one head SHA, with the verdict once CI reported."""

    head_sha: str
    manifest: dict[str, Any]
    verdict: dict[str, Any] | None
    conclusion: str | None
    updated_at: float


@dataclass(frozen=True)
class JobRecord:
    """A job's state and the repository it works on (None when not known)."""

    id: int
    handler: str
    status: str
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    last_error: str | None
    repo: str | None


def _json(text: str | None, default: Any) -> Any:
    """Parse stored JSON; a damaged value reads as `default` rather than failing the request."""
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


async def stored_names(db: Database, repos: Sequence[tuple[str, int | None]]) -> dict[str, str]:
    """Each (name, GitHub id or None) of `repos` mapped from its name to the spelling its rows are stored under:
    the live repository row's name with that id, else with that name ignoring case (the newest), else the name.

    Why: a user's repository list comes from GitHub (and is cached), and names a repository as GitHub does now;
    the rows kept under it follow a rename (in case only, or not) when an event says so, and until then exact
    lookups under the list's name found nothing.
    """
    if not repos:
        return {}
    names = [name for name, _id in repos]
    ids = [repo_id for _name, repo_id in repos if repo_id is not None]
    rows = await db.fetchall(
        f"SELECT id, full_name FROM repositories WHERE (id IN ({placeholders(ids)}) "  # noqa: S608
        f"OR full_name COLLATE NOCASE IN ({placeholders(names)})) AND removed_at IS NULL ORDER BY updated_at, id",
        (*ids, *names),
    )
    by_id = {int(row[0]): str(row[1]) for row in rows}
    by_lower = {str(row[1]).lower(): str(row[1]) for row in rows}
    return {name: by_id.get(-1 if repo_id is None else repo_id) or by_lower.get(name.lower(), name)
            for name, repo_id in repos}


async def repository_ids(db: Database, name: str) -> set[int]:
    """GitHub ids of the live repository rows stored under `name` (ignoring case)."""
    rows = await db.fetchall(
        "SELECT id FROM repositories WHERE full_name = ? COLLATE NOCASE AND removed_at IS NULL", (name,))
    return {int(row[0]) for row in rows}


async def repo_counts(db: Database, repos: Sequence[str]) -> dict[str, RepoCounts]:
    """Counts for each of `repos` (repositories with nothing stored get zeros)."""
    if not repos:
        return {}
    marks = placeholders(repos)
    issues = await db.fetchall(
        f"SELECT repo, count(*), coalesce(sum(state = 'open'), 0) FROM checklists "  # noqa: S608
        f"WHERE repo IN ({marks}) AND retired_at IS NULL GROUP BY repo",
        tuple(repos),
    )
    pulls = await db.fetchall(
        f"SELECT repo, count(*) FROM pull_requests WHERE repo IN ({marks}) AND state = 'open' "  # noqa: S608
        "GROUP BY repo",
        tuple(repos),
    )
    issue_counts = {row[0]: (int(row[1]), int(row[2])) for row in issues}
    pull_counts = {row[0]: int(row[1]) for row in pulls}
    return {repo: RepoCounts(issue_counts.get(repo, (0, 0))[0], pull_counts.get(repo, 0),
                             issue_counts.get(repo, (0, 0))[1]) for repo in repos}


# Why these names: without pull requests to say which branch is the base, the conventional default branches.
CONVENTIONAL_DEFAULTS = ("main", "master")


async def trend_branch(db: Database, repo: str) -> str | None:
    """The branch the repository's health trend follows, its default branch as best the rows tell (None when no
    stored score names a branch).

    No default branch is stored for a repository, so: the base branch most of its stored pull requests target
    (ties: the most recently updated), which is also the branch each pull request's score is compared with; else,
    of the branches its scores were kept under (forks' left out), main, then master, then the one with the most
    scores (ties: the newest).
    """
    row = await db.fetchone(
        "SELECT base_ref FROM pull_requests WHERE repo = ? AND base_ref IS NOT NULL AND base_ref != '' "
        "GROUP BY base_ref ORDER BY count(*) DESC, max(updated_at) DESC LIMIT 1",
        (repo,),
    )
    if row is not None:
        return str(row[0])
    row = await db.fetchone(
        "SELECT branch FROM health_scores WHERE repo = ? AND branch IS NOT NULL AND instr(branch, ':') = 0 "
        "GROUP BY branch ORDER BY branch = ? DESC, branch = ? DESC, count(*) DESC, max(at) DESC LIMIT 1",
        (repo, *CONVENTIONAL_DEFAULTS),
    )
    return None if row is None else str(row[0])


async def health_history(db: Database, repo: str, *, branch: str | None,
                         limit: int = HEALTH_TREND_POINTS) -> list[HealthPoint]:
    """The repository's latest code-health scores on `branch` (see trend_branch), newest first; with None, every
    score kept under no branch or one of its own (forks' ("owner:branch") left out)."""
    if branch is not None:
        # Why one branch: a feature branch's or a pull request's score measures that work, not the repository, and
        # mixed in, the trend zig-zagged between them.
        rows = await db.fetchall(
            "SELECT score, head_sha, branch, counts, at FROM health_scores WHERE repo = ? AND branch = ? "
            "ORDER BY at DESC, id DESC LIMIT ?",
            (repo, branch, limit),
        )
        return [_health(row) for row in rows]
    # Why: a fork pull request's score measures the fork's code; git forbids ':' in branch names, so only
    # scores kept for a fork (9d5c10d) hold one.
    rows = await db.fetchall(
        "SELECT score, head_sha, branch, counts, at FROM health_scores WHERE repo = ? "
        "AND (branch IS NULL OR instr(branch, ':') = 0) ORDER BY at DESC, id DESC LIMIT ?",
        (repo, limit),
    )
    return [_health(row) for row in rows]


async def health_for_sha(db: Database, repo: str, head_sha: str) -> HealthPoint | None:
    """The latest code-health score recorded for one commit, or None."""
    row = await db.fetchone(
        "SELECT score, head_sha, branch, counts, at FROM health_scores WHERE repo = ? AND head_sha = ? "
        "ORDER BY at DESC, id DESC LIMIT 1",
        (repo, head_sha),
    )
    return None if row is None else _health(row)


def _health(row: aiosqlite.Row) -> HealthPoint:
    counts = _json(row["counts"], {})
    return HealthPoint(int(row["score"]), row["head_sha"], row["branch"],
                       counts if isinstance(counts, dict) else {}, float(row["at"]))


def _state_filter(state: str) -> tuple[str, tuple[object, ...]]:
    if state not in ISSUE_STATES:
        raise ValueError(f"unknown state {state!r}")
    return ("", ()) if state == "all" else (" AND state = ?", (state,))


async def list_issues(
    db: Database, repo: str, *, state: str, limit: int, offset: int, before: int | None = None
) -> tuple[list[IssueSummary], int]:
    """One page of the repository's live checklists (newest issue first) with progress, and the total; with
    `before`, only issues numbered below it.

    Why `before`: checklists of new issues come first, so with pages by offset one made between two requests
    pushed the rows down and the next page repeated the last issue of the page before; the last number shown is a
    stable cursor.
    """
    where, params = _state_filter(state)
    if before is not None:
        where, params = f"{where} AND issue_number < ?", (*params, before)
    total = await db.fetchvalue(
        f"SELECT count(*) FROM checklists WHERE repo = ? AND retired_at IS NULL{where}",  # noqa: S608
        (repo, *params),
    )
    # Why: page the headers first so item counts are only computed for the rows returned.
    rows = await db.fetchall(
        f"""
        SELECT c.issue_number, c.title, c.state, c.updated_at, count(i.tid) AS total,
               coalesce(sum(i.status = 'passed'), 0) AS passed, coalesce(sum(i.status = 'failed'), 0) AS failed,
               coalesce(sum(i.status = 'skipped'), 0) AS skipped,
               coalesce(sum(i.status = 'missing'), 0) AS missing,
               coalesce(sum(i.status = 'pending'), 0) AS pending
        FROM (SELECT id, issue_number, title, state, updated_at FROM checklists
              WHERE repo = ? AND retired_at IS NULL{where}
              ORDER BY issue_number DESC LIMIT ? OFFSET ?) AS c
        LEFT JOIN checklist_items i ON i.checklist_id = c.id AND i.retired_at IS NULL
        GROUP BY c.id ORDER BY c.issue_number DESC
        """,  # noqa: S608 - the filter is a constant
        (repo, *params, limit, offset),
    )
    issues = [
        IssueSummary(row["issue_number"], row["title"], row["state"], float(row["updated_at"]),
                     Progress(*(int(row[k]) for k in ("total", "passed", "failed", "skipped", "missing", "pending"))))
        for row in rows
    ]
    return issues, int(total or 0)


async def pulls_linking(db: Database, repo: str, issue_number: int, *, limit: int,
                        offset: int = 0) -> list[PullRow]:
    """One slice of the pull requests (of any repository) whose stored links name this issue, the most recently
    updated first (then by repository, newest number first)."""
    rows = await db.fetchall(
        "SELECT p.* FROM pr_links l JOIN pull_requests p ON p.repo = l.pr_repo AND p.number = l.pr_number "
        "WHERE l.issue_repo = ? AND l.issue_number = ? ORDER BY p.updated_at DESC, p.repo, p.number DESC "
        "LIMIT ? OFFSET ?",
        (repo, issue_number, limit, offset),
    )
    return [pulls.pull_from_row(row) for row in rows]


async def latest_manifest(db: Database, repo: str, number: int, head_sha: str | None) -> ManifestRecord | None:
    """The manifest for the pull request's head SHA, else its most recently updated one, or None."""
    row = await db.fetchone(
        "SELECT head_sha, manifest, verdict, conclusion, updated_at FROM manifests WHERE repo = ? AND pr_number = ? "
        "ORDER BY head_sha = ? DESC, updated_at DESC LIMIT 1",
        (repo, number, head_sha or ""),
    )
    if row is None:
        return None
    manifest = _json(row["manifest"], {})
    verdict = _json(row["verdict"], None)
    return ManifestRecord(
        head_sha=row["head_sha"], manifest=manifest if isinstance(manifest, dict) else {},
        verdict=verdict if isinstance(verdict, dict) else None, conclusion=row["conclusion"],
        updated_at=float(row["updated_at"]),
    )


async def flag_for_merge(conn: aiosqlite.Connection, repo: str, number: int, actor: str, now: float) -> bool:
    """Record who flagged the pull request for merge and when; False if it is not stored."""
    cursor = await conn.execute(
        "UPDATE pull_requests SET flagged_by = ?, flagged_at = ? WHERE repo = ? AND number = ?",
        (actor, now, repo, number),
    )
    return cursor.rowcount > 0


async def get_job(db: Database, job_id: int) -> JobRecord | None:
    """A job with the repository it works on (from its enqueued data or its delivery), or None."""
    row = await db.fetchone(
        """
        SELECT j.id, j.handler, j.status, j.attempts, j.created_at, j.started_at, j.finished_at, j.last_error,
               coalesce(CASE WHEN json_valid(j.payload) THEN json_extract(j.payload, '$.data.repo') END,
                        d.repository) AS repo
        FROM jobs j LEFT JOIN deliveries d ON d.id = j.delivery_id WHERE j.id = ?
        """,
        (job_id,),
    )
    if row is None:
        return None
    repo = row["repo"]
    return JobRecord(
        id=int(row["id"]), handler=row["handler"], status=row["status"], attempts=int(row["attempts"]),
        created_at=float(row["created_at"]), started_at=row["started_at"], finished_at=row["finished_at"],
        last_error=row["last_error"], repo=repo if isinstance(repo, str) else None,
    )
