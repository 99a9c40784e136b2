"""Notifications (own only, unread filter, mark read), jobs (own repositories only) and the audit log's pages."""

from __future__ import annotations

import time
import warnings
from typing import Any, cast

import pytest
from gidgethub import routing

from quantumreview import access, keys
from quantumreview.access import RepoAccess
from storage import audit, notifications
from tests.test_api_errors import GitHubDown
from tests.test_api_support import OTHER, REPO, Api, add_installation, database, sign_in

pytest_plugins = ["tests.test_api_support"]


async def add_notification(api: Api, user_id: int, title: str, *, read: bool = False) -> int:
    return await database(api).execute(
        "INSERT INTO notifications (user_id, repo, kind, title, data, created_at, read_at) "
        "VALUES (?, ?, 'verdict', ?, '{\"n\": 1}', ?, ?)", (user_id, REPO, title, time.time(), 1.0 if read else None))


async def test_notifications_list_newest_first_with_unread_filter(maintainer: Api, reader: Api) -> None:
    await add_notification(maintainer, 1, "first", read=True)
    await add_notification(maintainer, 1, "second")
    await add_notification(maintainer, 2, "someone else's")
    _status, everything = await maintainer.get("/api/notifications")
    _status, unread = await maintainer.get("/api/notifications", unread="true")
    assert ([n["title"] for n in everything["items"]], everything["total"]) == (["second", "first"], 2)
    assert ([n["title"] for n in unread["items"]], unread["total"]) == (["second"], 1)
    assert everything["items"][0]["data"] == {"n": 1} and everything["items"][1]["read"] is True


async def test_mark_read_marks_only_the_users_own_notification(maintainer: Api, reader: Api) -> None:
    mine = await add_notification(maintainer, 1, "mine")
    theirs = await add_notification(maintainer, 2, "theirs")
    status, body = await maintainer.post(f"/api/notifications/{mine}/read")
    assert (status, body) == (200, {"id": mine, "read": True})
    status, body = await maintainer.post(f"/api/notifications/{theirs}/read")
    assert (status, body["error"]["code"]) == (404, "not_found")
    _status, me = await maintainer.get("/api/me")
    _status, other = await reader.get("/api/me")
    assert (me["unread_notifications"], other["unread_notifications"]) == (0, 1)


async def test_notifications_about_a_repository_the_user_no_longer_reaches_are_hidden(maintainer: Api) -> None:
    # OA-17: written while mona managed OTHER (as notify_repo_managers did then); her access set no longer has it.
    await add_notification(maintainer, 1, "about her repository")
    await database(maintainer).execute(
        "INSERT INTO notifications (user_id, repo, kind, title, data, created_at) "
        "VALUES (1, ?, 'verdict', 'about a lost repository', '{\"secret\": 1}', ?)", (OTHER, time.time()))
    _status, listed = await maintainer.get("/api/notifications")
    assert ([n["title"] for n in listed["items"]], listed["total"]) == (["about her repository"], 1)
    _status, me = await maintainer.get("/api/me")
    assert me["unread_notifications"] == 1


async def test_a_notification_the_user_may_no_longer_read_cannot_be_marked_read(maintainer: Api) -> None:
    # Written while mona managed OTHER; her access set no longer has it, so the listing hides it.
    db = database(maintainer)
    hidden = await db.execute(
        "INSERT INTO notifications (user_id, repo, kind, title, created_at) VALUES (1, ?, 'verdict', 'lost', ?)",
        (OTHER, time.time()))
    status, body = await maintainer.post(f"/api/notifications/{hidden}/read")
    # Before: 200 {"read": true}, and the hidden row was changed.
    assert (status, body) == (404, {"error": {"code": "not_found", "message": f"no notification {hidden}"}})
    assert await maintainer.post("/api/notifications/999999/read") == (
        404, {"error": {"code": "not_found", "message": "no notification 999999"}})  # answered alike
    assert await db.fetchvalue("SELECT read_at FROM notifications WHERE id = ?", (hidden,)) is None


async def test_marking_read_reads_a_stale_access_set_again_and_github_failing_is_a_documented_502(
        maintainer: Api) -> None:
    mine = await add_notification(maintainer, 1, "mine")
    app = maintainer.client.app
    app[access.ACCESS].forget(1)
    with warnings.catch_warnings():  # aiohttp warns on a started app's state; the swap is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        app[keys.github] = cast(Any, GitHubDown())
    status, body = await maintainer.post(f"/api/notifications/{mine}/read")
    assert (status, body["error"]["code"]) == (502, "github_unavailable")
    assert await database(maintainer).fetchvalue("SELECT read_at FROM notifications WHERE id = ?", (mine,)) is None


