"""Jobs under App credentials not shown to be the installations' App wait, uncounted, for them to be put right.

A token mint's 404 under another App's credentials was retried as a counted attempt: every job went `dead` after
JOB_MAX_ATTEMPTS (about 50 minutes), though the error said "their jobs are tried again later", and an operator who
fixed the credentials an hour later had lost that work. They now wait uncounted (CredentialsUnproven), one token
mint asks GitHub again per recheck (not one per job), and they run as soon as the credentials are replaced or shown
right.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.github import CREDENTIALS_RECHECK, GitHubApp
from quantumreview.jobs import Backoff, JobRunner
from quantumreview.plugins import HandlerRegistry
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.fake_auth import add_other_app
from storage import installations as store
from storage import jobs as job_store
from storage.db import Database
from tests.github_support import Clock, no_sleep, wait_until

MINT = "/app/installations/{installation_id}/access_tokens"
RECORD = "/app/installations/{installation_id}"
STAGING = 2
MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def staging_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode("ascii")


@pytest.fixture
async def fake(rsa_private_key: str, staging_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key, clock=clock) as server:
        server.add_installation(7, repositories=["octo-org/app"])
        server.add_installation(8, repositories=["octo-org/lib"])
        add_other_app(server.state, STAGING, staging_key, slug="quantumreview-staging")
        yield server
    assert server.contract_violations == []


class Current:
    """The GitHub client in use: the setup flow replaces it when it stores new credentials."""

    def __init__(self, github: GitHubApp) -> None:
        self.github = github

    def __call__(self) -> GitHubApp:
        return self.github

    def for_installation(self, installation_id: int) -> Any:
        return self.github.for_installation(installation_id)


def client(session: aiohttp.ClientSession, fake: FakeGitHub, app_id: int, key: str, clock: Clock) -> GitHubApp:
    return GitHubApp(session, app_id=app_id, private_key=key, api_url=fake.api_url, web_url=fake.url, clock=clock,
                     sleep=no_sleep)


async def make_runner(db: Database, current: Current, make_settings: Any, clock: Clock,
                      ran: list[int]) -> JobRunner:
    router = routing.Router()

    @router.register("issues")
    async def list_repositories(event: sansio.Event, ctx: Context) -> None:
        await ctx.gh.getitem("/installation/repositories")
        ran.append(int(ctx.installation_id or 0))

    for installation_id in (7, 8):
        async with db.transaction() as conn:
            await store.upsert_installation(conn, {"id": installation_id, "account": {"login": "octo-org"}}, 0.0)
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(job_max_attempts=MAX_ATTEMPTS),
                       github_factory=current.for_installation, github=current, now=clock, poll_interval=0.05,
                       backoff=Backoff(base=0.02, cap=0.1))
    await runner.start()
    return runner


async def all_waiting(db: Database, clock: Clock) -> bool:
    """Every job tried and ended or put back for later (none due now or running)."""
    jobs = await job_store.list_jobs(db)
    return bool(jobs) and all(j.last_error and j.status != "running" and
                              (j.status != "queued" or j.run_after > clock.now) for j in jobs)


async def test_jobs_outlive_hours_of_another_apps_credentials_and_run_once_the_right_ones_are_set(
        session: aiohttp.ClientSession, fake: FakeGitHub, handler_db: Database, make_settings: Any, clock: Clock,
        staging_key: str, rsa_private_key: str) -> None:
    current = Current(client(session, fake, STAGING, staging_key, clock))
    ran: list[int] = []
    runner = await make_runner(handler_db, current, make_settings, clock, ran)
    try:
        for n, installation_id in enumerate((7, 8, 7)):
            await runner.enqueue("issues", {"action": "opened"}, installation_id=installation_id, ordering_key=str(n))
        await wait_until(lambda: all_waiting(handler_db, clock))
        first = len(fake.calls("POST", MINT))
        assert first <= 2  # 7 and 8 at once, before either 404 was judged
        for _ in range(MAX_ATTEMPTS + 3):  # past the point where counted tries ended dead (hours of clock)
            clock.advance(CREDENTIALS_RECHECK + 1)
            runner.wake()
            await wait_until(lambda: all_waiting(handler_db, clock))
            jobs = await job_store.list_jobs(handler_db)
            assert [(j.status, j.attempts) for j in jobs] == [("queued", 0)] * 3  # none dead, none counted
        assert all((j.last_error or "").startswith("CredentialsUnproven") for j in jobs)
        assert all(j.run_after <= clock.now + CREDENTIALS_RECHECK for j in jobs)
        # One mint (and one record read) asks GitHub again per recheck, whatever the number of jobs waiting.
        assert len(fake.calls("POST", MINT)) == first + MAX_ATTEMPTS + 3
        assert len(fake.calls("GET", RECORD)) <= 2 * first + MAX_ATTEMPTS + 3
        assert ran == []

        current.github = client(session, fake, 1, rsa_private_key, clock)  # the operator sets the right ones
        runner.wake()

        async def all_done() -> bool:
            return {j.status for j in await job_store.list_jobs(handler_db)} == {"done"}

        await wait_until(all_done)  # at once, not at the next recheck: the clock does not move
    finally:
        await runner.stop()
    assert sorted(ran) == [7, 7, 8]
    for installation_id in (7, 8):
        stored = await store.get_installation(handler_db, installation_id)
        assert stored is not None and not stored.deleted


async def test_jobs_waiting_for_proof_run_as_soon_as_a_webhook_shows_the_credentials_right(
        session: aiohttp.ClientSession, fake: FakeGitHub, handler_db: Database, make_settings: Any, clock: Clock,
        rsa_private_key: str) -> None:
    """The right credentials, installation 7 removed, nothing else to go by: its job waits (uncounted); a delivery
    naming the credentials' App shows them right, and the job is tried again at once: 7 is marked deleted."""
    current = Current(client(session, fake, 1, rsa_private_key, clock))
    fake.remove_installation(7)
    runner = await make_runner(handler_db, current, make_settings, clock, [])
    try:
        await runner.enqueue("issues", {"action": "opened"}, installation_id=7)
        await wait_until(lambda: all_waiting(handler_db, clock))
        [job] = await job_store.list_jobs(handler_db)
        assert job.attempts == 0 and "not shown yet" in str(job.last_error)
        current.github.note_webhook_app_id(1)  # X-GitHub-Hook-Installation-Target-ID of a signed delivery
        runner.wake()

        async def deleted() -> bool:
            stored = await store.get_installation(handler_db, 7)
            return stored is not None and stored.deleted

        await wait_until(deleted)
    finally:
        await runner.stop()
    [job] = await job_store.list_jobs(handler_db)
    assert job.status == "cancelled"
