"""Which run decides a commit's verdict: the attempt that started last, so a re-run of an older run counts."""

from __future__ import annotations

from typing import Any

from quantumreview.ci_results import JUNIT_FILE, REPORT_ARTIFACT
from quantumreview.testing.fake_shapes import iso
from storage import pulls as pull_store
from storage import runs as run_store
from tests.test_handlers_ci_results import REPO, SHA, Harness, harness, junit

__all__ = ["harness"]  # the fixture, shared with the CI-results handler tests

T0 = 1_800_000_000.0  # 2027-01-15, whole seconds as GitHub gives them


def payload(h: Harness, run_id: int, *, attempt: int = 1, started: float) -> dict[str, Any]:
    """The run's workflow_run.completed, carrying when this attempt started."""
    data = h.workflow_run(run_id, attempt=attempt)
    data["workflow_run"]["run_started_at"] = iso(started)
    return data


async def complete(h: Harness, run_id: int, *, attempt: int = 1, t2: str = "failure", started: float,
                   report: bool = True) -> None:
    """Run `run_id` (this attempt, started at `started`) on the fake and deliver its completion."""
    artifacts = {REPORT_ARTIFACT: {JUNIT_FILE: junit(t2)}} if report else {"lint": {"lint.txt": b"ok"}}
    h.fake.add_workflow_run(REPO, run_id, head_sha=SHA, run_attempt=attempt, pull_requests=[7], artifacts=artifacts,
                            started_at=started)
    await h.dispatch("workflow_run", payload(h, run_id, attempt=attempt, started=started))


async def test_rerunning_an_older_run_after_a_newer_one_was_judged_gives_the_verdict(harness: Harness) -> None:
    """Attempt 2 of run 100, re-run after run 101 of the same commit was judged, is the newest result for the
    commit; ranked by run id, it was ignored and the check kept run 101's failure."""
    await complete(harness, 100, t2="failure", started=T0)
    await complete(harness, 101, t2="failure", started=T0 + 300)
    assert [c["conclusion"] for c in harness.check_runs()] == ["failure"]
    await complete(harness, 100, attempt=2, t2="passed", started=T0 + 1800)
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    row = await pull_store.get_manifest(harness.db, REPO, 7, SHA)
    assert row is not None and (row.run_id, row.run_attempt, row.run_started_at) == (100, 2, T0 + 1800)
    latest = await run_store.latest_run_for_sha(harness.db, REPO, SHA)
    assert latest is not None and (latest.run_id, latest.run_attempt) == (100, 2)


async def test_a_run_that_started_earlier_never_replaces_the_later_ones_verdict(harness: Harness) -> None:
    """Run 103 started before run 102's re-run but finished after it: a higher run id is no later result."""
    await complete(harness, 102, t2="failure", started=T0)
    await complete(harness, 102, attempt=2, t2="passed", started=T0 + 1800)
    await complete(harness, 103, t2="failure", started=T0 + 600)  # long tests: started first, done last
    assert [c["conclusion"] for c in harness.check_runs()] == ["success"]
    latest = await run_store.latest_run_for_sha(harness.db, REPO, SHA)
    assert latest is not None and (latest.run_id, latest.run_attempt) == (102, 2)


async def test_a_report_less_run_started_last_does_not_win_over_the_test_run(harness: Harness) -> None:
    """Only runs that carry a report compete: a lint workflow finishing last keeps the test run's verdict."""
    await complete(harness, 104, t2="passed", started=T0)
    await complete(harness, 106, report=False, started=T0 + 900)
    assert [c["conclusion"] for c in harness.check_runs()] == ["success"]
    latest = await run_store.latest_run_for_sha(harness.db, REPO, SHA)
    assert latest is not None and latest.run_id == 104


async def test_rechecking_a_commit_judges_the_run_that_started_last(harness: Harness) -> None:
    """Revalidating with no stored run picks, of the runs GitHub lists with the report, the one started last."""
    harness.fake.add_workflow_run(REPO, 108, head_sha=SHA, pull_requests=[7], started_at=T0,
                                  artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit("failure")}})
    harness.fake.add_workflow_run(REPO, 107, head_sha=SHA, run_attempt=2, pull_requests=[7], started_at=T0 + 600,
                                  artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit("passed")}})
    await harness.dispatch("quantumreview.revalidate_pr", {"repo": REPO, "pr_number": 7})
    assert [c["conclusion"] for c in harness.check_runs()] == ["success"]
    latest = await run_store.latest_run_for_sha(harness.db, REPO, SHA)
    assert latest is not None and (latest.run_id, latest.run_started_at) == (107, T0 + 600)
