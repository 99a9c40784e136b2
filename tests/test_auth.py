"""OAuth login (state + PKCE), the session cookie, logout, token refresh and revocation, against the fake GitHub.

The browser is simulated by hand: cookies are carried explicitly (the client keeps no jar), redirects are followed
one by one, so every Set-Cookie and Location is checked. Also holds the dashboard test app used by test_access.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from quantumreview import access, auth, keys, web_security
from quantumreview.credentials import CredentialsHolder
from quantumreview.crypto import SecretBox
from quantumreview.github import GitHubApp
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from storage import installations, migrations, users
from storage.db import Database
from tests.github_support import T0, Clock

PUBLIC = "https://qr.example"
DASHBOARD = "https://dash.example"
MASTER = b"m" * 40
TOKEN_ROUTE = "/login/oauth/access_token"


async def no_sleep(_seconds: float) -> None:
    """Sleep that returns at once."""


# -- the dashboard test app: auth routes, access checks, the security middleware and a few API routes ------------

async def api_me(request: web.Request) -> web.Response:
    user = await auth.current_user(request)
    return web.json_response({"id": user.id, "login": user.login})


async def api_repos(request: web.Request) -> web.Response:
    user = await auth.current_user(request)
    return web.json_response([a.repo for a in await access.managed_repositories(request, user)])


async def api_repo(request: web.Request) -> web.Response:
    user = await auth.current_user(request)
    found = await access.repo_access(request, user, request.match_info["owner"], request.match_info["repo"])
    return web.json_response({"repo": found.repo, "permission": found.permission})


async def api_regenerate(request: web.Request) -> web.Response:
    user = await auth.current_user(request)
    found = await access.repo_access(request, user, request.match_info["owner"], request.match_info["repo"])
    access.require_push(found)
    return web.json_response({"regenerated": found.repo})


async def api_installation(request: web.Request) -> web.Response:
    user = await auth.current_user(request)
    found = await access.installation_access(request, user, int(request.match_info["installation_id"]))
    return web.json_response([a.repo for a in found])


async def api_token(request: web.Request) -> web.Response:
    user = await auth.current_user(request)
    token = await auth.with_user_token(request, user, lambda t: request.app[keys.github].get_user(t))
    return web.json_response({"login": token["login"]})


@dataclass
class Dashboard:
    """A running dashboard app, its fake GitHub and the pieces tests inspect."""

    client: TestClient[Any, Any]
    fake: FakeGitHub
    clock: Clock
    db: Database
    settings: Settings
    box: SecretBox = field(repr=False)

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))


def build_app(settings: Settings, db: Database, github: GitHubApp | None, clock: Clock,
              credentials: CredentialsHolder | None = None) -> web.Application:
    app = web.Application(middlewares=[web_security.middleware])
    app[keys.settings] = settings
    app[keys.db] = db
    app[keys.secret_box] = SecretBox(MASTER)
    app[keys.credentials] = credentials or CredentialsHolder()
    app[keys.github] = github
    auth.setup(app, clock=clock)
    access.setup(app, clock=clock)
    app.router.add_get("/api/me", api_me)
    app.router.add_get("/api/repos", api_repos)
    app.router.add_get("/api/repos/{owner}/{repo}", api_repo)
    app.router.add_post("/api/repos/{owner}/{repo}/regenerate", api_regenerate)
    app.router.add_get("/api/token", api_token)
    app.router.add_get("/api/installations/{installation_id}", api_installation)
    return app


def populate(fake: FakeGitHub) -> None:
    """mona: admin on r1, push on r3, pull on r5; r4 is installed but not hers; bob: admin on bob/b1."""
    fake.add_installation(7, account="octo-org", repositories=["octo-org/r1", "octo-org/r3", "octo-org/r4",
                                                               "octo-org/r5"])
    fake.add_installation(8, account="bob", repositories=["bob/b1"])
    fake.add_installation(9, account="gone-org", repositories=["gone-org/g1"])
    fake.add_user("mona", 42, installations={7: ["octo-org/r1", "octo-org/r3", "octo-org/r5"], 9: ["gone-org/g1"]},
                  permissions={"octo-org/r1": {"admin": True, "push": True},
                               "octo-org/r3": {"pull": True, "push": True, "admin": False, "maintain": False},
                               "gone-org/g1": {"admin": True}})
    fake.add_user("bob", 43, installations={8: ["bob/b1"]}, permissions={"bob/b1": {"admin": True}})


async def record_installations(db: Database, ids: list[int]) -> None:
    async with db.transaction() as conn:
        for installation_id in ids:
            await installations.upsert_installation(conn, {"id": installation_id, "account": {"login": "x"}}, T0)


@pytest.fixture
async def fake(rsa_private_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key, clock=clock) as server:
        populate(server)
        yield server
    assert server.contract_violations == []


@pytest.fixture(scope="session")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database file per session; tests copy it (migrating each time is most of their setup)."""
    path = tmp_path_factory.mktemp("template") / "qr.db"
    migrations.migrate(path)
    return path


