"""App JWT and installation tokens: claims, key loading, single-flight minting, refresh, 401 re-mint, gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import gidgethub
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from quantumreview.errors import (
    InstallationDeleted,
    InstallationGone,
    InstallationSuspended,
    InstallationSuspendedByGitHub,
    PermanentError,
    RetryLater,
)
from quantumreview.github import GitHubApp
from quantumreview.github_auth import BAD_KEY_MESSAGE
from quantumreview.testing.fake import FakeGitHub
from tests.github_support import T0, Clock, no_sleep

MINT = "/app/installations/{installation_id}/access_tokens"


@pytest.fixture
async def fake(rsa_private_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key, clock=clock) as server:
        server.add_installation(7, repositories=["octo-org/app"])
        yield server
    assert server.contract_violations == []


@pytest.fixture
def app(session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock) -> GitHubApp:
    return GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url,
                     clock=clock, sleep=no_sleep)


def public_key(pem: str) -> object:
    return serialization.load_pem_private_key(pem.encode(), password=None).public_key()


def test_app_jwt_backdates_iat_and_expires_within_nine_minutes(app: GitHubApp, rsa_private_key: str) -> None:
    token = app.app_jwt()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public_key(rsa_private_key), algorithms=["RS256"],  # type: ignore[arg-type]
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iat": int(T0) - 60, "exp": int(T0) + 540, "iss": "1"}


def test_app_jwt_is_resigned_once_it_has_less_than_two_minutes_left(app: GitHubApp, clock: Clock) -> None:
    first = app.app_jwt()
    clock.now += 400
    assert app.app_jwt() == first
    clock.now += 30
    renewed = jwt.decode(app.app_jwt(), options={"verify_signature": False})
    assert renewed["iat"] == int(clock.now) - 60


async def test_private_key_with_literal_newline_escapes_is_accepted(
        session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    escaped = rsa_private_key.strip().replace("\n", "\\n")
    assert "\n" not in escaped
    app = GitHubApp(session, app_id=1, private_key=escaped)
    claims = jwt.decode(app.app_jwt(), public_key(rsa_private_key), algorithms=["RS256"],  # type: ignore[arg-type]
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == "1"


@pytest.mark.parametrize("key", ["not a key", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"])
async def test_bad_private_key_fails_at_construction_without_echoing_it(
        session: aiohttp.ClientSession, key: str) -> None:
    with pytest.raises(ValueError) as caught:
        GitHubApp(session, app_id=1, private_key=key)
    assert str(caught.value) == BAD_KEY_MESSAGE == "GITHUB_PRIVATE_KEY is not a valid RSA private key in PEM format"
    assert key not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_non_rsa_private_key_is_refused(session: aiohttp.ClientSession) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ValueError, match="not a valid RSA private key"):
        GitHubApp(session, app_id=1, private_key=pem)


async def test_thousand_concurrent_calls_share_one_token_request(app: GitHubApp, fake: FakeGitHub) -> None:
    gh = app.for_installation(7)
    results = await asyncio.gather(*(gh.getitem("/installation/repositories") for _ in range(1000)))
    assert all(r["total_count"] == 1 for r in results)
    assert len(fake.calls("POST", MINT)) == 1
    used = {r.headers["Authorization"] for r in fake.calls("GET", "/installation/repositories")}
    assert len(used) == 1 and used.pop().startswith("token ghs_")


async def test_second_token_lookup_is_a_cache_hit(app: GitHubApp, fake: FakeGitHub) -> None:
    first = await app.installation_token(7)
    second = await app.installation_token(7)
    assert first == second
    assert len(fake.calls("POST", MINT)) == 1


async def test_mint_request_carries_a_valid_app_jwt(app: GitHubApp, fake: FakeGitHub, rsa_private_key: str) -> None:
    await app.installation_token(7)
    (mint,) = fake.calls("POST", MINT)
    scheme, _, token = mint.headers["Authorization"].partition(" ")
    assert scheme.lower() == "bearer"
    claims = jwt.decode(token, public_key(rsa_private_key), algorithms=["RS256"],  # type: ignore[arg-type]
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == "1" and claims["exp"] - T0 <= 540


async def test_token_is_reminted_five_minutes_before_it_expires(
        app: GitHubApp, fake: FakeGitHub, clock: Clock) -> None:
    first = await app.installation_token(7)  # the fake's tokens live 3600 s
    clock.now = T0 + 3600 - 301
    assert await app.installation_token(7) == first
    clock.now = T0 + 3600 - 299
    assert await app.installation_token(7) != first
    assert len(fake.calls("POST", MINT)) == 2


async def test_token_with_four_minutes_left_is_never_reused(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.token_ttl = 240
    await app.installation_token(7)
    await app.installation_token(7)
    assert len(fake.calls("POST", MINT)) == 2


@pytest.mark.parametrize("body", [
    {}, {"token": "", "expires_at": "2030-01-01T00:00:00Z"}, {"token": "ghs_x"},
    {"token": "ghs_x", "expires_at": "soon"}, {"token": "ghs_x", "expires_at": "2001-01-01T00:00:00Z"},
], ids=["empty", "blank-token", "no-expiry", "garbled-expiry", "expired"])
async def test_a_token_response_without_a_usable_token_is_retried_later(
        app: GitHubApp, fake: FakeGitHub, body: dict[str, str]) -> None:
    """Once PermanentError (every job asking for a token failed for good) or a bare ValueError; an expired one
    would have been minted again on every request."""
    fake.fail_next("POST", MINT, status=201, body=body)
    with pytest.raises(RetryLater, match="token response holds no usable token"):
        await app.installation_token(7)
    assert (await app.installation_token(7)).startswith("ghs_")
    assert len(fake.calls("POST", MINT)) == 2


async def test_expired_token_is_dropped_and_reminted_exactly_once(app: GitHubApp, fake: FakeGitHub) -> None:
    gh = app.for_installation(7)
    await gh.getitem("/installation/repositories")
    fake.expire_tokens()
    results = await asyncio.gather(*(gh.getitem("/installation/repositories") for _ in range(50)))
    assert len(results) == 50
    assert len(fake.calls("POST", MINT)) == 2


async def test_persistent_401_is_retried_once_then_raised(app: GitHubApp, fake: FakeGitHub) -> None:
    gh = app.for_installation(7)
    await app.installation_token(7)
    fake.fail_next("GET", "/installation/repositories", status=401, times=5)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem("/installation/repositories")
    assert caught.value.status_code == 401
    assert len(fake.calls("GET", "/installation/repositories")) == 2
    assert len(fake.calls("POST", MINT)) == 2


async def test_mint_404_means_installation_gone_without_retry(app: GitHubApp, fake: FakeGitHub) -> None:
    await app.installation_token(7)  # the credentials reach this server's installations (test_credentials_mismatch)
    with pytest.raises(InstallationDeleted) as caught:
        await app.for_installation(99).getitem("/installation/repositories")
    assert caught.value.installation_id == 99  # what the job runner marks deleted (GH-11)
    assert len(fake.calls("POST", MINT)) == 2
    assert fake.calls("GET", "/installation/repositories") == []


async def test_removed_installation_with_cached_token_ends_as_gone(app: GitHubApp, fake: FakeGitHub) -> None:
    gh = app.for_installation(7)
    await gh.getitem("/installation/repositories")
    fake.remove_installation(7)
    with pytest.raises(InstallationDeleted):  # the 401's re-mint answers 404
        await gh.getitem("/installation/repositories")
    assert len(fake.calls("POST", MINT)) == 2


@pytest.mark.parametrize("status", [404, 403])
async def test_a_mint_404_or_403_that_githubs_installation_record_denies_is_retried_later(
        app: GitHubApp, fake: FakeGitHub, status: int) -> None:
    # Why: a 404 marks the installation deleted for good, a 403 suspended; an outage's stray answer must not.
    fake.fail_next("POST", MINT, status=status)
    with pytest.raises(RetryLater, match="lists the installation as active") as caught:
        await app.for_installation(7).getitem("/installation/repositories")
    assert not isinstance(caught.value, InstallationGone | InstallationSuspended)
    assert caught.value.at is not None
    assert [call.path for call in fake.calls("GET", "/app/installations/{installation_id}")] == [
        "/app/installations/7"]
    assert (await app.installation_token(7)).startswith("ghs_")


async def test_a_mint_403_for_an_unsuspended_installation_is_not_taken_for_suspension(
        app: GitHubApp, fake: FakeGitHub) -> None:
    fake.suspend_installation(7)
    fake.unsuspend_installation(7)
    fake.fail_next("POST", MINT, status=403)
    with pytest.raises(RetryLater):
        await app.installation_token(7)


async def test_suspended_installation_is_reported_as_suspended(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.suspend_installation(7)
    with pytest.raises(InstallationSuspended):
        await app.installation_token(7)
    assert len(fake.calls("POST", MINT)) == 1
    with pytest.raises(InstallationSuspendedByGitHub) as caught:
        await app.for_installation(7).getitem("/installation/repositories")
    assert caught.value.installation_id == 7  # what the job runner marks suspended (GH-12)


async def test_a_cached_token_refused_for_suspension_reports_the_installation_suspended(
        app: GitHubApp, fake: FakeGitHub) -> None:
    """RELIABILITY GH-12 with a token minted before the suspension: GitHub answers it 403 "...suspended", which
    was retried like any 403 until the job was dead instead of waiting for the unsuspend."""
    gh = app.for_installation(7)
    await gh.getitem("/installation/repositories")
    fake.suspend_installation(7)
    with pytest.raises(InstallationSuspendedByGitHub) as caught:
        await gh.getitem("/installation/repositories")
    assert caught.value.installation_id == 7
    assert [c.status for c in fake.calls("GET", "/installation/repositories")] == [200, 403]
    assert len(fake.calls("POST", MINT)) == 2  # the re-mint answers 403; GitHub's record says suspended


async def test_cancelled_caller_does_not_cancel_the_shared_mint(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.fail_next("POST", MINT, kind="slow", delay=0.2)
    first = asyncio.create_task(app.installation_token(7))
    second = asyncio.create_task(app.installation_token(7))
    await asyncio.sleep(0.05)
    first.cancel()
    token = await second
    assert token.startswith("ghs_") and first.cancelled()
    assert len(fake.calls("POST", MINT)) == 1


async def test_failed_mint_reaches_every_waiter_and_the_next_call_tries_again(
        app: GitHubApp, fake: FakeGitHub) -> None:
    fake.fail_next("POST", MINT, status=502, times=3, delay=0.05)
    outcomes = await asyncio.gather(*(app.installation_token(7) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, RetryLater) for o in outcomes)
    assert (await app.installation_token(7)).startswith("ghs_")
    assert len(fake.calls("POST", MINT)) == 4


async def test_aclose_cancels_a_mint_in_flight_and_forgets_tokens(app: GitHubApp, fake: FakeGitHub) -> None:
    first = await app.installation_token(7)
    fake.fail_next("POST", MINT, kind="slow", delay=5)
    waiting = asyncio.create_task(app.installation_token(8))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(app.aclose(), 1)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await app.installation_token(7) != first


@pytest.mark.parametrize("call", ["mint", "app"])
async def test_a_host_clock_running_ahead_is_named_in_the_error(session: aiohttp.ClientSession, fake: FakeGitHub,
                                                               rsa_private_key: str, clock: Clock,
                                                               caplog: pytest.LogCaptureFixture, call: str) -> None:
    """GH-14: ten minutes fast, the JWT's iat is in GitHub's future and every App call answers 401."""
    fast = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url,
                     clock=lambda: clock.now + 600, sleep=no_sleep)
    with pytest.raises(PermanentError, match=r"host clock \(NTP\)"):
        if call == "mint":
            await fast.installation_token(7)
        else:
            await fast.as_app().getitem("/app/hook/deliveries")
    assert "host clock (NTP)" in caplog.text
