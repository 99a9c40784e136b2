"""The manifest setup flow: app.yml, the state cookie, conversion, storage and hot loading of the App."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import html as lxml_html

from quantumreview import keys
from quantumreview.app_manifest import (
    ManifestSyntaxError,
    build_manifest,
    dump_yaml_subset,
    load_manifest_template,
    parse_yaml_subset,
    read_app_yml,
)
from quantumreview.credentials import AppCredentials, CredentialsHolder
from quantumreview.crypto import SecretBox
from quantumreview.demo import generate_private_key
from quantumreview.settings import Settings
from quantumreview.setup_flow import (
    ConversionError,
    StoredCredentialsError,
    add_routes,
    credentials_from_conversion,
    initial_credentials,
    load_stored_credentials,
    setup_link,
    setup_token,
    store_credentials,
    stored_credentials_ctx,
)
from quantumreview.setup_state import STATE_COOKIE, SetupStates
from quantumreview.testing.fake import FakeGitHub
from storage.credentials import load_values
from storage.db import Database

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "http://qr.example.test"
CONVERSIONS = "/app-manifests/{code}/conversions"
BOX_KEY = b"k" * 32
# PUBLIC_URL is not a local address, so /setup asks for the link's token (setup_flow.setup_token).
TOKEN = {"token": setup_token(SecretBox(BOX_KEY).session_key)}


class Clock:
    """A settable clock for state expiry."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


# --- app.yml and the YAML-subset reader -------------------------------------------------------------------------


def test_root_app_yml_is_identical_to_the_packaged_one() -> None:
    assert (ROOT / "app.yml").read_bytes() == (ROOT / "quantumreview" / "app.yml").read_bytes()


def test_app_yml_asks_for_the_agreed_permissions_and_events() -> None:
    manifest = load_manifest_template()
    assert {"name", "url", "description", "public"} <= manifest.keys()
    assert manifest["public"] is False
    assert manifest["default_permissions"] == {
        "issues": "write", "pull_requests": "write", "checks": "write",
        "actions": "read", "contents": "read", "metadata": "read",
    }
    assert manifest["default_events"] == [
        "issues", "pull_request", "workflow_run", "check_suite", "check_run", "repository"]


def test_app_yml_round_trips_through_the_subset_writer() -> None:
    parsed = parse_yaml_subset(read_app_yml())
    assert parse_yaml_subset(dump_yaml_subset(parsed)) == parsed


def test_subset_reader_handles_comments_quotes_and_scalars() -> None:
    text = (
        "# heading\n"
        "a: plain text here   # trailing comment\n"
        "b: \"has # hash and \\\"quotes\\\"\"\n"
        "c: 'it''s # not a comment'\n"
        "d: 42\n"
        "e: null\n"
        "f: true\n"
        "g:\n"
        "  h:\n"
        "    - x\n"
        "    - \"y: z\"\n"
        "  i: ~\n"
        "list_at_key_indent:\n"
        "- one\n"
        "empty:\n"
    )
    assert parse_yaml_subset(text) == {
        "a": "plain text here", "b": 'has # hash and "quotes"', "c": "it's # not a comment", "d": 42,
        "e": None, "f": True, "g": {"h": ["x", "y: z"], "i": None}, "list_at_key_indent": ["one"], "empty": None,
    }


@pytest.mark.parametrize("value", ["a: b", "#hash", " padded", "yes", "1.5", "[x]", "it's", "", "null", "-1"])
def test_subset_writer_round_trips_awkward_strings(value: str) -> None:
    assert parse_yaml_subset(dump_yaml_subset({"k": value, "l": [value]})) == {"k": value, "l": [value]}


@pytest.mark.parametrize(("text", "line"), [
    ("a: {b: 1}\n", 1),
    ("a: &anchor x\n", 1),
    ("a: 1\nb: yes\n", 2),
    ("a: 1\na: 2\n", 2),
    ("a:\n\tb: 1\n", 2),
    ("a: 1\n  b: 2\n", 2),
    ("a: |\n  text\n", 1),
    ("a: 1\n---\nb: 2\n", 2),
    ("- top level list\n", 1),
    ("a: \"unterminated\n", 1),
])
def test_subset_reader_rejects_what_it_cannot_read_and_names_the_line(text: str, line: int) -> None:
    with pytest.raises(ManifestSyntaxError) as caught:
        parse_yaml_subset(text)
    assert caught.value.line == line


def test_manifest_urls_come_from_the_public_url() -> None:
    manifest = build_manifest(load_manifest_template(), "https://qr.example.test/")
    assert manifest["hook_attributes"] == {"active": True, "url": "https://qr.example.test/webhooks/github"}
    assert manifest["redirect_url"] == "https://qr.example.test/setup/callback"
    assert manifest["callback_urls"] == ["https://qr.example.test/auth/callback"]
    assert manifest["setup_url"] == "https://qr.example.test/setup/installed"