@pytest.fixture
async def database(tmp_path: Path, migrated_file: Path) -> AsyncIterator[Database]:
    shutil.copyfile(migrated_file, tmp_path / "qr.db")
    db = await Database.open(tmp_path / "qr.db")
    await record_installations(db, [7, 8])  # 9 is not (or no longer) an installation of this App
    yield db
    await db.close()


DashboardFactory = Callable[..., Awaitable[Dashboard]]


@pytest.fixture
async def make_dashboard(aiohttp_client: Any, fake: FakeGitHub, database: Database, clock: Clock,
                         rsa_private_key: str) -> AsyncIterator[DashboardFactory]:
    async with aiohttp.ClientSession() as session:
        async def make(*, public_url: str = PUBLIC, client_secret: str | None = None,
                       oauth_client_id: str | None = None) -> Dashboard:
            settings = Settings(public_url=public_url, dashboard_url=DASHBOARD, github_url=fake.url,
                                github_api_url=fake.api_url,
                                oauth_client_id=fake.oauth_client_id if oauth_client_id is None else oauth_client_id,
                                oauth_client_secret=client_secret or fake.oauth_client_secret)
            github = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url,
                               web_url=fake.url, oauth_client_id=fake.oauth_client_id,
                               oauth_client_secret=settings.oauth_client_secret, clock=clock, sleep=no_sleep)
            app = build_app(settings, database, github, clock)
            client = await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())
            return Dashboard(client, fake, clock, database, settings, SecretBox(MASTER))

        yield make


@pytest.fixture
async def dash(make_dashboard: DashboardFactory) -> Dashboard:
    return await make_dashboard()


# -- the browser, by hand -----------------------------------------------------------------------------------------

def set_cookies(response: aiohttp.ClientResponse) -> dict[str, Morsel[str]]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return dict(jar.items())


def raw_set_cookie(response: aiohttp.ClientResponse, name: str) -> str:
    return next(h for h in response.headers.getall("Set-Cookie", []) if h.startswith(name + "="))


@dataclass
class Login:
    """The steps of one login, for tests to inspect or replay."""

    start: aiohttp.ClientResponse
    state_cookie: str
    callback_path: str
    callback: aiohttp.ClientResponse | None = None

    @property
    def authorize_params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.start.headers["Location"]).query).items()}


def state_cookie_name(dash: Dashboard) -> str:
    return auth.state_cookie_name(dash.settings)


def session_name(dash: Dashboard) -> str:
    return auth.session_cookie_name(dash.settings)


async def begin_login(dash: Dashboard, *, as_user: str | None = "mona", path: str = "/auth/github",
                      params: dict[str, str] | None = None) -> Login:
    """GET /auth/github, then GitHub's authorize page; stop before the callback."""
    dash.fake.authorize_as(as_user)
    start = await dash.client.get(path, params=params or {}, allow_redirects=False)
    assert start.status == 302
    cookie = set_cookies(start)[state_cookie_name(dash)].value
    async with dash.client.session.get(start.headers["Location"], allow_redirects=False) as github:
        assert github.status == 302
        back = urlsplit(github.headers["Location"])
    return Login(start, cookie, f"{back.path}?{back.query}")


async def finish(dash: Dashboard, login: Login, *, state_cookie: str | None = None) -> aiohttp.ClientResponse:
    cookie = login.state_cookie if state_cookie is None else state_cookie
    headers = {"Cookie": f"{state_cookie_name(dash)}={cookie}"} if cookie else {}
    login.callback = await dash.client.get(login.callback_path, headers=headers, allow_redirects=False)
    return login.callback


async def log_in(dash: Dashboard, as_user: str = "mona") -> str:
    """The whole flow; return the session cookie's value."""
    login = await begin_login(dash, as_user=as_user)
    response = await finish(dash, login)
    assert response.status == 302, await response.text()
    return set_cookies(response)[session_name(dash)].value


def with_session(dash: Dashboard, value: str) -> dict[str, str]:
    return {"Cookie": f"{session_name(dash)}={value}"}


async def api_status(dash: Dashboard, value: str, path: str = "/api/me") -> int:
    response = await dash.client.get(path, headers=with_session(dash, value))
    if response.status == 401:
        assert (await response.json())["error"]["code"] == "unauthenticated"
    return response.status


def token_calls(fake: FakeGitHub, grant: str | None = None) -> list[dict[str, list[str]]]:
    forms = [parse_qs(r.body.decode()) for r in fake.calls("POST", TOKEN_ROUTE)]
    if grant is None:
        return forms
    return [f for f in forms if f.get("grant_type") == [grant]]


# -- OA-01, OA-06: the redirect to GitHub ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/auth/github", "/login"])
async def test_login_redirects_to_github_with_configured_redirect_uri_random_state_and_pkce(
        dash: Dashboard, path: str) -> None:
    response = await dash.client.get(path, allow_redirects=False)
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{dash.fake.url}/login/oauth/authorize"
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["client_id"] == dash.fake.oauth_client_id
    assert params["redirect_uri"] == f"{PUBLIC}/auth/callback"
    assert params["code_challenge_method"] == "S256"
    assert len(base64.urlsafe_b64decode(params["state"] + "==")) >= 16  # ≥ 128 random bits
    assert len(params["code_challenge"]) == 43  # base64url of a SHA-256 digest
    cookie = set_cookies(response)["__Host-quantum_oauth_state"]
    assert cookie.value.startswith(params["state"] + ".")
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert 0 < int(cookie["max-age"]) <= 600
    assert "verifier" not in cookie.value and params["code_challenge"] not in cookie.value


