"""Installation lifecycle: the stored installations and repositories follow GitHub exactly (WH-23, WH-24)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from handlers import installations as handler
from quantumreview.errors import InstallationSuspended
from quantumreview.jobs import SUSPENDED_RECHECK, describe_error
from quantumreview.testing.context import make_context
from quantumreview.testing.fake import FakeGitHub
from storage import installations as store
from storage.db import Database

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


async def call(fn: Any, event: str, data: dict[str, Any], db: Database, github: Any = None) -> Any:
    ctx, recorder = make_context(event, data, db=db, github=github)
    await fn(ctx.event, ctx)
    return recorder


async def test_created_stores_installation_and_its_repositories(handler_db: Database) -> None:
    data = load("installation.created.1")
    recorder = await call(handler.record_installation, "installation", data, handler_db)
    inst_id = data["installation"]["id"]
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and not installation.deleted and not installation.suspended
    expected = sorted(r["full_name"] for r in data["repositories"])
    assert await store.active_repositories(handler_db, inst_id) == expected
    assert {n["repo"] for n in recorder.notifications} == set(expected)


async def test_repositories_added_and_removed_follow(handler_db: Database) -> None:
    created = load("installation.created.1")
    await call(handler.record_installation, "installation", created, handler_db)
    added = load("installation_repositories.added.1")
    added["installation"]["id"] = created["installation"]["id"]
    await call(handler.update_repositories, "installation_repositories", added, handler_db)
    names = set(await store.active_repositories(handler_db, created["installation"]["id"]))
    assert {r["full_name"] for r in added["repositories_added"]} <= names
    removed = load("installation_repositories.removed.1")
    removed["installation"]["id"] = created["installation"]["id"]
    await call(handler.update_repositories, "installation_repositories", removed, handler_db)
    after = set(await store.active_repositories(handler_db, created["installation"]["id"]))
    assert not {r["full_name"] for r in removed["repositories_removed"]} & after


async def test_selection_all_reads_the_full_list_from_github(fake_github: FakeGitHub, github_app: Any,
                                                             handler_db: Database) -> None:
    data = load("installation.created.1")
    inst_id = data["installation"]["id"]
    data["installation"]["repository_selection"] = "all"
    repos = [f"Codertocat/repo-{i}" for i in range(45)]
    fake_github.add_installation(inst_id, account="Codertocat", repositories=repos, repository_selection="all")
    await call(handler.record_installation, "installation", data, handler_db, github_app)
    assert await store.active_repositories(handler_db, inst_id) == sorted(repos)


async def test_deleted_hides_repositories_and_cancels_queued_jobs(handler_db: Database) -> None:
    data = load("installation.created.1")
    inst_id = data["installation"]["id"]
    await call(handler.record_installation, "installation", data, handler_db)
    await handler_db.execute(
        "INSERT INTO jobs (handler, ordering_key, installation_id, run_after, created_at) VALUES ('m:f', 'k', ?, 0, 0)",
        (inst_id,),
    )
    deleted = load("installation.deleted.1")
    deleted["installation"]["id"] = inst_id
    recorder = await call(handler.forget_installation, "installation", deleted, handler_db)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and installation.deleted
    assert await store.active_repositories(handler_db, inst_id) == []
    assert await store.installation_for_repo(handler_db, data["repositories"][0]["full_name"]) is None
    assert await handler_db.fetchvalue("SELECT status FROM jobs") == "cancelled"
    assert all(n["kind"] == "uninstalled" for n in recorder.notifications) and recorder.notifications


async def test_suspend_then_unsuspend(handler_db: Database) -> None:
    created = load("installation.created.1")
    inst_id = created["installation"]["id"]
    await call(handler.record_installation, "installation", created, handler_db)
    suspend = load("installation.suspend.1")
    suspend["installation"]["id"] = inst_id
    await call(handler.suspend_installation, "installation", suspend, handler_db)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and installation.suspended
    unsuspend = load("installation.unsuspend.1")
    unsuspend["installation"]["id"] = inst_id
    await call(handler.record_installation, "installation", unsuspend, handler_db)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and not installation.suspended


async def _installed_then_deleted(db: Database) -> dict[str, Any]:
    data = load("installation.created.1")
    await call(handler.record_installation, "installation", data, db)
    deleted = load("installation.deleted.1")
    deleted["installation"]["id"] = data["installation"]["id"]
    await call(handler.forget_installation, "installation", deleted, db)
    return data


async def test_late_created_does_not_revive_a_deleted_installation(
        handler_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """A redelivered `created` after `deleted`: a reinstall gets a new id, so this one stays deleted (WH-23)."""
    data = await _installed_then_deleted(handler_db)
    inst_id = data["installation"]["id"]
    with caplog.at_level(logging.INFO, logger="quantumreview.handler"):
        recorder = await call(handler.record_installation, "installation", data, handler_db)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and installation.deleted
    assert await store.active_repositories(handler_db, inst_id) == []
    assert recorder.notifications == []  # no "installed" notice for a deleted installation
    assert any(f"deleted installation {inst_id}" in r.getMessage() for r in caplog.records)


async def test_late_suspend_does_not_revive_a_deleted_installation(handler_db: Database) -> None:
    """`suspend` delivered late (GitHub does not order deliveries) after `deleted` changes nothing."""
    data = await _installed_then_deleted(handler_db)
    inst_id = data["installation"]["id"]
    suspend = load("installation.suspend.1")
    suspend["installation"]["id"] = inst_id
    await call(handler.suspend_installation, "installation", suspend, handler_db)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and installation.deleted and not installation.suspended
    assert await store.active_repositories(handler_db, inst_id) == []


async def test_late_repositories_added_does_not_revive_a_deleted_installation(handler_db: Database) -> None:
    data = await _installed_then_deleted(handler_db)
    inst_id = data["installation"]["id"]
    added = load("installation_repositories.added.1")
    added["installation"]["id"] = inst_id
    await call(handler.update_repositories, "installation_repositories", added, handler_db)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and installation.deleted
    assert await store.active_repositories(handler_db, inst_id) == []


async def test_unsuspend_wakes_the_jobs_deferred_while_suspended(handler_db: Database) -> None:
    """WH-25: jobs put back for the suspension run right after `unsuspend`, not SUSPENDED_RECHECK later."""
    created = load("installation.created.1")
    inst_id = created["installation"]["id"]
    await call(handler.record_installation, "installation", created, handler_db)
    later = time.time() + SUSPENDED_RECHECK
    suspended_error = describe_error(InstallationSuspended(f"installation {inst_id} is suspended"))
    rows = [
        (inst_id, suspended_error),  # deferred by the runner because of the suspension: woken
        (inst_id, "RetryLater: GitHub POST /x answered 502"),  # waiting out a retry backoff: keeps its wait
        (inst_id + 1, suspended_error),  # another installation, still suspended: keeps its wait
    ]
    for installation_id, error in rows:
        await handler_db.execute(
            "INSERT INTO jobs (handler, ordering_key, installation_id, run_after, created_at, last_error) "
            "VALUES ('m:f', 'k', ?, ?, 0, ?)",
            (installation_id, later, error),
        )
    unsuspend = load("installation.unsuspend.1")
    unsuspend["installation"]["id"] = inst_id
    before = time.time()
    await call(handler.record_installation, "installation", unsuspend, handler_db)
    run_after = [row[0] for row in await handler_db.fetchall("SELECT run_after FROM jobs ORDER BY id")]
    assert before <= run_after[0] <= time.time()
    assert run_after[1:] == [later, later]


async def test_unsuspend_also_wakes_the_job_whose_token_mint_found_the_suspension(handler_db: Database) -> None:
    """The job that met the mint's 403 was deferred with InstallationSuspendedByGitHub, a subclass: woken too."""
    from quantumreview.errors import InstallationSuspendedByGitHub

    created = load("installation.created.1")
    inst_id = created["installation"]["id"]
    await call(handler.record_installation, "installation", created, handler_db)
    error = describe_error(InstallationSuspendedByGitHub(f"installation {inst_id} is suspended",
                                                         installation_id=inst_id))
    await handler_db.execute("INSERT INTO jobs (handler, ordering_key, installation_id, run_after, created_at, "
                             "last_error) VALUES ('m:f', 'k', ?, ?, 0, ?)", (inst_id, time.time() + SUSPENDED_RECHECK,
                                                                             error))
    unsuspend = load("installation.unsuspend.1")
    unsuspend["installation"]["id"] = inst_id
    await call(handler.record_installation, "installation", unsuspend, handler_db)
    assert await handler_db.fetchvalue("SELECT run_after FROM jobs") <= time.time()


