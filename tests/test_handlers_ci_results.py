"""handlers.ci_results on the fake GitHub: one check run, one PR comment, one checklist comment, whatever the order."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gidgethub import sansio

from handlers import ci_results as handler
from quantumreview import ci_results as collecting
from quantumreview.checklists import refresh_checklist
from quantumreview.ci_results import HEALTH_FILE, JUNIT_FILE, REPORT_ARTIFACT
from quantumreview.context import Context
from quantumreview.errors import RetryLater
from quantumreview.keyed_locks import KeyedLocks
from quantumreview.pull_requests import refresh_manifest
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from storage import checklists as checklist_store
from storage import installations as installation_store
from storage import pulls as pull_store
from storage import runs as run_store
from storage.db import Database

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
REPO = "octo-org/octo-repo"
INSTALLATION = 11
SHA = "e" * 40
ISSUE_BODY = "## Acceptance criteria\n\n- [ ] Email is validated\n- [ ] Password needs 8 characters\n"
TEST_PATCH = "@@ -0,0 +1,4 @@\n+def test_T1_email():\n+    pass\n+def test_T2_password():\n+    pass"


def junit(t2: str = "failure") -> bytes:
    """A report where T1 passes and T2 fails (or passes)."""
    result = '<failure message="too short"/>' if t2 == "failure" else ""
    return (f'<testsuite><testcase classname="tests.test_signup" name="T1::test_email"/>'
            f'<testcase classname="tests.test_signup" name="T2::test_password">{result}</testcase>'
            f"</testsuite>").encode()


CHECK_RUNS = "/repos/{owner}/{repo}/check-runs"
CHECK_RUN = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
ARTIFACTS = "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"


class Harness:
    """A handler Context on a real database and the real GitHub client, pointed at the fake."""

    def __init__(self, fake: FakeGitHub, github: Any, db: Database, settings: Settings) -> None:
        self.fake, self.github, self.db, self.settings = fake, github, db, settings
        self.notes: list[tuple[str, str, str]] = []
        self.attempt = 5  # past the "artifacts not listed yet" retries unless a test lowers it
        self.enqueued: list[tuple[str, dict[str, Any], str | None]] = []
        self.locks = KeyedLocks()  # one for every job, as the runner's

    def context(self, event: sansio.Event) -> Context:
        """A Context for one job."""

        async def notify(repo: str, kind: str, title: str, **_: Any) -> int:
            self.notes.append((repo, kind, title))
            return 1

        async def enqueue(name: str, data: dict[str, Any], *, ordering_key: str | None = None,
                          **__: Any) -> list[int]:
            self.enqueued.append((name, dict(data), ordering_key))
            return []

        return Context(event=event, db=self.db, settings=self.settings, gh=self.github.for_installation(INSTALLATION),
                       github=self.github, installation_id=INSTALLATION, delivery_id="d", job_id=1,
                       attempt=self.attempt, enqueue=enqueue, notify=notify, locks=self.locks)

    async def dispatch(self, name: str, data: dict[str, Any]) -> None:
        """Run every callback of the handler's router for the event, as the job runner would."""
        event = sansio.Event(data, event=name, delivery_id="d")
        for callback in handler.router.fetch(event):
            await callback(event, self.context(event))

    def workflow_run(self, run_id: int, *, attempt: int = 1, prs: tuple[int, ...] = (7,)) -> dict[str, Any]:
        """A real workflow_run.completed payload, pointed at the fake's run."""
        data = json.loads((FIXTURES / "workflow_run.completed.3.json").read_text())
        data["repository"]["full_name"] = REPO
        data["repository"]["name"] = REPO.split("/")[1]
        data["installation"] = {"id": INSTALLATION}
        run = data["workflow_run"]
        run.update(id=run_id, run_attempt=attempt, head_sha=SHA, head_branch="feature")
        template = run["pull_requests"][0]
        run["pull_requests"] = []
        for number in prs:
            entry = copy.deepcopy(template)
            entry["number"] = number
            entry["head"]["sha"] = SHA
            entry["base"]["repo"].update(id=run["repository"]["id"], name=REPO.split("/")[1],
                                         url=f"https://api.github.com/repos/{REPO}")
            entry["base"]["ref"] = "main"
            run["pull_requests"].append(entry)
        return data

    def add_run(self, run_id: int, *, attempt: int = 1, t2: str = "failure", health: bytes | None = None,
                **extra: Any) -> None:
        """A run on the fake whose report artifact holds the JUnit report (and code health)."""
        files = {JUNIT_FILE: junit(t2)}
        if health is not None:
            files[HEALTH_FILE] = health
        self.fake.add_workflow_run(REPO, run_id, head_sha=SHA, run_attempt=attempt, pull_requests=[7],
                                   artifacts=extra.pop("artifacts", {REPORT_ARTIFACT: files}), **extra)

    def check_runs(self) -> list[dict[str, Any]]:
        return self.fake.check_runs.get(REPO, [])

    def comments(self, number: int) -> list[dict[str, Any]]:
        return self.fake.comments.get((REPO, number), [])