async def test_two_logins_get_different_states(dash: Dashboard) -> None:
    first = await dash.client.get("/auth/github", allow_redirects=False)
    second = await dash.client.get("/auth/github", allow_redirects=False)
    assert parse_qs(urlsplit(first.headers["Location"]).query)["state"] != \
        parse_qs(urlsplit(second.headers["Location"]).query)["state"]


@pytest.mark.parametrize("header", ["Host", "X-Forwarded-Host", "X-Forwarded-Proto"])
async def test_host_headers_never_change_the_redirect_uri(dash: Dashboard, header: str) -> None:
    response = await dash.client.get("/login", headers={header: "evil.example"}, allow_redirects=False)
    redirect_uri = parse_qs(urlsplit(response.headers["Location"]).query)["redirect_uri"][0]
    assert redirect_uri == f"{PUBLIC}/auth/callback"


async def test_oauth_client_id_from_the_setup_flow_wins_over_settings(
        make_dashboard: DashboardFactory, rsa_private_key: str) -> None:
    from quantumreview.credentials import AppCredentials

    dash = await make_dashboard(oauth_client_id="Iv1.from-environment")
    holder = dash.client.app[keys.credentials]
    holder.replace(AppCredentials(app_id=1, private_key=rsa_private_key, webhook_secret="s" * 20,
                                  oauth_client_id="Iv1.from-setup", oauth_client_secret="x"))
    response = await dash.client.get("/auth/github", allow_redirects=False)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["client_id"] == ["Iv1.from-setup"]


async def test_login_without_oauth_client_says_it_is_not_configured(make_dashboard: DashboardFactory) -> None:
    dash = await make_dashboard(oauth_client_id="")
    response = await dash.client.get("/auth/github", allow_redirects=False)
    assert response.status == 503
    assert "GITHUB_OAUTH_CLIENT_ID" in await response.text()


# -- the callback: success, cookie attributes (OA-07), contents (OA-10) ------------------------------------------

async def test_full_login_sets_a_host_prefixed_session_cookie_and_lands_on_the_dashboard(dash: Dashboard) -> None:
    login = await begin_login(dash)
    response = await finish(dash, login)
    assert response.status == 302
    assert response.headers["Location"] == DASHBOARD
    cookies = set_cookies(response)
    session = cookies["__Host-quantum_session"]
    assert session["httponly"] and session["secure"] and session["samesite"] == "Lax"
    assert session["path"] == "/" and not session["domain"]
    assert 0 < int(session["max-age"]) <= auth.SESSION_LIFETIME
    assert len(raw_set_cookie(response, "__Host-quantum_session")) < 4096
    assert cookies["__Host-quantum_oauth_state"].value == ""  # the one-use state cookie is cleared
    me = await dash.client.get("/api/me", headers=with_session(dash, session.value))
    assert await me.json() == {"id": 42, "login": "mona"}


async def test_code_is_exchanged_with_the_pkce_verifier_and_configured_redirect_uri(dash: Dashboard) -> None:
    login = await begin_login(dash)
    await finish(dash, login)
    [form] = token_calls(dash.fake)
    verifier = form["code_verifier"][0]
    assert auth.pkce_challenge(verifier) == login.authorize_params["code_challenge"]
    assert form["redirect_uri"] == [f"{PUBLIC}/auth/callback"]


async def test_session_cookie_holds_only_user_id_version_and_times_and_tokens_are_encrypted(
        dash: Dashboard) -> None:
    value = await log_in(dash)
    claims = json.loads(base64.urlsafe_b64decode(value.split(".")[1] + "=="))
    assert set(claims) == {"sub", "ver", "iat", "exp"}
    assert claims["sub"] == "42" and claims["exp"] - claims["iat"] == auth.SESSION_LIFETIME
    assert "ghu_" not in value and "ghr_" not in value and "@" not in value
    with sqlite3.connect(dash.db.path) as conn:
        dump = "\n".join(conn.iterdump())
    assert "ghu_" not in dump and "ghr_" not in dump
    stored = await users.get_tokens(dash.db, 42)
    assert stored is not None and stored.refresh_enc is not None
    assert dash.box.decrypt(stored.token_enc).startswith("ghu_")
    assert dash.box.decrypt(stored.refresh_enc).startswith("ghr_")
    assert stored.token_expires_at == T0 + 28800 and stored.refresh_expires_at is not None


async def test_plain_http_public_url_uses_an_unprefixed_cookie_without_secure(
        make_dashboard: DashboardFactory) -> None:
    dash = await make_dashboard(public_url="http://localhost:8000")
    login = await begin_login(dash)
    response = await finish(dash, login)
    session = set_cookies(response)["quantum_session"]
    assert not session["secure"] and session["httponly"] and session["samesite"] == "Lax"


