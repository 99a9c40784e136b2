"""Each fact is notified once: a job run again (after a kill, a retry) neither loses its notification nor sends it
twice, a verdict judged again unchanged tells nobody, and a new fact (a new verdict, new criteria) is still told."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gidgethub import sansio

from handlers import checklists as checklist_handler
from handlers import ci_results as handler
from quantumreview.testing.context import Recorder, make_context
from quantumreview.testing.fake import FakeGitHub
from storage import notifications, users
from storage import runs as run_store
from storage.db import Database
from storage.users import StoredTokens, User, UserRepository
from tests.test_handlers_ci_results import REPO, Harness, harness

__all__ = ["harness"]  # the fixture, shared with the CI-results handler tests

Notify = Callable[..., Awaitable[int]]


class Killed(Exception):
    """The process died here (the job is run again from the start)."""


async def dispatch(h: Harness, name: str, data: dict[str, Any], notify: Notify | None = None) -> None:
    """Run the CI handler's callbacks for the event as the job runner would, with `notify` if given."""
    event = sansio.Event(data, event=name, delivery_id="d")
    for callback in handler.router.fetch(event):
        ctx = h.context(event)
        if notify is not None:
            ctx.notify = notify
        await callback(event, ctx)


def verdicts(h: Harness) -> list[str]:
    return [title for _, kind, title in h.notes if kind == "verdict"]


def dying_once(kind: str, notify: Notify, *, after: bool) -> Notify:
    """`notify` that dies at the first notification of `kind`: before it is written, or just after."""
    died: list[bool] = []

    async def call(repo: str, kind_: str, title: str, **kwargs: Any) -> int:
        at = kind_ == kind and not died
        if at:
            died.append(True)
            if not after:
                raise Killed
        written = await notify(repo, kind_, title, **kwargs)
        if at:
            raise Killed
        return written

    return call


async def test_judging_the_same_run_again_with_the_same_verdict_notifies_nobody(harness: Harness) -> None:
    """The stored verdict (lists, read from JSON) was compared with the new record (tuples): they always differed,
    so every revalidation or rerun of a run told the maintainers the same verdict again."""
    harness.add_run(120)
    await harness.dispatch("workflow_run", harness.workflow_run(120))
    for _ in range(2):
        await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    assert len(harness.fake.calls("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")) >= 3  # judged 3 times
    assert verdicts(harness) == [f"{REPO}#7: 1 passed, 1 failed, 0 skipped, 0 missing (failure)"]


async def test_a_changed_verdict_is_notified_once_even_when_it_was_the_verdict_before(harness: Harness) -> None:
    harness.add_run(121, attempt=1, t2="failure")
    await harness.dispatch("workflow_run", harness.workflow_run(121, attempt=1))
    harness.add_run(121, attempt=2, t2="passed")
    await harness.dispatch("workflow_run", harness.workflow_run(121, attempt=2))
    await harness.dispatch(handler.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 7})
    harness.add_run(121, attempt=3, t2="failure")  # failing again (a flaky test): told again
    await harness.dispatch("workflow_run", harness.workflow_run(121, attempt=3))
    assert [title.rsplit(" ", 1)[-1] for title in verdicts(harness)] == ["(failure)", "(success)", "(failure)"]


async def test_a_verdict_a_killed_run_stored_but_never_sent_is_sent_once_by_the_rerun(harness: Harness) -> None:
    """Killed between storing the verdict and notifying: the rerun finds the verdict unchanged, and still tells it."""
    harness.add_run(122)
    payload = harness.workflow_run(122)

    async def note(repo: str, kind: str, title: str, **_: Any) -> int:
        harness.notes.append((repo, kind, title))
        return 1

    with pytest.raises(Killed):
        await dispatch(harness, "workflow_run", payload, dying_once("verdict", note, after=False))
    assert verdicts(harness) == []
    await harness.dispatch("workflow_run", payload)  # the job, run again
    await harness.dispatch("workflow_run", payload)  # and a redelivery
    assert len(verdicts(harness)) == 1
    assert await notifications.staged(harness.db, f"{REPO}#7") == []


