"""Every /api route of the app as create_app wires it, table-driven from the OpenAPI document.

OA-14: another user's repository is 404 on every route (the same answer as a repository that does not exist), and
nothing changes. OA-20: a cross-site or non-JSON state change is refused with nothing changed. OA-21: every /api
answer, errors included, is no-store and nosniff JSON.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from quantumreview.api.openapi import build_document
from storage.db import Database
from tests.test_api_support import (
    OTHER,
    REPO,
    Api,
    add_checklist,
    add_installation,
    add_manifest,
    add_pull,
    database,
)

pytest_plugins = ["tests.test_api_support"]

METHODS = ("get", "post", "put", "patch", "delete")
ROUTES = sorted((method.upper(), path) for path, operations in build_document()["paths"].items()
                for method in operations if method in METHODS)
REPO_ROUTES = [route for route in ROUTES if "{owner}" in route[1]]
STATE_CHANGING = [route for route in REPO_ROUTES if route[0] != "GET"]


def concrete(template: str, repo: str) -> str:
    """The route for `repo`, issue / pull request 1."""
    owner, name = repo.split("/")
    path = template.replace("{owner}", owner).replace("{repo}", name)
    return re.sub(r"\{[a-z_]+\}", "1", path)


async def seed(db: Database) -> None:
    """Issue 1 and pull request 1 (with a manifest) in both the user's repository and the other one."""
    await add_installation(db, 42, REPO)
    await add_installation(db, 99, OTHER)
    for repo in (REPO, OTHER):
        await add_checklist(db, 1, ["pending"], repo=repo)
        await add_pull(db, 1, repo=repo, links=[(repo, 1)], head_sha="abc123")
        await add_manifest(db, 1, "abc123", {"version": 1, "coverage": []}, repo=repo)


async def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: a refused request must leave all of them as they were."""
    names = [row[0] for row in await db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {name: [tuple(row) for row in await db.fetchall(f'SELECT * FROM "{name}"')]  # noqa: S608 - own names
            for name in names}


def test_the_table_covers_the_state_changing_routes() -> None:
    # Why: a table built from the document could silently shrink; these are the routes that act.
    assert {path.rsplit("/", 1)[1] for _, path in STATE_CHANGING} == {"regenerate", "revalidate", "flag_for_merge"}
    assert len(REPO_ROUTES) >= 9


@pytest.mark.parametrize(("method", "template"), REPO_ROUTES)
async def test_another_users_repository_is_404_and_nothing_changes(maintainer: Api, method: str,
                                                                   template: str) -> None:
    db = database(maintainer)
    await seed(db)
    before = await snapshot(db)
    status, body = await maintainer.call(method, concrete(template, OTHER))
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert await snapshot(db) == before
    # The same route on the user's own repository is served: the 404 above is the access check, not the route.
    status, _ = await maintainer.call(method, concrete(template, REPO))
    assert status in (200, 202)


@pytest.mark.parametrize(("method", "template"), STATE_CHANGING)
@pytest.mark.parametrize(("headers", "expected"), [
    ({"Origin": "https://evil.example"}, (403, "csrf")),
    ({"Origin": "null", "Referer": "https://evil.example/page"}, (403, "csrf")),
    ({"Content-Type": "text/plain"}, (415, "unsupported_media_type")),
    ({"Content-Type": "application/x-www-form-urlencoded"}, (415, "unsupported_media_type")),
])
async def test_cross_site_or_non_json_state_changes_are_refused_and_change_nothing(
        maintainer: Api, method: str, template: str, headers: dict[str, str], expected: tuple[int, str]) -> None:
    db = database(maintainer)
    await seed(db)
    before = await snapshot(db)
    sent = {"Origin": "http://localhost:8000", "Cookie": maintainer.cookie, **headers}
    async with maintainer.client.request(method, concrete(template, REPO), headers=sent, data=b"x=1") as response:
        assert (response.status, (await response.json())["error"]["code"]) == expected
    assert await snapshot(db) == before


@pytest.mark.parametrize(("method", "template"), ROUTES)
async def test_every_api_answer_is_no_store_and_nosniff_json(maintainer: Api, method: str, template: str) -> None:
    await seed(database(maintainer))
    for path, cookie in ((concrete(template, REPO), maintainer.cookie), (concrete(template, OTHER), maintainer.cookie),
                         (concrete(template, REPO), "")):  # served, refused (404), and signed out (401)
        headers = {"Origin": "http://localhost:8000", **({"Cookie": cookie} if cookie else {})}
        async with maintainer.client.request(method, path, headers=headers) as response:
            assert response.content_type == "application/json", path
            assert response.headers.get("Cache-Control") == "no-store", (path, response.status)
            assert response.headers.get("X-Content-Type-Options") == "nosniff", (path, response.status)


async def test_an_unknown_api_path_is_no_store_json_too(maintainer: Api) -> None:
    async with maintainer.client.get("/api/nothing-here", headers={"Cookie": maintainer.cookie}) as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        assert response.headers.get("Cache-Control") == "no-store"
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