# -- OA-02: state checks, no token exchange -------------------------------------------------------------------

async def test_callback_without_state_is_refused_without_exchange(dash: Dashboard) -> None:
    login = await begin_login(dash)
    code = parse_qs(urlsplit(login.callback_path).query)["code"][0]
    login.callback_path = f"/auth/callback?code={code}"
    response = await finish(dash, login)
    assert response.status == 400
    assert token_calls(dash.fake) == [] and session_name(dash) not in set_cookies(response)


async def test_callback_with_mismatched_state_is_refused_without_exchange(dash: Dashboard) -> None:
    login = await begin_login(dash)
    login.callback_path = login.callback_path.replace("state=", "state=x")
    response = await finish(dash, login)
    assert response.status == 400
    assert token_calls(dash.fake) == [] and session_name(dash) not in set_cookies(response)


async def test_callback_without_the_state_cookie_is_refused_without_exchange(dash: Dashboard) -> None:
    login = await begin_login(dash)
    response = await finish(dash, login, state_cookie="")
    assert response.status == 400 and token_calls(dash.fake) == []


async def test_callback_with_a_forged_cookie_signature_is_refused(dash: Dashboard) -> None:
    login = await begin_login(dash)
    state, expires, _ = login.state_cookie.split(".")
    response = await finish(dash, login, state_cookie=f"{state}.{expires}.forged")
    assert response.status == 400 and token_calls(dash.fake) == []


@pytest.mark.parametrize("damage", ["non_ascii_signature", "overlong_expiry", "superscript_expiry"])
async def test_callback_with_a_malformed_state_cookie_is_a_400_not_a_500(dash: Dashboard, damage: str) -> None:
    login = await begin_login(dash)
    state, expires, signature = login.state_cookie.split(".")
    cookie = {"non_ascii_signature": f"{state}.{expires}.{signature[:-1]}\u00e9",
              "overlong_expiry": f"{state}.{'9' * 5000}.{signature}",
              "superscript_expiry": f"{state}.{expires}\u00b2.{signature}"}[damage]
    response = await finish(dash, login, state_cookie=cookie)
    assert response.status == 400 and token_calls(dash.fake) == []


async def test_a_flood_of_login_starts_does_not_break_a_login_in_progress(dash: Dashboard) -> None:
    victim = await begin_login(dash, params={"next": "/repos/octo-org/r1"})
    flood = [dash.client.get("/auth/github", allow_redirects=False) for _ in range(auth.MAX_PENDING_LOGINS + 1)]
    for batch in range(0, len(flood), 512):
        for response in await asyncio.gather(*flood[batch:batch + 512]):
            assert response.status == 302
    response = await finish(dash, victim)
    assert response.status == 302 and session_name(dash) in set_cookies(response)
    assert response.headers["Location"] in (f"{PUBLIC}/repos/octo-org/r1", DASHBOARD)  # the deep link may be lost


async def test_a_login_finishing_after_a_restart_into_setup_mode_is_a_503(dash: Dashboard) -> None:
    import warnings

    login = await begin_login(dash)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dash.client.app[keys.github] = None  # what a restart without App credentials leaves
    response = await finish(dash, login)
    assert response.status == 503 and "Login is not configured" in await response.text()
    assert token_calls(dash.fake) == [] and session_name(dash) not in set_cookies(response)


async def test_a_state_is_accepted_only_once(dash: Dashboard) -> None:
    login = await begin_login(dash)
    assert (await finish(dash, login)).status == 302
    replay = await finish(dash, login)
    assert replay.status == 400
    assert len(token_calls(dash.fake)) == 1 and session_name(dash) not in set_cookies(replay)


async def test_a_state_older_than_ten_minutes_is_refused(dash: Dashboard) -> None:
    login = await begin_login(dash)
    dash.clock.advance(601)
    response = await finish(dash, login)
    assert response.status == 400 and token_calls(dash.fake) == []


async def test_callback_in_another_browser_is_refused_login_csrf(dash: Dashboard) -> None:
    attacker = await begin_login(dash, as_user="bob")
    victim = await begin_login(dash, as_user="mona")
    # The victim's browser follows the attacker's callback link, carrying the victim's own state cookie.
    response = await finish(dash, attacker, state_cookie=victim.state_cookie)
    assert response.status == 400 and token_calls(dash.fake) == []
    assert session_name(dash) not in set_cookies(response)


# -- OA-03, OA-04: GitHub refuses ---------------------------------------------------------------------------------

@pytest.mark.parametrize("error", ["bad_verification_code", "bad_code_verifier", "incorrect_client_credentials",
                                   "redirect_uri_mismatch", "unverified_user_email"])
async def test_token_endpoint_errors_in_http_200_end_in_a_clean_400(dash: Dashboard, error: str) -> None:
    login = await begin_login(dash)
    dash.fake.fail_next("POST", TOKEN_ROUTE, status=200, body={"error": error, "error_description": "no"})
    response = await finish(dash, login)
    assert response.status == 400
    assert error in await response.text()
    assert session_name(dash) not in set_cookies(response)
    assert await users.get_user(dash.db, 42) is None