@pytest.fixture
async def harness(fake_github: FakeGitHub, github_app: Any, db: Database, settings: Settings,
                  ) -> AsyncIterator[Harness]:
    """An issue with two criteria and its checklist, and PR #7 linking it, with its manifest and check run."""
    fake_github.add_installation(INSTALLATION, repositories=[REPO])
    issue = fake_github.add_issue(REPO, 4, title="Signup", body=ISSUE_BODY)
    pull = fake_github.add_pull(REPO, 7, title="Signup checks", body="Closes #4", head_sha=SHA,
                                files=[{"filename": "tests/test_signup.py", "status": "added", "patch": TEST_PATCH,
                                        "additions": 4, "deletions": 0}])
    h = Harness(fake_github, github_app, db, settings)
    setup = h.context(sansio.Event({}, event="setup", delivery_id="s"))
    await refresh_checklist(setup, REPO, issue)
    await refresh_manifest(setup, REPO, pull)
    yield h


async def statuses(h: Harness) -> dict[str, str]:
    checklist = await checklist_store.get_checklist(h.db, REPO, 4)
    assert checklist is not None
    live, _ = await checklist_store.get_items(h.db, checklist.id)
    return {item.tid: item.status for item in live}


async def test_failed_criterion_completes_the_check_as_failure_and_updates_comments(harness: Harness) -> None:
    harness.add_run(100)
    await harness.dispatch("workflow_run", harness.workflow_run(100))
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "failure")
    assert "too short" in check["output"]["text"]
    assert await statuses(harness) == {"T1": "passed", "T2": "failed"}
    [pr_comment] = harness.comments(7)
    assert "failed" in pr_comment["body"]
    [checklist_comment] = harness.comments(4)
    assert "T2" in checklist_comment["body"]
    assert [kind for _, kind, _ in harness.notes].count("verdict") == 1


async def test_all_criteria_passing_is_success(harness: Harness) -> None:
    harness.add_run(101, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(101))
    assert harness.check_runs()[0]["conclusion"] == "success"


async def test_redelivery_has_one_side_effect_set(harness: Harness) -> None:
    harness.add_run(102)
    payload = harness.workflow_run(102)
    await harness.dispatch("workflow_run", payload)
    writes = len(harness.fake.calls("PATCH", CHECK_RUN)) + len(harness.fake.calls("POST", CHECK_RUNS))
    notes = list(harness.notes)
    await harness.dispatch("workflow_run", payload)
    await harness.dispatch("workflow_run", payload)
    assert len(harness.fake.calls("PATCH", CHECK_RUN)) + len(harness.fake.calls("POST", CHECK_RUNS)) == writes
    assert harness.notes == notes
    assert len(harness.check_runs()) == 1 and len(harness.comments(7)) == 1 and len(harness.comments(4)) == 1


async def test_older_attempt_arriving_late_never_regresses_the_newer_result(harness: Harness) -> None:
    harness.add_run(103, attempt=2, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(103, attempt=2))
    harness.add_run(103, attempt=1, t2="failure")  # the fake now serves attempt 1's failing report
    await harness.dispatch("workflow_run", harness.workflow_run(103, attempt=1))
    assert harness.check_runs()[0]["conclusion"] == "success"
    assert await statuses(harness) == {"T1": "passed", "T2": "passed"}
    stored = await run_store.get_run(harness.db, REPO, 103)
    assert stored is not None and stored.run_attempt == 2


async def test_rerun_attempt_two_updates_the_same_check_run_and_comments(harness: Harness) -> None:
    harness.add_run(104, attempt=1, t2="failure")
    await harness.dispatch("workflow_run", harness.workflow_run(104, attempt=1))
    harness.add_run(104, attempt=2, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(104, attempt=2))
    assert [c["conclusion"] for c in harness.check_runs()] == ["success"]
    assert len(harness.comments(7)) == 1 and len(harness.comments(4)) == 1
    assert [kind for _, kind, _ in harness.notes].count("verdict") == 2  # reached, then changed


async def test_run_of_another_workflow_without_a_report_does_not_replace_a_verdict(harness: Harness) -> None:
    harness.add_run(105, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(105))
    harness.fake.add_workflow_run(REPO, 106, head_sha=SHA, pull_requests=[7], artifacts={"lint": {"x.txt": b"ok"}})
    await harness.dispatch("workflow_run", harness.workflow_run(106))
    assert harness.check_runs()[0]["conclusion"] == "success"


