"""A job killed between storing a change and queueing the revalidation it calls for (SIGKILL, a machine restart: the
job runs again) still gets the revalidation queued: the rerun finds nothing changed, but the change's transaction
recorded the follow-up as owed (storage.jobs.owe)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from gidgethub import sansio

from quantumreview import pull_requests
from quantumreview.analysis.manifest import CriterionRef
from quantumreview.analysis.verdict import compute_verdict
from quantumreview.testing.context import Recorder
from quantumreview.testing.fake import FakeGitHub
from storage import pulls as pull_store
from storage.db import Database
from tests.test_handlers_manifests import NUMBER, REPO, SHA, Env, add_pull, env, payload
from tests.test_notifications_once import BODY, CHECKLIST_REPO, Killed, build

__all__ = ["env"]  # the fixture, shared with the manifest handler tests


class DyingRecorder(Recorder):
    """A Recorder whose first enqueue dies before writing anything (the process was killed there)."""

    died: bool = False

    async def enqueue(self, event: str, data: Mapping[str, Any], **kwargs: Any) -> list[int]:
        if not self.died:
            self.died = True
            raise Killed
        return await super().enqueue(event, data, **kwargs)


async def test_a_checklist_change_stored_before_a_kill_still_revalidates_the_linking_pull(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    fake_github.add_installation(7, account="Codertocat", repositories=[CHECKLIST_REPO])
    issue = fake_github.add_issue(CHECKLIST_REPO, 1, title="Sign-up", body=BODY)
    recorder = DyingRecorder()
    await build(handler_db, github_app, recorder, "opened", BODY)  # no linking pull yet: nothing to queue
    async with handler_db.transaction() as conn:
        await pull_store.upsert_pull(
            conn, repo=CHECKLIST_REPO, number=5, installation_id=7, title="Sign-up", state="open", merged=False,
            head_sha="a" * 40, head_ref="signup", base_ref="main",
            linked=[{"repo": CHECKLIST_REPO, "number": 1, "source": "body"}], now=1.0)
    issue["body"] = BODY + "- [ ] User can log out\n"
    with pytest.raises(Killed):  # the new criteria are stored; the revalidation is not queued
        await build(handler_db, github_app, recorder, "edited", issue["body"])
    assert recorder.enqueued == []
    await build(handler_db, github_app, recorder, "edited", issue["body"], attempt=2)
    await build(handler_db, github_app, recorder, "edited", issue["body"], attempt=3)  # owed no more
    assert [(e["event"], e["data"]) for e in recorder.enqueued] == [
        (pull_requests.REVALIDATE_EVENT, {"repo": CHECKLIST_REPO, "pr_number": 5})]


async def test_a_relinked_manifest_stored_before_a_kill_still_revalidates_its_verdict(env: Env) -> None:
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    verdict = compute_verdict([CriterionRef(REPO, 7, "T1", "User can log in")], {"T1": "passed"})
    async with env.db.transaction() as conn:
        await pull_store.save_verdict(conn, repo=REPO, pr_number=NUMBER, head_sha=SHA,
                                      verdict=dataclasses.asdict(verdict), conclusion="success", run_id=1,
                                      run_attempt=1, now=2.0)
    env.fake.state.pulls[(REPO, NUMBER)]["body"] = "Closes #7, closes #9"
    edited = payload("opened.2", action="edited", changes={"body": {"from": "x"}})
    event = sansio.Event(edited, event="pull_request", delivery_id="d-1")
    ctx = env.context(event)

    async def killed(*args: Any, **kwargs: Any) -> list[int]:
        raise Killed

    ctx.enqueue = killed
    with pytest.raises(Killed):  # the relinked manifest is stored; the revalidation is not queued
        await pull_requests.refresh_manifest(ctx, REPO, env.fake.state.pulls[(REPO, NUMBER)])
    assert env.enqueued == []
    for _ in range(2):  # the rerun, and another edit: owed once
        await env.deliver("pull_request", edited)
    assert env.enqueued == [(pull_requests.REVALIDATE_EVENT, {"repo": REPO, "pr_number": NUMBER}, f"{REPO}#{NUMBER}")]