async def test_a_wrong_client_secret_fails_the_login_cleanly(make_dashboard: DashboardFactory) -> None:
    dash = await make_dashboard(client_secret="wrong-secret")
    response = await finish(dash, await begin_login(dash))
    assert response.status == 400
    assert "incorrect_client_credentials" in await response.text()


@pytest.mark.parametrize("profile", [[], {"login": "mona"}, {"id": "42", "login": "mona"}, {"id": 2**70, "login": "x"},
                                     {"id": 42}, {"id": True, "login": "mona"}])
async def test_an_unusable_github_profile_fails_the_login_with_a_502(dash: Dashboard, profile: object) -> None:
    login = await begin_login(dash)
    dash.fake.fail_next("GET", "/user", status=200, body=json.dumps(profile))
    response = await finish(dash, login)
    assert response.status == 502
    assert session_name(dash) not in set_cookies(response)
    assert await users.get_user(dash.db, 42) is None


async def test_profile_fields_of_the_wrong_type_are_dropped(dash: Dashboard) -> None:
    login = await begin_login(dash)
    dash.fake.fail_next("GET", "/user", status=200,
                        body=json.dumps({"id": 42, "login": "mona", "name": {"x": 1}, "email": 5, "avatar_url": []}))
    assert (await finish(dash, login)).status == 302
    assert await users.get_user(dash.db, 42) == users.User(id=42, login="mona")


async def test_a_forged_code_is_refused_by_github_and_the_login_fails(dash: Dashboard) -> None:
    login = await begin_login(dash)
    query = parse_qs(urlsplit(login.callback_path).query)
    login.callback_path = f"/auth/callback?code=deadbeef&state={query['state'][0]}"
    response = await finish(dash, login)
    assert response.status == 400 and "bad_verification_code" in await response.text()


async def test_denied_authorization_ends_in_a_friendly_403_without_exchange(dash: Dashboard) -> None:
    login = await begin_login(dash, as_user=None)
    assert "error=access_denied" in login.callback_path
    response = await finish(dash, login)
    assert response.status == 403
    assert "access_denied" in await response.text()
    assert token_calls(dash.fake) == [] and session_name(dash) not in set_cookies(response)


# -- OA-05: where to go after login --------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["https://evil.example", "//evil.example", "/\\evil.example", "https:evil.example",
                                    "%2F%2Fevil.example", "/\t/evil.example", "javascript:alert(1)", "evil.example"])
async def test_next_outside_the_site_is_ignored(dash: Dashboard, target: str) -> None:
    login = await begin_login(dash, params={"next": target})
    response = await finish(dash, login)
    assert response.headers["Location"] == DASHBOARD


async def test_next_inside_the_site_is_honoured(dash: Dashboard) -> None:
    login = await begin_login(dash, params={"next": "/repos/octo-org/r1?tab=runs"})
    response = await finish(dash, login)
    assert response.headers["Location"] == f"{PUBLIC}/repos/octo-org/r1?tab=runs"


@pytest.mark.parametrize(("value", "expected"), [
    ("/a/b", "/a/b"), ("/", "/"), (None, None), ("", None), ("//x", None), ("/\\x", None), ("http://x/", None),
    ("/a\nb", None), ("x/y", None), ("/" + "a" * 3000, None)])
def test_safe_next_keeps_only_same_origin_paths(value: str | None, expected: str | None) -> None:
    assert auth.safe_next(value) == expected


# -- OA-08: forged and broken session cookies -------------------------------------------------------------------

def _forge(dash: Dashboard, kind: str, rsa_private_key: str) -> str:
    key = dash.box.session_key
    now = int(dash.clock())
    good = {"sub": "42", "ver": 1, "iat": now, "exp": now + 3600}
    valid = jwt.encode(good, key, algorithm="HS256")
    header, payload, signature = valid.split(".")
    if kind == "tampered":
        claims = {**good, "sub": "43"}
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return f"{header}.{forged}.{signature}"
    if kind == "alg_none":
        none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        return f"{none_header}.{payload}."
    if kind == "truncated":
        return valid[: len(valid) - 10]
    variants: dict[str, Callable[[], str]] = {
        "expired": lambda: jwt.encode({**good, "iat": now - 7200, "exp": now - 1}, key, algorithm="HS256"),
        "hs512": lambda: jwt.encode(good, key, algorithm="HS512"),
        "rs256": lambda: jwt.encode(good, rsa_private_key, algorithm="RS256"),
        "missing_exp": lambda: jwt.encode({k: v for k, v in good.items() if k != "exp"}, key, algorithm="HS256"),
        "missing_iat": lambda: jwt.encode({k: v for k, v in good.items() if k != "iat"}, key, algorithm="HS256"),
        "missing_sub": lambda: jwt.encode({k: v for k, v in good.items() if k != "sub"}, key, algorithm="HS256"),
        "string_exp": lambda: jwt.encode({**good, "exp": str(now + 3600)}, key, algorithm="HS256"),
        "lifetime_too_long": lambda: jwt.encode({**good, "exp": now + 30 * 86400}, key, algorithm="HS256"),
        "unknown_crit": lambda: jwt.encode(good, key, algorithm="HS256", headers={"crit": ["exp"]}),
        "random_key": lambda: jwt.encode(good, b"r" * 32, algorithm="HS256"),
        "unknown_kid": lambda: jwt.encode(good, b"r" * 32, algorithm="HS256", headers={"kid": "old"}),
        "old_version": lambda: jwt.encode({**good, "ver": 0}, key, algorithm="HS256"),
    }
    return variants[kind]()


