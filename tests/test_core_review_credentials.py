"""Core review of the App credential mismatch check (quantumreview.credentials_mismatch)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from quantumreview.credentials_mismatch import CredentialsCheck
from quantumreview.errors import InstallationDeleted, RetryLater
from quantumreview.github import GitHubApp
from quantumreview.testing.fake import FakeGitHub
from tests.github_support import Clock, no_sleep

STAGING, REAL = 2, 1


async def named() -> str:
    return f"App {STAGING} (quantumreview-staging)"


async def test_webhooks_from_another_app_keep_a_404_from_marking_deleted_though_the_credentials_reached_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """The staging App's credentials reached an installation of theirs this server had acted for (stored when it
    ran as staging): that 'proof' made every 404 of the real App's installations a deletion, though each webhook
    said it came from App 1."""
    check = CredentialsCheck(str(STAGING))
    check.asked(50)
    check.reached(50)  # a staging installation's job minted a token
    check.asked(7)
    check.note_webhook_app(REAL)
    looked_up: list[int] = []

    async def lookup(installation_id: int) -> bool | None:
        looked_up.append(installation_id)
        return False

    assert await check.deleted(7, lookup, named) is False
    assert check.problem is not None and "webhooks come from App 1" in check.problem
    assert looked_up == []  # the webhooks said it: nothing to guess from other installations


@pytest.fixture
async def fake(rsa_private_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=REAL, private_key_pem=rsa_private_key, clock=clock) as server:
        server.add_installation(7, repositories=["octo-org/app"])
        server.add_installation(8, repositories=["octo-org/lib"])
        yield server
    assert server.contract_violations == []


async def test_a_webhook_from_the_credentials_own_app_clears_the_credentials_error_it_disproves(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock) -> None:
    """The right credentials, and both installations this server acted for removed while it was down (their
    installation.deleted never came): the two 404s read as another App's credentials, a guess. A delivery then
    named App 1, the credentials' own: the 404 was taken as a deletion, but /health stayed 'degraded', telling the
    operator to replace the credentials, until some installation's token was minted, never if none was left."""
    right = GitHubApp(session, app_id=REAL, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url,
                      clock=clock, sleep=no_sleep)
    fake.remove_installation(7)
    fake.remove_installation(8)
    right.for_installation(8)  # a job of installation 8 is queued too
    with pytest.raises(RetryLater):
        await right.installation_token(7)
    assert right.credentials_problem is not None  # what the two 404s suggest, with nothing else to go by
    right.note_webhook_app_id(REAL)  # a delivery: X-GitHub-Hook-Installation-Target-ID names App 1
    assert right.credentials_problem is None
    with pytest.raises(InstallationDeleted):
        await right.installation_token(7)
    assert right.credentials_problem is None


def test_a_webhook_from_the_credentials_own_app_leaves_no_error_when_there_was_none() -> None:
    check = CredentialsCheck(str(REAL))
    check.note_webhook_app(REAL)
    assert check.problem is None
