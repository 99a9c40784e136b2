"""Issues with checklists: progress per status, state filter, pages, the full checklist, linked PRs, regenerate."""

from __future__ import annotations

import asyncio
import json

import pytest

from quantumreview.access import RepoAccess
from storage.db import Database
from tests.test_api_support import (
    INSTALLATION,
    OTHER,
    REPO,
    Api,
    add_checklist,
    add_pull,
    database,
    sign_in,
)

pytest_plugins = ["tests.test_api_support"]


async def test_issue_list_counts_each_status_of_live_items(maintainer: Api) -> None:
    await add_checklist(database(maintainer), 4, ["passed", "passed", "failed", "skipped", "missing", "pending"],
                        retired=["T9"])
    status, body = await maintainer.get(f"/api/repos/{REPO}/issues")
    assert status == 200
    assert body["total"] == 1
    [issue] = body["items"]
    assert (issue["number"], issue["title"], issue["state"]) == (4, "Issue 4", "open")
    assert issue["progress"] == {"total": 6, "passed": 2, "failed": 1, "skipped": 1, "missing": 1, "pending": 1}


async def test_issue_list_filters_by_state_newest_first(maintainer: Api) -> None:
    db = database(maintainer)
    await add_checklist(db, 1, ["passed"])
    await add_checklist(db, 2, [], state="closed")
    await add_checklist(db, 3, ["failed"])
    await add_checklist(db, 5, ["failed"], repo=OTHER)
    numbers = {}
    for state in ("open", "closed", "all"):
        status, body = await maintainer.get(f"/api/repos/{REPO}/issues", state=state)
        assert status == 200
        numbers[state] = ([i["number"] for i in body["items"]], body["total"])
    assert numbers == {"open": ([3, 1], 2), "closed": ([2], 1), "all": ([3, 2, 1], 3)}


async def test_issue_without_items_has_zero_progress(maintainer: Api) -> None:
    await add_checklist(database(maintainer), 2, [])
    _status, body = await maintainer.get(f"/api/repos/{REPO}/issues")
    assert body["items"][0]["progress"] == dict.fromkeys(("total", "passed", "failed", "skipped", "missing",
                                                          "pending"), 0)


async def test_issue_list_pages(maintainer: Api) -> None:
    for number in range(1, 8):
        await add_checklist(database(maintainer), number, ["pending"])
    _status, body = await maintainer.get(f"/api/repos/{REPO}/issues", page=3, per_page=3)
    assert ([i["number"] for i in body["items"]], body["total"], body["page"]) == ([1], 7, 3)
    _status, beyond = await maintainer.get(f"/api/repos/{REPO}/issues", page=4, per_page=3)
    assert (beyond["items"], beyond["total"]) == ([], 7)


async def test_issue_detail_has_items_retired_ids_and_linked_pulls(maintainer: Api) -> None:
    db = database(maintainer)
    await add_checklist(db, 7, ["passed", "failed"], retired=["T3"], title="Login")
    await add_pull(db, 20, links=[(REPO, 7)])
    await add_pull(db, 21, links=[(REPO, 70)])
    await add_pull(db, 3, repo=OTHER, links=[("OCTO/Widgets", 7)])
    status, body = await maintainer.get(f"/api/repos/{REPO}/issues/7")
    assert status == 200
    assert (body["title"], body["retired"], body["progress"]["failed"]) == ("Login", False, 1)
    assert body["items"] == [{"tid": "T1", "text": "criterion 1", "detail": "", "status": "passed"},
                             {"tid": "T2", "text": "criterion 2", "detail": "", "status": "failed"}]
    assert body["retired_ids"] == [{"tid": "T3", "text": "old T3"}]
    assert [(p["repo"], p["number"]) for p in body["linked_pulls"]] == [(REPO, 20)]


async def test_linked_pulls_of_repositories_the_user_cannot_reach_are_hidden(maintainer: Api) -> None:
    # OA-14: a pull request of OTHER (which mona does not manage) links her issue; its title, state and flag are
    # not hers to see. Someone who manages both repositories sees it.
    db = database(maintainer)
    await add_checklist(db, 7, ["pending"])
    await add_pull(db, 3, repo=OTHER, links=[("OCTO/Widgets", 7)])
    await add_pull(db, 20, links=[(REPO, 7)])
    await db.execute("UPDATE pull_requests SET updated_at = number")  # the most recently updated first
    _status, mona = await maintainer.get(f"/api/repos/{REPO}/issues/7")
    assert [(p["repo"], p["number"]) for p in mona["linked_pulls"]] == [(REPO, 20)]
    both = await sign_in(maintainer.client, 5, "octocat", [RepoAccess(REPO, INSTALLATION, "push"),
                                                           RepoAccess(OTHER.upper(), 99, "pull")])
    _status, octocat = await both.get(f"/api/repos/{REPO}/issues/7")
    assert [(p["repo"], p["number"]) for p in octocat["linked_pulls"]] == [(REPO, 20), (OTHER, 3)]