@pytest.mark.filterwarnings("ignore:The HMAC key")  # the HS512 forgery uses our 32-byte key on purpose
@pytest.mark.parametrize("kind", ["tampered", "alg_none", "truncated", "expired", "hs512", "rs256", "missing_exp",
                                  "missing_iat", "missing_sub", "string_exp", "lifetime_too_long", "unknown_crit",
                                  "random_key", "unknown_kid", "old_version"])
async def test_forged_or_broken_session_cookies_get_401(dash: Dashboard, kind: str, rsa_private_key: str) -> None:
    await log_in(dash)  # mona (id 42, version 1) exists, so only the cookie can be at fault
    assert await api_status(dash, _forge(dash, kind, rsa_private_key)) == 401


async def test_a_well_formed_cookie_for_the_current_version_is_accepted(dash: Dashboard,
                                                                       rsa_private_key: str) -> None:
    await log_in(dash)
    good = jwt.encode({"sub": "42", "ver": 1, "iat": int(dash.clock()), "exp": int(dash.clock()) + 60},
                      dash.box.session_key, algorithm="HS256")
    assert await api_status(dash, good) == 200


async def test_no_cookie_gets_401_json(dash: Dashboard) -> None:
    response = await dash.client.get("/api/me")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_session_expires_after_its_lifetime(dash: Dashboard) -> None:
    value = await log_in(dash)
    dash.clock.advance(auth.SESSION_LIFETIME + 1)
    assert await api_status(dash, value) == 401


# -- OA-11 logout, WH-26 revocation ----------------------------------------------------------------------------------

async def test_logout_ends_the_session_server_side_so_the_old_cookie_gets_401(dash: Dashboard) -> None:
    value = await log_in(dash)
    response = await dash.client.post("/auth/logout", headers={**with_session(dash, value), "Origin": PUBLIC})
    assert response.status == 200
    assert set_cookies(response)[session_name(dash)].value == ""
    assert await api_status(dash, value) == 401
    assert await users.get_tokens(dash.db, 42) is None


REVOKE_ROUTE = "/applications/{client_id}/token"


async def stored_token(dash: Dashboard, user_id: int = 42) -> str:
    stored = await users.get_tokens(dash.db, user_id)
    assert stored is not None
    return dash.box.decrypt(stored.token_enc)


async def github_user_status(dash: Dashboard, token: str) -> int:
    """What GitHub (the fake) answers GET /user with `token`: 200 while it lives, 401 once revoked."""
    async with aiohttp.ClientSession() as session, session.get(
            f"{dash.fake.api_url}/user", headers={"Authorization": f"token {token}"}) as response:
        return response.status


async def test_logout_revokes_the_user_token_at_github(dash: Dashboard) -> None:
    value = await log_in(dash)
    token = await stored_token(dash)
    assert await github_user_status(dash, token) == 200
    response = await dash.client.post("/auth/logout", headers={**with_session(dash, value), "Origin": PUBLIC})
    assert response.status == 200
    assert dash.fake.state.revoked_user_tokens == [token]
    (call,) = dash.fake.calls("DELETE", REVOKE_ROUTE)
    assert call.path.endswith(f"/applications/{dash.fake.oauth_client_id}/token")
    assert call.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{dash.fake.oauth_client_id}:{dash.fake.oauth_client_secret}".encode()).decode()
    assert json.loads(call.body) == {"access_token": token}
    assert await github_user_status(dash, token) == 401
    assert dash.fake.contract_violations == []


