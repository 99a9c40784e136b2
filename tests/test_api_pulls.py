"""Pull requests: links, the head's manifest, verdict per criterion, health, revalidate and flag for merge."""

from __future__ import annotations

from typing import Any

from quantumreview.access import RepoAccess
from tests.test_api_support import (
    INSTALLATION,
    OTHER,
    REPO,
    Api,
    add_health,
    add_manifest,
    add_pull,
    database,
    sign_in,
)

pytest_plugins = ["tests.test_api_support"]


def criterion(tid: str, issue: int = 7) -> dict[str, Any]:
    return {"repo": REPO, "issue_number": issue, "tid": tid, "text": f"criterion {tid}"}


MANIFEST = {"version": 1, "coverage": [
    {"criterion": criterion("T1"), "tests": [{"tid": "T1", "path": "tests/test_a.py"}], "suggestion": None},
    {"criterion": criterion("T2"), "tests": [], "suggestion": {"name": "test_T2", "path": "tests/test_b.py"}},
]}
VERDICT = {"results": [{"criterion": criterion("T1"), "outcome": "passed"},
                       {"criterion": criterion("T2"), "outcome": "missing"}],
           "passed": 1, "failed": 0, "skipped": 0, "missing": 1, "conclusion": "failure", "report_found": True}


async def test_pull_detail_shows_head_manifest_verdict_per_criterion_and_health(maintainer: Api) -> None:
    db = database(maintainer)
    await add_pull(db, 9, links=[(REPO, 7)], head_sha="new")
    await add_manifest(db, 9, "old", {"version": 1, "coverage": []}, at=2e9)
    await add_manifest(db, 9, "new", MANIFEST, VERDICT, at=1e9)
    await add_health(db, 88, "new", 1e9)
    status, body = await maintainer.get(f"/api/repos/{REPO}/prs/9")
    assert status == 200
    assert body["linked_issues"] == [{"repo": REPO, "number": 7, "source": "closes"}]
    assert (body["manifest"]["head_sha"], body["manifest"]["current"]) == ("new", True)
    assert body["verdict"] == {"conclusion": "failure", "passed": 1, "failed": 0, "skipped": 0, "missing": 1}
    assert [(c["tid"], c["tests"], c["outcome"]) for c in body["criteria"]] == [("T1", 1, "passed"),
                                                                               ("T2", 0, "missing")]
    assert body["health"]["score"] == 88
    assert body["flag"] == {"flagged": False, "by": None, "at": None}


async def test_pull_before_ci_has_criteria_without_outcome(maintainer: Api) -> None:
    db = database(maintainer)
    await add_pull(db, 9, head_sha="h")
    await add_manifest(db, 9, "h", MANIFEST)
    _status, body = await maintainer.get(f"/api/repos/{REPO}/prs/9")
    assert body["verdict"] is None and body["health"] is None
    assert [c["outcome"] for c in body["criteria"]] == [None, None]


async def test_pull_with_damaged_stored_json_still_answers(maintainer: Api) -> None:
    db = database(maintainer)
    await add_pull(db, 9, head_sha="h")
    await db.execute("UPDATE pull_requests SET linked = 'not json' WHERE number = 9")
    await db.execute("INSERT INTO manifests (repo, pr_number, head_sha, manifest, verdict, created_at, updated_at) "
                     "VALUES (?, 9, 'h', '{\"coverage\": [1, {\"criterion\": 2}]}', '[]', 0, 0)", (REPO,))
    status, body = await maintainer.get(f"/api/repos/{REPO}/prs/9")
    assert status == 200
    assert (body["linked_issues"], body["criteria"], body["verdict"]) == ([], [], None)


async def test_unknown_pull_is_404(maintainer: Api) -> None:
    status, body = await maintainer.get(f"/api/repos/{REPO}/prs/1")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_revalidate_queues_a_job_keyed_by_the_pull(maintainer: Api) -> None:
    status, body = await maintainer.post(f"/api/repos/{REPO}/prs/3/revalidate")
    assert status == 202
    key = await database(maintainer).fetchvalue("SELECT ordering_key FROM jobs WHERE id = ?", (body["job_id"],))
    assert key == f"{REPO}#3"


async def test_revalidate_needs_push(reader: Api) -> None:
    status, _body = await reader.post(f"/api/repos/{REPO}/prs/3/revalidate")
    assert status == 403


async def test_flag_for_merge_records_flag_audit_with_verdict_and_notifies_managers(maintainer: Api) -> None:
    db = database(maintainer)
    await add_pull(db, 9, head_sha="new")
    await add_manifest(db, 9, "new", MANIFEST, VERDICT)
    colleague = await sign_in(maintainer.client, 3, "octocat", [RepoAccess(REPO, INSTALLATION, "admin")])
    status, body = await maintainer.post(f"/api/repos/{REPO}/prs/9/flag_for_merge")
    assert status == 200
    assert (body["flagged"], body["by"], body["notified"]) == (True, "mona", 2)
    _status, pull = await maintainer.get(f"/api/repos/{REPO}/prs/9")
    assert pull["flag"] == {"flagged": True, "by": "mona", "at": body["at"]}
    _status, audit = await maintainer.get(f"/api/repos/{REPO}/audit")
    [entry] = audit["items"]
    assert (entry["actor"], entry["action"], entry["target"]) == ("mona", "flag_for_merge", f"{REPO}#9")
    assert entry["details"] == {"head_sha": "new", "verdict": body["verdict"], "at": body["at"]}
    assert entry["details"]["verdict"]["conclusion"] == "failure"
    _status, inbox = await colleague.get("/api/notifications")
    assert [(n["kind"], n["url"]) for n in inbox["items"]] == [
        ("flagged_for_merge", f"https://github.com/{REPO}/pull/9")]


async def test_flag_for_merge_needs_push_and_changes_nothing(reader: Api) -> None:
    await add_pull(database(reader), 9)
    status, body = await reader.post(f"/api/repos/{REPO}/prs/9/flag_for_merge")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert await database(reader).fetchvalue("SELECT flagged_by FROM pull_requests") is None
    assert await database(reader).fetchvalue("SELECT count(*) FROM audit_log") == 0


async def test_flag_unknown_pull_is_404(maintainer: Api) -> None:
    status, _body = await maintainer.post(f"/api/repos/{REPO}/prs/9/flag_for_merge")
    assert status == 404


async def test_pull_of_unmanaged_repository_is_404(maintainer: Api) -> None:
    await add_pull(database(maintainer), 9, repo=OTHER)
    status, _body = await maintainer.get(f"/api/repos/{OTHER}/prs/9")
    assert status == 404


async def test_flag_for_merge_after_a_push_records_no_verdict_of_the_previous_commit(maintainer: Api) -> None:
    # The head 'new' has no manifest yet (just pushed); 'old' passed. The audit entry names the head, so the
    # verdict beside it must be the head's: 'old's success recorded there said the head had passed.
    db = database(maintainer)
    await add_pull(db, 9, head_sha="new")
    await add_manifest(db, 9, "old", MANIFEST, {**VERDICT, "conclusion": "success"})
    status, body = await maintainer.post(f"/api/repos/{REPO}/prs/9/flag_for_merge")
    assert (status, body["verdict"]) == (200, None)
    _status, audit = await maintainer.get(f"/api/repos/{REPO}/audit")
    assert audit["items"][0]["details"] == {"head_sha": "new", "verdict": None, "at": body["at"]}
