"""Scale probe: an organization installs the App on all of its 600 repositories, changes 100 at once, transfers one
out and renames one; 40 maintainers log in and page through the API while deliveries keep arriving."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantumreview import demo_fixtures as data
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
