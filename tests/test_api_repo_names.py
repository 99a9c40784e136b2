"""A repository GitHub now names otherwise than its stored rows (renamed, in case or not): the API reads the stored
ones."""

from __future__ import annotations

import zlib
from typing import Any, cast

from aiohttp.test_utils import TestClient

from quantumreview import access
from quantumreview.access import RepoAccess
from tests.test_api_support import (
    INSTALLATION,
    REPO,
    add_checklist,
    add_installation,
    add_pull,
    database,
    sign_in,
)

pytest_plugins = ["tests.test_api_support"]

RENAMED = "Octo/Widgets"  # GitHub's name now; the checklists and pull requests are still stored as REPO


async def test_a_repository_renamed_in_case_only_shows_its_stored_issues_and_pulls_everywhere(
        api_client: TestClient[Any, Any]) -> None:
    # Until an event carrying the new name re-keys the rows (or while a user's cached list has the old spelling),
    # the user's repository list from GitHub and the stored rows differ in case. The issue's page found the
    # checklist (get_checklist ignores case) while the list, the counts and the pull request did not.
    api = await sign_in(api_client, 1, "mona", [RepoAccess(RENAMED, INSTALLATION, "push")])
    db = database(api)
    await add_installation(db)
    await add_checklist(db, 1, ["passed"])
    await add_pull(db, 10)
    _status, repos = await api.get("/api/repos")
    assert [(r["issues"], r["open_pulls"]) for r in repos["items"]] == [(1, 1)]
    status, detail = await api.get(f"/api/repos/{RENAMED}")
    assert (status, detail["issues"], detail["open_pulls"]) == (200, 1, 1)
    status, issues = await api.get(f"/api/repos/{RENAMED}/issues")
    assert (status, [i["number"] for i in issues["items"]], issues["total"]) == (200, [1], 1)
    status, issue = await api.get(f"/api/repos/{RENAMED}/issues/1")
    assert (status, issue["items"][0]["status"]) == (200, "passed")
    status, pull = await api.get(f"/api/repos/{RENAMED}/prs/10")
    assert (status, pull["title"]) == (200, "PR 10")


async def test_a_regenerate_is_queued_under_the_stored_name(api_client: TestClient[Any, Any]) -> None:
    # Why: the job saves the checklist under the name it is given; under GitHub's other spelling it made a second
    # checklist for the same issue (stored names are unique only as spelled).
    api = await sign_in(api_client, 1, "mona", [RepoAccess(RENAMED, INSTALLATION, "push")])
    db = database(api)
    await add_installation(db)
    status, body = await api.post(f"/api/repos/{RENAMED}/issues/1/regenerate")
    assert status == 202
    row = await db.fetchone("SELECT ordering_key, json_extract(payload, '$.data.repo') AS repo FROM jobs "
                            "WHERE id = ?", (body["job_id"],))
    assert row is not None and (row["ordering_key"], row["repo"]) == (f"{REPO}#1", REPO)


async def test_without_a_stored_repository_row_the_name_from_github_is_used(api_client: TestClient[Any, Any]) -> None:
    api = await sign_in(api_client, 1, "mona", [RepoAccess(RENAMED, INSTALLATION, "push")])
    await add_checklist(database(api), 1, ["passed"], repo=RENAMED)
    status, issues = await api.get(f"/api/repos/{REPO}/issues")
    assert (status, issues["total"]) == (200, 1)


async def test_a_renamed_repository_shows_its_rows_kept_under_the_old_name_until_they_follow(
        api_client: TestClient[Any, Any]) -> None:
    # An App registered before 772e0ad gets no 'repository' event: its rows (and the repository row) stay under the
    # old name until the repository's next issue or pull request event. GitHub's list names the repository anew but
    # keeps its id, which finds them.
    repo_id = zlib.crc32(REPO.encode())  # the id add_installation stores for REPO
    api = await sign_in(api_client, 1, "mona", [RepoAccess("acme/gadgets", INSTALLATION, "push", repo_id)])
    db = database(api)
    await add_installation(db)
    await add_checklist(db, 1, ["passed"])
    await add_pull(db, 10)
    _status, repos = await api.get("/api/repos")
    assert [(r["issues"], r["open_pulls"]) for r in repos["items"]] == [(1, 1)]
    status, issues = await api.get("/api/repos/acme/gadgets/issues")
    assert (status, issues["total"]) == (200, 1)
    status, _pull = await api.get("/api/repos/acme/gadgets/prs/10")
    assert status == 200


async def test_the_repository_id_is_read_from_githubs_list() -> None:
    class OneRepository:
        async def get_user_installations(self, token: str) -> list[dict[str, Any]]:
            return [{"id": INSTALLATION}]

        async def get_installation_repositories_for_user(self, token: str, installation: int) -> list[dict[str, Any]]:
            return [{"id": 77, "full_name": "acme/gadgets", "permissions": {"push": True}}]

    found = await access.read_managed_repositories(cast(Any, OneRepository()), "token", {INSTALLATION})
    assert found == [RepoAccess("acme/gadgets", INSTALLATION, "push", 77)]