async def test_expired_report_artifact_gives_a_neutral_check_without_retrying(harness: Harness) -> None:
    harness.add_run(107, expired=[REPORT_ARTIFACT])
    await harness.dispatch("workflow_run", harness.workflow_run(107))
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
    manifest = await pull_store.get_manifest(harness.db, REPO, 7, SHA)
    assert manifest is not None and manifest.verdict is not None
    assert any("expired" in note for note in manifest.verdict["notes"])
    assert "expired" in check["output"]["summary"]  # the people reading the check see why it is neutral


async def test_artifacts_refused_for_a_missing_permission_complete_the_check_with_a_note(harness: Harness) -> None:
    """Without Actions: read (an owner who has not accepted the new permission) GitHub answers 403; the job
    failed as permission_denied and the check run stayed in progress for good."""
    harness.add_run(110, t2="passed")
    harness.fake.fail_next("GET", ARTIFACTS, status=403, body={"message": "Resource not accessible by integration"})
    harness.attempt = 1  # a refusal is no "not listed yet": it is not waited out
    await harness.dispatch("workflow_run", harness.workflow_run(110))
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
    assert "Resource not accessible by integration" in check["output"]["summary"]
    assert "Actions: read" in check["output"]["summary"]
    assert len(harness.fake.calls("GET", ARTIFACTS)) == 1


async def test_accepting_the_actions_permission_judges_the_refused_runs_again(harness: Harness) -> None:
    """The runs refused for a missing Actions: read were never judged again once the owner accepted it: their pull
    requests kept the "cannot read the run's artifacts" check until the next push."""
    harness.add_run(116, t2="passed")
    harness.fake.fail_next("GET", ARTIFACTS, status=403, body={"message": "Resource not accessible by integration"})
    await harness.dispatch("workflow_run", harness.workflow_run(116))
    assert harness.check_runs()[0]["conclusion"] == "neutral"
    data = json.loads((FIXTURES / "installation.new_permissions_accepted.1.json").read_text())
    data["installation"]["id"] = INSTALLATION
    await harness.dispatch("installation", data)  # a permission other than Actions: they would be refused again
    assert harness.enqueued == []
    data["installation"]["permissions"]["actions"] = "read"
    await harness.dispatch("installation", data)
    assert harness.enqueued == [(handler.JUDGE_STORED_RUN_EVENT, {"repo": REPO, "pr_number": 7}, f"{REPO}#7")]
    await harness.dispatch(handler.JUDGE_STORED_RUN_EVENT, {"repo": REPO, "pr_number": 7})
    [check] = harness.check_runs()
    assert check["conclusion"] == "success"
    harness.enqueued.clear()
    await harness.dispatch("installation", data)  # judged now: nothing left to judge again
    assert harness.enqueued == []


@pytest.mark.parametrize("fault", ["blob", "list"])
async def test_a_download_failing_on_every_try_completes_the_check_on_the_last_one(harness: Harness,
                                                                                   fault: str) -> None:
    """Blob storage answering 503 (or GitHub 502 on the list) on every try: each try is retried, but a job
    that died on its last try left the check run in progress for good; the last try now says why instead."""
    harness.add_run(111, t2="passed")
    if fault == "blob":
        harness.fake.script_blob(harness.fake.artifact_id(REPO, 111, REPORT_ARTIFACT), html_status=503)
    else:
        harness.fake.fail_next("GET", ARTIFACTS, status=502, times=100)
    harness.attempt = harness.settings.job_max_attempts - 1
    with pytest.raises(RetryLater):
        await harness.dispatch("workflow_run", harness.workflow_run(111))
    assert harness.check_runs()[0]["status"] == "in_progress"

    harness.attempt = harness.settings.job_max_attempts
    await harness.dispatch("workflow_run", harness.workflow_run(111))
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
    assert ("503" if fault == "blob" else "502") in check["output"]["summary"]
    assert "gave up after the last try" in check["output"]["summary"]


async def test_a_run_deleted_before_its_artifacts_were_listed_completes_the_check(harness: Harness) -> None:
    """GitHub's 404 on the list was a gidgethub BadRequest: retried until dead, the check left in progress."""
    harness.add_run(112, t2="passed")
    harness.fake.fail_next("GET", ARTIFACTS, status=404, body={"message": "Not Found"})
    await harness.dispatch("workflow_run", harness.workflow_run(112))
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "neutral")
    assert "run 112 is gone from GitHub (404)" in check["output"]["summary"]


async def test_fork_pull_request_is_found_by_head_sha(harness: Harness) -> None:
    harness.add_run(108, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(108, prs=()))
    assert harness.check_runs()[0]["conclusion"] == "success"