async def test_a_verdict_sent_just_before_a_kill_is_written_once_per_manager(harness: Harness) -> None:
    await users.save_user(harness.db, User(id=1, login="mona"), StoredTokens(token_enc=b"x"), now=1.0)
    await users.set_user_repositories(harness.db, 1, [UserRepository(REPO, 11, "admin")], now=1.0)

    async def store(repo: str, kind: str, title: str, **kwargs: Any) -> int:
        return await notifications.notify_repo_managers(harness.db, repo, kind, title, **kwargs)

    harness.add_run(123)
    payload = harness.workflow_run(123)
    with pytest.raises(Killed):
        await dispatch(harness, "workflow_run", payload, dying_once("verdict", store, after=True))
    await dispatch(harness, "workflow_run", payload, store)
    listed, _ = await notifications.list_notifications(harness.db, 1, unread_only=False, page=1, per_page=10)
    assert [n.kind for n in listed] == ["verdict"]


async def test_a_health_drop_a_killed_run_recorded_but_never_sent_is_sent_by_the_rerun(harness: Harness) -> None:
    """Killed after the run and its score were recorded: the rerun skips the run as processed, and still tells."""
    async with harness.db.transaction() as conn:
        await run_store.record_health_score(conn, repo=REPO, head_sha="b" * 40, branch="main", score=100,
                                            counts={}, now=1.0)
    health = json.dumps({"findings": [{"path": "app.py", "line": 1, "severity": "high", "message": "x"}]})
    harness.add_run(124, health=health.encode())
    payload = harness.workflow_run(124)

    async def note(repo: str, kind: str, title: str, **_: Any) -> int:
        harness.notes.append((repo, kind, title))
        return 1

    with pytest.raises(Killed):
        await dispatch(harness, "workflow_run", payload, dying_once("health_drop", note, after=False))
    await harness.dispatch("workflow_run", payload)
    await harness.dispatch("workflow_run", payload)
    assert [kind for _, kind, _ in harness.notes].count("health_drop") == 1


CHECKLIST_REPO = "Codertocat/Hello-World"
BODY = "## Acceptance criteria\n- [ ] User can sign up\n- [ ] User can log in\n"


def issue_event(action: str, body: str) -> dict[str, Any]:
    return {"action": action, "installation": {"id": 7}, "changes": {"body": {"from": ""}},
            "repository": {"id": 1, "full_name": CHECKLIST_REPO},
            "issue": {"number": 1, "title": "Sign-up", "body": body, "state": "open"}}


async def build(db: Database, github: Any, recorder: Recorder, action: str, body: str, *, attempt: int = 1,
                notify: Notify | None = None) -> None:
    ctx, _ = make_context("issues", issue_event(action, body), db=db, github=github, recorder=recorder,
                          attempt=attempt)
    if notify is not None:
        ctx.notify = notify
    await checklist_handler.build_checklist(ctx.event, ctx)


async def test_a_checklist_change_a_killed_run_stored_is_told_by_the_rerun_and_a_new_one_too(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    fake_github.add_installation(7, account="Codertocat", repositories=[CHECKLIST_REPO])
    issue = fake_github.add_issue(CHECKLIST_REPO, 1, title="Sign-up", body=BODY)
    recorder = Recorder()
    with pytest.raises(Killed):
        await build(handler_db, github_app, recorder, "opened", BODY,
                    notify=dying_once("checklist", recorder.notify, after=False))
    assert recorder.notifications == []
    await build(handler_db, github_app, recorder, "opened", BODY, attempt=2)  # no change left to find
    await build(handler_db, github_app, recorder, "opened", BODY, attempt=3)
    assert [n["title"] for n in recorder.notifications] == [f"Checklist created for {CHECKLIST_REPO}#1 (2 criteria)"]
    issue["body"] = BODY + "- [ ] User can log out\n"  # GitHub's copy is the one read
    for attempt in (1, 2):  # the edit's job, and its rerun
        await build(handler_db, github_app, recorder, "edited", issue["body"], attempt=attempt)
    assert [n["title"] for n in recorder.notifications][1:] == [
        f"Checklist updated for {CHECKLIST_REPO}#1 (3 criteria)"]