async def test_a_job_queued_for_a_renamed_repository_is_visible_to_who_queued_it(
        api_client: TestClient[Any, Any]) -> None:
    # The job is queued under the stored (old) name; the user's list names the repository anew.
    api = await sign_in(api_client, 1, "mona", [RepoAccess("acme/gadgets", INSTALLATION, "push",
                                                           zlib.crc32(REPO.encode()))])
    await add_installation(database(api))
    status, accepted = await api.post("/api/repos/acme/gadgets/issues/1/regenerate")
    assert status == 202
    status, job = await api.get(f"/api/jobs/{accepted['job_id']}")
    # Named as GitHub names it, like every other answer: the stored REPO is a route that answers 404.
    assert (status, job["repo"]) == (200, "acme/gadgets")
    status, _repo = await api.get(f"/api/repos/{job['repo']}")
    assert status == 200


async def test_flagging_a_pull_of_a_renamed_repository_notifies_its_managers(
        api_client: TestClient[Any, Any]) -> None:
    # Managers are found by the name GitHub gives them (user_repositories), not the old name the rows are under.
    renamed = RepoAccess("acme/gadgets", INSTALLATION, "push", zlib.crc32(REPO.encode()))
    api = await sign_in(api_client, 1, "mona", [renamed])
    await sign_in(api_client, 3, "octocat", [renamed])
    await add_installation(database(api))
    await add_pull(database(api), 9)
    status, body = await api.post("/api/repos/acme/gadgets/prs/9/flag_for_merge")
    assert (status, body["notified"]) == (200, 2)


async def test_an_action_on_a_renamed_repository_stays_in_its_audit_log_once_its_rows_follow(
        api_client: TestClient[Any, Any]) -> None:
    # The audit log is not re-keyed by a rename: kept under GitHub's name, an entry made while the rows were still
    # under the old name stays in the log when they follow.
    api = await sign_in(api_client, 1, "mona", [RepoAccess("acme/gadgets", INSTALLATION, "push",
                                                           zlib.crc32(REPO.encode()))])
    db = database(api)
    await add_installation(db)
    await add_pull(db, 9)
    assert (await api.post("/api/repos/acme/gadgets/issues/1/regenerate"))[0] == 202
    assert (await api.post("/api/repos/acme/gadgets/prs/9/flag_for_merge"))[0] == 200
    await db.execute("UPDATE repositories SET full_name = 'acme/gadgets'")  # the rename is followed
    _status, audit = await api.get("/api/repos/acme/gadgets/audit")
    assert [e["action"] for e in audit["items"]] == ["flag_for_merge", "regenerate_checklist"]


async def test_a_renamed_repository_is_listed_under_the_name_its_routes_answer_to(
        api_client: TestClient[Any, Any]) -> None:
    # The dashboard builds each repository's routes from the "repo" it is given; only GitHub's name reaches them.
    api = await sign_in(api_client, 1, "mona", [RepoAccess("acme/gadgets", INSTALLATION, "push",
                                                           zlib.crc32(REPO.encode()))])
    db = database(api)
    await add_installation(db)
    await add_checklist(db, 1, ["passed"])
    await add_pull(db, 9)
    _status, repos = await api.get("/api/repos")
    assert [r["repo"] for r in repos["items"]] == ["acme/gadgets"]
    for path in ("", "/issues/1", "/prs/9"):
        status, body = await api.get(f"/api/repos/{repos['items'][0]['repo']}{path}")
        assert (status, body["repo"]) == (200, "acme/gadgets"), path


async def test_a_renamed_repositorys_issue_lists_its_own_linking_pulls_under_githubs_name(
        api_client: TestClient[Any, Any]) -> None:
    api = await sign_in(api_client, 1, "mona", [RepoAccess("acme/gadgets", INSTALLATION, "push",
                                                           zlib.crc32(REPO.encode()))])
    db = database(api)
    await add_installation(db)
    await add_checklist(db, 7, ["pending"])
    await add_pull(db, 20, links=[(REPO, 7)])
    status, issue = await api.get("/api/repos/acme/gadgets/issues/7")
    assert (status, [(p["repo"], p["number"]) for p in issue["linked_pulls"]]) == (200, [("acme/gadgets", 20)])


async def test_a_renamed_repositorys_audit_log_keeps_its_entries_from_before_the_rename(
        api_client: TestClient[Any, Any]) -> None:
    # Made while GitHub still named it REPO, the entry is kept under REPO until an event re-keys the rows; the log,
    # read under GitHub's new name, lost it meanwhile.
    before = await sign_in(api_client, 1, "mona", [RepoAccess(REPO, INSTALLATION, "push")])
    db = database(before)
    await add_installation(db)
    await add_pull(db, 9)
    assert (await before.post(f"/api/repos/{REPO}/prs/9/flag_for_merge"))[0] == 200
    api = await sign_in(api_client, 1, "mona", [RepoAccess("acme/gadgets", INSTALLATION, "push",
                                                           zlib.crc32(REPO.encode()))])
    assert (await api.post("/api/repos/acme/gadgets/issues/1/regenerate"))[0] == 202
    status, audit = await api.get("/api/repos/acme/gadgets/audit", per_page=1)
    assert (status, audit["total"], [e["action"] for e in audit["items"]]) == (200, 2, ["regenerate_checklist"])
    _status, older = await api.get("/api/repos/acme/gadgets/audit", per_page=1, page=2)
    assert [(e["action"], e["target"]) for e in older["items"]] == [("flag_for_merge", f"{REPO}#9")]
