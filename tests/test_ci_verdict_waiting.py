"""A run without a report finishing while the commit's other runs still go leaves the check in progress."""

from __future__ import annotations

from quantumreview.ci_results import JUNIT_FILE, REPORT_ARTIFACT
from storage import pulls as pull_store
from storage import runs as run_store
from tests.test_handlers_ci_results import REPO, SHA, Harness, harness, junit

__all__ = ["harness"]  # the fixture, shared with the CI-results handler tests

RUNS = "/repos/{owner}/{repo}/actions/runs"
LINT = {"lint": {"lint.txt": b"ok"}}


async def finish_lint(h: Harness, run_id: int, *, attempt: int = 1) -> None:
    """A lint workflow's run (an artifact, no report) completes on the commit."""
    h.fake.add_workflow_run(REPO, run_id, head_sha=SHA, run_attempt=attempt, pull_requests=[7], artifacts=LINT,
                            name="Lint")
    await h.dispatch("workflow_run", h.workflow_run(run_id, attempt=attempt))


def start_tests(h: Harness, run_id: int, *, attempt: int = 1) -> None:
    """The test workflow's run of the commit, still in progress."""
    h.fake.add_workflow_run(REPO, run_id, head_sha=SHA, run_attempt=attempt, pull_requests=[7], status="in_progress",
                            name="Tests")


async def finish_tests(h: Harness, run_id: int, *, attempt: int = 1, t2: str = "passed") -> None:
    h.fake.add_workflow_run(REPO, run_id, head_sha=SHA, run_attempt=attempt, pull_requests=[7], name="Tests",
                            artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit(t2)}})
    await h.dispatch("workflow_run", h.workflow_run(run_id, attempt=attempt))


async def test_a_report_less_run_finishing_first_leaves_the_check_in_progress(harness: Harness) -> None:
    """Lint finished before the tests: the check was completed "neutral" (No test report found), which passes a
    required check, so the pull request could be merged before its tests had run. The tests now decide."""
    start_tests(harness, 201)
    await finish_lint(harness, 200)
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("in_progress", None)
    assert "waiting for the other workflow runs of this commit to finish (Tests #201)" in check["output"]["summary"]
    [listing] = harness.fake.calls("GET", RUNS)
    assert listing.query["head_sha"] == SHA
    row = await pull_store.get_manifest(harness.db, REPO, 7, SHA)
    assert row is not None and row.verdict is None
    assert await run_store.get_run(harness.db, REPO, 200) is not None  # processed: a redelivery changes nothing
    await finish_tests(harness, 201, t2="passed")
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "success")


async def test_the_last_run_to_finish_without_a_report_concludes_neutral_as_before(harness: Harness) -> None:
    await finish_lint(harness, 210)
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
    assert "waiting" not in check["output"]["summary"]


async def test_a_report_less_run_after_the_verdict_leaves_it_alone(harness: Harness) -> None:
    await finish_tests(harness, 220, t2="failure")
    start_tests(harness, 222)  # say, another workflow still going
    writes = len(harness.fake.calls("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"))
    await finish_lint(harness, 221)
    assert [(c["status"], c["conclusion"]) for c in harness.check_runs()] == [("completed", "failure")]
    assert len(harness.fake.calls("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")) == writes


async def test_a_rerun_of_the_tests_puts_a_report_less_neutral_back_in_progress(harness: Harness) -> None:
    """The tests' first attempt uploaded no report and finished last (neutral); while they are re-run, another
    report-less run finishing kept that neutral, which passes a required check until the re-run reports."""
    harness.fake.add_workflow_run(REPO, 230, head_sha=SHA, pull_requests=[7], artifacts=LINT, name="Tests")
    await harness.dispatch("workflow_run", harness.workflow_run(230))
    assert [c["conclusion"] for c in harness.check_runs()] == ["neutral"]
    start_tests(harness, 230, attempt=2)
    await finish_lint(harness, 231)
    # A completed check run cannot go back in progress on GitHub: a new one is made for the head.
    assert [(c["status"], c["conclusion"]) for c in harness.check_runs()] == [("completed", "neutral"),
                                                                             ("in_progress", None)]
    assert "(Tests #230)" in harness.check_runs()[1]["output"]["summary"]
    await finish_tests(harness, 230, attempt=2)
    assert [(c["status"], c["conclusion"]) for c in harness.check_runs()][1] == ("completed", "success")


async def test_a_lagging_list_showing_this_very_run_in_progress_does_not_make_it_wait(harness: Harness) -> None:
    """GitHub's list can lag the completion it sent: the run must not wait for itself."""
    harness.fake.add_workflow_run(REPO, 240, head_sha=SHA, pull_requests=[7], artifacts=LINT, status="in_progress")
    await harness.dispatch("workflow_run", harness.workflow_run(240))
    assert [(c["status"], c["conclusion"]) for c in harness.check_runs()] == [("completed", "neutral")]


async def test_without_actions_read_on_the_run_list_the_check_concludes_as_before(harness: Harness) -> None:
    start_tests(harness, 251)
    harness.fake.fail_next("GET", RUNS, status=403, body={"message": "Resource not accessible by integration"})
    await finish_lint(harness, 250)
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
