"""Scale probe: a repository's issue list pages by cursor without repeats or gaps while new checklists arrive."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from quantumreview.access import RepoAccess
from tests.test_api_support import INSTALLATION, REPO, add_checklist, add_installation, database, sign_in

pytest_plugins = ["tests.test_api_support"]


async def test_issues_page_by_cursor_without_repeats_or_gaps_while_new_checklists_arrive(
        api_client: TestClient[Any, Any]) -> None:
    api = await sign_in(api_client, 1, "mona", [RepoAccess(REPO, INSTALLATION, "push")])
    db = database(api)
    await add_installation(db)
    for number in range(1, 151):
        await add_checklist(db, number, ["pending"])
    path = f"/api/repos/{REPO}/issues"
    status, first = await api.get(path, per_page=100)
    assert status == 200 and first["total"] == 150
    for number in range(151, 181):  # 30 new issues get checklists between the two pages
        await add_checklist(db, number, ["pending"])
    status, second = await api.get(path, per_page=100, before=first["items"][-1]["number"])
    assert status == 200 and second["total"] == 50
    numbers = [issue["number"] for issue in first["items"] + second["items"]]
    assert numbers == list(range(150, 0, -1))
    status, body = await api.get(path, before="x")
    assert (status, body["error"]["code"]) == (400, "bad_request")