@pytest.mark.parametrize("kind", ["status", "hang"])
async def test_logout_still_ends_the_session_when_github_cannot_revoke(dash: Dashboard, kind: str,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(auth, "REVOKE_TIMEOUT", 0.2)
    value = await log_in(dash)
    token = await stored_token(dash)
    dash.fake.fail_next("DELETE", REVOKE_ROUTE, status=502, kind=kind, delay=5.0)
    response = await dash.client.post("/auth/logout", headers={**with_session(dash, value), "Origin": PUBLIC})
    assert response.status == 200
    assert set_cookies(response)[session_name(dash)].value == ""
    assert await api_status(dash, value) == 401
    assert await users.get_tokens(dash.db, 42) is None
    assert dash.fake.state.revoked_user_tokens == []
    assert "GitHub token not revoked at logout" in caplog.text
    assert token not in caplog.text


async def test_logout_without_a_session_calls_github_for_nothing(dash: Dashboard) -> None:
    response = await dash.client.post("/auth/logout", headers={"Origin": PUBLIC})
    assert response.status == 200
    assert dash.fake.calls("DELETE", REVOKE_ROUTE) == []


async def test_logout_from_another_site_is_refused(dash: Dashboard) -> None:
    value = await log_in(dash)
    response = await dash.client.post("/auth/logout",
                                      headers={**with_session(dash, value), "Origin": "https://evil.example"})
    assert response.status == 403
    assert await api_status(dash, value) == 200


async def test_logging_in_again_after_logout_works(dash: Dashboard) -> None:
    first = await log_in(dash)
    await dash.client.post("/auth/logout", headers={**with_session(dash, first), "Origin": PUBLIC})
    second = await log_in(dash)
    assert await api_status(dash, second) == 200 and await api_status(dash, first) == 401


async def test_revoking_the_app_deletes_tokens_and_rejects_every_session(dash: Dashboard) -> None:
    mona = await log_in(dash)
    bob = await log_in(dash, "bob")
    await users.revoke_user(dash.db, 42)
    assert await api_status(dash, mona) == 401
    assert await users.get_tokens(dash.db, 42) is None
    assert await api_status(dash, bob) == 200


# -- OA-12, OA-13: refreshing user tokens -----------------------------------------------------------------------

async def test_expired_token_is_refreshed_exactly_once_for_ten_concurrent_requests(dash: Dashboard) -> None:
    value = await log_in(dash)
    dash.clock.advance(8 * 3600 + 1)  # the fake now answers 401 to the old token
    session = jwt.encode({"sub": "42", "ver": 1, "iat": int(dash.clock()), "exp": int(dash.clock()) + 60},
                         dash.box.session_key, algorithm="HS256")
    assert value != session
    answers = await asyncio.gather(*(dash.client.get("/api/token", headers=with_session(dash, session))
                                     for _ in range(10)))
    assert [a.status for a in answers] == [200] * 10
    assert len(token_calls(dash.fake, "refresh_token")) == 1
    stored = await users.get_tokens(dash.db, 42)
    assert stored is not None and stored.token_expires_at == dash.clock() + 28800


async def test_ten_concurrent_repository_reads_after_expiry_refresh_once(dash: Dashboard) -> None:
    await log_in(dash)
    dash.clock.advance(8 * 3600 + 1)
    session = jwt.encode({"sub": "42", "ver": 1, "iat": int(dash.clock()), "exp": int(dash.clock()) + 60},
                         dash.box.session_key, algorithm="HS256")
    answers = await asyncio.gather(*(dash.client.get("/api/repos", headers=with_session(dash, session))
                                     for _ in range(10)))
    assert [a.status for a in answers] == [200] * 10
    assert len(token_calls(dash.fake, "refresh_token")) == 1


async def test_failed_refresh_ends_the_session_without_retrying(dash: Dashboard) -> None:
    await log_in(dash)
    dash.clock.advance(8 * 3600 + 1)
    dash.fake.state.refresh_tokens.clear()  # GitHub answers bad_refresh_token
    session = jwt.encode({"sub": "42", "ver": 1, "iat": int(dash.clock()), "exp": int(dash.clock()) + 60},
                         dash.box.session_key, algorithm="HS256")
    assert await api_status(dash, session, "/api/repos") == 401
    assert await api_status(dash, session, "/api/repos") == 401
    assert len(token_calls(dash.fake, "refresh_token")) == 1
    assert await users.get_tokens(dash.db, 42) is None


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_github_failing_the_refresh_is_a_503_and_keeps_the_session(dash: Dashboard, status: int) -> None:
    await log_in(dash)
    dash.clock.advance(8 * 3600 + 1)
    session = jwt.encode({"sub": "42", "ver": 1, "iat": int(dash.clock()), "exp": int(dash.clock()) + 60},
                         dash.box.session_key, algorithm="HS256")
    dash.fake.fail_next("POST", TOKEN_ROUTE, status=status)
    response = await dash.client.get("/api/token", headers=with_session(dash, session))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "github_unavailable"
    assert 1 <= int(response.headers["Retry-After"]) <= 3600  # told when to come back
    assert await users.get_tokens(dash.db, 42) is not None  # the refresh token is kept for the next try
    assert await api_status(dash, session, "/api/token") == 200
    assert len(token_calls(dash.fake, "refresh_token")) == 2


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_github_failing_the_code_exchange_is_a_502_not_a_refusal(dash: Dashboard, status: int) -> None:
    login = await begin_login(dash)
    dash.fake.fail_next("POST", TOKEN_ROUTE, status=status)
    response = await finish(dash, login)
    assert response.status == 502
    assert "could not be reached" in await response.text()
    assert session_name(dash) not in set_cookies(response)


async def test_a_token_github_rejects_early_is_refreshed_once_and_the_call_retried(dash: Dashboard) -> None:
    value = await log_in(dash)
    dash.fake.state.tokens.clear()  # revoked on GitHub's side before its expiry
    assert await api_status(dash, value, "/api/token") == 200
    assert len(token_calls(dash.fake, "refresh_token")) == 1


async def test_logout_during_a_refresh_leaves_no_live_token_behind(dash: Dashboard) -> None:
    await log_in(dash)
    old = await stored_token(dash)
    dash.clock.advance(8 * 3600 + 1)
    session = jwt.encode({"sub": "42", "ver": 1, "iat": int(dash.clock()), "exp": int(dash.clock()) + 60},
                         dash.box.session_key, algorithm="HS256")
    dash.fake.fail_next("POST", TOKEN_ROUTE, kind="slow", delay=0.5)  # GitHub takes its time to refresh
    reading = asyncio.ensure_future(dash.client.get("/api/token", headers=with_session(dash, session)))
    while not token_calls(dash.fake, "refresh_token"):
        await asyncio.sleep(0.01)
    out = await dash.client.post("/auth/logout", headers={**with_session(dash, session), "Origin": PUBLIC})
    assert out.status == 200
    assert (await reading).status == 401
    assert await users.get_tokens(dash.db, 42) is None  # logged out: no token kept
    fresh = [t for t in dash.fake.state.revoked_user_tokens if t != old]
    assert len(fresh) == 1 and await github_user_status(dash, fresh[0]) == 401  # the refresh's token is revoked
    assert await api_status(dash, session) == 401


async def test_a_refresh_outliving_its_request_still_stores_the_new_tokens(dash: Dashboard) -> None:
    # GitHub consumes the refresh token when it answers; a request cancelled meanwhile (the access lookup's
    # deadline) dropped the answer, and the next request's refresh with the spent token ended the session.
    await log_in(dash)
    dash.clock.advance(8 * 3600 + 1)
    session = jwt.encode({"sub": "42", "ver": 1, "iat": int(dash.clock()), "exp": int(dash.clock()) + 60},
                         dash.box.session_key, algorithm="HS256")
    dash.client.app[access.ACCESS].deadline = 0.1
    dash.fake.fail_next("POST", TOKEN_ROUTE, kind="slow", delay=0.5)  # GitHub takes its time to refresh
    response = await dash.client.get("/api/repos", headers=with_session(dash, session))
    assert response.status == 503 and (await response.json())["error"]["code"] == "github_timeout"
    for _ in range(200):  # the refresh carries on without its request
        stored = await users.get_tokens(dash.db, 42)
        if stored is not None and stored.token_expires_at == dash.clock() + 28800:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the refreshed tokens were never stored")
    assert await api_status(dash, session, "/api/token") == 200  # the stored pair serves the next request
    assert len(token_calls(dash.fake, "refresh_token")) == 1


async def test_github_rejecting_the_refreshed_token_too_ends_the_session(dash: Dashboard) -> None:
    value = await log_in(dash)
    dash.fake.fail_next("GET", "/user", status=401, times=2)
    assert await api_status(dash, value, "/api/token") == 401
    assert await api_status(dash, value) == 401
    assert len(token_calls(dash.fake, "refresh_token")) == 1


def test_secrets_never_appear_in_reprs() -> None:
    tokens = users.StoredTokens(token_enc=b"ciphertext", refresh_enc=b"refresh-ciphertext")
    assert "ciphertext" not in repr(tokens)
    assert "secret" not in repr(auth.AuthState(clock=time.time)).lower()


# -- OA-09 key rotation: JWT_SECRET_PREVIOUS ---------------------------------------------------------------------

ROTATED = b"n" * 40


def rotate(dash: Dashboard, box: SecretBox) -> None:
    """What a restart with new settings does: the app's SecretBox is replaced."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dash.client.app[keys.secret_box] = box


async def test_sessions_signed_with_the_previous_key_live_out_their_lifetime(dash: Dashboard) -> None:
    before = await log_in(dash)
    rotate(dash, SecretBox(ROTATED, MASTER))
    assert await api_status(dash, before) == 200
    assert await api_status(dash, before, "/api/token") == 200  # her GitHub token, sealed with the old key, opens
    dash.clock.advance(auth.SESSION_LIFETIME - 60)
    assert await api_status(dash, before) == 200  # inside the grace window
    dash.clock.advance(120)
    assert await api_status(dash, before) == 401  # after it


async def test_every_fresh_session_is_signed_with_the_new_key(dash: Dashboard) -> None:
    rotate(dash, SecretBox(ROTATED, MASTER))
    after = await log_in(dash)
    times = {"verify_exp": False, "verify_iat": False}  # the test clock is not the wall clock
    assert jwt.decode(after, SecretBox(ROTATED).session_key, algorithms=["HS256"], options=times)["sub"] == "42"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(after, SecretBox(MASTER).session_key, algorithms=["HS256"], options=times)
    rotate(dash, SecretBox(ROTATED))  # JWT_SECRET_PREVIOUS removed
    assert await api_status(dash, after) == 200


async def test_without_the_previous_key_old_sessions_end(dash: Dashboard) -> None:
    before = await log_in(dash)
    rotate(dash, SecretBox(ROTATED))
    assert await api_status(dash, before) == 401
