"""handlers.repositories: a repository renamed or transferred on GitHub takes what is stored under its old name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gidgethub import sansio

from handlers import repositories as handler
from quantumreview.analysis.checklist import Item
from quantumreview.plugins import load_handlers
from quantumreview.testing.context import make_context
from quantumreview.testing.fake import FakeGitHub
from storage import checklists as checklist_store
from storage import installations as installation_store
from storage import pulls as pull_store
from storage.db import Database

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
REPO = "Octocoders/Hello-World"  # the repository of the copied payloads, as named now


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


async def _stored_as(fake_github: FakeGitHub, db: Database, old: str) -> int:
    """The repository (GitHub's id) stored with a checklist and a pull request under `old`; GitHub names it REPO."""
    fake_github.add_installation(1, account="Octocoders", repositories=[REPO])
    repo_id = int(fake_github.state.repos[REPO]["id"])
    async with db.transaction() as conn:
        await installation_store.upsert_installation(conn, {"id": 1, "account": {"login": "Octocoders"}}, 1.0)
        await installation_store.add_repositories(conn, 1, [{"id": repo_id, "full_name": old}], 1.0)
        await checklist_store.save_checklist(
            conn, repo=old, issue_number=1, installation_id=1, title="t", state="open",
            items=[Item("T1", "Log in", "")], next_number=2, truncated=False, total_found=1, change={}, now=1.0)
        await pull_store.upsert_pull(
            conn, repo=old, number=2, installation_id=1, title="t", state="open", merged=False, head_sha="a" * 40,
            head_ref="x", base_ref="main", linked=[{"repo": old, "number": 1, "source": "keyword"}], now=1.0)
    return repo_id


@pytest.mark.parametrize(("fixture", "old"), [("repository.renamed.1", "Octocoders/Old-World"),
                                              ("repository.transferred.2", "octocat/Hello-World")])
async def test_a_renamed_or_transferred_repository_takes_its_checklists_and_pulls_at_once(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database, fixture: str, old: str) -> None:
    """The App heard of no rename: checklists and pull requests stayed under the old name (the dashboard showed
    the repository without them) until the repository's next issue or pull request event."""
    data = load(fixture)
    data["repository"] = {**data["repository"], "id": await _stored_as(fake_github, handler_db, old)}
    ctx, _ = make_context("repository", data, db=handler_db, github=github_app)
    await handler.follow_repository(ctx.event, ctx)
    assert await installation_store.active_repositories(handler_db, 1) == [REPO]
    assert await checklist_store.get_checklist(handler_db, REPO, 1) is not None
    assert await pull_store.open_pulls_linking(handler_db, REPO, 1) == [(REPO, 2, 1)]
    assert await pull_store.get_pull(handler_db, old, 2) is None


async def test_a_late_rename_delivery_does_not_rename_it_back(fake_github: FakeGitHub, github_app: Any,
                                                              handler_db: Database) -> None:
    """Deliveries are not ordered: one carrying a name the repository has since left must not take it back."""
    data = load("repository.renamed.1")
    data["repository"] = {**data["repository"], "id": await _stored_as(fake_github, handler_db, REPO),
                          "full_name": "Octocoders/Older-Name"}
    ctx, _ = make_context("repository", data, db=handler_db, github=github_app)
    await handler.follow_repository(ctx.event, ctx)
    assert await installation_store.active_repositories(handler_db, 1) == [REPO]
    assert await pull_store.get_pull(handler_db, REPO, 2) is not None


def test_the_project_routes_repository_renames_and_transfers() -> None:
    registry = load_handlers("handlers", entry_point_group=None)
    for action in ("renamed", "transferred"):
        event = sansio.Event({"action": action}, event="repository", delivery_id="d")
        assert registry.handlers_for(event) == ["handlers.repositories:follow_repository"]
