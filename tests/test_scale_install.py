"""Scale probe: an organization installs the App on all of its 600 repositories, changes 100 at once, transfers one
out and renames one; 40 maintainers log in and page through the API while deliveries keep arriving."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantumreview import demo_fixtures as data
from storage import audit
from storage import installations as store
from tests.test_scale_support import INSTALLATION, ORG, listed, repo_names, route_calls, stage

pytest_plugins = ["tests.test_api_support"]

REPOS = 600
INSTALL_REPOS_ROUTE = "/installation/repositories"
USER_REPOS_ROUTE = "/user/installations/{installation_id}/repositories"


def installation_repositories(fake: Any, action: str, repos: list[dict[str, Any]]) -> dict[str, Any]:
    """installation_repositories.added/removed for the fake's installation (repository_selection all)."""
    installation = fake.state.installations[INSTALLATION]
    return {"action": action, "installation": dict(installation), "repository_selection": "all",
            "repositories_added": listed(repos) if action == "added" else [],
            "repositories_removed": listed(repos) if action == "removed" else [],
            "requester": None, "sender": fake.state.account("org-admin")}


async def test_installing_on_600_repositories_records_each_with_a_page_of_100_per_call(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(REPOS),
                                                 repository_selection="all")
        repositories = [run.fake.state.repos[name] for name in repo_names(REPOS)]
        calls = await run.deliver("installation", data.installation_created(installation, repositories))
        assert await store.active_repositories(run.db, INSTALLATION) == repo_names(REPOS)
        # GitHub's per_page maximum (100): one request a page, not 600 / 30.
        assert route_calls(calls, INSTALL_REPOS_ROUTE) == math.ceil(REPOS / 100)
        assert all(r.query.get("per_page") == "100" for r in run.fake.calls("GET", INSTALL_REPOS_ROUTE))

        # 100 more at once, then 100 removed at once: each delivery reads the list once more, page by page.
        added = [run.fake.add_repository(INSTALLATION, name) for name in repo_names(100, start=REPOS)]
        calls = await run.deliver("installation_repositories",
                                  installation_repositories(run.fake, "added", added))
        assert route_calls(calls, INSTALL_REPOS_ROUTE) == math.ceil((REPOS + 100) / 100)
        assert await store.active_repositories(run.db, INSTALLATION) == repo_names(REPOS + 100)
        gone = repo_names(100, start=250)
        run.fake.state.installation_repos[INSTALLATION] = [
            n for n in run.fake.state.installation_repos[INSTALLATION] if n not in gone]
        calls = await run.deliver("installation_repositories", installation_repositories(
            run.fake, "removed", [run.fake.state.repos[n] for n in gone]))
        assert route_calls(calls, INSTALL_REPOS_ROUTE) == math.ceil(REPOS / 100)
        assert set(await store.active_repositories(run.db, INSTALLATION)) == set(repo_names(REPOS + 100)) - set(gone)


def user_repos(index: int) -> list[str]:
    """What maintainer `index` reaches on GitHub: the page boundaries (100, 101, 600 repositories) and slices."""
    sizes = {0: REPOS, 1: 100, 2: 101, 3: 99, 4: 1, 5: 200}
    if index in sizes:
        return repo_names(sizes[index])
    return [name for i, name in enumerate(repo_names(REPOS)) if i % 40 == index]


async def test_40_maintainers_each_see_exactly_the_repositories_github_lists_for_them(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(REPOS),
                                                 repository_selection="all")
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[n] for n in repo_names(REPOS)]))
        # Another installation of the App that none of them reaches, and one they reach that is not the App's.
        run.fake.add_installation(INSTALLATION + 1, account="other-org", repositories=["other-org/hidden"])
        for index in range(40):
            names = user_repos(index)
            run.fake.add_user(f"maint{index}", 5000 + index, installations={INSTALLATION: names},
                              permissions={n: {"push": index % 2 == 0} for n in names})
        for index in range(40):
            before = len(run.fake.calls("GET", USER_REPOS_ROUTE))
            api = await run.log_in(f"maint{index}")
            items = await run.all_pages(api, "GET /api/repos", "/api/repos")
            assert [item["repo"] for item in items] == user_repos(index)
            assert {item["permission"] for item in items} == {"push" if index % 2 == 0 else "pull"}
            # One read of the user's list (cached after), a request per 100 repositories.
            assert len(run.fake.calls("GET", USER_REPOS_ROUTE)) - before == math.ceil(len(user_repos(index)) / 100)
            first = user_repos(index)[0]
            body = await run.timed_get(api, "GET /api/repos/{o}/{r}", f"/api/repos/{first}")
            assert body["installation_id"] == INSTALLATION
            for outside in ("other-org/hidden", f"{ORG}/repo-{REPOS + 1:04}"):
                status, _ = await api.get(f"/api/repos/{outside}")
                assert status == 404
        print("\n" + run.report())


