"""Checklist handlers against the fake GitHub: one comment per issue, stable IDs, silence without criteria."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from handlers import checklists as handler
from quantumreview.analysis.checklist_comment import MARKER
from quantumreview.checklists import REGENERATE_EVENT
from quantumreview.pull_requests import REVALIDATE_EVENT, linked_criteria
from quantumreview.testing.context import make_context
from quantumreview.testing.fake import FakeGitHub
from storage import checklists as store
from storage import pulls as pull_store
from storage.db import Database

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
REPO = "Codertocat/Hello-World"
BODY = "Intro\n\n## Acceptance criteria\n- [ ] User can sign up\n- [ ] User can log in\n"


def payload(name: str, **issue: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    data["installation"] = {"id": 7}
    data["issue"].update(issue)
    return data


@pytest.fixture
def github(fake_github: FakeGitHub, github_app: Any) -> Any:
    fake_github.add_installation(7, account="Codertocat", repositories=[REPO])
    return github_app


async def run(event: str, data: dict[str, Any], db: Database, github: Any) -> Any:
    ctx, recorder = make_context(event, data, db=db, github=github)
    for fn in handler.router.fetch(ctx.event):  # each as its own job, as the runner does
        await fn(ctx.event, ctx)
    return recorder


def bot_comments(fake: FakeGitHub, number: int = 1) -> list[dict[str, Any]]:
    return [c for c in fake.comments.get((REPO, number), []) if MARKER in (c.get("body") or "")]


async def test_opened_issue_gets_one_checklist_comment(fake_github: FakeGitHub, github: Any,
                                                       handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, title="Sign-up", body=BODY)
    recorder = await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    comments = bot_comments(fake_github)
    assert len(comments) == 1
    assert "| `T1` |" in comments[0]["body"] and "User can sign up" in comments[0]["body"]
    assert "T2" in comments[0]["body"] and "autoqa:T1" in comments[0]["body"]
    assert recorder.notifications[0]["kind"] == "checklist"
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and checklist.comment_id == comments[0]["id"]


async def test_redelivery_and_retry_never_add_a_second_comment(fake_github: FakeGitHub, github: Any,
                                                               handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    data = payload("issues.opened.1", number=1, body=BODY)
    for _ in range(3):
        await run("issues", data, handler_db, github)
    assert len(bot_comments(fake_github)) == 1


async def test_crash_after_posting_finds_the_comment_by_marker(fake_github: FakeGitHub, github: Any,
                                                               handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    # Simulate a crash between POST and storing the id: forget it.
    await handler_db.execute("UPDATE checklists SET comment_id = NULL")
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    assert len(bot_comments(fake_github)) == 1


async def test_a_persons_comment_holding_the_marker_is_never_taken_for_the_bots(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """Once someone deleted the bot's comment, the next update looked for it by marker and overwrote the first
    comment holding it: a person's, who had pasted (quoted) the checklist's Markdown."""
    fake_github.add_issue(REPO, 1, body=BODY)
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    (ours,) = bot_comments(fake_github)
    pasted = fake_github.add_comment(REPO, 1, ours["body"] + "\n\nWhy is T2 still open?", login="alice")
    quoted = fake_github.add_comment(REPO, 1, "> " + ours["body"].replace("\n", "\n> "), login="bob")
    fake_github.comments[(REPO, 1)].remove(ours)  # deleted by a person
    fake_github.add_issue(REPO, 1, body=BODY + "- [ ] New: password reset\n")
    edited = payload("issues.edited.1", number=1, body=BODY)
    edited["changes"] = {"body": {"from": BODY}}
    await run("issues", edited, handler_db, github)
    assert pasted["body"].endswith("Why is T2 still open?") and "password reset" not in pasted["body"]
    assert "password reset" not in quoted["body"]
    (recreated,) = [c for c in bot_comments(fake_github) if c["user"]["type"] == "Bot"]
    assert "password reset" in recreated["body"]
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and checklist.comment_id == recreated["id"]


async def test_edit_keeps_ids_and_updates_the_same_comment(fake_github: FakeGitHub, github: Any,
                                                           handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    edited = "## Acceptance criteria\n- [ ] A user can log in\n- [ ] New: password reset\n- [ ] User can sign up\n"
    fake_github.add_issue(REPO, 1, body=edited)
    data = payload("issues.edited.1", number=1, body=edited)
    data["changes"] = {"body": {"from": BODY}}
    await run("issues", data, handler_db, github)
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None
    live, retired = await store.get_items(handler_db, checklist.id)
    assert {i.text: i.tid for i in live} == {"A user can log in": "T2", "New: password reset": "T3",
                                              "User can sign up": "T1"}
    assert retired == {}
    comments = bot_comments(fake_github)
    assert len(comments) == 1 and "password reset" in comments[0]["body"]


async def test_edit_of_title_only_changes_nothing(fake_github: FakeGitHub, github: Any,
                                                  handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    data = payload("issues.edited.1", number=1, body=BODY)
    data["changes"] = {"title": {"from": "old"}}
    await run("issues", data, handler_db, github)
    assert bot_comments(fake_github) == []
    assert await store.get_checklist(handler_db, REPO, 1) is None


async def test_issue_without_criteria_gets_no_comment(fake_github: FakeGitHub, github: Any,
                                                      handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body="Just a bug report, no criteria.")
    recorder = await run("issues", payload("issues.opened.1", number=1, body="x"), handler_db, github)
    assert fake_github.comments.get((REPO, 1), []) == []
    assert recorder.notifications == []


async def test_criteria_removed_later_keep_the_comment_and_retire_ids(fake_github: FakeGitHub, github: Any,
                                                                      handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    fake_github.add_issue(REPO, 1, body="No more criteria")
    data = payload("issues.edited.1", number=1)
    data["changes"] = {"body": {"from": BODY}}
    await run("issues", data, handler_db, github)
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None
    live, retired = await store.get_items(handler_db, checklist.id)
    assert live == [] and set(retired) == {"T1", "T2"}
    assert "No acceptance criteria" in bot_comments(fake_github)[0]["body"]


async def test_payload_body_is_not_trusted_over_the_current_issue(fake_github: FakeGitHub, github: Any,
                                                                  handler_db: Database) -> None:
    # A late retry of an old edit must not roll the checklist back: the handler reads the issue as it is now.
    fake_github.add_issue(REPO, 1, body=BODY)
    stale = payload("issues.edited.1", number=1, body="## Acceptance criteria\n- [ ] stale item\n")
    stale["changes"] = {"body": {"from": ""}}
    await run("issues", stale, handler_db, github)
    body = bot_comments(fake_github)[0]["body"]
    assert "stale item" not in body and "User can sign up" in body


async def test_regenerate_job_rebuilds_from_github(fake_github: FakeGitHub, github: Any,
                                                   handler_db: Database) -> None:
    fake_github.add_issue(REPO, 5, body=BODY)
    data = {"repo": REPO, "issue_number": 5, "installation": {"id": 7}}
    await run(REGENERATE_EVENT, data, handler_db, github)
    assert len(bot_comments(fake_github, 5)) == 1


async def test_a_regenerate_asked_for_a_pull_request_number_builds_nothing(fake_github: FakeGitHub, github: Any,
                                                                            handler_db: Database) -> None:
    """GitHub's issue endpoint answers a pull request's number too: the rebuild posted a checklist of the pull
    request's own task list ("- [ ] tests added") on the pull request."""
    fake_github.add_pull(REPO, 6, body="## Checklist\n- [ ] Tests added\n- [ ] Docs updated\n", head_sha="a" * 40)
    await run(REGENERATE_EVENT, {"repo": REPO, "issue_number": 6, "installation": {"id": 7}}, handler_db, github)
    assert fake_github.comments.get((REPO, 6), []) == []
    assert await store.get_checklist(handler_db, REPO, 6) is None


