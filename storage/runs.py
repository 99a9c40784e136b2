"""CI runs as processed (results per test ID, report problems, health) and code-health scores per branch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.db import Database


@dataclass(frozen=True)
class CiRun:
    """One workflow run as last processed: its attempt, results by test ID (None: no report) and health."""

    repo: str
    run_id: int
    run_attempt: int
    head_sha: str
    head_branch: str | None
    conclusion: str | None
    results: dict[str, str] | None
    report_error: str | None
    health: dict[str, Any] | None
    processed_at: float
    run_started_at: float | None = None  # when the attempt started (None: stored before it was kept)


@dataclass(frozen=True)
class HealthScore:
    """A code-health score stored for a commit on a branch."""

    repo: str
    head_sha: str
    branch: str | None
    score: int
    counts: dict[str, int]
    at: float


def safe_text(text: str | None) -> str | None:
    """Replace lone surrogates, which SQLite cannot encode, so hostile report text never fails a write."""
    if text is None:
        return None
    return text.encode("utf-8", "replace").decode("utf-8")


def _dumps(value: Any) -> str | None:
    # Why ensure_ascii: it writes surrogates as \\uXXXX escapes, so any decoded JSON string is storable.
    return None if value is None else json.dumps(value, ensure_ascii=True, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _run(row: aiosqlite.Row) -> CiRun:
    return CiRun(
        repo=row["repo"], run_id=row["run_id"], run_attempt=row["run_attempt"], head_sha=row["head_sha"],
        head_branch=row["head_branch"], conclusion=row["conclusion"], results=_loads(row["results"]),
        report_error=row["report_error"], health=_loads(row["health"]), processed_at=row["processed_at"],
        run_started_at=row["run_started_at"],
    )


async def record_run(
    conn: aiosqlite.Connection, *, repo: str, run_id: int, run_attempt: int, head_sha: str, head_branch: str | None,
    conclusion: str | None, results: Mapping[str, str] | None, report_error: str | None,
    health: Mapping[str, Any] | None, now: float, started_at: float | None = None,
) -> bool:
    """Store the run's outcome; False (nothing written) when a later attempt of the run is already stored.

    `started_at` is when the attempt started (the payload's run_started_at); the same attempt judged again
    without one keeps the time stored.
    """
    cursor = await conn.execute(
        """
        INSERT INTO ci_runs (repo, run_id, run_attempt, head_sha, head_branch, conclusion, results, report_error,
                             health, processed_at, run_started_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (repo, run_id) DO UPDATE SET
            run_attempt = excluded.run_attempt, head_sha = excluded.head_sha, head_branch = excluded.head_branch,
            conclusion = excluded.conclusion, results = excluded.results, report_error = excluded.report_error,
            health = excluded.health, processed_at = excluded.processed_at,
            run_started_at = CASE WHEN excluded.run_attempt = ci_runs.run_attempt
                THEN coalesce(excluded.run_started_at, ci_runs.run_started_at) ELSE excluded.run_started_at END
        WHERE excluded.run_attempt >= ci_runs.run_attempt
        """,
        (
            repo, run_id, run_attempt, head_sha, safe_text(head_branch), safe_text(conclusion),
            _dumps(dict(results) if results is not None else None), safe_text(report_error),
            _dumps(dict(health) if health is not None else None), now, started_at,
        ),
    )
    return cursor.rowcount > 0


# Which of a commit's stored runs counts as its latest: one that carried a test report (other workflows run on the
# commit too), then the attempt that started last. Why the start, not the run id: re-running an older run (attempt 2
# of run 100 after run 101) makes it the newest result. Rows stored before start times were kept rank below (every
# one was processed before any row that has one) and keep the old order, by run id, among themselves.
LATEST_RUN_FIRST = ("results IS NOT NULL DESC, run_started_at IS NOT NULL DESC, run_started_at DESC, run_id DESC, "
                    "run_attempt DESC")


async def rename_repository(conn: aiosqlite.Connection, old: str, new: str) -> None:
    """Re-key the CI runs and health scores of a repository renamed or transferred from `old` to `new`: under the
    old name its health history (the baseline a pull request's score is compared with) and stored runs were lost.

    A run already stored under the new name (run ids are GitHub-wide) came from a later event and wins.
    """
    await conn.execute("UPDATE OR IGNORE ci_runs SET repo = ? WHERE repo = ?", (new, old))
    await conn.execute("DELETE FROM ci_runs WHERE repo = ?", (old,))
    await conn.execute("UPDATE health_scores SET repo = ? WHERE repo = ?", (new, old))


async def get_run(db: Database, repo: str, run_id: int) -> CiRun | None:
    """The stored run, or None."""
    row = await db.fetchone("SELECT * FROM ci_runs WHERE repo = ? AND run_id = ?", (repo, run_id))
    return None if row is None else _run(row)


LATEST_RUN_SQL = f"SELECT * FROM ci_runs WHERE repo = ? AND head_sha = ? ORDER BY {LATEST_RUN_FIRST} LIMIT 1"  # noqa: S608


async def latest_run_for_sha(db: Database, repo: str, head_sha: str) -> CiRun | None:
    """The newest run of a commit, preferring one that carried a test report (other workflows run on it too)."""
    row = await db.fetchone(LATEST_RUN_SQL, (repo, head_sha))
    return None if row is None else _run(row)


async def record_health_score(
    conn: aiosqlite.Connection, *, repo: str, head_sha: str, branch: str | None, score: float,
    counts: Mapping[str, int], now: float,
) -> bool:
    """Store a commit's score on a branch once; False when that commit already has one there (a redelivery)."""
    cursor = await conn.execute(
        "SELECT 1 FROM health_scores WHERE repo = ? AND head_sha = ? AND branch IS ?",
        (repo, head_sha, safe_text(branch)),
    )
    if await cursor.fetchone() is not None:
        return False
    await conn.execute(
        "INSERT INTO health_scores (repo, head_sha, branch, score, counts, at) VALUES (?, ?, ?, ?, ?, ?)",
        (repo, head_sha, safe_text(branch), round(score), _dumps(dict(counts)) or "{}", now),
    )
    return True


async def latest_health_score(db: Database, repo: str, branch: str, *, exclude_sha: str = "") -> HealthScore | None:
    """The newest score stored for a branch, leaving out one commit (the one being compared)."""
    row = await db.fetchone(
        "SELECT * FROM health_scores WHERE repo = ? AND branch = ? AND head_sha != ? ORDER BY at DESC, id DESC LIMIT 1",
        (repo, branch, exclude_sha),
    )
    if row is None:
        return None
    return HealthScore(row["repo"], row["head_sha"], row["branch"], row["score"], _loads(row["counts"]), row["at"])


PULLS_WITH_RUN_NOTED_SQL = (
    "SELECT p.repo, p.number FROM pull_requests p WHERE p.state = 'open' AND p.head_sha IS NOT NULL "  # noqa: S608
    "AND (p.installation_id = ? OR p.repo IN (SELECT full_name FROM repositories "
    "WHERE installation_id = ? AND removed_at IS NULL)) "
    "AND instr((SELECT c.report_error FROM ci_runs c WHERE c.repo = p.repo AND c.head_sha = p.head_sha "
    f"ORDER BY {LATEST_RUN_FIRST} LIMIT 1), ?) > 0 "
    "ORDER BY p.updated_at DESC, p.repo, p.number LIMIT ?"
)


async def open_pulls_with_run_noted(db: Database, installation_id: int, note: str, *,
                                    limit: int) -> list[tuple[str, int]]:
    """(repo, number) of the installation's open pull requests whose head's latest stored run (as
    latest_run_for_sha picks it) has `note` in its report error; the most recently updated first, at most `limit`."""
    rows = await db.fetchall(PULLS_WITH_RUN_NOTED_SQL, (installation_id, installation_id, note, limit))
    return [(str(row[0]), int(row[1])) for row in rows]
