"""The review pipeline end to end on the fake GitHub, run from scratch, and the clean run it must always end in.

Install, issue opened (checklist comment), pull request opened linking it (check run in progress, pull request
comment), workflow_run completed (artifact download, JUnit and code health, verdict). The real server takes signed
deliveries; its job runner, GitHub client and token cache talk HTTP to the fake. What is not real: one clock shared
by the fake, the client and the runner, moved forward only when nothing is in flight (so a retry 10 s or a
Retry-After 60 s away runs at once, yet never before a slow request it follows has landed on the fake), a short
client timeout and a fast poll. tests/test_fault_sweep.py replays this with one fault at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from quantumreview import app as app_module
from quantumreview import demo_fixtures as data
from quantumreview import keys
from quantumreview.github import GitHubApp
from quantumreview.jobs import JobRunner
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.signing import signed_delivery
from storage import checklists as checklist_store
from storage import jobs as job_store
from tests.conftest import WEBHOOK_SECRET
from tests.github_support import Clock

# Short enough to keep the sweep fast, long enough for a loaded machine's loopback answer.
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=3.0, sock_connect=1.0, sock_read=0.4)
DOWNLOAD_TIMEOUT = 0.6  # the artifact download's whole deadline (the blob host's timeout)
SETTLE_TIMEOUT = 20.0  # real seconds for the queue to drain
IN_FLIGHT_GRACE = 3.0  # real seconds a request the fake is still answering holds the clock back, at most
# Every GitHub request of the clean run: delivery -> (method, route template) -> how many. A change in the App's
# calls shows here first (test_the_clean_run_makes_these_calls_...): tests/test_fault_sweep.py faults each one.
STEP_CALLS: dict[str, dict[tuple[str, str], int]] = {
    "installation": {
        ("POST", "/app/installations/{installation_id}/access_tokens"): 1,
        ("GET", "/installation/repositories"): 1,
    },
    "issues": {
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"): 1,
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): 1,
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): 1,
    },
    "pull_request": {
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"): 1,
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"): 1,
        ("GET", "/repos/{owner}/{repo}/actions/workflows"): 1,
        ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"): 1,
        ("POST", "/repos/{owner}/{repo}/check-runs"): 1,
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): 1,
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): 1,
    },
    "workflow_run": {
        ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"): 1,
        ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"): 1,
        ("GET", "/_blobs/{key}"): 1,  # the artifact's blob host, reached by the redirect
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"): 1,
        ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}"): 1,
        ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"): 1,
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"): 2,  # the pull request's, the checklist
    },
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one run left: its GitHub calls, what GitHub shows, the stored checklist and every job."""

    calls: dict[str, dict[tuple[str, str], int]]  # delivery -> (method, route) -> requests made
    faults_left: int  # scripted faults no request met
    check_runs: tuple[tuple[Any, ...], ...]  # (head_sha, name, status, conclusion, title, summary, text, annotations)
    comments: dict[int, tuple[tuple[str, str], ...]]  # number -> (author, body) of every comment
    checklist: tuple[tuple[str, str], ...]  # (test id, status) of the issue's stored checklist
    notifications: tuple[tuple[str, str, str], ...]  # (repo, kind, title) of each one sent, sorted
    jobs: tuple[tuple[str, str, str | None], ...]  # (handler, status, last error) of every job