def test_manifest_on_fly_defaults_to_the_fly_dev_address() -> None:
    settings = Settings.from_env({"FLY_APP_NAME": "my-qr"})
    manifest = build_manifest(load_manifest_template(), settings.public_url)
    assert manifest["hook_attributes"]["url"] == "https://my-qr.fly.dev/webhooks/github"


def test_manifest_template_is_not_modified_by_filling_in() -> None:
    template = load_manifest_template()
    build_manifest(template, PUBLIC_URL)
    assert "url" not in template["hook_attributes"] and "redirect_url" not in template


# --- the state ---------------------------------------------------------------------------------------------------


def test_state_is_accepted_once_with_its_own_cookie() -> None:
    states = SetupStates(clock=Clock())
    state, cookie = states.issue(BOX_KEY)
    assert len(state) >= 22  # ≥ 128 bits in URL-safe base64
    assert states.redeem(BOX_KEY, state, cookie) is True
    assert states.redeem(BOX_KEY, state, cookie) is False


def test_state_is_refused_with_a_forged_or_foreign_cookie() -> None:
    states = SetupStates(clock=Clock())
    state, cookie = states.issue(BOX_KEY)
    _, other_cookie = states.issue(BOX_KEY)
    assert states.redeem(BOX_KEY, state, other_cookie) is False
    assert states.redeem(b"x" * 32, state, cookie) is False
    assert states.redeem(BOX_KEY, state, cookie[:-2] + "AA") is False
    assert states.redeem(BOX_KEY, state, None) is False
    assert states.redeem(BOX_KEY, None, cookie) is False
    assert states.redeem(BOX_KEY, state, cookie) is True  # the failures above did not burn it


def test_a_state_survives_a_restart_of_the_server_and_is_still_accepted_once() -> None:
    """A deploy between the Register click and GitHub's redirect lost the in-memory state: the App was created
    on GitHub and the callback refused it. The signed cookie is enough; only redeemed states are remembered."""
    clock = Clock()
    state, cookie = SetupStates(clock=clock).issue(BOX_KEY)
    restarted = SetupStates(clock=clock)
    assert restarted.redeem(BOX_KEY, state, cookie) is True
    assert restarted.redeem(BOX_KEY, state, cookie) is False


def test_a_state_is_accepted_once_within_the_hour_and_never_after_it() -> None:
    clock = Clock()
    states = SetupStates(clock=clock)
    state, cookie = states.issue(BOX_KEY)
    later, later_cookie = states.issue(BOX_KEY)
    clock.now += 3599
    assert states.redeem(BOX_KEY, state, cookie) is True
    assert states.redeem(BOX_KEY, state, cookie) is False  # single use, still within the hour
    clock.now += 2
    assert states.redeem(BOX_KEY, later, later_cookie) is False


# --- conversion response checks ---------------------------------------------------------------------------------

GOOD_CONVERSION: dict[str, Any] = {
    "id": 7, "slug": "qr", "pem": generate_private_key(),
    "webhook_secret": "0123456789abcdef0123", "client_id": "Iv1.x", "client_secret": "cs-1",
    "html_url": "https://github.com/apps/qr",
}


@pytest.mark.parametrize(("change", "message"), [
    ({"webhook_secret": None}, "webhook_secret"),
    ({"webhook_secret": "0123456789abcde"}, "webhook_secret is shorter than 16 bytes"),  # WH-10: 15 bytes
    ({"id": "7"}, "App id"),
    ({"pem": "not a key"}, "PEM"),
    ({"pem": "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"}, "PEM RSA key"),
    ({"html_url": "javascript:alert(1)"}, "html_url"),
    ({"webhook_secret": "0123456789abcdef\ud800"}, "webhook_secret"),  # UnicodeEncodeError measuring it
    ({"slug": "qr\ud800"}, "slug"),  # UnicodeEncodeError storing it
    ({"html_url": "https://github.com/apps/qr\ud800"}, "html_url"),
])
def test_conversion_response_without_usable_credentials_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        credentials_from_conversion({**GOOD_CONVERSION, **change})


# --- storage ------------------------------------------------------------------------------------------------------


