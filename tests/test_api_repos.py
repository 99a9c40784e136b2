"""GET /api/me, /api/repos, /api/repos/{o}/{r} and its install link: counts, health trend, no existence leak."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from quantumreview import keys
from quantumreview.access import RepoAccess
from storage.db import Database
from tests.test_api_support import (
    INSTALLATION,
    OTHER,
    REPO,
    Api,
    add_checklist,
    add_health,
    add_installation,
    add_pull,
    database,
    sign_in,
)

pytest_plugins = ["tests.test_api_support"]


async def test_me_shows_profile_repository_count_and_unread_notifications(maintainer: Api) -> None:
    db = database(maintainer)
    for read_at in (None, None, time.time()):
        await db.execute("INSERT INTO notifications (user_id, kind, title, created_at, read_at) "
                         "VALUES (1, 'k', 't', ?, ?)", (time.time(), read_at))
    status, body = await maintainer.get("/api/me")
    assert status == 200
    assert body == {"id": 1, "login": "mona", "name": "Mona", "avatar_url": "https://avatars.test/mona",
                    "repositories": 1, "unread_notifications": 2}


async def test_api_without_session_is_401_json(api_client: TestClient[Any, Any]) -> None:
    status, body = await Api(api_client).get("/api/me")
    assert status == 401
    assert body["error"]["code"] == "unauthenticated"


async def test_api_with_forged_session_is_401(api_client: TestClient[Any, Any]) -> None:
    status, body = await Api(api_client, "quantum_session=eyJhbGciOiJub25lIn0.e30.").get("/api/repos")
    assert (status, body["error"]["code"]) == (401, "unauthenticated")


async def test_repos_lists_managed_repositories_with_counts(api_client: TestClient[Any, Any]) -> None:
    api = await sign_in(api_client, 1, "mona", [RepoAccess(REPO, INSTALLATION, "push"),
                                                 RepoAccess("octo/alpha", 7, "pull")])
    db = database(api)
    await add_checklist(db, 1, ["passed"])
    await add_checklist(db, 2, ["pending"], state="closed")
    await add_checklist(db, 3, ["pending"], repo=OTHER)
    await add_pull(db, 10)
    await add_pull(db, 11, state="closed")
    status, body = await api.get("/api/repos")
    assert status == 200
    assert body == {"items": [
        {"repo": "octo/alpha", "installation_id": 7, "permission": "pull", "issues": 0, "open_issues": 0,
         "open_pulls": 0},
        {"repo": REPO, "installation_id": INSTALLATION, "permission": "push", "issues": 2, "open_issues": 1,
         "open_pulls": 1},
    ], "page": 1, "per_page": 30, "total": 2}


async def test_repos_pages_by_name(api_client: TestClient[Any, Any]) -> None:
    repos = [RepoAccess(f"octo/r{i:02}", 1, "push") for i in range(5)]
    api = await sign_in(api_client, 1, "mona", repos)
    status, body = await api.get("/api/repos", page=2, per_page=2)
    assert status == 200
    assert [item["repo"] for item in body["items"]] == ["octo/r02", "octo/r03"]
    assert (body["page"], body["per_page"], body["total"]) == (2, 2, 5)


async def test_repo_detail_has_installation_counts_and_health_trend(maintainer: Api) -> None:
    db = database(maintainer)
    await add_installation(db)
    await add_checklist(db, 1, ["passed", "failed"])
    await add_checklist(db, 2, ["passed"], state="closed")
    await add_checklist(db, 3, ["passed"], retired=["T2"])
    await db.execute("UPDATE checklists SET retired_at = 1 WHERE issue_number = 3")  # a retired checklist: neither
    await add_pull(db, 5)
    for score, sha, at in ((70, "a", 100.0), (80, "b", 200.0), (75, "c", 300.0)):
        await add_health(db, score, sha, at)
    status, body = await maintainer.get(f"/api/repos/{REPO}")
    assert status == 200
    assert body["installation"] == {"id": INSTALLATION, "account_login": "octo", "account_type": "Organization",
                                    "suspended": False, "deleted": False}
    # Before: only `issues`, which counts the closed issue too (kept as it was, for clients using the total).
    assert (body["open_issues"], body["issues"], body["open_pulls"], body["permission"]) == (1, 2, 1, "push")
    assert body["health"]["latest"]["score"] == 75
    assert body["health"]["change"] == -5
    assert [p["score"] for p in body["health"]["trend"]] == [70, 80, 75]
    assert body["health"]["trend"][0]["at"] == "1970-01-01T00:01:40Z"


async def test_repo_detail_without_health_has_no_latest_score(maintainer: Api) -> None:
    status, body = await maintainer.get(f"/api/repos/{REPO}")
    assert status == 200
    assert body["health"] == {"branch": None, "latest": None, "change": None, "trend": []}
    assert body["installation"] is None


async def test_repo_names_match_case_insensitively(maintainer: Api) -> None:
    status, body = await maintainer.get("/api/repos/OCTO/Widgets")
    assert (status, body["repo"]) == (200, REPO)


async def test_unmanaged_repository_is_404_whether_it_exists_or_not(maintainer: Api) -> None:
    db = database(maintainer)
    await add_installation(db, 99, OTHER)
    await add_checklist(db, 1, ["passed"], repo=OTHER)
    for path in (f"/api/repos/{OTHER}", f"/api/repos/{OTHER}/issues", f"/api/repos/{OTHER}/issues/1",
                 f"/api/repos/{OTHER}/audit", "/api/repos/nobody/nothing", f"/api/repos/{OTHER}/install"):
        status, body = await maintainer.get(path)
        assert (status, body["error"]["code"]) == (404, "not_found"), path
    missing = await maintainer.get("/api/repos/nobody/nothing")
    hidden = await maintainer.get(f"/api/repos/{OTHER}")
    assert missing == hidden


async def test_install_url_uses_the_app_slug_when_known(maintainer: Api) -> None:
    app = maintainer.client.app
    current = app[keys.credentials].current
    assert current is not None
    app[keys.credentials].replace(dataclasses.replace(current, slug="quantum-review"))
    status, body = await maintainer.get(f"/api/repos/{REPO}/install")
    assert status == 200
    assert body == {"url": "https://github.com/apps/quantum-review/installations/new", "installation_id": INSTALLATION}


@pytest.mark.parametrize("settings_overrides", [{"github_url": "https://ghe.example/"}])
async def test_install_url_falls_back_to_the_installation_settings_page(maintainer: Api) -> None:
    current = maintainer.client.app[keys.credentials].current
    assert current is not None and current.slug is None
    status, body = await maintainer.get(f"/api/repos/{REPO}/install")
    assert status == 200
    assert body["url"] == f"https://ghe.example/settings/installations/{INSTALLATION}"


async def test_repo_health_trend_leaves_out_fork_pull_requests_scores(maintainer: Api) -> None:
    # A fork's score is kept under "owner:branch" (9d5c10d): the fork's code, not this repository's, so a fork
    # pull request's poor score must not become the repository's latest score, its change or a trend point.
    db = database(maintainer)
    for score, sha, at in ((70, "a", 100.0), (80, "b", 200.0)):
        await add_health(db, score, sha, at)
    await add_health(db, 10, "f", 300.0, branch="stranger:main")
    status, body = await maintainer.get(f"/api/repos/{REPO}")
    assert status == 200
    assert (body["health"]["latest"]["score"], body["health"]["change"]) == (80, 10)
    assert [p["score"] for p in body["health"]["trend"]] == [70, 80]


FEATURE_SCORES = ((20, "f1", 150.0, "feature"), (30, "f2", 250.0, "12-topic"), (25, "f3", 350.0, "feature"))


async def add_scores(db: Database, main: str = "main") -> None:
    """Scores 70, 80, 75 on `main` at 100, 200, 300 and feature branches' scores in between and after."""
    for score, sha, at in ((70, "a", 100.0), (80, "b", 200.0), (75, "c", 300.0)):
        await add_health(db, score, sha, at, branch=main)
    for score, sha, at, branch in FEATURE_SCORES:
        await add_health(db, score, sha, at, branch=branch)