@dataclasses.dataclass
class Pipeline:
    """The fake GitHub, the real server on it, and the shared clock."""

    fake: FakeGitHub
    app: web.Application
    client: TestClient[Any, Any]
    clock: Clock
    notes: list[tuple[str, str, str]]  # what the handlers notified the repository's managers of
    before_step: Callable[[str], None] = lambda event: None  # scripts faults for the delivery's calls
    calls: dict[str, dict[tuple[str, str], int]] = dataclasses.field(default_factory=dict)

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        """POST a signed delivery as GitHub would, then let every job it queued (and their retries) finish."""
        self.before_step(event)
        seen = len(self.fake.requests)
        headers, body = signed_delivery(event, payload, WEBHOOK_SECRET)
        response = await self.client.post("/webhooks/github", data=body, headers=headers)
        assert response.status in (200, 202), await response.text()
        await response.release()
        await self.settle()
        self.calls[event] = dict(Counter((r.method, r.route or f"unmatched {r.path}")
                                         for r in self.fake.requests[seen:]))

    async def settle(self) -> None:
        """Wait until no job is running or queued; move the clock to a retry's time only when nothing is in
        flight, neither a job nor a request the fake is still answering (a slow one the client gave up on)."""
        db, runner = self.app[keys.db], self.app[keys.runner]
        answering: dict[int, float] = {}  # id of a request without its status yet -> when first seen so
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while True:
                jobs = await job_store.list_jobs(db)
                now = time.monotonic()
                for request in self.fake.requests:
                    if request.status == 0:
                        answering.setdefault(id(request), now)
                # Why a grace: a request whose client left is never given a status when writing its answer fails.
                busy = any(j.status == "running" for j in jobs) or any(
                    r.status == 0 and now - answering[id(r)] < IN_FLIGHT_GRACE for r in self.fake.requests)
                queued = [j.run_after for j in jobs if j.status == "queued"]
                if not busy and not queued:
                    return
                if not busy and min(queued) > self.clock.now:
                    self.clock.now = min(queued)
                    runner.wake()
                await asyncio.sleep(0.01)

    async def play(self) -> None:
        """The whole review: install, issue, pull request, finished CI run."""
        fake, repository = self.fake, None
        installation = fake.add_installation(data.INSTALLATION_ID, account=data.OWNER, repositories=[data.REPO])
        repository = fake.state.repos[data.REPO]
        await self.deliver("installation", data.installation_created(installation, [repository]))
        issue = fake.add_issue(data.REPO, data.ISSUE_NUMBER, title=data.ISSUE_TITLE, body=data.ISSUE_BODY)
        await self.deliver("issues", data.issue_event("opened", repository, issue))
        pull = fake.add_pull(data.REPO, data.PULL_NUMBER, title=data.PULL_TITLE, body=data.PULL_BODY,
                             head_sha=data.FIRST_SHA, head_ref="discount-codes",
                             files=data.pull_files(data.FIRST_TESTS))
        await self.deliver("pull_request", data.pull_request_event("opened", repository, pull))
        run = fake.add_workflow_run(
            data.REPO, data.FIRST_RUN_ID, head_sha=data.FIRST_SHA, conclusion="failure",
            pull_requests=[data.PULL_NUMBER],
            artifacts=data.report_artifacts(data.junit_report(data.FIRST_TESTS, data.FIRST_FAILURES),
                                            data.health_report(data.FIRST_FINDINGS)))
        await self.deliver("workflow_run", data.workflow_run_completed(repository, run))

    async def outcome(self) -> Outcome:
        """What the run left, in comparable form."""
        fake, db = self.fake, self.app[keys.db]
        check_runs = tuple(
            (r["head_sha"], r["name"], r["status"], r["conclusion"], r["output"].get("title"),
             r["output"].get("summary"), r["output"].get("text"),
             tuple(json.dumps(note, sort_keys=True) for note in fake.check_run_annotations.get(r["id"], [])))
            for r in fake.check_runs.get(data.REPO, []))
        comments = {number: tuple((c["user"]["login"], c["body"]) for c in fake.comments.get((data.REPO, number), []))
                    for number in (data.ISSUE_NUMBER, data.PULL_NUMBER)}
        checklist = await checklist_store.get_checklist(db, data.REPO, data.ISSUE_NUMBER)
        statuses: dict[str, str] = {}
        if checklist is not None:
            live, _ = await checklist_store.get_items(db, checklist.id)
            statuses = {item.tid: item.status for item in live}
        jobs = tuple((j.handler, j.status, j.last_error) for j in await job_store.list_jobs(db))
        faults_left = sum(len(queue) for queue in fake.state.faults.values())
        return Outcome(self.calls, faults_left, check_runs, comments, tuple(sorted(statuses.items())),
                       tuple(sorted(self.notes)), jobs)


