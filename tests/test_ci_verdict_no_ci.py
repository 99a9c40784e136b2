"""A repository without any CI workflow: a linked pull request's check is concluded neutral, not left waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from gidgethub import sansio

from quantumreview import pull_requests as prs
from quantumreview.checklists import refresh_checklist
from quantumreview.ci_results import JUNIT_FILE, REPORT_ARTIFACT
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from storage import pulls as pull_store
from storage.db import Database
from tests.test_handlers_ci_results import INSTALLATION, ISSUE_BODY, REPO, SHA, TEST_PATCH, Harness, junit

WORKFLOWS = "/repos/{owner}/{repo}/actions/workflows"
FILES = [{"filename": "tests/test_signup.py", "status": "added", "patch": TEST_PATCH, "additions": 4, "deletions": 0}]


@pytest.fixture
async def bare(fake_github: FakeGitHub, github_app: Any, db: Database, settings: Settings) -> AsyncIterator[Harness]:
    """An issue with two criteria and its checklist in a repository that has no Actions workflow."""
    fake_github.add_installation(INSTALLATION, repositories=[REPO])
    fake_github.set_workflows(REPO, [])
    issue = fake_github.add_issue(REPO, 4, title="Signup", body=ISSUE_BODY)
    h = Harness(fake_github, github_app, db, settings)
    await refresh_checklist(h.context(sansio.Event({}, event="setup", delivery_id="s")), REPO, issue)
    yield h


async def open_pull(h: Harness, *, body: str = "Closes #4", sha: str = SHA) -> dict[str, Any]:
    """Open (or push to, or edit) PR #7 and run its manifest job."""
    pull = h.fake.add_pull(REPO, 7, title="Signup checks", body=body, head_sha=sha, files=FILES)
    await prs.refresh_manifest(h.context(sansio.Event({}, event="pull_request", delivery_id="p")), REPO, pull)
    return pull


async def test_a_linked_pull_request_in_a_repository_without_ci_gets_a_neutral_check(bare: Harness) -> None:
    """No workflow would ever report, so the check stayed in progress for good and blocked a required check."""
    await open_pull(bare)
    [check] = bare.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
    output = check["output"]
    assert output["title"] == "No CI workflow: 2 of 2 criteria have tests in this PR"
    assert "**No CI workflow in this repository**" in output["summary"]
    assert "| `T1` |" in output["summary"] and "test_T1_email" in output["summary"]  # what the diff shows
    assert f"[the README]({prs.REPORT_UPLOAD_HELP})" in output["summary"]
    assert "`autoqa-test-report`" in output["summary"]
    [comment] = bare.comments(7)
    assert "No CI workflow in this repository" in comment["body"]
    [listing] = bare.fake.calls("GET", WORKFLOWS)
    assert listing.status == 200
    row = await pull_store.get_manifest(bare.db, REPO, 7, SHA)
    assert row is not None and row.ci_workflows == "none" and row.verdict is None


async def test_github_is_asked_once_per_head_not_at_each_update(bare: Harness) -> None:
    await open_pull(bare)
    await open_pull(bare, body="Closes #4\n\nNow with a longer description")  # an edit: same head
    await prs.publish_pr_status(bare.context(sansio.Event({}, event="x", delivery_id="x")), REPO, 7, SHA)
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 1
    assert [(c["status"], c["conclusion"]) for c in bare.check_runs()] == [("completed", "neutral")]
    await open_pull(bare, sha="b" * 40)  # a push: a new head asks again
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 2
    [pushed] = [c for c in bare.check_runs() if c["head_sha"] == "b" * 40]
    assert (pushed["status"], pushed["conclusion"]) == ("completed", "neutral")


async def test_linking_an_issue_later_concludes_the_check_neutral_too(bare: Harness) -> None:
    """The check's first publish for the head said "No linked issue"; the edit that links one asks then."""
    await open_pull(bare, body="No issue yet")
    assert bare.fake.calls("GET", WORKFLOWS) == []
    await open_pull(bare)
    [check] = bare.check_runs()  # completed both times: the same run, updated
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
    assert check["output"]["title"].startswith("No CI workflow")
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 1


async def test_a_repository_with_a_workflow_waits_for_ci_as_before(bare: Harness) -> None:
    bare.fake.set_workflows(REPO, ["Tests"])
    await open_pull(bare)
    await open_pull(bare, body="Closes #4\n\nedited")
    [check] = bare.check_runs()
    assert (check["status"], check["conclusion"]) == ("in_progress", None)
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 1


async def test_without_actions_read_the_check_waits_for_ci_as_before(bare: Harness) -> None:
    bare.fake.fail_next("GET", WORKFLOWS, status=403, body={"message": "Resource not accessible by integration"})
    await open_pull(bare)
    await open_pull(bare, body="Closes #4\n\nedited")
    [check] = bare.check_runs()
    assert (check["status"], check["conclusion"]) == ("in_progress", None)
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 1  # refused once: not asked at every update
    row = await pull_store.get_manifest(bare.db, REPO, 7, SHA)
    assert row is not None and row.ci_workflows == "unknown"


async def test_a_ci_run_arriving_after_all_gives_its_verdict(bare: Harness) -> None:
    """A workflow run for the head (say, added on the base branch and run on reopen) still judges it."""
    await open_pull(bare)
    bare.fake.add_workflow_run(REPO, 300, head_sha=SHA, pull_requests=[7],
                               artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit("passed")}})
    await bare.dispatch("workflow_run", bare.workflow_run(300))
    assert [(c["status"], c["conclusion"]) for c in bare.check_runs()] == [("completed", "success")]


async def test_runs_going_on_a_head_first_seen_without_ci_are_waited_for(bare: Harness) -> None:
    """Workflows added after the head's check was concluded "No CI workflow" (then run on it, say on reopen): a
    report-less run finishing while the tests still go showed that neutral again instead of waiting."""
    await open_pull(bare)
    bare.fake.add_workflow_run(REPO, 311, head_sha=SHA, pull_requests=[7], status="in_progress", name="Tests")
    bare.fake.add_workflow_run(REPO, 310, head_sha=SHA, pull_requests=[7], artifacts={"lint": {"a.txt": b"ok"}})
    await bare.dispatch("workflow_run", bare.workflow_run(310))
    assert [(c["status"], c["conclusion"]) for c in bare.check_runs()] == [("completed", "neutral"),
                                                                          ("in_progress", None)]
    assert "(Tests #311)" in bare.check_runs()[1]["output"]["summary"]
    await open_pull(bare, body="Closes #4\n\nedited")  # a later update of the comment and check
    assert bare.check_runs()[1]["status"] == "in_progress"
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 1
