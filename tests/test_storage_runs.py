"""storage.runs: guarded run records (no regression to an older attempt) and health scores per branch."""

from __future__ import annotations

from typing import Any

from storage import runs
from storage.db import Database

REPO = "octo-org/octo-repo"
SHA = "a" * 40


async def _record(db: Database, *, run_id: int = 7, attempt: int = 1, results: Any = None, **extra: Any) -> bool:
    async with db.transaction() as conn:
        return await runs.record_run(
            conn, repo=REPO, run_id=run_id, run_attempt=attempt, head_sha=extra.pop("head_sha", SHA),
            head_branch=extra.pop("head_branch", "feature"), conclusion=extra.pop("conclusion", "success"),
            results=results, report_error=extra.pop("report_error", None), health=extra.pop("health", None),
            now=extra.pop("now", 100.0), started_at=extra.pop("started_at", None),
        )


async def test_run_is_stored_and_read_back_with_results_and_health(db: Database) -> None:
    assert await _record(db, results={"T1": "passed"}, health={"score": 90.0})
    run = await runs.get_run(db, REPO, 7)
    assert run is not None
    assert (run.run_attempt, run.results, run.health) == (1, {"T1": "passed"}, {"score": 90.0})


async def test_older_attempt_never_overwrites_a_newer_one(db: Database) -> None:
    assert await _record(db, attempt=2, results={"T1": "failed"})
    assert not await _record(db, attempt=1, results={"T1": "passed"})
    run = await runs.get_run(db, REPO, 7)
    assert run is not None and (run.run_attempt, run.results) == (2, {"T1": "failed"})


async def test_same_attempt_again_rewrites_the_same_row(db: Database) -> None:
    assert await _record(db, results={"T1": "passed"})
    assert await _record(db, results={"T1": "passed"}, now=200.0)
    assert await db.fetchvalue("SELECT count(*) FROM ci_runs") == 1


async def test_lone_surrogates_in_report_text_are_stored_replaced(db: Database) -> None:
    assert await _record(db, report_error="report unreadable: \ud800", head_branch="b\udcff",
                         results={"T\ud800": "passed"})
    run = await runs.get_run(db, REPO, 7)
    assert run is not None and run.report_error is not None
    assert "\ud800" not in run.report_error and run.head_branch is not None and "\udcff" not in run.head_branch
    assert run.results == {"T\ud800": "passed"}  # JSON keeps it escaped, losslessly


async def test_latest_run_for_a_commit_prefers_one_with_a_report(db: Database) -> None:
    await _record(db, run_id=10, results={"T1": "passed"})
    await _record(db, run_id=11, results=None)  # a lint workflow on the same commit
    await _record(db, run_id=12, results=None, head_sha="b" * 40)
    latest = await runs.latest_run_for_sha(db, REPO, SHA)
    assert latest is not None and latest.run_id == 10
    assert await runs.latest_run_for_sha(db, REPO, "c" * 40) is None


async def test_latest_run_for_a_commit_is_the_attempt_that_started_last(db: Database) -> None:
    """Attempt 2 of run 10, re-run after run 11 was judged, is the commit's newest result: ranked by run id, the
    re-run was never the latest."""
    await _record(db, run_id=10, results={"T1": "failed"}, started_at=1000.0)
    await _record(db, run_id=11, results={"T1": "failed"}, started_at=1300.0)
    await _record(db, run_id=10, attempt=2, results={"T1": "passed"}, started_at=2000.0)
    await _record(db, run_id=12, results=None, started_at=3000.0)  # lint, no report: it does not compete
    latest = await runs.latest_run_for_sha(db, REPO, SHA)
    assert latest is not None and (latest.run_id, latest.run_attempt, latest.run_started_at) == (10, 2, 2000.0)


async def test_runs_stored_without_a_start_time_keep_the_run_id_order_and_rank_below(db: Database) -> None:
    """Rows from before start times were kept: among themselves the higher run id wins, as it did; a row that has
    one (processed after the upgrade) wins over them."""
    await _record(db, run_id=21, results={"T1": "passed"})
    await _record(db, run_id=20, results={"T1": "passed"})
    latest = await runs.latest_run_for_sha(db, REPO, SHA)
    assert latest is not None and latest.run_id == 21
    await _record(db, run_id=19, attempt=2, results={"T1": "passed"}, started_at=500.0)
    latest = await runs.latest_run_for_sha(db, REPO, SHA)
    assert latest is not None and (latest.run_id, latest.run_attempt) == (19, 2)


async def test_the_same_attempt_judged_again_without_a_start_time_keeps_it(db: Database) -> None:
    await _record(db, results={"T1": "passed"}, started_at=700.0)
    await _record(db, results={"T1": "passed"}, now=200.0)  # a revalidation from a payload without it
    run = await runs.get_run(db, REPO, 7)
    assert run is not None and run.run_started_at == 700.0


async def test_health_score_is_stored_once_per_commit_and_branch(db: Database) -> None:
    async with db.transaction() as conn:
        first = await runs.record_health_score(conn, repo=REPO, head_sha=SHA, branch="main", score=81.6,
                                               counts={"major": 2}, now=1.0)
        again = await runs.record_health_score(conn, repo=REPO, head_sha=SHA, branch="main", score=50,
                                               counts={}, now=2.0)
    assert (first, again) == (True, False)
    latest = await runs.latest_health_score(db, REPO, "main")
    assert latest is not None and (latest.score, latest.counts) == (82, {"major": 2})


async def test_latest_health_score_is_the_newest_on_that_branch_excluding_the_commit(db: Database) -> None:
    async with db.transaction() as conn:
        for sha, branch, score, at in (("1" * 40, "main", 70, 1.0), ("2" * 40, "main", 75, 2.0),
                                       ("3" * 40, "feature", 10, 3.0), (SHA, "main", 99, 4.0)):
            await runs.record_health_score(conn, repo=REPO, head_sha=sha, branch=branch, score=score, counts={},
                                           now=at)
    latest = await runs.latest_health_score(db, REPO, "main", exclude_sha=SHA)
    assert latest is not None and (latest.head_sha, latest.score) == ("2" * 40, 75)
    assert await runs.latest_health_score(db, REPO, "develop") is None


async def test_a_commits_runs_are_looked_up_by_index_not_by_reading_every_run(db: Database) -> None:
    # Without ci_runs_head each lookup read all of the repository's runs: 27 ms at 50,000 runs.
    for sql, params in ((runs.LATEST_RUN_SQL, ("o/r", "abc")), (runs.PULLS_WITH_RUN_NOTED_SQL, (1, 1, "x", 10))):
        plan = [row["detail"] for row in await db.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)]
        steps = [step for step in plan if "ci_runs" in step or " c " in f" {step} "]
        assert steps and all("USING INDEX ci_runs_head (repo=? AND head_sha=?)" in step for step in steps), plan