def stored_row_bytes(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        return b"".join(bytes(row[0]) for row in conn.execute("SELECT value FROM credentials"))


def test_conversion_accepts_a_webhook_secret_of_exactly_16_bytes() -> None:
    # Why: the floor is counted in bytes like the settings' WEBHOOK_SECRET: 8 two-byte characters are enough.
    for secret in ("0123456789abcdef", "é" * 8):
        assert credentials_from_conversion({**GOOD_CONVERSION, "webhook_secret": secret}).webhook_secret == secret


async def test_stored_credentials_are_encrypted_and_load_back(db: Database) -> None:
    box = SecretBox(BOX_KEY)
    creds = credentials_from_conversion(GOOD_CONVERSION)
    await store_credentials(db, box, creds, now=1.0)
    raw = stored_row_bytes(db.path)
    assert b"PRIVATE KEY" not in raw and b"0123456789abcdef0123" not in raw and b"cs-1" not in raw
    assert b"Iv1.x" in raw  # the client id is not a secret
    assert await load_stored_credentials(db, box) == creds


async def test_stored_credentials_under_another_key_fail_loudly(db: Database) -> None:
    await store_credentials(db, SecretBox(BOX_KEY), credentials_from_conversion(GOOD_CONVERSION))
    with pytest.raises(StoredCredentialsError, match="JWT_SECRET") as caught:
        await load_stored_credentials(db, SecretBox(b"z" * 32))
    assert "0123456789abcdef0123" not in str(caught.value)


async def test_stored_credentials_whose_key_is_not_an_rsa_key_fail_loudly(db: Database) -> None:
    """Such a key used to pass, and building the GitHub client from it raised ValueError at every start."""
    fake_pem = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"
    await store_credentials(db, SecretBox(BOX_KEY), AppCredentials(app_id=7, private_key=fake_pem,
                                                                   webhook_secret="0123456789abcdef0123"))
    with pytest.raises(StoredCredentialsError, match="no RSA private key"):
        await load_stored_credentials(db, SecretBox(BOX_KEY))


async def test_stored_credentials_edited_by_hand_as_text_still_load(db: Database) -> None:
    """`UPDATE credentials SET value = '8' WHERE name = 'app_id'` in the sqlite3 shell stores TEXT, not a BLOB:
    bytes() raised TypeError, a traceback at every start."""
    box = SecretBox(BOX_KEY)
    await store_credentials(db, box, credentials_from_conversion(GOOD_CONVERSION))
    await db.execute("UPDATE credentials SET value = '8' WHERE name = 'app_id'")
    await db.execute("UPDATE credentials SET value = 'Iv1.y' WHERE name = 'oauth_client_id'")
    loaded = await load_stored_credentials(db, box)
    assert loaded is not None and loaded.app_id == 8 and loaded.oauth_client_id == "Iv1.y"


async def test_no_stored_credentials_means_setup_mode(db: Database) -> None:
    assert await initial_credentials(Settings(), db, SecretBox(BOX_KEY)) is None


async def test_environment_credentials_win_over_stored_ones(db: Database, rsa_private_key: str) -> None:
    box = SecretBox(BOX_KEY)
    await store_credentials(db, box, credentials_from_conversion(GOOD_CONVERSION))
    env = Settings.from_env({"GITHUB_APP_ID": "99", "GITHUB_PRIVATE_KEY": rsa_private_key,
                             "GITHUB_WEBHOOK_SECRET": "env-secret-env-secret"})
    chosen = await initial_credentials(env, db, box)
    assert chosen is not None and chosen.app_id == 99 and chosen.webhook_secret == "env-secret-env-secret"
    stored = await initial_credentials(Settings(), db, box)
    assert stored is not None and stored.app_id == 7


async def start_stored_credentials_ctx(db: Database, box: SecretBox, holder: CredentialsHolder,
                                      settings: Settings | None = None) -> None:
    app = web.Application()
    app[keys.db], app[keys.secret_box], app[keys.credentials] = db, box, holder
    app[keys.settings] = settings or Settings()
    ctx = stored_credentials_ctx(app)
    await anext(ctx)
    await ctx.aclose()


async def test_stored_credentials_are_put_in_force_at_start(db: Database) -> None:
    box = SecretBox(BOX_KEY)
    creds = credentials_from_conversion(GOOD_CONVERSION)
    await store_credentials(db, box, creds)
    holder = CredentialsHolder()
    await start_stored_credentials_ctx(db, box, holder)
    assert holder.current == creds


async def test_webhook_secret_variables_rotate_the_secret_of_stored_credentials(db: Database) -> None:
    # An App registered through /setup: its secret is rotated like any other, with the two variables.
    box = SecretBox(BOX_KEY)
    await store_credentials(db, box, credentials_from_conversion(GOOD_CONVERSION))
    env = Settings.from_env({"GITHUB_WEBHOOK_SECRET": "new-secret-new-secret",
                             "GITHUB_WEBHOOK_SECRET_PREVIOUS": "0123456789abcdef0123"})
    holder = CredentialsHolder()
    await start_stored_credentials_ctx(db, box, holder, env)
    assert holder.current is not None and holder.current.app_id == 7
    assert holder.current.webhook_secrets == ("new-secret-new-secret", "0123456789abcdef0123")
    chosen = await initial_credentials(env, db, box)  # receive
    assert chosen is not None and chosen.webhook_secrets == holder.current.webhook_secrets
    previous_only = Settings.from_env({"GITHUB_WEBHOOK_SECRET_PREVIOUS": "old-secret-old-secret"})
    only_previous = await initial_credentials(previous_only, db, box)
    assert only_previous is not None
    assert only_previous.webhook_secrets == ("0123456789abcdef0123", "old-secret-old-secret")


async def test_oauth_client_variables_rotate_the_client_of_stored_credentials(db: Database) -> None:
    """A new client secret generated on GitHub for an App registered through /setup: logins use it once set."""
    box = SecretBox(BOX_KEY)
    await store_credentials(db, box, credentials_from_conversion(GOOD_CONVERSION))
    env = Settings.from_env({"GITHUB_OAUTH_CLIENT_ID": "Iv1.new", "GITHUB_OAUTH_CLIENT_SECRET": "cs-new"})
    holder = CredentialsHolder()
    await start_stored_credentials_ctx(db, box, holder, env)
    assert holder.current is not None
    assert (holder.current.oauth_client_id, holder.current.oauth_client_secret) == ("Iv1.new", "cs-new")
    assert holder.current.webhook_secret == GOOD_CONVERSION["webhook_secret"]  # the rest is the stored App's
    unset = await initial_credentials(Settings(), db, box)
    assert unset is not None and (unset.oauth_client_id, unset.oauth_client_secret) == ("Iv1.x", "cs-1")


async def test_start_with_environment_credentials_leaves_stored_ones_unread(db: Database) -> None:
    await store_credentials(db, SecretBox(BOX_KEY), credentials_from_conversion(GOOD_CONVERSION))
    env_creds = AppCredentials(app_id=99, private_key="pem", webhook_secret="env-secret-env-secret")
    holder = CredentialsHolder(env_creds)
    await start_stored_credentials_ctx(db, SecretBox(b"z" * 32), holder)  # a wrong key would raise if read
    assert holder.current == env_creds


async def test_start_with_nothing_stored_stays_in_setup_mode(db: Database) -> None:
    holder = CredentialsHolder()
    await start_stored_credentials_ctx(db, SecretBox(BOX_KEY), holder)
    assert holder.current is None


# --- the HTTP flow against the fake GitHub ------------------------------------------------------------------------


class Flow:
    """A test app with only the setup routes, its state, and helpers to walk through GitHub."""

    def __init__(self, client: TestClient[Any, Any], app: web.Application, fake: FakeGitHub, clock: Clock) -> None:
        self.client, self.app, self.fake, self.clock = client, app, fake, clock

    @property
    def holder(self) -> CredentialsHolder:
        return self.app[keys.credentials]

    async def open_setup(self, query: str = "") -> tuple[str, str]:
        """GET /setup and return the register form's action and manifest."""
        resp = await self.client.get("/setup" + query, params=TOKEN)
        assert resp.status == 200
        doc = lxml_html.fromstring(await resp.text())
        form = doc.get_element_by_id("register-form")
        return str(form.get("action")), str(form.xpath(".//input[@name='manifest']/@value")[0])

    async def through_github(self, action: str, manifest: str) -> dict[str, str]:
        """Submit the form to the fake GitHub and return the query it redirects back with."""
        async with aiohttp.ClientSession() as browser, browser.post(
                action, data={"manifest": manifest}, allow_redirects=False) as resp:
            assert resp.status == 302
            location = resp.headers["Location"]
        assert location.startswith(PUBLIC_URL + "/setup/callback?")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def conversions(self) -> int:
        return len(self.fake.calls("POST", CONVERSIONS))


def setup_app(fake: FakeGitHub, db: Database, session: aiohttp.ClientSession, public_url: str,
              clock: Clock) -> web.Application:
    """An app with only the setup routes and the state they read."""
    app = web.Application()
    app[keys.settings] = Settings(public_url=public_url, github_url=fake.url, github_api_url=fake.api_url)
    app[keys.credentials] = CredentialsHolder()
    app[keys.secret_box] = SecretBox(BOX_KEY)
    app[keys.db] = db
    app[keys.http] = session
    add_routes(app, clock=clock)
    return app


@pytest.fixture
async def flow(
    aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database
) -> AsyncIterator[Flow]:
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        app = setup_app(fake_github, db, session, PUBLIC_URL, clock)
        client = await aiohttp_client(app)
        yield Flow(client, app, fake_github, clock)


async def test_state_cookie_is_secure_when_the_public_url_is_https(
    aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database
) -> None:
    async with aiohttp.ClientSession() as session:
        client = await aiohttp_client(setup_app(fake_github, db, session, "https://qr.example.test", Clock()))
        resp = await client.get("/setup", params=TOKEN)
        assert resp.cookies[STATE_COOKIE]["secure"]


@pytest.mark.parametrize(("public_url", "problem"), [
    ("https://qr.example.test/?a=1", "a query"),  # the manifest's URLs became https://qr.example.test/?a=1/...
    ("https://qr.example.test/#top", "a fragment"),
    ("https://admin:pw@qr.example.test", "user name or password"),
    ("https://qr.example.test:99999", "port"),
    ("https://qr.example.test/a b<", "characters a URL must not hold"),
])
async def test_setup_refuses_a_public_url_the_apps_urls_cannot_be_built_on(
    aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database, public_url: str, problem: str
) -> None:
    """Such a PUBLIC_URL passes the settings, and GitHub registered an App whose webhooks could never arrive."""
    async with aiohttp.ClientSession() as session:
        client = await aiohttp_client(setup_app(fake_github, db, session, public_url, Clock()))
        resp = await client.get("/setup", params=TOKEN)
        text = await resp.text()
    assert resp.status == 500 and problem in text and "register-form" not in text
    assert "<b<" not in text and STATE_COOKIE not in resp.cookies


async def test_setup_accepts_a_public_url_with_a_path(
    aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database
) -> None:
    async with aiohttp.ClientSession() as session:
        client = await aiohttp_client(setup_app(fake_github, db, session, "https://qr.example.test/qr", Clock()))
        resp = await client.get("/setup", params=TOKEN)
        assert resp.status == 200 and "https://qr.example.test/qr/webhooks/github" in await resp.text()


async def test_setup_works_behind_a_proxy_that_serves_it_under_a_path(
    aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database
) -> None:
    """With PUBLIC_URL https://host/qr the state cookie had path /setup, which the browser never sends to
    /qr/setup/callback: every setup failed as "not started from this browser", after GitHub created the App."""
    public_url = PUBLIC_URL + "/qr"
    async with aiohttp.ClientSession() as session:
        outer = web.Application()  # the proxy's view: everything under /qr
        outer.add_subapp("/qr", setup_app(fake_github, db, session, public_url, Clock()))
        client = await aiohttp_client(outer)
        resp = await client.get("/qr/setup", params=TOKEN)
        assert resp.cookies[STATE_COOKIE]["path"] == "/qr/setup"
        doc = lxml_html.fromstring(await resp.text())
        assert doc.xpath("//form[@method='get']/@action") == [public_url + "/setup"]
        form = doc.get_element_by_id("register-form")
        flow = Flow(client, outer, fake_github, Clock())
        async with aiohttp.ClientSession() as browser, browser.post(
                str(form.get("action")), data={"manifest": form.xpath(".//input[@name='manifest']/@value")[0]},
                allow_redirects=False) as github:
            location = urlsplit(github.headers["Location"])
        assert location.path == "/qr/setup/callback"
        back = {k: v[0] for k, v in parse_qs(location.query).items()}
        resp = await client.get("/qr/setup/callback", params=back)
        assert resp.status == 200, await resp.text()
    assert flow.conversions() == 1


async def test_setup_page_posts_the_manifest_to_github_with_a_state(flow: Flow) -> None:
    resp = await flow.client.get("/setup", params=TOKEN)
    text = await resp.text()
    assert resp.status == 200 and "Register GitHub App" in text
    cookie = resp.cookies[STATE_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/setup"
    assert not cookie["secure"] and int(cookie["max-age"]) == 3600  # as long as GitHub's manifest code lives
    assert "This link works for an hour and once." in text
    assert resp.headers["Cache-Control"] == "no-store"
    action, manifest = await flow.open_setup()
    parts = urlsplit(action)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == flow.fake.url + "/settings/apps/new"
    assert len(parse_qs(parts.query)["state"][0]) >= 22
    sent = json.loads(manifest)
    assert sent["redirect_url"] == PUBLIC_URL + "/setup/callback"
    assert sent["default_events"] == load_manifest_template()["default_events"]


async def test_setup_page_targets_the_organization_when_named(flow: Flow) -> None:
    action, _ = await flow.open_setup("?organization=octo-org")
    assert urlsplit(action).path == "/organizations/octo-org/settings/apps/new"


async def test_setup_page_escapes_a_hostile_organization_name(flow: Flow) -> None:
    resp = await flow.client.get("/setup", params={"organization": "<script>alert(1)</script>", **TOKEN})
    text = await resp.text()
    assert resp.status == 400
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


async def test_callback_stores_and_loads_the_app_without_a_restart(
    flow: Flow, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[AppCredentials] = []
    flow.holder.on_change(seen.append)
    caplog.set_level(logging.DEBUG)
    back = await flow.through_github(*await flow.open_setup())
    resp = await flow.client.get("/setup/callback", params=back)
    page = await resp.text()
    assert resp.status == 200
    created = flow.fake.state.created_apps[-1]
    current = flow.holder.current
    assert current is not None and current.app_id == created["id"] and seen == [current]
    assert current.webhook_secret == created["webhook_secret"] and current.private_key == created["pem"]
    assert current.oauth_client_id == created["client_id"] and current.oauth_client_secret == created["client_secret"]
    link = lxml_html.fromstring(page).get_element_by_id("install")
    assert link.get("href") == created["html_url"] + "/installations/new"
    stored = await load_stored_credentials(flow.app[keys.db], flow.app[keys.secret_box])
    assert stored == current
    for secret in (created["webhook_secret"], created["client_secret"], "PRIVATE KEY"):
        assert secret not in page
        assert secret not in caplog.text
    assert "registered" in caplog.text


async def test_callback_puts_the_environments_webhook_secret_in_force_as_a_restart_would(
    aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database
) -> None:
    """With GITHUB_WEBHOOK_SECRET set, the callback put GitHub's generated secret in force while a restart puts
    the variable's: deliveries worked until the next deploy, then were all refused (401) without a word."""
    env_secret = "env-secret-env-secret"
    async with aiohttp.ClientSession() as session:
        app = setup_app(fake_github, db, session, PUBLIC_URL, Clock())
        app[keys.settings] = dataclasses.replace(app[keys.settings], webhook_secret=env_secret)
        flow = Flow(await aiohttp_client(app), app, fake_github, Clock())
        setup_text = await (await flow.client.get("/setup", params=TOKEN)).text()
        back = await flow.through_github(*await flow.open_setup())
        resp = await flow.client.get("/setup/callback", params=back)
        text = await resp.text()
    assert resp.status == 200
    after_restart = await initial_credentials(app[keys.settings], db, app[keys.secret_box])
    assert flow.holder.current == after_restart and after_restart is not None
    assert after_restart.webhook_secret == env_secret
    assert "GITHUB_WEBHOOK_SECRET is set" in setup_text and "GITHUB_WEBHOOK_SECRET is set" in text


async def test_setup_answers_404_once_configured(flow: Flow) -> None:
    back = await flow.through_github(*await flow.open_setup())
    assert (await flow.client.get("/setup/callback", params=back)).status == 200
    assert (await flow.client.get("/setup")).status == 404
    assert (await flow.client.get("/setup/callback", params=back)).status == 404
    assert flow.conversions() == 1


@pytest.mark.parametrize("tamper", ["wrong", "missing", "no_cookie"])
async def test_callback_with_a_bad_state_is_refused_without_converting(flow: Flow, tamper: str) -> None:
    back = await flow.through_github(*await flow.open_setup())
    if tamper == "wrong":
        back["state"] = back["state"][::-1]
    elif tamper == "missing":
        del back["state"]
    else:
        flow.client.session.cookie_jar.clear()
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 400 and "Start again" in await resp.text()
    assert flow.conversions() == 0 and flow.holder.current is None
    assert await load_values(flow.app[keys.db]) == {}


@pytest.mark.parametrize("forged", ["{state}.\u00b2.sig", "{state}.1.\u00e9", "{state}." + "9" * 5000 + ".sig"])
async def test_callback_with_a_forged_cookie_of_odd_characters_is_refused_not_a_500(flow: Flow, forged: str) -> None:
    """A cookie's expiry such as '²' (isdigit, but int() refuses it), a non-ASCII signature (compare_digest
    raises TypeError) or 5,000 digits used to answer 500; a forged cookie is a bad state like any other."""
    back = await flow.through_github(*await flow.open_setup())
    flow.client.session.cookie_jar.clear()
    cookie = forged.format(state=back["state"])
    resp = await flow.client.get("/setup/callback", params=back,
                                 headers={"Cookie": f"{STATE_COOKIE}={cookie}"})
    assert resp.status == 400 and "Start again" in await resp.text()
    assert flow.conversions() == 0 and flow.holder.current is None


async def test_setup_opened_in_two_tabs_registers_from_either(flow: Flow) -> None:
    """The second tab's /setup replaced the first tab's cookie: registering from the first tab created the App
    on GitHub, then the callback refused it ("not started from this browser"), leaving the App behind."""
    first = await flow.open_setup()
    second = await flow.open_setup()
    back_first = await flow.through_github(*first)
    back_second = await flow.through_github(*second)
    flow.fake.fail_next("POST", CONVERSIONS, status=500)
    assert (await flow.client.get("/setup/callback", params=back_second)).status == 502
    resp = await flow.client.get("/setup/callback", params=back_first)  # the failure kept the other tab's state
    assert resp.status == 200 and flow.holder.current is not None
    assert flow.conversions() == 2


def test_a_cookie_keeps_a_few_pending_states_and_each_is_accepted_once() -> None:
    states = SetupStates(clock=Clock())
    issued: list[tuple[str, str]] = []
    cookie: str | None = None
    for _ in range(6):
        state, cookie = states.issue(BOX_KEY, cookie)
        issued.append((state, cookie))
    assert cookie is not None and len(cookie) < 1024
    assert states.redeem(BOX_KEY, issued[0][0], cookie) is False  # the oldest fell out of the cookie
    assert states.redeem(BOX_KEY, issued[3][0], cookie) is True
    assert states.redeem(BOX_KEY, issued[3][0], cookie) is False
    assert states.remaining(BOX_KEY, cookie) is not None and issued[3][0] not in str(states.remaining(BOX_KEY, cookie))
    forged = cookie + "~" + issued[0][1]  # a fifth entry is not read
    assert states.redeem(BOX_KEY, issued[0][0], forged) is False


async def test_strangers_reloading_setup_cannot_evict_the_operators_state(flow: Flow) -> None:
    """/setup is public while the App is set up. Issued states were kept in a cache of 1,024, so a stranger's
    1,100 reloads evicted the operator's: the callback refused it after GitHub had created the App."""
    back = await flow.through_github(*await flow.open_setup())
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as stranger:
        for _ in range(11):
            await asyncio.gather(*(stranger.get(flow.client.make_url("/setup")) for _ in range(100)))
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 200 and flow.holder.current is not None


async def test_callback_after_lingering_50_minutes_on_githubs_form_is_accepted(flow: Flow) -> None:
    """The state lasted 10 minutes while GitHub's code lasts an hour: someone who lingered on GitHub's form got
    "Setup link not valid" after GitHub had created the App."""
    action, manifest = await flow.open_setup()
    flow.clock.now += 50 * 60
    back = await flow.through_github(action, manifest)
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 200, await resp.text()
    assert flow.holder.current is not None and flow.conversions() == 1
    assert (await flow.client.get("/setup/callback", params=back)).status == 404  # configured now


async def test_callback_with_an_expired_state_is_refused_and_says_where_the_app_is(flow: Flow) -> None:
    back = await flow.through_github(*await flow.open_setup())
    flow.clock.now += 3601
    resp = await flow.client.get("/setup/callback", params=back)
    text = await resp.text()
    assert resp.status == 400 and flow.conversions() == 0
    # GitHub created the App before sending the browser back: say where it is and how to use it by hand.
    assert f'href="{flow.fake.url}/settings/apps"' in text and "Developer settings" in text
    assert all(name in text for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET"))


async def test_conversion_failure_shows_an_error_and_stores_nothing(flow: Flow) -> None:
    flow.fake.fail_next("POST", CONVERSIONS, status=422, body={"message": "Validation Failed"})
    back = await flow.through_github(*await flow.open_setup())
    resp = await flow.client.get("/setup/callback", params=back)
    text = await resp.text()
    assert resp.status == 502 and "HTTP 422" in text and "Validation Failed" in text
    assert flow.holder.current is None and await load_values(flow.app[keys.db]) == {}


async def test_conversion_with_a_short_webhook_secret_shows_an_error_and_stores_nothing(flow: Flow) -> None:
    """WH-10: a 15-byte secret from GitHub would make every webhook signature weak: refused like a bad response."""
    short = {**GOOD_CONVERSION, "webhook_secret": "0123456789abcde"}
    flow.fake.fail_next("POST", CONVERSIONS, status=201, body=short)
    back = await flow.through_github(*await flow.open_setup())
    resp = await flow.client.get("/setup/callback", params=back)
    text = await resp.text()
    assert resp.status == 502 and "shorter than 16 bytes" in text
    assert "0123456789abcde" not in text
    assert flow.holder.current is None and await load_values(flow.app[keys.db]) == {}


async def test_conversion_with_a_key_that_only_looks_like_pem_shows_an_error_and_stores_nothing(flow: Flow) -> None:
    """A key that is not an RSA key was stored and put in force: building the GitHub client then raised
    ValueError (a 500 here, and at every start after, with /setup closed)."""
    bad = {**GOOD_CONVERSION, "pem": "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"}
    flow.fake.fail_next("POST", CONVERSIONS, status=201, body=bad)
    back = await flow.through_github(*await flow.open_setup())
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 502 and "not a PEM RSA key" in await resp.text()
    assert flow.holder.current is None and await load_values(flow.app[keys.db]) == {}


async def test_conversion_with_a_lone_surrogate_in_a_field_shows_an_error_not_a_500(flow: Flow) -> None:
    flow.fake.fail_next("POST", CONVERSIONS, status=201, body={**GOOD_CONVERSION, "slug": "qr\ud800"})
    back = await flow.through_github(*await flow.open_setup())
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 502 and "the response has no slug" in await resp.text()
    assert flow.holder.current is None and await load_values(flow.app[keys.db]) == {}


async def test_a_state_and_its_cookie_cannot_be_replayed_after_a_failed_conversion(flow: Flow) -> None:
    flow.fake.fail_next("POST", CONVERSIONS, status=500)
    back = await flow.through_github(*await flow.open_setup())
    cookie = flow.client.session.cookie_jar.filter_cookies(flow.client.make_url("/setup/callback"))[STATE_COOKIE]
    assert (await flow.client.get("/setup/callback", params=back)).status == 502
    flow.client.session.cookie_jar.clear()
    replay = await flow.client.get("/setup/callback", params=back,
                                   headers={"Cookie": f"{STATE_COOKIE}={cookie.value}"})
    assert replay.status == 400 and flow.conversions() == 1


async def test_installed_page_is_served_after_setup(flow: Flow) -> None:
    resp = await flow.client.get("/setup/installed", params={"installation_id": "5", "setup_action": "install"})
    assert resp.status == 200 and "installed" in await resp.text()



async def test_conversion_answer_that_never_ends_is_cut_off_quickly_and_stores_nothing(flow: Flow) -> None:
    """A conversion body that never ends was read until the 15 s timeout (gigabytes on loopback); it is now
    refused once it passes 1 MiB."""
    flow.fake.fail_next("POST", CONVERSIONS, status=201, kind="endless")
    back = await flow.through_github(*await flow.open_setup())
    started = asyncio.get_running_loop().time()
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 502 and "body over 1048576 bytes" in await resp.text()
    assert asyncio.get_running_loop().time() - started < 5
    assert flow.holder.current is None and await load_values(flow.app[keys.db]) == {}


@pytest.mark.parametrize("status", [201, 500])
async def test_conversion_answer_nested_too_deeply_is_an_error_page_not_a_500(flow: Flow, status: int) -> None:
    flow.fake.fail_next("POST", CONVERSIONS, status=status, body="[" * 100_000 + "]" * 100_000)
    back = await flow.through_github(*await flow.open_setup())
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 502 and "Nothing was stored" in await resp.text()
    assert flow.holder.current is None and await load_values(flow.app[keys.db]) == {}


async def test_conversion_connection_failure_shows_an_error_and_stores_nothing(flow: Flow) -> None:
    flow.fake.fail_next("POST", CONVERSIONS, kind="reset")
    back = await flow.through_github(*await flow.open_setup())
    resp = await flow.client.get("/setup/callback", params=back)
    assert resp.status == 502 and "could not be reached" in await resp.text()
    assert flow.holder.current is None and await load_values(flow.app[keys.db]) == {}


async def test_two_browsers_finishing_at_once_register_only_one_app(flow: Flow) -> None:
    other_jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=other_jar) as other:
        async with other.get(flow.client.make_url("/setup"), params=TOKEN) as resp:
            doc = lxml_html.fromstring(await resp.text())
        form = doc.get_element_by_id("register-form")
        other_back = await flow.through_github(str(form.get("action")),
                                               str(form.xpath(".//input[@name='manifest']/@value")[0]))
        back = await flow.through_github(*await flow.open_setup())
        first, second = await asyncio.gather(
            flow.client.get("/setup/callback", params=back),
            other.get(flow.client.make_url("/setup/callback"), params=other_back))
        assert sorted([first.status, second.status]) == [200, 404]
    assert flow.conversions() == 1


# --- a public server's /setup opens only from the link in its log -------------------------------------------------


@pytest.mark.parametrize("query", [{}, {"token": "guess"}, {"token": TOKEN["token"][:-1]}, {"token": "\u00e9"}],
                         ids=["none", "wrong", "short", "non-ascii"])
async def test_a_stranger_without_the_logs_link_cannot_start_registering_an_app(
        flow: Flow, query: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    # Until an App is configured, whoever finishes /setup first has the server use their App.
    with caplog.at_level(logging.WARNING, logger="quantumreview"):
        resp = await flow.client.get("/setup", params={"organization": "evil-org", **query})
    text = await resp.text()
    assert resp.status == 403 and "register-form" not in text and "fly logs" in text
    assert STATE_COOKIE not in resp.cookies  # nothing that a callback would accept
    assert any("setup page refused" in r.getMessage() for r in caplog.records)
    assert TOKEN["token"] not in caplog.text and TOKEN["token"] not in text


async def test_the_organization_form_carries_the_token_on(flow: Flow) -> None:
    resp = await flow.client.get("/setup", params=TOKEN)
    doc = lxml_html.fromstring(await resp.text())
    assert doc.xpath("//form[@method='get']//input[@name='token']/@value") == [TOKEN["token"]]
    action, _ = await flow.open_setup("?organization=octo-org")  # as that form submits it
    assert urlsplit(action).path == "/organizations/octo-org/settings/apps/new"


@pytest.mark.parametrize(("public_url", "asks"), [
    ("http://localhost:8000", False), ("http://127.0.0.1:8000", False), ("https://qr.fly.dev", True)])
def test_the_setup_link_carries_a_token_unless_the_server_is_local(public_url: str, asks: bool) -> None:
    link = setup_link(Settings(public_url=public_url), SecretBox(BOX_KEY).session_key)
    assert link.startswith(public_url + "/setup")
    assert (f"?token={TOKEN['token']}" in link) is asks
    assert setup_token(SecretBox(b"x" * 32).session_key) != TOKEN["token"]  # another server, another token
