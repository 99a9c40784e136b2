"""User-token OAuth calls and the manifest conversion, through the same session, against the fake."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import gidgethub
import pytest

from quantumreview.errors import RetryLater
from quantumreview.github import GitHubApp, OAuthError, UserTokens
from quantumreview.github_oauth import parse_token_response
from quantumreview.testing.fake import FakeGitHub
from tests.github_support import T0, no_sleep

REDIRECT = "http://127.0.0.1:1/auth/callback"
VERIFIER = "v" * 43


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
async def fake(rsa_private_key: str) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key) as server:
        server.add_installation(7, repositories=["octo-org/a", "octo-org/b"])
        server.add_installation(8, account="mona", repositories=["mona/c"])
        server.add_user("mona", 42, installations={7: ["octo-org/a"], 8: ["mona/c"]},
                        permissions={"octo-org/a": {"admin": True, "push": True}})
        server.authorize_as("mona")
        yield server
    assert server.contract_violations == []


@pytest.fixture
def app(session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str) -> GitHubApp:
    return GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url,
                     oauth_client_id=fake.oauth_client_id, oauth_client_secret=fake.oauth_client_secret,
                     clock=lambda: T0, sleep=no_sleep)


async def authorization_code(session: aiohttp.ClientSession, fake: FakeGitHub) -> str:
    params = {"client_id": fake.oauth_client_id, "redirect_uri": REDIRECT, "state": "st",
              "code_challenge": s256(VERIFIER), "code_challenge_method": "S256"}
    async with session.get(f"{fake.url}/login/oauth/authorize", params=params, allow_redirects=False) as answer:
        return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


async def signed_in(app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> UserTokens:
    code = await authorization_code(session, fake)
    return await app.exchange_code(code, redirect_uri=REDIRECT, code_verifier=VERIFIER)


async def test_exchange_code_with_pkce_returns_user_tokens_with_absolute_expiry(
        app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> None:
    tokens = await signed_in(app, session, fake)
    assert tokens.access_token.startswith("ghu_") and (tokens.refresh_token or "").startswith("ghr_")
    assert tokens.expires_at == T0 + 28800
    assert tokens.refresh_token_expires_at == T0 + 15897600
    (sent,) = [r for r in fake.requests if r.path == "/login/oauth/access_token"]
    assert sent.headers["User-Agent"].startswith("quantumreview/")


async def test_wrong_code_verifier_raises_oauth_error_with_githubs_code(
        app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> None:
    code = await authorization_code(session, fake)
    with pytest.raises(OAuthError) as caught:
        await app.exchange_code(code, redirect_uri=REDIRECT, code_verifier="w" * 43)
    assert caught.value.oauth_code == "bad_verification_code"
    assert "bad_verification_code" in str(caught.value)


async def test_refresh_returns_new_tokens_and_a_used_refresh_token_is_refused(
        app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> None:
    first = await signed_in(app, session, fake)
    assert first.refresh_token is not None
    second = await app.refresh_user_token(first.refresh_token)
    assert second.access_token != first.access_token and second.access_token.startswith("ghu_")
    with pytest.raises(OAuthError) as caught:
        await app.refresh_user_token(first.refresh_token)
    assert caught.value.oauth_code == "bad_refresh_token"


async def test_oauth_without_client_credentials_fails_clearly_without_a_request(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str) -> None:
    app = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url)
    with pytest.raises(OAuthError, match="GITHUB_OAUTH_CLIENT_ID") as caught:
        await app.exchange_code("c", redirect_uri=REDIRECT, code_verifier=VERIFIER)
    assert caught.value.oauth_code == "not_configured"
    assert [r for r in fake.requests if r.path == "/login/oauth/access_token"] == []


def test_user_tokens_keep_secrets_out_of_repr() -> None:
    tokens = UserTokens(access_token="ghu_secret", refresh_token="ghr_secret", expires_at=1.0)
    assert "secret" not in repr(tokens)


async def test_user_calls_use_the_user_token_and_read_every_page(
        app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> None:
    tokens = await signed_in(app, session, fake)
    user = await app.get_user(tokens.access_token)
    assert user["login"] == "mona"
    installations = await app.get_user_installations(tokens.access_token)
    assert sorted(i["id"] for i in installations) == [7, 8]
    repos = await app.get_installation_repositories_for_user(tokens.access_token, 7)
    assert [(r["full_name"], r["permissions"]["admin"]) for r in repos] == [("octo-org/a", True)]
    (sent,) = fake.calls("GET", "/user")
    assert sent.headers["Authorization"] == f"token {tokens.access_token}"


async def test_user_repositories_span_several_pages(
        app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> None:
    names = [f"octo-org/r{n}" for n in range(150)]
    for name in names:
        fake.add_repository(7, name)
    fake.add_user("mona", 42, installations={7: names})
    tokens = await signed_in(app, session, fake)
    repos = await app.get_installation_repositories_for_user(tokens.access_token, 7)
    assert sorted(r["full_name"] for r in repos) == sorted(names)
    assert len(fake.calls("GET", "/user/installations/{installation_id}/repositories")) == 2


async def test_convert_manifest_returns_credentials_once_without_auth(
        app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> None:
    manifest = '{"name": "My QR", "url": "http://x", "redirect_url": "http://127.0.0.1:1/setup/callback"}'
    async with session.post(f"{fake.url}/settings/apps/new?state=s", data={"manifest": manifest},
                            allow_redirects=False) as answer:
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    created = await app.convert_manifest(code)
    assert created["slug"] == "my-qr" and created["pem"].startswith("-----BEGIN")
    (sent,) = fake.calls("POST", "/app-manifests/{code}/conversions")
    assert "Authorization" not in sent.headers
    with pytest.raises(gidgethub.BadRequest) as caught:
        await app.convert_manifest(code)
    assert caught.value.status_code == 404


async def test_revoke_user_token_makes_github_refuse_it(app: GitHubApp, session: aiohttp.ClientSession,
                                                        fake: FakeGitHub) -> None:
    tokens = await signed_in(app, session, fake)
    assert (await app.get_user(tokens.access_token))["login"] == "mona"
    await app.revoke_user_token(tokens.access_token)
    with pytest.raises(gidgethub.BadRequest):
        await app.get_user(tokens.access_token)
    await app.revoke_user_token(tokens.access_token)  # GitHub's 404 for a token already gone: nothing to do


@pytest.mark.parametrize(("status", "error"), [(502, RetryLater), (429, RetryLater), (422, OAuthError),
                                               (401, OAuthError)])
async def test_revoke_user_token_reports_what_github_answered(app: GitHubApp, session: aiohttp.ClientSession,
                                                              fake: FakeGitHub, status: int,
                                                              error: type[Exception]) -> None:
    tokens = await signed_in(app, session, fake)
    fake.fail_next("DELETE", "/applications/{client_id}/token", status=status)
    with pytest.raises(error):
        await app.revoke_user_token(tokens.access_token)


async def test_revoke_user_token_without_client_credentials_is_an_oauth_error(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str) -> None:
    bare = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url)
    with pytest.raises(OAuthError, match="not_configured"):
        await bare.revoke_user_token("ghu_x")
    assert fake.calls("DELETE", "/applications/{client_id}/token") == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_token_endpoint_outage_is_retry_later_not_a_refusal(app: GitHubApp, session: aiohttp.ClientSession,
                                                                  fake: FakeGitHub, status: int) -> None:
    first = await signed_in(app, session, fake)
    assert first.refresh_token is not None
    fake.fail_next("POST", "/login/oauth/access_token", status=status)
    with pytest.raises(RetryLater):
        await app.refresh_user_token(first.refresh_token)
    assert (await app.refresh_user_token(first.refresh_token)).access_token.startswith("ghu_")  # it still works


async def test_a_token_answer_that_never_ends_is_cut_off_not_read_until_the_timeout(
        app: GitHubApp, session: aiohttp.ClientSession, fake: FakeGitHub) -> None:
    first = await signed_in(app, session, fake)
    assert first.refresh_token is not None
    fake.fail_next("POST", "/login/oauth/access_token", status=200, kind="endless")
    started = time.monotonic()
    with pytest.raises(RetryLater, match="body over 1048576 bytes"):
        await app.refresh_user_token(first.refresh_token)
    assert time.monotonic() - started < 5  # the read stops at the cap, far before the 30 s timeout


@pytest.mark.parametrize(("fields", "refresh", "expires_at"), [
    ({"refresh_token": 5, "expires_in": "\u00b2"}, None, None),
    ({"refresh_token": ["ghr_x"], "expires_in": 10**400}, None, None),
    ({"refresh_token": "ghr_x", "expires_in": "9" * 400}, "ghr_x", None),
    ({"refresh_token": "ghr_x", "expires_in": "28800"}, "ghr_x", T0 + 28800),
    ({"expires_in": True, "refresh_token_expires_in": 60.5}, None, None),
])
def test_token_fields_of_the_wrong_type_count_as_absent(fields: dict[str, object], refresh: str | None,
                                                        expires_at: float | None) -> None:
    tokens = parse_token_response(200, json.dumps({"access_token": "ghu_x", **fields}).encode(), T0)
    assert (tokens.access_token, tokens.refresh_token, tokens.expires_at) == ("ghu_x", refresh, expires_at)