async def readd(run: Any, names: list[str]) -> None:
    """Remove `names` from the installation and add them back (two deliveries): an "installed" notice each."""
    repos = [run.fake.state.repos[n] for n in names]
    run.fake.state.installation_repos[INSTALLATION] = [
        n for n in run.fake.state.installation_repos[INSTALLATION] if n not in names]
    await run.deliver("installation_repositories", installation_repositories(run.fake, "removed", repos))
    for name in names:
        run.fake.add_repository(INSTALLATION, name)
    await run.deliver("installation_repositories", installation_repositories(run.fake, "added", repos))


async def test_notifications_page_by_cursor_without_duplicates_or_gaps_while_new_ones_arrive(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(REPOS),
                                                 repository_selection="all")
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[n] for n in repo_names(REPOS)]))
        run.fake.add_user("maint0", 5000, installations={INSTALLATION: repo_names(REPOS)})
        api = await run.log_in("maint0")
        await run.all_pages(api, "GET /api/repos", "/api/repos")
        await readd(run, repo_names(150))
        first = await run.timed_get(api, "GET /api/notifications", "/api/notifications", per_page=100)
        assert first["total"] == 150
        await readd(run, repo_names(50, start=300))  # 50 newer notices arrive between the pages
        last_seen = first["items"][-1]["id"]
        second = await run.timed_get(api, "GET /api/notifications", "/api/notifications", per_page=100,
                                     before=last_seen)
        ids = [n["id"] for n in first["items"] + second["items"]]
        assert len(ids) == len(set(ids)) == 150
        assert sorted({n["repo"] for n in first["items"] + second["items"]}) == repo_names(150)
        assert second["total"] == 50 and len(second["items"]) == 50


async def test_audit_pages_by_cursor_without_duplicates_or_gaps_while_maintainers_act(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(3),
                                                 repository_selection="all")
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[n] for n in repo_names(3)]))
        run.fake.add_user("maint0", 5000, installations={INSTALLATION: repo_names(3)})
        api = await run.log_in("maint0")
        repo = repo_names(1)[0]
        for i in range(150):
            await audit.record(run.db, repo=repo, actor=f"maint{i % 40}", action="flag_for_merge",
                               target=f"#{i}", details=None)
        path = f"/api/repos/{repo}/audit"
        first = await run.timed_get(api, "GET /api/repos/{o}/{r}/audit", path, per_page=100)
        for i in range(30):  # other maintainers act between the two pages
            await audit.record(run.db, repo=repo, actor="maint1", action="regenerate", target=f"#{i}", details=None)
        second = await run.timed_get(api, "GET /api/repos/{o}/{r}/audit", path, per_page=100,
                                     before=first["items"][-1]["id"])
        targets = [e["target"] for e in first["items"] + second["items"]]
        assert targets == [f"#{i}" for i in reversed(range(150))]
        assert second["total"] == 50
        status, body = await api.get(path, before="0")
        assert (status, body["error"]["code"]) == (400, "bad_request")


async def test_a_bulk_removal_and_a_transfer_out_hide_the_repositories_from_a_cached_list_at_once(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(REPOS),
                                                 repository_selection="all")
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[n] for n in repo_names(REPOS)]))
        run.fake.add_user("maint0", 5000, installations={INSTALLATION: repo_names(REPOS)})
        api = await run.log_in("maint0")
        assert len(await run.all_pages(api, "GET /api/repos", "/api/repos")) == REPOS
        gone = [*repo_names(100, start=100), repo_names(1, start=599)[0]]  # 100 at once, then one transferred out
        run.fake.state.installation_repos[INSTALLATION] = [
            n for n in run.fake.state.installation_repos[INSTALLATION] if n not in gone]
        await run.deliver("installation_repositories", installation_repositories(
            run.fake, "removed", [run.fake.state.repos[n] for n in gone[:100]]))
        await run.deliver("installation_repositories", installation_repositories(
            run.fake, "removed", [run.fake.state.repos[gone[100]]]))
        reads = len(run.fake.calls("GET", USER_REPOS_ROUTE))
        items = await run.all_pages(api, "GET /api/repos", "/api/repos")
        assert [i["repo"] for i in items] == [n for n in repo_names(REPOS) if n not in gone]
        assert len(run.fake.calls("GET", USER_REPOS_ROUTE)) == reads  # from the cached list, GitHub not asked
        for name in (gone[0], gone[100]):
            status, _ = await api.get(f"/api/repos/{name}")
            assert status == 404