async def no_periodic_work(app: web.Application) -> AsyncIterator[None]:
    """Stands in for the redelivery sweep and the pruning: their calls are not the pipeline's (own tests)."""
    yield


@asynccontextmanager
async def pipeline(tmp_path: Path, private_key: str, aiohttp_client: Callable[..., Any],
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pipeline]:
    """A fresh fake GitHub and a fresh server (empty database) with the test clock, timeout and poll."""
    clock = Clock(time.time())  # near the wall clock: the artifact's signed blob URL and the zip dates are real

    async def clock_sleep(seconds: float) -> None:  # the client's own backoff sleeps: time passes, at once
        clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    def build_github(session: aiohttp.ClientSession, settings: Settings, credentials: Any) -> GitHubApp:
        return GitHubApp(session, app_id=credentials.app_id, private_key=credentials.private_key,
                         api_url=settings.github_api_url, web_url=settings.github_url, clock=clock, sleep=clock_sleep,
                         timeout=CLIENT_TIMEOUT, download_timeout=DOWNLOAD_TIMEOUT, write_interval=0.0,
                         artifact_hosts=settings.artifact_hosts)

    monkeypatch.setattr(app_module, "build_github", build_github)
    monkeypatch.setattr(app_module, "JobRunner", functools.partial(JobRunner, poll_interval=0.02))
    monkeypatch.setattr(app_module, "sweeper_ctx", no_periodic_work)
    monkeypatch.setattr(app_module, "retention_ctx", no_periodic_work)
    async with FakeGitHub(app_id=data.APP_ID, private_key_pem=private_key, clock=clock) as fake:
        settings = Settings(app_id=data.APP_ID, private_key=private_key, webhook_secret=WEBHOOK_SECRET,
                            database_path=tmp_path / "quantumreview.db", github_api_url=fake.api_url,
                            github_url=fake.url, job_timeout=10.0, shutdown_grace=0.5, github_write_interval=0.0)
        notes: list[tuple[str, str, str]] = []

        async def notify(repo: str, kind: str, title: str, **_: Any) -> int:
            notes.append((repo, kind, title))
            return 1

        app = app_module.create_app(settings, now=clock, notify=notify)
        client = await aiohttp_client(app)
        try:
            yield Pipeline(fake, app, client, clock, notes)
        finally:
            await client.close()
        assert fake.contract_violations == []


async def run_pipeline(tmp_path: Path, private_key: str, aiohttp_client: Callable[..., Any],
                       monkeypatch: pytest.MonkeyPatch,
                       fault: Callable[[FakeGitHub, str], None] | None = None) -> Outcome:
    """Play the whole review from scratch and return its outcome; `fault(fake, event)` is called before each
    delivery, to script faults for its calls."""
    async with pipeline(tmp_path, private_key, aiohttp_client, monkeypatch) as run:
        if fault is not None:
            run.before_step = functools.partial(fault, run.fake)
        await run.play()
        return await run.outcome()


async def test_the_clean_run_makes_these_calls_and_ends_in_one_verdict(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = await run_pipeline(tmp_path, rsa_private_key, aiohttp_client, monkeypatch)
    assert outcome.calls == STEP_CALLS
    [(sha, _, status, conclusion, title, summary, _, annotations)] = outcome.check_runs
    assert (sha, status, conclusion) == (data.FIRST_SHA, "completed", "failure")
    assert len(annotations) == 4  # the failing test, and the three findings on lines the pull request added
    assert "1 failed, 1 missing of 4 criteria" in f"{title} {summary}"
    assert [len(outcome.comments[n]) for n in (data.ISSUE_NUMBER, data.PULL_NUMBER)] == [1, 1]
    assert all(author.endswith("[bot]") for thread in outcome.comments.values() for author, _ in thread)
    assert dict(outcome.checklist) == {"T1": "passed", "T2": "failed", "T3": "missing", "T4": "passed"}
    assert sorted(kind for _, kind, _ in outcome.notifications) == ["checklist", "installed", "manifest", "verdict"]
    assert {status for _, status, _ in outcome.jobs} == {"done"}

