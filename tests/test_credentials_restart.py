"""The webhooks' App id outlives a restart (RELIABILITY GH-11).

It is what shows the App credentials to be the installations' App. Held in memory only, a fresh process whose only
known installation had been removed (its installation.deleted lost), with no delivery yet since its start, retried
that installation's jobs and never marked it deleted. It is now stored (one row) and read at start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.github import GitHubApp
from quantumreview.jobs import Backoff, JobRunner
from quantumreview.plugins import HandlerRegistry
from quantumreview.testing.fake import FakeGitHub
from storage import credentials as credential_store
from storage import installations as store
from storage import jobs as job_store
from storage.db import Database
from tests.github_support import Clock, no_sleep, wait_until


@pytest.fixture
async def fake(rsa_private_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key, clock=clock) as server:
        server.add_installation(7, repositories=["octo-org/app"])
        yield server
    assert server.contract_violations == []


def process(session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock, db: Database,
            make_settings: Any) -> tuple[GitHubApp, JobRunner]:
    """A fresh process: a new GitHub client (it knows nothing yet) and a job runner on the same database."""
    github = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url,
                       clock=clock, sleep=no_sleep)
    router = routing.Router()

    @router.register("issues")
    async def list_repositories(event: sansio.Event, ctx: Context) -> None:
        await ctx.gh.getitem("/installation/repositories")

    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(),
                       github_factory=github.for_installation, github=github, now=clock, poll_interval=0.05,
                       backoff=Backoff(base=0.02, cap=0.1))
    return github, runner


async def settled(db: Database, clock: Clock) -> bool:
    jobs = await job_store.list_jobs(db)
    return bool(jobs) and all(j.status not in ("queued", "running") or (j.status == "queued" and j.last_error and
                                                                        j.run_after > clock.now) for j in jobs)


@pytest.fixture
async def installed(handler_db: Database) -> Database:
    async with handler_db.transaction() as conn:
        await store.upsert_installation(conn, {"id": 7, "account": {"login": "octo-org"}}, 0.0)
    return handler_db


async def test_after_a_restart_the_stored_webhook_app_id_lets_a_404_mark_the_installation_deleted(
        session: aiohttp.ClientSession, fake: FakeGitHub, installed: Database, make_settings: Any, clock: Clock,
        rsa_private_key: str) -> None:
    github, runner = process(session, fake, rsa_private_key, clock, installed, make_settings)
    await runner.start()
    try:
        github.note_webhook_app_id(1)  # a signed delivery's X-GitHub-Hook-Installation-Target-ID: App 1
        runner.wake()
        await wait_until(lambda: _stored(installed, 1))
    finally:
        await runner.stop()
    await github.aclose()

    fake.remove_installation(7)  # while the server is down; its installation.deleted is lost
    github, runner = process(session, fake, rsa_private_key, clock, installed, make_settings)
    await runner.start()
    try:
        await runner.enqueue("issues", {"action": "opened"}, installation_id=7)
        await wait_until(lambda: settled(installed, clock))
    finally:
        await runner.stop()
    stored = await store.get_installation(installed, 7)
    [job] = await job_store.list_jobs(installed)
    assert stored is not None and stored.deleted, job.last_error
    assert job.status == "cancelled"
    assert github.credentials_problem is None


async def test_a_stored_webhook_app_id_of_another_app_only_keeps_a_404_from_marking_deleted(
        session: aiohttp.ClientSession, fake: FakeGitHub, installed: Database, make_settings: Any, clock: Clock,
        rsa_private_key: str) -> None:
    """The header is not signed: a different App id stored (a forged header on a replayed body, say) never causes
    a deletion; the job waits, and the error names both Apps."""
    async with installed.transaction() as conn:
        await credential_store.save_webhook_app_id(conn, 2, now=clock.now)
    fake.remove_installation(7)
    github, runner = process(session, fake, rsa_private_key, clock, installed, make_settings)
    await runner.start()
    try:
        await runner.enqueue("issues", {"action": "opened"}, installation_id=7)
        await wait_until(lambda: settled(installed, clock))
    finally:
        await runner.stop()
    stored = await store.get_installation(installed, 7)
    [job] = await job_store.list_jobs(installed)
    assert stored is not None and not stored.deleted
    assert (job.status, job.attempts) == ("queued", 0)
    assert github.credentials_problem is not None and "webhooks come from App 2" in github.credentials_problem


async def test_the_latest_webhook_app_id_replaces_the_stored_one(
        session: aiohttp.ClientSession, fake: FakeGitHub, installed: Database, make_settings: Any, clock: Clock,
        rsa_private_key: str) -> None:
    async with installed.transaction() as conn:
        await credential_store.save_webhook_app_id(conn, 2, now=clock.now)
    github, runner = process(session, fake, rsa_private_key, clock, installed, make_settings)
    await runner.start()
    try:
        await wait_until(lambda: github.webhook_app_id == 2)  # told to the new client at start
        github.note_webhook_app_id(1)
        runner.wake()
        await wait_until(lambda: _stored(installed, 1))
    finally:
        await runner.stop()


async def _stored(db: Database, app_id: int) -> bool:
    return await credential_store.load_webhook_app_id(db) == app_id