async def test_empty_artifact_list_is_retried_a_bounded_number_of_times(harness: Harness) -> None:
    """RELIABILITY AR-07: 3 tries over about 2 minutes (the list can lag `completed`), then "no artifacts"."""
    harness.fake.add_workflow_run(REPO, 109, head_sha=SHA, pull_requests=[7])
    for attempt in range(1, handler.EMPTY_LIST_TRIES):
        harness.attempt = attempt
        before = time.time()
        with pytest.raises(handler.RetryLater) as caught:
            await harness.dispatch("workflow_run", harness.workflow_run(109))
        # Why a fixed `at`: the runner's backoff alone (10 s base) spent all tries in under a minute.
        assert caught.value.at is not None and before + 60 <= caught.value.at <= time.time() + 60
        assert harness.check_runs()[0]["status"] != "completed"  # no verdict while it may still appear
    harness.attempt = handler.EMPTY_LIST_TRIES
    await harness.dispatch("workflow_run", harness.workflow_run(109))
    assert await run_store.get_run(harness.db, REPO, 109) is not None
    assert len(harness.fake.calls("GET", ARTIFACTS)) == handler.EMPTY_LIST_TRIES
    [check] = harness.check_runs()
    assert check["status"] == "completed"
    assert "no artifacts were found for run 109 (listed 3 times over 120 s)" in check["output"]["summary"]
    manifest = await pull_store.get_manifest(harness.db, REPO, 7, SHA)
    assert manifest is not None and manifest.verdict is not None
    assert any("no artifacts were found" in note for note in manifest.verdict["notes"])


async def test_health_drop_against_the_base_branch_is_shown_and_notified(harness: Harness) -> None:
    async with harness.db.transaction() as conn:
        await run_store.record_health_score(conn, repo=REPO, head_sha="b" * 40, branch="main", score=100,
                                            counts={}, now=1.0)
    health = json.dumps({"findings": [{"path": "app.py", "line": 1, "severity": "high", "message": "x"}]})
    harness.add_run(110, health=health.encode())
    await harness.dispatch("workflow_run", harness.workflow_run(110))
    assert "Code health: **90.0** (▼ -10.0)" in harness.check_runs()[0]["output"]["summary"]
    assert [kind for _, kind, _ in harness.notes].count("health_drop") == 1
    latest = await run_store.latest_health_score(harness.db, REPO, "feature")
    assert latest is not None and latest.score == 90


async def test_rerequested_check_run_is_judged_again_from_the_stored_run(harness: Harness) -> None:
    harness.add_run(111, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(111))
    data = json.loads((FIXTURES / "check_run.rerequested.1.json").read_text())
    data["repository"]["full_name"] = REPO
    data["installation"] = {"id": INSTALLATION}
    check = data["check_run"]
    check.update(name="QuantumReview", head_sha=SHA)
    check["app"]["id"] = harness.settings.app_id
    before = len(harness.fake.calls("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"))
    await harness.dispatch("check_run", data)
    assert len(harness.fake.calls("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts")) == before + 1
    check["app"]["id"] = 999  # another App's check run of the same name
    await harness.dispatch("check_run", data)
    assert len(harness.fake.calls("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts")) == before + 1
    assert len(harness.check_runs()) == 1


async def test_revalidate_job_judges_the_pull_request_again(harness: Harness) -> None:
    harness.add_run(112, t2="failure")
    await harness.dispatch("workflow_run", harness.workflow_run(112))
    writes = len(harness.fake.calls("PATCH", CHECK_RUN))
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    assert len(harness.fake.calls("PATCH", CHECK_RUN)) > writes
    assert len(harness.check_runs()) == 1 and harness.check_runs()[0]["conclusion"] == "failure"


async def test_revalidate_without_a_stored_run_finds_the_commits_run_on_github(harness: Harness) -> None:
    harness.add_run(113, t2="passed")  # on GitHub, but its workflow_run delivery never reached us
    assert await run_store.latest_run_for_sha(harness.db, REPO, SHA) is None
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    assert len(harness.fake.calls("GET", "/repos/{owner}/{repo}/actions/runs")) == 1
    assert harness.check_runs()[0]["conclusion"] == "success"
    assert await run_store.latest_run_for_sha(harness.db, REPO, SHA) is not None


async def test_findings_on_changed_lines_become_check_run_annotations(harness: Harness) -> None:
    harness.fake.add_pull(REPO, 7, title="Signup checks", body="Closes #4", head_sha=SHA, files=[
        {"filename": "tests/test_signup.py", "status": "added", "patch": TEST_PATCH, "additions": 4, "deletions": 0},
        {"filename": "app/signup.py", "status": "modified", "additions": 2, "deletions": 0,
         "patch": "@@ -10,2 +10,4 @@ def signup():\n     user = load()\n+    token = make()\n+    send(token)\n"
                  "     return user"},
    ])
    health = json.dumps({"findings": [
        {"path": "app/signup.py", "line": 11, "severity": "high", "rule": "S1", "message": "token logged"},
        {"path": "app/signup.py", "line": 40, "severity": "high", "message": "old code, not in this diff"},
    ]})
    harness.add_run(114, t2="passed", health=health.encode())
    await harness.dispatch("workflow_run", harness.workflow_run(114))
    [check] = harness.check_runs()
    notes = [a for a in harness.fake.check_run_annotations.get(check["id"], []) if a["path"] == "app/signup.py"]
    assert [(a["start_line"], a["annotation_level"]) for a in notes] == [(11, "warning")]
    assert "token logged" in notes[0]["message"]



