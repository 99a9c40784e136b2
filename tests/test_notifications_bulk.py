"""An organization installing the App on 600 repositories: their managers' notifications in one transaction."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantumreview import demo_fixtures as data
from storage import notifications, users
from storage.db import Database
from storage.users import StoredTokens, User, UserRepository
from tests.test_scale_support import INSTALLATION, ORG, repo_names, stage

REPOS = 600
MANAGERS = (1, 2)


async def managers_of(db: Database, repos: list[str]) -> None:
    for user_id in MANAGERS:
        await users.save_user(db, User(id=user_id, login=f"maintainer-{user_id}"), StoredTokens(token_enc=b"x"),
                              now=1.0)
        await users.set_user_repositories(db, user_id, [UserRepository(r, INSTALLATION, "admin") for r in repos],
                                          now=1.0)


async def kinds_by_repo(db: Database, user_id: int) -> dict[str, list[str]]:
    rows = await db.fetchall("SELECT repo, kind FROM notifications WHERE user_id = ? ORDER BY id", (user_id,))
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["repo"], []).append(row["kind"])
    return found


async def test_many_repositories_managers_are_notified_in_one_transaction_once_per_key(db: Database) -> None:
    repos = repo_names(5)
    await managers_of(db, repos[:4])  # nobody manages the fifth
    notes = [(repo, f"installed on {repo}", f"installed:1:{repo}") for repo in repos]
    commits = db.commits
    assert await notifications.notify_repos_managers(db, notes, "installed", now=5.0) == 8
    assert db.commits == commits + 1
    assert await notifications.notify_repos_managers(db, notes, "installed") == 0  # a rerun
    assert await notifications.notify_repos_managers(db, [(repos[0], "unkeyed", None)] * 2, "k") == 4
    listed, total = await notifications.list_notifications(db, 1, unread_only=False, page=1, per_page=100)
    assert total == 6 and {(n.repo, n.kind, n.title) for n in listed if n.kind == "installed"} == {
        (repo, "installed", f"installed on {repo}") for repo in repos[:4]}


async def test_installing_on_600_repositories_notifies_their_managers_in_a_few_transactions(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the 600 repositories' managers is told once, as before, but no longer one commit per repository
    (600 commits, each a turn of the one writer that every other job and the intake wait for)."""
    async with stage(tmp_path, rsa_private_key, aiohttp_client, monkeypatch) as run:
        repos = repo_names(REPOS)
        await managers_of(run.db, repos)
        installation = run.fake.add_installation(INSTALLATION, account=ORG, repositories=repos,
                                                 repository_selection="all")
        commits, started = run.db.commits, time.perf_counter()
        await run.deliver("installation", data.installation_created(
            installation, [run.fake.state.repos[name] for name in repos]))
        elapsed, written = time.perf_counter() - started, run.db.commits - commits
        for user_id in MANAGERS:
            assert await kinds_by_repo(run.db, user_id) == {repo: ["installed"] for repo in repos}
        # The intake, the job's claim and end, the repository list, the notifications: not one per repository.
        assert written < 20, (written, elapsed)