async def test_job_of_an_unmanaged_repository_is_404_like_a_missing_one(maintainer: Api) -> None:
    db = database(maintainer)
    theirs = await db.execute(
        "INSERT INTO jobs (handler, payload, ordering_key, run_after, created_at, status) "
        "VALUES ('h', ?, 'k', 0, 0, 'done')", (f'{{"event": "e", "data": {{"repo": "{OTHER}"}}}}',))
    status, body = await maintainer.get(f"/api/jobs/{theirs}")
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert await maintainer.get(f"/api/jobs/{theirs}") == await maintainer.get("/api/jobs/999999")


async def test_job_of_a_delivery_takes_the_repository_of_the_delivery(maintainer: Api) -> None:
    db = database(maintainer)
    await db.execute("INSERT INTO deliveries (id, event, repository, received_at, body) VALUES ('d1', 'issues', ?, 0, "
                     "x'7b7d')", (REPO,))
    job = await db.execute("INSERT INTO jobs (delivery_id, handler, ordering_key, run_after, created_at, status, "
                           "last_error) VALUES ('d1', 'h', 'k', 0, 5, 'failed', 'PermanentError: gone')")
    status, body = await maintainer.get(f"/api/jobs/{job}")
    assert status == 200
    assert (body["repo"], body["status"], body["error"], body["created_at"]) == (
        REPO, "failed", "PermanentError: gone", "1970-01-01T00:00:05Z")


@pytest.mark.parametrize("job_router", [routing.Router()])
async def test_action_without_an_installed_handler_is_503(maintainer: Api) -> None:
    status, body = await maintainer.post(f"/api/repos/{REPO}/prs/1/revalidate")
    assert (status, body["error"]["code"]) == (503, "unavailable")


async def test_audit_log_pages_newest_first(maintainer: Api) -> None:
    db = database(maintainer)
    for n in range(5):
        await audit.record(db, repo=REPO, actor="mona", action=f"a{n}", target=None, details={"n": n})
    await audit.record(db, repo=OTHER, actor="x", action="hidden", target=None, details=None)
    status, body = await maintainer.get(f"/api/repos/{REPO}/audit", per_page=2, page=2)
    assert status == 200
    assert ([e["action"] for e in body["items"]], body["total"]) == (["a2", "a1"], 5)
    assert body["items"][0]["details"] == {"n": 2}


async def test_notifications_of_an_uninstalled_or_removed_repository_are_hidden_at_once(maintainer: Api) -> None:
    # The repository is hidden from /api/repos at once (access.managed_repositories); its notifications were
    # still listed, counted unread and could be marked read until the user's list was next read from GitHub.
    db = database(maintainer)
    await add_installation(db, 42, REPO)
    await add_installation(db, 99, "octo/gadgets")
    await add_installation(db, 99, "octo/tools")
    await sign_in(maintainer.client, 1, "mona", [RepoAccess(REPO, 42, "push"), RepoAccess("octo/gadgets", 99, "push"),
                                                 RepoAccess("octo/tools", 99, "push")])
    for repo in (REPO, "octo/gadgets", "octo/tools"):
        await notifications.notify_repo_managers(db, repo, "verdict", f"about {repo}")
    await db.execute("UPDATE repositories SET removed_at = ? WHERE full_name = 'octo/gadgets'", (time.time(),))
    _status, repos = await maintainer.get("/api/repos")
    _status, listed = await maintainer.get("/api/notifications")
    assert [r["repo"] for r in repos["items"]] == ["octo/tools", REPO]
    assert [n["repo"] for n in listed["items"]] == ["octo/tools", REPO]
    await db.execute("UPDATE installations SET deleted_at = ? WHERE id = 99", (time.time(),))
    _status, listed = await maintainer.get("/api/notifications")
    _status, me = await maintainer.get("/api/me")
    assert ([n["repo"] for n in listed["items"]], listed["total"], me["unread_notifications"]) == ([REPO], 1, 1)
    hidden = await db.fetchvalue("SELECT id FROM notifications WHERE repo = 'octo/tools'")
    status, body = await maintainer.post(f"/api/notifications/{hidden}/read")
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert await db.fetchvalue("SELECT read_at FROM notifications WHERE id = ?", (hidden,)) is None