async def test_a_renamed_repository_answers_under_its_new_name_from_a_cached_list(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(REPOS),
                                                 repository_selection="all")
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[n] for n in repo_names(REPOS)]))
        run.fake.add_user("maint0", 5000, installations={INSTALLATION: repo_names(REPOS)})
        api = await run.log_in("maint0")
        await run.all_pages(api, "GET /api/repos", "/api/repos")
        old = repo_names(1, start=5)[0]
        new = f"{ORG}/renamed-five"
        repo = run.fake.state.repos.pop(old)
        repo.update(full_name=new, name="renamed-five")
        run.fake.state.repos[new] = repo
        names = run.fake.state.installation_repos[INSTALLATION]
        names[names.index(old)] = new
        run.fake.state.user_installations["maint0"][INSTALLATION] = list(names)
        await run.deliver("repository", {"action": "renamed", "repository": repo,
                                         "changes": {"repository": {"name": {"from": "repo-0005"}}},
                                         "installation": {"id": INSTALLATION}, "sender": repo["owner"]})
        reads = len(run.fake.calls("GET", USER_REPOS_ROUTE))
        # GitHub sends the maintainer to the new name; their list, cached minutes more, still has the old one.
        status, body = await api.get(f"/api/repos/{new}")
        assert status == 200, body
        assert (body["repo"], body["installation_id"]) == (new, INSTALLATION)
        status, _ = await api.get(f"/api/repos/{new}/issues")
        assert status == 200
        assert len(run.fake.calls("GET", USER_REPOS_ROUTE)) == reads
        # Moved to another installation of the App that the maintainer does not reach: not theirs by the id.
        other = run.fake.add_installation(INSTALLATION + 1, account="elsewhere", repositories=[])
        await run.deliver("installation", data.installation_created(other, []))
        moved = {**repo, "full_name": "elsewhere/renamed-five", "owner": run.fake.state.account("elsewhere")}
        async with run.db.transaction() as conn:
            await store.remove_repositories(conn, INSTALLATION, [moved], 0.0)
            await store.add_repositories(conn, INSTALLATION + 1, [moved], 0.0)
        status, _ = await api.get("/api/repos/elsewhere/renamed-five")
        assert status == 404


async def test_40_maintainers_at_once_while_deliveries_arrive_see_exactly_their_repositories(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(REPOS),
                                                 repository_selection="all")
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[n] for n in repo_names(REPOS)]))
        for index in range(40):
            run.fake.add_user(f"maint{index}", 5000 + index, installations={INSTALLATION: user_repos(index)})
        apis = [await run.log_in(f"maint{index}") for index in range(40)]

        async def browse(index: int) -> list[str]:
            items = await run.all_pages(apis[index], "GET /api/repos (concurrent)", "/api/repos")
            await run.timed_get(apis[index], "GET /api/notifications (concurrent)", "/api/notifications")
            return [item["repo"] for item in items]

        seen, _ = await asyncio.gather(asyncio.gather(*(browse(i) for i in range(40))),
                                       readd(run, repo_names(20, start=500)))
        readded = set(repo_names(20, start=500))
        for index, names in enumerate(seen):  # the re-added ones may be hidden while removed, nothing else
            assert names == sorted(set(names)), index
            assert set(names) <= set(user_repos(index)) and set(user_repos(index)) - set(names) <= readded, index
        for index in range(40):
            assert [i["repo"] for i in await run.all_pages(apis[index], "GET /api/repos", "/api/repos")] == \
                user_repos(index)
        # Each user's list was read from GitHub once (the first request), whatever ran alongside.
        assert len(run.fake.calls("GET", "/user/installations")) == 40
        print("\n" + run.report())


async def test_repositories_page_by_cursor_without_gaps_while_repositories_are_removed(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repo_names(REPOS),
                                                 repository_selection="all")
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[n] for n in repo_names(REPOS)]))
        run.fake.add_user("maint0", 5000, installations={INSTALLATION: repo_names(REPOS)})
        api = await run.log_in("maint0")
        first = await run.timed_get(api, "GET /api/repos", "/api/repos", per_page=100)
        gone = repo_names(50, start=10)  # removed from the page already shown, between the two requests
        run.fake.state.installation_repos[INSTALLATION] = [
            n for n in run.fake.state.installation_repos[INSTALLATION] if n not in gone]
        await run.deliver("installation_repositories", installation_repositories(
            run.fake, "removed", [run.fake.state.repos[n] for n in gone]))
        second = await run.timed_get(api, "GET /api/repos", "/api/repos", per_page=100,
                                     after=first["items"][-1]["repo"].upper())
        assert [i["repo"] for i in first["items"] + second["items"]] == repo_names(200)
        status, body = await api.get("/api/repos", after="x" * 142)
        assert (status, body["error"]["code"]) == (400, "bad_request")