async def add_linking_pulls(db: Database, repo: str, numbers: range, issue: int) -> None:
    """Pull requests #n of `repo` linking REPO#issue, each updated at n (so the highest is the most recent)."""
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO pull_requests (repo, number, installation_id, title, updated_at) VALUES (?, ?, 1, 't', ?)",
            [(repo, n, n) for n in numbers])
        await conn.executemany(
            "INSERT INTO pr_links (issue_repo, issue_number, pr_repo, pr_number) VALUES (?, ?, ?, ?)",
            [(REPO, issue, repo, n) for n in numbers])


@pytest.mark.parametrize(("visible", "shown", "truncated"), [(100, 100, False), (101, 100, True), (250, 100, True)])
async def test_linked_pulls_are_capped_most_recent_first_and_say_when_more_exist(
        maintainer: Api, visible: int, shown: int, truncated: bool) -> None:
    db = database(maintainer)
    await add_checklist(db, 7, ["pending"])
    await add_linking_pulls(db, REPO, range(1, visible + 1), 7)
    await add_linking_pulls(db, OTHER, range(1, 400, 2), 7)  # interleaved, and hidden from mona (OA-14)
    status, body = await maintainer.get(f"/api/repos/{REPO}/issues/7")
    assert status == 200
    # Before: every linking pull request, however many, and no word of a cap.
    assert [(p["repo"], p["number"]) for p in body["linked_pulls"]] == [
        (REPO, n) for n in range(visible, visible - shown, -1)]
    assert body["linked_pulls_truncated"] is truncated


async def test_issue_without_checklist_is_404(maintainer: Api) -> None:
    status, body = await maintainer.get(f"/api/repos/{REPO}/issues/404")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_regenerate_queues_one_ordered_job_and_audits_it(maintainer: Api) -> None:
    status, body = await maintainer.post(f"/api/repos/{REPO}/issues/12/regenerate")
    assert status == 202
    assert body["status"] == "accepted" and body["job_ids"] == [body["job_id"]]
    row = await database(maintainer).fetchone("SELECT ordering_key, installation_id, payload FROM jobs WHERE id = ?",
                                              (body["job_id"],))
    assert row is not None
    assert (row["ordering_key"], row["installation_id"]) == (f"{REPO}#12", INSTALLATION)
    assert json.loads(row["payload"]) == {"event": "quantumreview.regenerate_checklist",
                                          "data": {"repo": REPO, "issue_number": 12}}
    _status, audit = await maintainer.get(f"/api/repos/{REPO}/audit")
    assert [(e["actor"], e["action"], e["target"]) for e in audit["items"]] == [
        ("mona", "regenerate_checklist", f"{REPO}#12")]


async def test_regenerated_job_is_visible_until_done(maintainer: Api) -> None:
    _status, accepted = await maintainer.post(f"/api/repos/{REPO}/issues/1/regenerate")
    for _ in range(100):
        status, job = await maintainer.get(f"/api/jobs/{accepted['job_id']}")
        if job["status"] == "done":
            break
        await asyncio.sleep(0.02)
    assert status == 200
    assert (job["repo"], job["status"], job["attempts"], job["error"]) == (REPO, "done", 1, None)


async def test_regenerate_needs_push_permission(reader: Api) -> None:
    status, body = await reader.post(f"/api/repos/{REPO}/issues/1/regenerate")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert await database(reader).fetchvalue("SELECT count(*) FROM jobs") == 0


async def test_reader_may_still_read_the_checklist(reader: Api) -> None:
    await add_checklist(database(reader), 1, ["passed"])
    status, _body = await reader.get(f"/api/repos/{REPO}/issues/1")
    assert status == 200


async def test_regenerate_on_unmanaged_repository_is_404(maintainer: Api) -> None:
    status, _body = await maintainer.post(f"/api/repos/{OTHER}/issues/1/regenerate")
    assert status == 404
