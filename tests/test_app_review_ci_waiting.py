"""A check waiting for the commit's other runs is looked at again, so GitHub's lagging run list cannot leave it
in progress for good."""

from __future__ import annotations

from typing import Any

from gidgethub import sansio

from handlers import ci_results as handler
from tests.test_ci_verdict_waiting import LINT
from tests.test_handlers_ci_results import REPO, SHA, Harness, harness

__all__ = ["harness"]  # the fixture, shared with the CI-results handler tests


Queued = list[tuple[str, dict[str, Any], float, str | None]]


async def dispatch(h: Harness, name: str, data: dict[str, Any], queued: Queued) -> None:
    """Run the handler's callbacks for the event, recording what they queue with its delay and ordering key."""

    async def enqueue(event: str, payload: dict[str, Any], *, delay: float = 0.0, ordering_key: str | None = None,
                      **_: Any) -> list[int]:
        queued.append((event, dict(payload), delay, ordering_key))
        return []

    event = sansio.Event(data, event=name, delivery_id="d")
    for callback in handler.router.fetch(event):
        ctx = h.context(event)
        ctx.enqueue = enqueue
        await callback(event, ctx)


def lint_run(h: Harness, run_id: int, *, status: str = "completed") -> None:
    h.fake.add_workflow_run(REPO, run_id, head_sha=SHA, pull_requests=[7], artifacts=LINT, name=f"Lint {run_id}",
                            status=status)


async def test_two_report_less_runs_each_seeing_the_other_still_going_are_judged_again(harness: Harness) -> None:
    """Two report-less runs finishing together, each listed by GitHub as still going when the other was judged
    (its list lags the completions it sends): both waited, no run was left to finish, and the check stayed in
    progress for good, blocking a required check. Each wait now queues a look again a little later."""
    queued: Queued = []
    lint_run(harness, 310)
    lint_run(harness, 311, status="in_progress")
    await dispatch(harness, "workflow_run", harness.workflow_run(310), queued)
    lint_run(harness, 311)
    lint_run(harness, 310, status="in_progress")  # the list lags 310's completion
    await dispatch(harness, "workflow_run", harness.workflow_run(311), queued)
    assert [(c["status"], c["conclusion"]) for c in harness.check_runs()] == [("in_progress", None)]
    assert [(event, data) for event, data, _, _ in queued] == [
        (handler.JUDGE_STORED_RUN_EVENT, {"repo": REPO, "pr_number": 7})] * 2
    assert all(delay >= 30 for _, _, delay, _ in queued)  # past the list's lag, not at once
    # Not the pull request's own key: waiting for its time, it would hold the pull request's deliveries back.
    assert all(key is not None and key != f"{REPO}#7" for *_, key in queued)
    lint_run(harness, 310)  # the list caught up
    again: Queued = []
    for event, data, *_ in queued:
        await dispatch(harness, event, data, again)
    assert [(c["status"], c["conclusion"]) for c in harness.check_runs()] == [("completed", "neutral")]
    assert again == []  # a look again never queues another: a run still going will send its own completion


async def test_a_wait_for_a_run_really_going_is_decided_by_that_run(harness: Harness) -> None:
    queued: Queued = []
    lint_run(harness, 320)
    harness.add_run(321, status="in_progress", name="Tests")
    await dispatch(harness, "workflow_run", harness.workflow_run(320), queued)
    for event, data, *_ in queued:  # the look again finds the tests still going: the check keeps waiting
        await dispatch(harness, event, data, [])
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("in_progress", None)
    assert "(Tests #321)" in check["output"]["summary"]
    harness.add_run(321, t2="passed", name="Tests")
    await dispatch(harness, "workflow_run", harness.workflow_run(321), [])
    assert [(c["status"], c["conclusion"]) for c in harness.check_runs()] == [("completed", "success")]