async def test_revalidating_a_pull_request_github_no_longer_has_ends_quietly(harness: Harness) -> None:
    """RELIABILITY GH-13: a 404 ends the job as done, not retried until dead (a retry cannot bring it back)."""
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 404})
    assert [call.status for call in harness.fake.calls("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")] == [404]
    assert harness.fake.calls("GET", "/repos/{owner}/{repo}/actions/runs") == []
    assert len(harness.check_runs()) == 1  # only the harness's own, untouched


async def test_revalidate_after_the_stored_run_was_deleted_republishes_the_stored_verdict(harness: Harness) -> None:
    harness.add_run(114, t2="failure")
    await harness.dispatch("workflow_run", harness.workflow_run(114))
    artifact_reads, writes = len(harness.fake.calls("GET", ARTIFACTS)), len(harness.fake.calls("PATCH", CHECK_RUN))
    harness.fake.fail_next("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", status=404,
                           body={"message": "Not Found"})
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    assert len(harness.fake.calls("GET", ARTIFACTS)) == artifact_reads  # nothing left to read
    assert len(harness.fake.calls("PATCH", CHECK_RUN)) > writes  # but what is stored is shown again
    assert harness.check_runs()[0]["conclusion"] == "failure"


async def test_revalidate_when_the_repository_is_gone_ends_without_publishing(harness: Harness) -> None:
    writes = len(harness.fake.calls("PATCH", CHECK_RUN)) + len(harness.fake.calls("POST", CHECK_RUNS))
    harness.fake.fail_next("GET", "/repos/{owner}/{repo}/actions/runs", status=404, body={"message": "Not Found"})
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    assert len(harness.fake.calls("GET", "/repos/{owner}/{repo}/actions/runs")) == 1
    assert len(harness.fake.calls("PATCH", CHECK_RUN)) + len(harness.fake.calls("POST", CHECK_RUNS)) == writes


async def test_reports_of_runs_judged_at_once_are_read_one_at_a_time(harness: Harness,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each zip's reports may hold 2 x 64 MiB plus their parse: jobs at once must not add those up (512 MB)."""
    harness.add_run(300)
    harness.add_run(301)
    reading: list[int] = []
    most = 0
    real = collecting.read_report_members

    def slow_read(path: Path) -> dict[str, bytes]:
        nonlocal most
        reading.append(1)
        most = max(most, len(reading))
        try:
            time.sleep(0.2)  # in the worker thread, as a large report's read would take
            return real(path)
        finally:
            reading.pop()

    monkeypatch.setattr(collecting, "read_report_members", slow_read)
    await asyncio.gather(harness.dispatch("workflow_run", harness.workflow_run(300)),
                         harness.dispatch("workflow_run", harness.workflow_run(301)))
    assert most == 1
    assert all([await run_store.get_run(harness.db, REPO, run_id) for run_id in (300, 301)])


async def test_a_run_held_for_approval_is_judged_once_approved(harness: Harness) -> None:
    """A fork PR's run awaiting approval completes as action_required with no jobs; approving runs the same run
    id and attempt, which then completes again. The first completion was recorded as processed (after 2 minutes
    of waiting for artifacts), so the real one was skipped and the check said "no artifacts were found"."""
    harness.fake.add_workflow_run(REPO, 120, head_sha=SHA, conclusion="action_required")
    held = harness.workflow_run(120, prs=())
    held["workflow_run"]["conclusion"] = "action_required"
    await harness.dispatch("workflow_run", held)
    assert harness.fake.calls("GET", ARTIFACTS) == []
    assert harness.check_runs()[0]["status"] == "in_progress"
    harness.add_run(120, t2="passed")  # approved: the same run, attempt 1, now with its report
    await harness.dispatch("workflow_run", harness.workflow_run(120, prs=()))
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "success")


async def test_an_upstream_pull_request_of_the_same_name_is_not_taken_for_this_repositorys(harness: Harness) -> None:
    """A fork keeps its upstream's name, and a fork's run may list the upstream's pull request: matched by name
    alone, the fork's own PR #9 was judged instead (here: none, so the verdict was skipped) and the PR at the
    run's head, found by its SHA, never got one."""
    harness.add_run(121, t2="passed")
    data = harness.workflow_run(121, prs=(9,))
    upstream = data["workflow_run"]["pull_requests"][0]["base"]["repo"]
    upstream.update(id=186853002, url="https://api.github.com/repos/upstream/octo-repo")  # same name, other repo
    await harness.dispatch("workflow_run", data)
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "success")


