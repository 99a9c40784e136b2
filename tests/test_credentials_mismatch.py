"""Another App's credentials (a staging App's id and key) must not mark this server's installations deleted.

Their token mints and GitHub's installation records answer 404 for every installation, as an uninstall does:
`_confirm_lost` raised InstallationDeleted, so every installation was marked deleted for good and its jobs
cancelled. A 404 now counts only once the credentials are shown to be the App of this server's installations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import gidgethub
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import routing, sansio

from handlers import installations as installation_handlers
from quantumreview.context import Context
from quantumreview.errors import InstallationDeleted, InstallationGone, RetryLater
from quantumreview.github import CREDENTIALS_RECHECK, MINT_RECHECK, GitHubApp
from quantumreview.jobs import Backoff, JobRunner
from quantumreview.plugins import HandlerRegistry
from quantumreview.testing.context import make_context
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.fake_auth import add_other_app
from storage import installations as store
from storage import jobs as job_store
from storage.db import Database
from tests.github_support import Clock, no_sleep, wait_until

MINT = "/app/installations/{installation_id}/access_tokens"
RECORD = "/app/installations/{installation_id}"
STAGING = 2  # the other App's id


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


def make_app(session: aiohttp.ClientSession, fake: FakeGitHub, app_id: int, key: str, clock: Clock) -> GitHubApp:
    return GitHubApp(session, app_id=app_id, private_key=key, api_url=fake.api_url, web_url=fake.url, clock=clock,
                     sleep=no_sleep)


@pytest.fixture
def staging(session: aiohttp.ClientSession, fake: FakeGitHub, staging_key: str, clock: Clock) -> GitHubApp:
    """This server's client, configured by mistake with the staging App's id and key."""
    return make_app(session, fake, STAGING, staging_key, clock)


@pytest.fixture
def right(session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock) -> GitHubApp:
    return make_app(session, fake, 1, rsa_private_key, clock)


async def read(app: GitHubApp, installation_id: int) -> Any:
    return await app.for_installation(installation_id).getitem("/installation/repositories")


async def test_the_fake_answers_another_apps_credentials_as_github_does(staging: GitHubApp, fake: FakeGitHub) -> None:
    assert (await staging.as_app().getitem("/app"))["slug"] == "quantumreview-staging"
    for route in ("/app/installations/7", "/app/hook/deliveries"):
        with pytest.raises(gidgethub.BadRequest) as caught:
            await staging.as_app().getitem(route)
        assert caught.value.status_code == 404


async def test_another_apps_credentials_mark_no_installation_deleted_and_say_so_once(
        staging: GitHubApp, fake: FakeGitHub, staging_key: str, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="quantumreview"):
        for installation_id in (7, 8, 7, 8):
            with pytest.raises(RetryLater) as caught:
                await read(staging, installation_id)
            assert not isinstance(caught.value, InstallationGone)
            assert "not marked deleted" in str(caught.value)
    assert caught.value.at == clock.now + CREDENTIALS_RECHECK  # an operator must change them: retried later
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # one clear error, not one per installation or attempt
    assert "App 2 (quantumreview-staging)" in errors[0] and "7, 8" in errors[0]
    assert staging.credentials_problem == errors[0]  # kept for the operator's view
    body = "".join(staging_key.strip().splitlines()[1:-1])
    assert all(body[:40] not in r.getMessage() for r in caplog.records)


async def test_webhooks_from_the_real_app_make_the_first_404_name_both_apps(
        staging: GitHubApp, fake: FakeGitHub, handler_db: Database, load_payload: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    created = load_payload("installation.created")
    created["installation"] = {**created["installation"], "id": 7, "app_id": 1}
    ctx, _ = make_context("installation", created, db=handler_db, github=staging)
    ctx.gh = None  # the handler's repository sync is not what this test is about
    await installation_handlers.record_installation(ctx.event, ctx)
    with caplog.at_level(logging.ERROR, logger="quantumreview"), pytest.raises(RetryLater):
        await read(staging, 7)
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "App 2 (quantumreview-staging)" in error and "webhooks come from App 1" in error
    assert len(fake.calls("GET", RECORD)) == 1  # no guessing from other installations: the webhooks said it


async def test_a_real_uninstall_is_recognised_within_the_same_mint(right: GitHubApp, fake: FakeGitHub) -> None:
    """Fresh process, nothing minted yet: GitHub's record of another installation this server acts for shows the
    credentials are its App's, so the 404 of a removed one is taken at once (RELIABILITY GH-11)."""
    right.for_installation(8)  # a job of installation 8 is running too
    fake.remove_installation(7)
    with pytest.raises(InstallationDeleted):
        await read(right, 7)
    assert [c.path for c in fake.calls("GET", RECORD)] == ["/app/installations/7", "/app/installations/8"]
    assert right.credentials_problem is None