async def test_created_arriving_after_its_deleted_does_not_bring_the_installation_in(handler_db: Database) -> None:
    """GitHub does not order deliveries: `deleted` for an installation never stored changed nothing, and the
    `created` behind it stored it as live, listing its repositories and sending 'installed' notices."""
    data = load("installation.created.1")
    inst_id = data["installation"]["id"]
    deleted = load("installation.deleted.1")
    deleted["installation"]["id"] = inst_id
    await call(handler.forget_installation, "installation", deleted, handler_db)
    recorder = await call(handler.record_installation, "installation", data, handler_db)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and installation.deleted
    assert installation.account_login == deleted["installation"]["account"]["login"]
    assert await store.active_repositories(handler_db, inst_id) == []
    assert recorder.notifications == []


async def test_a_suspend_delivered_after_its_unsuspend_does_not_hold_the_installation(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    """Deliveries are not ordered (and the redelivery sweep resends failed ones late): a `suspend` processed after
    its `unsuspend` left the installation suspended for good, its jobs deferred every 5 minutes. GitHub's own
    record decides; a current suspension is still recorded."""
    created = load("installation.created.1")
    inst_id = created["installation"]["id"]
    fake_github.add_installation(inst_id, account="Codertocat", repositories=["Codertocat/Hello-World"])
    await call(handler.record_installation, "installation", created, handler_db)
    unsuspend, suspend = load("installation.unsuspend.1"), load("installation.suspend.1")
    unsuspend["installation"]["id"] = suspend["installation"]["id"] = inst_id
    await call(handler.record_installation, "installation", unsuspend, handler_db, github_app)
    await call(handler.suspend_installation, "installation", suspend, handler_db, github_app)  # the late one
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and not installation.suspended
    fake_github.suspend_installation(inst_id)
    await call(handler.suspend_installation, "installation", suspend, handler_db, github_app)
    installation = await store.get_installation(handler_db, inst_id)
    assert installation is not None and installation.suspended


async def test_repositories_added_arriving_after_its_removed_does_not_list_the_repository(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    """Deliveries are not ordered: an `added` processed after the `removed` that followed it listed the repository
    again and sent an 'installed' notice, though the App no longer reaches it. GitHub's list decides."""
    created = load("installation.created.1")
    inst_id = created["installation"]["id"]
    fake_github.add_installation(inst_id, account="Codertocat", repositories=["Codertocat/Hello-World"])
    await call(handler.record_installation, "installation", created, handler_db, github_app)
    space = {"id": 186853007, "name": "Space", "full_name": "Codertocat/Space", "private": False}
    removed, added = load("installation_repositories.removed.1"), load("installation_repositories.added.1")
    removed["installation"]["id"] = added["installation"]["id"] = inst_id
    removed["repositories_removed"], added["repositories_added"] = [space], [space]
    await call(handler.update_repositories, "installation_repositories", removed, handler_db, github_app)
    recorder = await call(handler.update_repositories, "installation_repositories", added, handler_db, github_app)
    assert await store.active_repositories(handler_db, inst_id) == ["Codertocat/Hello-World"]
    assert recorder.notifications == []


async def test_a_created_redelivered_late_does_not_undo_later_repository_changes(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    """A `created` carries the repository list of its time: redelivered (or processed) after repositories were
    added, it removed them from the stored list until the next change. GitHub's list decides."""
    created = load("installation.created.1")
    inst_id = created["installation"]["id"]
    fake_github.add_installation(inst_id, account="Codertocat", repositories=["Codertocat/Hello-World"])
    await call(handler.record_installation, "installation", created, handler_db, github_app)
    space = fake_github.add_repository(inst_id, "Codertocat/Space")
    added = load("installation_repositories.added.1")
    added["installation"]["id"] = inst_id
    added["repositories_added"] = [{k: space[k] for k in ("id", "name", "full_name", "private")}]
    await call(handler.update_repositories, "installation_repositories", added, handler_db, github_app)
    await call(handler.record_installation, "installation", created, handler_db, github_app)  # redelivered
    assert await store.active_repositories(handler_db, inst_id) == ["Codertocat/Hello-World", "Codertocat/Space"]


async def test_a_renamed_repository_keeps_its_checklists(fake_github: FakeGitHub, github_app: Any,
                                                         handler_db: Database) -> None:
    """GitHub keeps a renamed (or transferred) repository's id: the row took the new name but its checklists
    stayed under the old one, so the dashboard showed the repository without them."""
    from storage import checklists as checklist_store

    fake_github.add_installation(7, account="Codertocat", repositories=["Codertocat/Hello-World"])
    repo_id = fake_github.state.repos["Codertocat/Hello-World"]["id"]
    async with handler_db.transaction() as conn:
        await store.upsert_installation(conn, {"id": 7, "account": {"login": "Codertocat"}}, 1.0)
        await store.add_repositories(conn, 7, [{"id": repo_id, "full_name": "Codertocat/Old-Name"}], 1.0)
        await checklist_store.save_checklist(
            conn, repo="Codertocat/Old-Name", issue_number=1, installation_id=7, title="t", state="open", items=[],
            next_number=4, truncated=False, total_found=0, change={}, now=1.0)
    added = {"action": "added", "installation": {"id": 7, "account": {"login": "Codertocat"}},
             "repositories_added": [], "repositories_removed": []}
    await call(handler.update_repositories, "installation_repositories", added, handler_db, github_app)
    assert await store.active_repositories(handler_db, 7) == ["Codertocat/Hello-World"]
    checklist = await checklist_store.get_checklist(handler_db, "Codertocat/Hello-World", 1)
    assert checklist is not None and checklist.next_number == 4
    assert await checklist_store.get_checklist(handler_db, "Codertocat/Old-Name", 1) is None


async def test_after_a_reinstall_a_pull_in_a_sibling_repository_still_sees_an_issues_criteria(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    """GitHub gives a reinstall a new id; checklists kept the deleted installation's until their issue was edited,
    so a pull request in another repository of the new installation linking the issue was told 'not visible to
    the app (install it on ...)', though the App was installed there."""
    from quantumreview.analysis.checklist import Item
    from quantumreview.pull_requests import linked_criteria
    from storage import checklists as checklist_store

    repos = ["Codertocat/Hello-World", "Codertocat/Other"]
    async with handler_db.transaction() as conn:
        await store.upsert_installation(conn, {"id": 6, "account": {"login": "Codertocat"}}, 1.0)
        await checklist_store.save_checklist(
            conn, repo=repos[0], issue_number=1, installation_id=6, title="t", state="open",
            items=[Item("T1", "Log in", "")], next_number=2, truncated=False, total_found=1, change={}, now=1.0)
        await store.mark_deleted(conn, 6, 2.0)
    fake_github.add_installation(7, account="Codertocat", repositories=repos)
    created = load("installation.created.1")
    created["installation"] = {**created["installation"], "id": 7}
    created.pop("repositories", None)
    await call(handler.record_installation, "installation", created, handler_db, github_app)
    ctx, _ = make_context("pull_request", {"installation": {"id": 7}}, db=handler_db)
    criteria, problems = await linked_criteria(ctx, repos[1], [{"repo": repos[0], "number": 1}])
    assert problems == [] and [c.tid for c in criteria] == ["T1"]


async def test_a_renamed_repository_keeps_its_pull_requests_and_their_links(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    """Pull requests, their manifests and links stayed under a renamed repository's old name: the dashboard and
    events carrying the new name did not find them, a criteria edit revalidated nothing, and a CI verdict read the
    linked issue under the old name ('not visible to the app') so judged no criteria."""
    from quantumreview.analysis.checklist import Item
    from quantumreview.pull_requests import linked_criteria
    from storage import checklists as checklist_store
    from storage import pulls as pull_store

    old, new, other = "Codertocat/Old-Name", "Codertocat/Hello-World", "Codertocat/Other"
    fake_github.add_installation(7, account="Codertocat", repositories=[new, other])
    repo_id = fake_github.state.repos[new]["id"]
    async with handler_db.transaction() as conn:
        await store.upsert_installation(conn, {"id": 7, "account": {"login": "Codertocat"}}, 1.0)
        await store.add_repositories(conn, 7, [{"id": repo_id, "full_name": old}], 1.0)
        await checklist_store.save_checklist(
            conn, repo=old, issue_number=1, installation_id=7, title="t", state="open",
            items=[Item("T1", "Log in", "")], next_number=2, truncated=False, total_found=1, change={}, now=1.0)
        for repo, link in ((old, old), (other, "codertocat/OLD-name")):  # links are kept as written
            await pull_store.upsert_pull(
                conn, repo=repo, number=2, installation_id=7, title="t", state="open", merged=False,
                head_sha="a" * 40, head_ref="x", base_ref="main", linked=[{"repo": link, "number": 1,
                                                                           "source": "keyword"}], now=1.0)
        await pull_store.set_pull_comment_id(conn, old, 2, 555)
        await pull_store.save_manifest(conn, repo=old, pr_number=2, head_sha="a" * 40, manifest={"v": 1}, now=1.0)
    added = {"action": "added", "installation": {"id": 7, "account": {"login": "Codertocat"}},
             "repositories_added": [], "repositories_removed": []}
    await call(handler.update_repositories, "installation_repositories", added, handler_db, github_app)
    pull = await pull_store.get_pull(handler_db, new, 2)
    assert pull is not None and pull.comment_id == 555 and await pull_store.get_pull(handler_db, old, 2) is None
    assert await pull_store.get_manifest(handler_db, new, 2, "a" * 40) is not None
    assert await pull_store.open_pulls_linking(handler_db, new, 1) == [(new, 2, 7), (other, 2, 7)]
    assert await pull_store.open_pulls_for_sha(handler_db, new, "a" * 40) == [2]
    other_pull = await pull_store.get_pull(handler_db, other, 2)
    assert other_pull is not None
    ctx, _ = make_context("workflow_run", {"installation": {"id": 7}}, db=handler_db)
    criteria, problems = await linked_criteria(ctx, other, other_pull.linked)
    assert problems == [] and [c.tid for c in criteria] == ["T1"]


async def test_a_renamed_repository_keeps_its_ci_runs_and_health_history(handler_db: Database) -> None:
    """Runs and health scores stayed under the old name: the repository's health history was lost, so its pull
    requests' scores had no baseline to compare with."""
    from storage import runs as run_store

    async with handler_db.transaction() as conn:
        await store.upsert_installation(conn, {"id": 7, "account": {"login": "Codertocat"}}, 1.0)
        await store.add_repositories(conn, 7, [{"id": 55, "full_name": "Codertocat/Old-Name"}], 1.0)
        for repo, run_id in (("Codertocat/Old-Name", 1), ("Codertocat/Old-Name", 2), ("Codertocat/New-Name", 2)):
            await run_store.record_run(conn, repo=repo, run_id=run_id, run_attempt=1, head_sha="a" * 40,
                                       head_branch="main", conclusion="success", results={"T1": repo},
                                       report_error=None, health=None, now=1.0)
        await run_store.record_health_score(conn, repo="Codertocat/Old-Name", head_sha="a" * 40, branch="main",
                                            score=90, counts={}, now=1.0)
        await store.add_repositories(conn, 7, [{"id": 55, "full_name": "Codertocat/New-Name"}], 2.0)
    moved = await run_store.get_run(handler_db, "Codertocat/New-Name", 1)
    kept = await run_store.get_run(handler_db, "Codertocat/New-Name", 2)  # stored under the new name: it wins
    assert moved is not None and kept is not None and kept.results == {"T1": "Codertocat/New-Name"}
    assert await run_store.get_run(handler_db, "Codertocat/Old-Name", 1) is None
    score = await run_store.latest_health_score(handler_db, "Codertocat/New-Name", "main")
    assert score is not None and score.score == 90


async def test_a_renamed_repository_keeps_its_audit_log_and_notifications(handler_db: Database) -> None:
    """The audit log and notifications are read by the name GitHub gives the repository now: the entries and
    notifications made before a rename disappeared from the dashboard."""
    from storage import audit

    await audit.record(handler_db, repo="Codertocat/Old-Name", actor="octocat", action="regenerate", target="#1",
                       details=None, now=1.0)
    async with handler_db.transaction() as conn:
        await store.upsert_installation(conn, {"id": 7, "account": {"login": "Codertocat"}}, 1.0)
        await store.add_repositories(conn, 7, [{"id": 55, "full_name": "Codertocat/Old-Name"}], 1.0)
        await conn.execute("INSERT INTO users (id, login, created_at, updated_at) VALUES (1, 'octocat', 1.0, 1.0)")
        await conn.execute("INSERT INTO notifications (user_id, repo, kind, title, created_at) "
                           "VALUES (1, 'Codertocat/Old-Name', 'flag', 't', 1.0)")
        await store.add_repositories(conn, 7, [{"id": 55, "full_name": "Codertocat/New-Name"}], 2.0)
    entries, total = await audit.list_for_repo(handler_db, "Codertocat/New-Name")
    assert total == 1 and [e.action for e in entries] == ["regenerate"]
    assert await handler_db.fetchvalue("SELECT repo FROM notifications") == "Codertocat/New-Name"
