"""A locked pull request: GitHub refuses the App's comment there, which must not fail the CI result's job."""

from __future__ import annotations

import pytest
from gidgethub import BadRequest, sansio

from handlers import manifests as manifest_handlers
from storage import runs as run_store
from tests.test_handlers_ci_results import REPO, Harness, harness, statuses

__all__ = ["harness"]  # the fixture, shared with the CI-results handler tests

COMMENT = "/repos/{owner}/{repo}/issues/comments/{comment_id}"
LOCKED = {"message": "Unable to update comment because issue is locked.",
          "documentation_url": "https://docs.github.com/articles/locking-conversations/"}


async def test_a_verdict_on_a_locked_pull_request_is_kept_and_its_comment_follows_the_unlock(
        harness: Harness) -> None:
    """The comment's 403 failed the job after the check run was completed: retried until dead (the artifacts read
    again each time), the run never recorded and the linked issue's checklist never given the results."""
    harness.add_run(300, t2="passed")
    harness.fake.fail_next("PATCH", COMMENT, status=403, body=LOCKED)
    await harness.dispatch("workflow_run", harness.workflow_run(300))  # no BadRequest
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    assert await statuses(harness) == {"T1": "passed", "T2": "passed"}
    assert await run_store.get_run(harness.db, REPO, 300) is not None
    [comment] = harness.comments(7)
    assert "passed" not in comment["body"]  # the manifest's comment, as it was before the lock
    event = sansio.Event({"action": "unlocked", "pull_request": {"number": 7, "locked": False},
                          "repository": {"full_name": REPO}}, event="pull_request", delivery_id="u")
    for callback in manifest_handlers.router.fetch(event):
        await callback(event, harness.context(event))
    [comment] = harness.comments(7)
    assert "**2** passed" in comment["body"] and "| test_T1_email | ✅ passed |" in comment["body"]


async def test_a_refusal_of_the_comment_that_is_not_a_lock_still_fails_the_job(harness: Harness) -> None:
    harness.add_run(301, t2="passed")
    harness.fake.fail_next("PATCH", COMMENT, status=403, body={"message": "Must have admin rights to Repository."})
    with pytest.raises(BadRequest):
        await harness.dispatch("workflow_run", harness.workflow_run(301))