async def test_once_a_token_was_minted_a_404_costs_no_more_requests(right: GitHubApp, fake: FakeGitHub) -> None:
    await read(right, 8)
    fake.remove_installation(7)
    with pytest.raises(InstallationDeleted):
        await read(right, 7)
    assert [c.path for c in fake.calls("GET", RECORD)] == ["/app/installations/7"]
    assert len(fake.calls("GET", "/app")) == 0


async def test_with_nothing_to_go_by_a_404_is_retried_and_taken_at_the_recheck(
        right: GitHubApp, fake: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    fake.remove_installation(7)
    with caplog.at_level(logging.ERROR, logger="quantumreview"), pytest.raises(RetryLater) as caught:
        await read(right, 7)  # the only installation asked for so far: nothing shows whose credentials these are
    assert not isinstance(caught.value, InstallationGone) and "not shown yet" in str(caught.value)
    assert caplog.records == [] and right.credentials_problem is None  # one 404 is no evidence of a mix-up
    await read(right, 8)  # meanwhile another installation's job mints a token
    with pytest.raises(InstallationDeleted):
        await read(right, 7)


async def test_the_job_runner_keeps_installations_and_jobs_under_another_apps_credentials(
        staging: GitHubApp, fake: FakeGitHub, handler_db: Database, make_settings: Any, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    """Jobs of both installations run at once; each is retried later, none cancelled, nothing marked deleted."""
    clock.now = time.time()  # the runner schedules the retry on the wall clock
    router = routing.Router()

    @router.register("issues")
    async def list_repositories(event: sansio.Event, ctx: Context) -> None:
        await ctx.gh.getitem("/installation/repositories")

    for installation_id in (7, 8):
        async with handler_db.transaction() as conn:
            await store.upsert_installation(conn, {"id": installation_id, "account": {"login": "octo-org"}}, 0.0)
    caplog.set_level(logging.ERROR, logger="quantumreview")
    runner = JobRunner(handler_db, HandlerRegistry.from_routers([router]), make_settings(),
                       github_factory=staging.for_installation, poll_interval=0.05,
                       backoff=Backoff(base=0.02, cap=0.1))
    await runner.start()
    try:
        for n, installation_id in enumerate((7, 8, 7)):
            await runner.enqueue("issues", {"action": "opened"}, installation_id=installation_id, ordering_key=str(n))

        async def all_tried() -> bool:
            jobs = await job_store.list_jobs(handler_db)
            return len(jobs) == 3 and all(j.last_error for j in jobs)

        await wait_until(all_tried)
    finally:
        await runner.stop()
    for installation_id in (7, 8):
        stored = await store.get_installation(handler_db, installation_id)
        assert stored is not None and not stored.deleted
    jobs = await job_store.list_jobs(handler_db)
    assert {j.status for j in jobs} == {"queued"}, [(j.status, j.last_error) for j in jobs]
    # Uncounted (CredentialsUnproven): only the operator can fix the credentials, and counted tries ended dead.
    assert all("not marked deleted" in str(j.last_error) and j.attempts == 0 for j in jobs)
    assert min(j.run_after for j in jobs) >= clock.now + MINT_RECHECK - 1  # not retried at once until dead
    assert max(j.run_after for j in jobs) >= clock.now + CREDENTIALS_RECHECK - 1  # once the mix-up is evident
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
