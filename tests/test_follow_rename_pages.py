"""follow_rename reads the installation's repository list 100 a page, as the installation handlers do (fcff826)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gidgethub import sansio

from quantumreview.checklists import follow_rename
from quantumreview.context import Context
from quantumreview.settings import Settings
from storage import installations as installation_store
from storage.db import Database


class ListingGitHub:
    """Answers GET /installation/repositories with one renamed repository; notes each URL listed."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def getiter(self, url: str, **_: Any) -> AsyncIterator[dict[str, Any]]:
        self.urls.append(url)
        yield {"id": 7, "full_name": "octo/new-name"}


async def nothing(*_: Any, **__: Any) -> int:
    return 0


async def test_a_rename_caught_up_reads_the_repository_list_100_a_page(db: Database) -> None:
    """At GitHub's default 30 a page an organization's 600 repositories took 20 requests, not 6."""
    async with db.transaction() as conn:
        await installation_store.upsert_installation(conn, {"id": 1, "account": {"login": "octo"}}, 1.0)
        await installation_store.add_repositories(conn, 1, [{"id": 7, "full_name": "octo/old-name"}], 1.0)
    gh = ListingGitHub()
    event = sansio.Event({}, event="issues", delivery_id="d-1")
    ctx = Context(event=event, db=db, settings=Settings(), gh=gh, github=None, installation_id=1, delivery_id="d-1",
                  job_id=1, attempt=1, enqueue=nothing, notify=nothing)
    await follow_rename(ctx, {"id": 7, "full_name": "octo/new-name"})
    assert await installation_store.repository_name(db, 7) == "octo/new-name"
    assert gh.urls == ["/installation/repositories?per_page=100"]