async def test_a_pull_request_opened_after_its_run_finished_gets_the_verdict(harness: Harness) -> None:
    """A push run finished before the pull request was opened: it found no pull request to judge, and the PR
    then opened showed its manifest "in progress" for good, since no other run came for that commit."""
    sha = "f" * 40
    harness.fake.add_workflow_run(REPO, 122, head_sha=sha, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit("passed")}})
    data = harness.workflow_run(122, prs=())
    data["workflow_run"]["head_sha"] = sha
    await harness.dispatch("workflow_run", data)  # no pull request at this commit yet
    assert await run_store.get_run(harness.db, REPO, 122) is not None
    pull = harness.fake.add_pull(REPO, 8, title="Signup, again", body="Closes #4", head_sha=sha,
                                 files=[{"filename": "tests/test_signup.py", "status": "added", "patch": TEST_PATCH,
                                         "additions": 4, "deletions": 0}])
    opened = {"action": "opened", "number": 8, "pull_request": pull, "repository": data["repository"],
              "installation": {"id": INSTALLATION}}
    await harness.dispatch("pull_request", opened)  # runs first: the manifest job comes after it
    await refresh_manifest(harness.context(sansio.Event(opened, event="pull_request", delivery_id="d")), REPO, pull)
    [(name, job, key)] = harness.enqueued
    assert (name, key) == (handler.JUDGE_STORED_RUN_EVENT, f"{REPO}#8")
    await harness.dispatch(name, job)
    [check] = [c for c in harness.check_runs() if c["head_sha"] == sha]
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    await harness.dispatch("pull_request", {**opened, "action": "synchronize"})  # judged: nothing more to queue
    assert len(harness.enqueued) == 1


async def test_rerun_all_checks_on_our_suite_judges_the_commit_again(harness: Harness) -> None:
    """"Re-run all checks" sends check_suite.rerequested (not check_run.rerequested): it did nothing."""
    harness.add_run(123, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(123))
    data = json.loads((FIXTURES / "check_suite.rerequested.1.json").read_text())
    data["repository"]["full_name"] = REPO
    data["installation"] = {"id": INSTALLATION}
    data["check_suite"].update(head_sha=SHA)
    data["check_suite"]["app"]["id"] = 999  # another App's suite: not ours to answer
    await harness.dispatch("check_suite", data)
    before = len(harness.fake.calls("GET", ARTIFACTS))
    assert before == 1
    data["check_suite"]["app"]["id"] = harness.settings.app_id
    await harness.dispatch("check_suite", data)
    assert len(harness.fake.calls("GET", ARTIFACTS)) == before + 1
    assert [c["conclusion"] for c in harness.check_runs()] == ["success"]


async def test_a_late_run_of_a_commit_the_pull_request_moved_past_leaves_the_checklist_alone(
        harness: Harness) -> None:
    """CI of an older push finishing after the head's: its check run is its own, but it wrote the issue's
    checklist statuses too, so the checklist showed the old commit's results instead of the head's."""
    old = "a" * 40
    files = [{"filename": "tests/test_signup.py", "status": "added", "patch": TEST_PATCH, "additions": 4,
              "deletions": 0}]
    setup = harness.context(sansio.Event({}, event="setup", delivery_id="s"))
    for sha in (old, SHA):  # pushed `old`, then the head SHA
        pull = harness.fake.add_pull(REPO, 7, title="Signup checks", body="Closes #4", head_sha=sha, files=files)
        await refresh_manifest(setup, REPO, pull)
    harness.add_run(124, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(124))
    assert await statuses(harness) == {"T1": "passed", "T2": "passed"}
    harness.fake.add_workflow_run(REPO, 125, head_sha=old, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit()}})
    late = harness.workflow_run(125)
    late["workflow_run"]["head_sha"] = old
    await harness.dispatch("workflow_run", late)
    assert [c["conclusion"] for c in harness.check_runs() if c["head_sha"] == old] == ["failure"]
    assert await statuses(harness) == {"T1": "passed", "T2": "passed"}


async def test_revalidate_without_a_stored_run_uses_the_run_that_has_the_report(harness: Harness) -> None:
    """Other workflows run on the commit too: the newest of its runs (here lint, no report) was judged, so the
    check said "No test report found" while the test workflow's run had one."""
    harness.add_run(126, t2="passed")
    harness.fake.add_workflow_run(REPO, 127, head_sha=SHA, pull_requests=[7], artifacts={"lint": {"x.txt": b"ok"}})
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    assert harness.check_runs()[0]["conclusion"] == "success"
    stored = await run_store.latest_run_for_sha(harness.db, REPO, SHA)
    assert stored is not None and stored.run_id == 126