async def test_deleted_issue_retires_its_checklist(fake_github: FakeGitHub, github: Any,
                                                   handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    await run("issues", payload("issues.deleted.1", number=1), handler_db, github)
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and checklist.retired


async def test_two_edits_close_together_in_order_leave_one_comment(fake_github: FakeGitHub, github: Any,
                                                                   handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    first = payload("issues.opened.1", number=1, body=BODY)
    second = copy.deepcopy(first)
    # Jobs of one issue share an ordering key and run one after the other; run them back to back.
    await asyncio.gather(run("issues", first, handler_db, github))
    await run("issues", second, handler_db, github)
    assert len(bot_comments(fake_github)) == 1


async def test_5000_items_are_capped_and_said_so(fake_github: FakeGitHub, github: Any,
                                                 handler_db: Database) -> None:
    body = "## Acceptance criteria\n" + "".join(f"- [ ] item {i}\n" for i in range(5000))
    fake_github.add_issue(REPO, 1, body=body)
    await run("issues", payload("issues.opened.1", number=1, body=body), handler_db, github)
    comment = bot_comments(fake_github)[0]["body"]
    assert "5000" in comment or "5,000" in comment
    assert len(comment) <= 65536


@pytest.mark.parametrize(("reply", "says"), [
    ({"body": '{"number": 1, "body": "## Acceptance crit'}, "not JSON"),  # cut off
    ({"headers": {"Content-Type": "application/json"}}, "no JSON body"),  # empty: once read as "issue gone" (GH-17)
], ids=["cut-off", "empty"])
async def test_garbage_from_github_is_retried_later_not_turned_into_a_checklist(
        fake_github: FakeGitHub, github: Any, handler_db: Database, reply: dict[str, Any], says: str) -> None:
    """RELIABILITY GH-17: a 200 whose body is cut off or empty stops the job (RetryLater); its retry does the work
    once. An empty one used to read as "issue gone", so the job ended done with nothing stored."""
    from quantumreview.errors import RetryLater

    fake_github.add_issue(REPO, 1, body=BODY)
    fake_github.fail_next("GET", "/repos/{owner}/{repo}/issues/{issue_number}", status=200, **reply)
    data = payload("issues.opened.1", number=1, body=BODY)
    with pytest.raises(RetryLater, match=says):
        await run("issues", data, handler_db, github)
    assert bot_comments(fake_github) == [] and await store.get_checklist(handler_db, REPO, 1) is None
    await run("issues", data, handler_db, github)
    assert len(bot_comments(fake_github)) == 1


async def store_pull(db: Database, number: int, *, state: str = "open", linked_issue: int = 1,
                     repo: str = REPO, installation_id: int = 7) -> None:
    async with db.transaction() as conn:
        await pull_store.upsert_pull(conn, repo=repo, number=number, installation_id=installation_id, title="t",
                                     state=state,
                                     merged=False, head_sha="abc", head_ref="b", base_ref="main",
                                     linked=[{"repo": REPO, "number": linked_issue, "source": "closes"}], now=1.0)


async def test_a_checklist_that_changes_queues_a_revalidation_of_each_open_pull_linking_it(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """The pull requests' jobs may have run first (another ordering key): their check said the issue had no
    checklist, and nothing judged them again once it had one."""
    await store_pull(handler_db, 10)
    await store_pull(handler_db, 11, state="closed")
    await store_pull(handler_db, 12, linked_issue=2)
    await store_pull(handler_db, 5, repo="other-org/app", installation_id=8)  # links REPO#1 from another org
    fake_github.add_issue(REPO, 1, body=BODY)
    recorder = await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    assert [(job["event"], job["data"], job["ordering_key"], job["installation_id"]) for job in recorder.enqueued] == [
        (REVALIDATE_EVENT, {"repo": REPO, "pr_number": 10}, f"{REPO}#10", 7),
        (REVALIDATE_EVENT, {"repo": "other-org/app", "pr_number": 5}, "other-org/app#5", 8)]
    fake_github.add_issue(REPO, 1, body=BODY + "\n")  # edited, same criteria: nothing to judge again
    edited = payload("issues.opened.1", number=1, body=BODY + "\n")
    recorder = await run("issues", {**edited, "action": "edited", "changes": {"body": {"from": BODY}}}, handler_db,
                         github)
    assert recorder.enqueued == []


async def test_a_comment_github_failed_still_leaves_the_revalidations_and_the_notice_to_its_retry(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """The checklist was stored before the comment went out, so the retry after GitHub's 502 saw no change: the
    pull request linking the issue was never judged again and nobody was told the checklist existed."""
    from quantumreview.errors import RetryLater

    await store_pull(handler_db, 10)
    fake_github.add_issue(REPO, 1, body=BODY)
    fake_github.fail_next("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", status=502)
    data = payload("issues.opened.1", number=1, body=BODY)
    ctx, first = make_context("issues", data, db=handler_db, github=github)
    with pytest.raises(RetryLater, match="answered 502"):
        await handler.build_checklist(ctx.event, ctx)
    ctx, retry = make_context("issues", data, db=handler_db, github=github, attempt=2)
    await handler.build_checklist(ctx.event, ctx)
    assert len(bot_comments(fake_github)) == 1
    enqueued = [job["data"] for job in first.enqueued + retry.enqueued]
    assert enqueued == [{"repo": REPO, "pr_number": 10}]
    assert [n["title"] for n in first.notifications + retry.notifications] == [
        f"Checklist created for {REPO}#1 (2 criteria)"]


async def test_closing_or_retitling_an_issue_shows_on_the_dashboard(fake_github: FakeGitHub, github: Any,
                                                                   handler_db: Database) -> None:
    """Only opened/edited(body)/reopened were followed: a closed issue stayed 'open' on the dashboard's default
    list (and never under 'closed'), and a retitled one kept its old title."""
    fake_github.add_issue(REPO, 1, title="Sign-up", body=BODY)
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    fake_github.add_issue(REPO, 1, title="Sign-up flow", body=BODY, state="closed")
    recorder = await run("issues", {**payload("issues.opened.1", number=1, body=BODY), "action": "closed"},
                         handler_db, github)
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and (checklist.state, checklist.title) == ("closed", "Sign-up flow")
    assert recorder.notifications == [] and recorder.enqueued == []
    fake_github.add_issue(REPO, 1, title="Sign-up, v2", body=BODY, state="closed")
    retitled = payload("issues.edited.1", number=1, body=BODY)
    retitled["changes"] = {"title": {"from": "Sign-up flow"}}
    await run("issues", retitled, handler_db, github)
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and (checklist.state, checklist.title) == ("closed", "Sign-up, v2")
    assert len(bot_comments(fake_github)) == 1


async def test_closing_an_issue_without_a_checklist_asks_github_nothing(fake_github: FakeGitHub, github: Any,
                                                                       handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body="no criteria", state="closed")
    await run("issues", {**payload("issues.opened.1", number=1, body="x"), "action": "closed"}, handler_db, github)
    assert await store.get_checklist(handler_db, REPO, 1) is None
    assert fake_github.calls("GET", "/repos/{owner}/{repo}/issues/{issue_number}") == []


async def test_a_pull_stored_under_a_since_deleted_installation_is_revalidated_under_the_live_one(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """After an uninstall and reinstall (GitHub gives the new installation a new id), a criteria edit queued the
    linking pull's revalidation under the deleted installation's id, so the runner cancelled it ('installation
    deleted') and the pull's check kept judging the old criteria."""
    from storage import installations as installation_store

    async with handler_db.transaction() as conn:
        await installation_store.mark_deleted(conn, 6, 1.0, account_login="Codertocat")
        await installation_store.upsert_installation(conn, {"id": 7, "account": {"login": "Codertocat"}}, 2.0)
        await installation_store.add_repositories(conn, 7, [{"id": 99, "full_name": REPO}], 2.0)
    await store_pull(handler_db, 10, installation_id=6)
    await store_pull(handler_db, 5, repo="other-org/app", installation_id=8)  # no live installation known: kept
    fake_github.add_issue(REPO, 1, body=BODY)
    recorder = await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    assert [(job["data"]["pr_number"], job["installation_id"]) for job in recorder.enqueued] == [(10, 7), (5, 8)]


OTHER = "Codertocat/Other"
THREE = "## Acceptance criteria\n- [ ] Sign up\n- [ ] Log in\n- [ ] Reset a password\n"
TWO = "## Acceptance criteria\n- [ ] Log in\n- [ ] Reset a password\n"


async def transferred_checklist(fake: FakeGitHub, db: Database, github: Any, *, opened_first: bool) -> list[str]:
    """REPO#1 whose T1 was removed (T2, T3 live; T3 passed), transferred to OTHER#7; the live items there."""
    fake.add_issue(REPO, 1, body=THREE)
    await run("issues", payload("issues.opened.1", number=1, body=THREE), db, github)
    fake.add_issue(REPO, 1, body=TWO)
    await run("issues", {**payload("issues.edited.1", number=1, body=TWO), "changes": {"body": {"from": THREE}}},
              db, github)
    checklist = await store.get_checklist(db, REPO, 1)
    assert checklist is not None
    async with db.transaction() as conn:
        await store.set_statuses(conn, checklist.id, {"T3": "passed"}, 1.0)
    fake.add_issue(OTHER, 7, body=TWO)
    opened = payload("issues.opened.1", number=7, body=TWO)
    opened["repository"] = {**opened["repository"], "full_name": OTHER, "name": "Other"}
    moved = {**payload("issues.deleted.1", number=1), "action": "transferred",
             "changes": {"new_issue": {**opened["issue"]}, "new_repository": opened["repository"]}}
    steps = [opened, moved] if opened_first else [moved, opened]
    enqueued = []
    for data in steps:
        enqueued += (await run("issues", data, db, github)).enqueued
    for job in enqueued:
        if job["event"] == REGENERATE_EVENT:
            await run(REGENERATE_EVENT, {**job["data"], "installation": {"id": job["installation_id"]}}, db, github)
    moved_checklist = await store.get_checklist(db, OTHER, 7)
    assert moved_checklist is not None and not moved_checklist.retired
    live, retired = await store.get_items(db, moved_checklist.id)
    return [f"{i.tid} {i.text} {i.status}" for i in live] + [f"{tid} retired" for tid in sorted(retired)]


@pytest.mark.parametrize("opened_first", [False, True], ids=["transfer-first", "opened-first"])
async def test_a_transferred_issue_keeps_its_test_ids(fake_github: FakeGitHub, github_app: Any,
                                                      handler_db: Database, opened_first: bool) -> None:
    """The checklist was retired in the old repository and the new one's `opened` built a fresh one from T1, so
    'Log in', tested as T2, became T1 and T2 went to 'Reset a password' (tests tagged T3 matched nothing), and
    the statuses were lost. The checklist now moves with the issue, whichever job runs first."""
    fake_github.add_installation(7, account="Codertocat", repositories=[REPO, OTHER])
    lines = await transferred_checklist(fake_github, handler_db, github_app, opened_first=opened_first)
    assert lines == ["T2 Log in pending", "T3 Reset a password passed", "T1 retired"]
    left = await store.get_checklist(handler_db, REPO, 1)
    assert left is not None and left.retired and await store.get_items(handler_db, left.id) == ([], {})
    ctx, _ = make_context("pull_request", {"installation": {"id": 7}}, db=handler_db)
    _criteria, problems = await linked_criteria(ctx, REPO, [{"repo": REPO, "number": 1}])
    assert problems == [f"{REPO}#1: the issue was deleted or transferred"]
    (comment,) = [c for c in fake_github.comments.get((OTHER, 7), []) if MARKER in (c.get("body") or "")]
    assert "`T3`" in comment["body"] and "`T1`" not in comment["body"]


async def test_a_late_edit_of_an_issue_since_transferred_builds_nothing_where_it_was(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """GitHub redirects a moved issue's old address to where it went, so a late `edited` for the old repository
    (a redelivery or a retry) read the moved issue and built a second checklist there from T1 (shown on the
    dashboard beside the moved one) under the moved issue's new number: on an unrelated issue of that number."""
    fake_github.add_issue(REPO, 7, body="An unrelated issue")
    issue = fake_github.add_issue(REPO, 1, body=BODY)
    issue["repository_url"] = issue["repository_url"].replace(REPO, OTHER)  # what the redirect answers
    issue["number"] = 7
    edited = payload("issues.edited.1", number=1, body=BODY)
    recorder = await run("issues", {**edited, "changes": {"body": {"from": ""}}}, handler_db, github)
    assert [await store.get_checklist(handler_db, REPO, n) for n in (1, 7)] == [None, None]
    assert bot_comments(fake_github, 1) == bot_comments(fake_github, 7) == [] and recorder.notifications == []


async def test_an_issue_of_a_renamed_repository_keeps_its_test_ids(fake_github: FakeGitHub, github: Any,
                                                                   handler_db: Database) -> None:
    """No webhook tells the App of a rename: the checklists stayed under the old name, so the dashboard showed
    the repository without them, and an edit built the issue's checklist again from T1 ('Log in', tested as T2,
    became T1) with its statuses lost. A late delivery still carrying the old name must not rename it back."""
    from quantumreview.analysis.checklist import Item
    from storage import installations as installation_store

    old = "Codertocat/Old-Name"
    repo_id = fake_github.state.repos[REPO]["id"]
    items = [Item("T1", "Sign up", ""), Item("T2", "Log in", ""), Item("T3", "Reset a password", "")]
    async with handler_db.transaction() as conn:
        await installation_store.upsert_installation(conn, {"id": 7, "account": {"login": "Codertocat"}}, 1.0)
        await installation_store.add_repositories(conn, 7, [{"id": repo_id, "full_name": old}], 1.0)
        for kept in (items, items[1:]):
            await store.save_checklist(conn, repo=old, issue_number=1, installation_id=7, title="t", state="open",
                                       items=kept, next_number=4, truncated=False, total_found=len(kept),
                                       change={}, now=1.0)
    fake_github.add_issue(REPO, 1, body=TWO)
    edited = payload("issues.edited.1", number=1, body=TWO)
    edited["repository"] = {**edited["repository"], "id": repo_id, "full_name": REPO}
    await run("issues", {**edited, "changes": {"body": {"from": THREE}}}, handler_db, github)
    late = {**edited, "repository": {**edited["repository"], "full_name": old}, "changes": {"body": {"from": ""}}}
    await run("issues", late, handler_db, github)
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and await store.get_checklist(handler_db, old, 1) is None
    live, retired = await store.get_items(handler_db, checklist.id)
    assert [(i.tid, i.text) for i in live] == [("T2", "Log in"), ("T3", "Reset a password")] and list(retired) == ["T1"]
    assert await installation_store.active_repositories(handler_db, 7) == [REPO]


async def test_deleting_or_transferring_an_issue_has_its_linking_pulls_judged_again(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """Their checks went on judging the criteria of an issue that was gone, until the pull request next changed;
    judged again, they say the issue was deleted or transferred."""
    for number in (1, 2):
        fake_github.add_issue(REPO, number, body=BODY)
        await run("issues", payload("issues.opened.1", number=number, body=BODY), handler_db, github)
        await store_pull(handler_db, 10 + number, linked_issue=number)
    deleted = await run("issues", payload("issues.deleted.1", number=1), handler_db, github)
    fake_github.add_issue(OTHER, 7, body=BODY)
    moved = await run("issues", {**payload("issues.deleted.1", number=2), "action": "transferred", "changes": {
        "new_issue": {"number": 7}, "new_repository": {"full_name": OTHER}}}, handler_db, github)
    assert [job["data"] for job in deleted.enqueued] == [{"repo": REPO, "pr_number": 11}]
    assert [job["data"] for job in moved.enqueued if job["event"] == REVALIDATE_EVENT] == [
        {"repo": REPO, "pr_number": 12}]


async def test_a_pull_of_the_issues_repository_is_revalidated_under_the_events_installation_before_it_is_stored(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """After a reinstall whose installation.created had not been handled yet (jobs of different keys run in any
    order), no live installation was known for the repository: the revalidation went under the deleted id stored
    with the pull request, and the runner cancelled it."""
    from storage import installations as installation_store

    async with handler_db.transaction() as conn:
        await installation_store.mark_deleted(conn, 6, 1.0, account_login="Codertocat")
    await store_pull(handler_db, 10, installation_id=6)
    await store_pull(handler_db, 5, repo="other-org/app", installation_id=8)  # another repository: kept
    fake_github.add_issue(REPO, 1, body=BODY)
    recorder = await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    assert [(job["data"]["pr_number"], job["installation_id"]) for job in recorder.enqueued] == [(10, 7), (5, 8)]


LOCKED = {"message": "Unable to create comment because issue is locked.",
          "documentation_url": "https://docs.github.com/articles/locking-conversations/"}


async def test_a_locked_issue_gets_its_checklist_when_unlocked_and_the_job_does_not_die(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    """GitHub answers an App's comment on a locked issue with a 403: the job was retried until dead, and once the
    issue was unlocked nothing posted the checklist (contributors had no IDs) until someone edited the body."""
    fake_github.add_issue(REPO, 1, body=BODY)
    fake_github.fail_next("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", status=403, body=LOCKED)
    recorder = await run("issues", payload("issues.opened.1", number=1, body=BODY, locked=True), handler_db, github)
    assert bot_comments(fake_github) == []
    assert "locked" in recorder.notifications[-1]["title"] and recorder.notifications[-1]["data"]["locked"] is True
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and checklist.comment_id is None
    await run("issues", {**payload("issues.opened.1", number=1, body=BODY, locked=False), "action": "unlocked"},
              handler_db, github)
    (comment,) = bot_comments(fake_github)
    assert "| `T1` | User can sign up |" in comment["body"]
    checklist = await store.get_checklist(handler_db, REPO, 1)
    assert checklist is not None and checklist.comment_id == comment["id"]


async def test_an_edit_of_a_locked_issue_with_its_checklist_shown_waits_quietly(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body=BODY)
    await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
    edited = BODY + "- [ ] User can reset the password\n"
    fake_github.add_issue(REPO, 1, body=edited)
    fake_github.fail_next("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", status=403,
                          body={**LOCKED, "message": "Unable to update comment because issue is locked."})
    data = {**payload("issues.edited.1", number=1, body=edited), "changes": {"body": {"from": BODY}}}
    recorder = await run("issues", data, handler_db, github)
    assert [n["data"].get("locked") for n in recorder.notifications] == [None]  # only "Checklist updated"
    assert "reset the password" not in bot_comments(fake_github)[0]["body"]
    await run("issues", {**payload("issues.opened.1", number=1, body=edited), "action": "unlocked"}, handler_db,
              github)
    (comment,) = bot_comments(fake_github)
    assert "| `T3` | User can reset the password |" in comment["body"]


async def test_unlocking_an_issue_without_a_checklist_asks_github_nothing(
        fake_github: FakeGitHub, github: Any, handler_db: Database) -> None:
    fake_github.add_issue(REPO, 1, body="no criteria")
    before = len(fake_github.requests)
    await run("issues", {**payload("issues.opened.1", number=1, body="no criteria"), "action": "unlocked"},
              handler_db, github)
    assert fake_github.requests[before:] == [] and bot_comments(fake_github) == []


async def test_a_refusal_that_is_not_a_lock_still_fails_the_job(fake_github: FakeGitHub, github: Any,
                                                                 handler_db: Database) -> None:
    from gidgethub import BadRequest

    fake_github.add_issue(REPO, 1, body=BODY)
    fake_github.fail_next("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", status=403,
                          body={"message": "Resource protected by organization SAML enforcement."})
    with pytest.raises(BadRequest):
        await run("issues", payload("issues.opened.1", number=1, body=BODY), handler_db, github)