async def test_repo_health_trend_follows_the_branch_pull_requests_target_not_feature_branches(
        maintainer: Api) -> None:
    db = database(maintainer)
    await add_scores(db)
    await add_pull(db, 5, head_sha="f3")  # feature → main
    status, body = await maintainer.get(f"/api/repos/{REPO}")
    assert status == 200
    # Before: the trend was [70, 20, 80, 30, 75, 25], latest the feature branch's 25 and change -50.
    assert body["health"]["branch"] == "main"
    assert [p["score"] for p in body["health"]["trend"]] == [70, 80, 75]
    assert (body["health"]["latest"]["score"], body["health"]["change"]) == (75, -5)
    status, pull = await maintainer.get(f"/api/repos/{REPO}/prs/5")  # a pull request's score stays its own
    assert (status, pull["health"]["score"], pull["health"]["branch"]) == (200, 25, "feature")


async def test_repo_health_trend_follows_the_base_most_pull_requests_target(maintainer: Api) -> None:
    db = database(maintainer)
    await add_scores(db, main="develop")
    await add_health(db, 99, "m", 400.0, branch="main")
    for number in (5, 6):
        await add_pull(db, number)
    await db.execute("UPDATE pull_requests SET base_ref = 'develop'")
    await add_pull(db, 7)  # one targets main
    _status, body = await maintainer.get(f"/api/repos/{REPO}")
    assert body["health"]["branch"] == "develop"
    assert [p["score"] for p in body["health"]["trend"]] == [70, 80, 75]


@pytest.mark.parametrize(("main", "expected"), [("master", "master"), ("trunk", "trunk")])
async def test_without_pull_requests_the_trend_follows_main_master_or_the_most_scored_branch(
        maintainer: Api, main: str, expected: str) -> None:
    db = database(maintainer)
    await add_scores(db, main=main)
    _status, body = await maintainer.get(f"/api/repos/{REPO}")
    assert body["health"]["branch"] == expected
    assert [p["score"] for p in body["health"]["trend"]] == [70, 80, 75]


async def test_scores_kept_without_a_branch_still_make_the_trend(maintainer: Api) -> None:
    db = database(maintainer)
    for score, at in ((60, 100.0), (65, 200.0)):
        await db.execute("INSERT INTO health_scores (repo, head_sha, branch, score, counts, at) "
                         "VALUES (?, 'x', NULL, ?, '{}', ?)", (REPO, score, at))
    _status, body = await maintainer.get(f"/api/repos/{REPO}")
    assert (body["health"]["branch"], [p["score"] for p in body["health"]["trend"]]) == (None, [60, 65])