async def test_a_run_judged_before_its_pull_requests_manifest_existed_is_judged_once_it_does(
        harness: Harness) -> None:
    """The pull request's manifest job was still queued (or slow) when the run's job gave up waiting for it: the
    verdict was skipped and the run recorded, so the check stayed in progress for good."""
    sha = "c" * 40
    pull = harness.fake.add_pull(REPO, 8, title="Signup, again", body="Closes #4", head_sha=sha,
                                 files=[{"filename": "tests/test_signup.py", "status": "added", "patch": TEST_PATCH,
                                         "additions": 4, "deletions": 0}])
    harness.fake.add_workflow_run(REPO, 128, head_sha=sha, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit("passed")}})
    data = harness.workflow_run(128, prs=(8,))
    data["workflow_run"]["head_sha"] = sha
    await harness.dispatch("workflow_run", data)  # attempt 5: past the waits for the manifest
    assert await run_store.get_run(harness.db, REPO, 128) is not None
    [(name, job, key)] = harness.enqueued
    assert (name, key) == (handler.JUDGE_STORED_RUN_EVENT, f"{REPO}#8")
    setup = harness.context(sansio.Event({}, event="setup", delivery_id="s"))
    await refresh_manifest(setup, REPO, pull)  # the manifest job, ahead of the queued one on the PR's key
    await harness.dispatch(name, job)
    [check] = [c for c in harness.check_runs() if c["head_sha"] == sha]
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    assert len(harness.enqueued) == 1


async def test_a_run_of_a_repository_the_installation_no_longer_has_ends_quietly(harness: Harness) -> None:
    """The repository left the installation (or was deleted) before the run's job ran: GitHub answers 404 to
    its artifacts and its pull requests; the 404 on the pull request list was retried until the job died."""
    data = harness.workflow_run(129, prs=())
    data["repository"]["full_name"] = data["workflow_run"]["repository"]["full_name"] = "octo-org/removed"
    harness.fake.fail_next("GET", ARTIFACTS, status=404, body={"message": "Not Found"})
    harness.fake.fail_next("GET", "/repos/{owner}/{repo}/pulls", status=404, body={"message": "Not Found"})
    await harness.dispatch("workflow_run", data)
    assert await run_store.get_run(harness.db, "octo-org/removed", 129) is not None


async def test_a_fork_runs_health_never_becomes_its_base_branchs_baseline(harness: Harness) -> None:
    """A fork PR from the fork's own main: its score was kept under this repository's "main", so the next pull
    request's health trend was measured against that fork PR instead of the base branch."""
    async with harness.db.transaction() as conn:
        await run_store.record_health_score(conn, repo=REPO, head_sha="b" * 40, branch="main", score=100,
                                            counts={}, now=1.0)
    health = json.dumps({"findings": [{"path": "app.py", "line": 1, "severity": "high", "message": "x"}]})
    harness.add_run(130, health=health.encode())
    data = harness.workflow_run(130, prs=())
    run = data["workflow_run"]
    run["head_branch"] = "main"
    run["head_repository"] = {**run["head_repository"], "id": 4242, "full_name": "contributor/octo-repo"}
    await harness.dispatch("workflow_run", data)
    assert "(▼ -10.0)" in harness.check_runs()[0]["output"]["summary"]  # still measured against main
    baseline = await run_store.latest_health_score(harness.db, REPO, "main")
    assert baseline is not None and baseline.score == 100
    fork = await run_store.latest_health_score(harness.db, REPO, "contributor:main")
    assert fork is not None and fork.score == 90


async def test_revalidating_after_the_report_expired_judges_the_results_read_before(harness: Harness) -> None:
    """Artifacts expire (a repository may keep them one day), and an issue edit revalidates every pull request
    linking it: the stored run's results were thrown away and the check turned from success to "No test report
    found", though the results read before the expiry still answer the new criteria."""
    health = json.dumps({"findings": [{"path": "app.py", "line": 1, "severity": "high", "message": "x"}]})
    harness.add_run(131, t2="passed", health=health.encode())
    await harness.dispatch("workflow_run", harness.workflow_run(131))
    assert harness.check_runs()[0]["conclusion"] == "success"
    artifact = harness.fake.state.artifacts[harness.fake.artifact_id(REPO, 131, REPORT_ARTIFACT)]
    artifact.json["expired"] = True
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    assert "Code health: **90.0**" in check["output"]["summary"]
    assert "expired" in check["output"]["summary"]  # and says where the results came from
    stored = await run_store.get_run(harness.db, REPO, 131)
    assert stored is not None and stored.results == {"T1": "passed", "T2": "passed"}


async def test_revalidating_while_a_rerun_is_in_progress_leaves_the_rerun_to_be_judged(harness: Harness) -> None:
    """GitHub's run is the latest attempt, which may still be running: judged then, it was recorded as that
    attempt, so the attempt's own completion was skipped as "already processed" and its verdict never shown."""
    harness.add_run(140, t2="failure")
    await harness.dispatch("workflow_run", harness.workflow_run(140))
    harness.fake.state.workflow_runs[(REPO, 140)].update(run_attempt=2, status="in_progress", conclusion=None)
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})  # an issue edit, say
    assert harness.check_runs()[0]["conclusion"] == "failure"  # the stored verdict is shown again
    harness.add_run(140, attempt=2, t2="passed")  # the re-run completes
    await harness.dispatch("workflow_run", harness.workflow_run(140, attempt=2))
    assert harness.check_runs()[0]["conclusion"] == "success"


async def test_revalidating_with_only_a_run_awaiting_approval_republishes_the_stored_state(harness: Harness) -> None:
    """GitHub lists a run awaiting approval as completed: picked for revalidation, it was judged as having no
    report (before, "no artifacts were found"; since runs awaiting approval are left alone, nothing at all)."""
    harness.fake.add_workflow_run(REPO, 141, head_sha=SHA, conclusion="action_required")
    writes = len(harness.fake.calls("PATCH", CHECK_RUN))
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    assert harness.fake.calls("GET", ARTIFACTS) == []
    assert len(harness.fake.calls("PATCH", CHECK_RUN)) > writes  # the manifest is shown again
    assert harness.check_runs()[0]["status"] == "in_progress"


async def test_a_queued_judging_of_a_pull_request_without_a_manifest_ends_at_once(harness: Harness) -> None:
    """The judging job runs after the pull request's manifest job: if there is still no manifest (a closed PR,
    one opened before the App was installed), waiting cannot help, and retrying only spends GitHub calls."""
    sha = "d" * 40
    harness.fake.add_pull(REPO, 8, title="Old", body="Closes #4", head_sha=sha)
    harness.fake.add_workflow_run(REPO, 142, head_sha=sha, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit()}})
    async with harness.db.transaction() as conn:
        await run_store.record_run(conn, repo=REPO, run_id=142, run_attempt=1, head_sha=sha, head_branch="old",
                                   conclusion="success", results={"T1": "passed"}, report_error=None, health=None,
                                   now=1.0)
    harness.attempt = 1
    await harness.dispatch(handler.JUDGE_STORED_RUN_EVENT, {"repo": REPO, "pr_number": 8})
    assert harness.fake.calls("GET", ARTIFACTS) == []


async def test_the_base_branchs_baseline_is_its_newest_commits_score_whatever_order_runs_finish(
        harness: Harness) -> None:
    """Two pushes to main, the later one's run judged first: the baseline was the score processed last, the older
    commit's, so pull requests' health trends were measured against an outdated main."""
    def health(findings: int) -> bytes:
        return json.dumps({"findings": [{"path": "a.py", "line": n, "severity": "high", "message": "x"}
                                        for n in range(findings)]}).encode()

    for run_id, sha, created, findings in ((150, "1" * 40, "2026-11-02T10:00:00Z", 0),
                                           (149, "2" * 40, "2026-11-01T10:00:00Z", 3)):
        harness.fake.add_workflow_run(REPO, run_id, head_sha=sha, artifacts={REPORT_ARTIFACT: {
            JUNIT_FILE: junit(), HEALTH_FILE: health(findings)}})
        data = harness.workflow_run(run_id, prs=())
        data["workflow_run"].update(head_sha=sha, head_branch="main", created_at=created)
        await harness.dispatch("workflow_run", data)  # the newer push's run first
    baseline = await run_store.latest_health_score(harness.db, REPO, "main")
    assert baseline is not None and baseline.head_sha == "1" * 40


async def test_a_run_of_a_renamed_repository_judges_its_pull_request_stored_under_the_old_name(
        harness: Harness) -> None:
    """No webhook told the App of the rename: the run, carrying the new name, found no pull request stored under
    it, waited out the manifest retries and queued a judging that ended at once; the check stayed in progress."""
    old = "octo-org/old-name"
    repo_id = harness.fake.state.repos[REPO]["id"]
    async with harness.db.transaction() as conn:  # what was stored before the rename, under the old name
        await installation_store.upsert_installation(conn, {"id": INSTALLATION, "account": {"login": "octo-org"}},
                                                     1.0)
        await installation_store.add_repositories(conn, INSTALLATION, [{"id": repo_id, "full_name": old}], 1.0)
        await checklist_store.rename_repository(conn, REPO, old)
        await pull_store.rename_repository(conn, REPO, old)
    harness.add_run(140, t2="passed")
    data = harness.workflow_run(140)
    data["repository"]["id"] = repo_id
    await harness.dispatch("workflow_run", data)
    [check] = harness.check_runs()
    assert (check["status"], check["conclusion"]) == ("completed", "success")
    assert await pull_store.get_pull(harness.db, old, 7) is None
    assert await statuses(harness) == {"T1": "passed", "T2": "passed"}
