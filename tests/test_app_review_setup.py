"""/setup asks for the log's token whenever someone other than the operator's own machine can reach it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from quantumreview import keys
from quantumreview.crypto import SecretBox
from quantumreview.settings import Settings
from quantumreview.setup_flow import setup_link, setup_token
from quantumreview.setup_state import STATE_COOKIE
from quantumreview.testing.fake import FakeGitHub
from storage.db import Database
from tests.test_setup_flow import BOX_KEY, Clock, setup_app

LOCAL_URL = "http://localhost:8080"  # PUBLIC_URL's default in the Docker image when it is not set
TOKEN = setup_token(SecretBox(BOX_KEY).session_key)
# The browser at PUBLIC_URL, as the start-up link sends it (from another local name /setup sends it there first).
AT_PUBLIC_URL = {"Host": "localhost:8080"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])  # noqa: S104 - the addresses judged
async def test_a_server_reachable_beyond_loopback_asks_for_the_token_whatever_its_public_url(
        aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database, host: str) -> None:
    """The image listens on 0.0.0.0 (HOST), and PUBLIC_URL left unset is http://localhost:PORT: /setup opened
    without the token to anyone reaching the server, who could register their own App on it (b09bf06's
    takeover), since only PUBLIC_URL was looked at."""
    async with aiohttp.ClientSession() as session:
        app = setup_app(fake_github, db, session, LOCAL_URL, Clock())
        app[keys.settings] = dataclasses.replace(app[keys.settings], host=host)
        client = await aiohttp_client(app)
        resp = await client.get("/setup", headers=AT_PUBLIC_URL)
        assert resp.status == 403 and STATE_COOKIE not in resp.cookies
        resp = await client.get("/setup", params={"token": TOKEN}, headers=AT_PUBLIC_URL)
        assert resp.status == 200 and STATE_COOKIE in resp.cookies
    assert setup_link(Settings(public_url=LOCAL_URL, host=host), SecretBox(BOX_KEY).session_key) == \
        f"{LOCAL_URL}/setup?token={TOKEN}"  # what the start-up log prints


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
async def test_a_local_server_listening_on_loopback_only_opens_setup_without_a_token(
        aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database, host: str) -> None:
    async with aiohttp.ClientSession() as session:
        app = setup_app(fake_github, db, session, LOCAL_URL, Clock())
        app[keys.settings] = dataclasses.replace(app[keys.settings], host=host)
        client = await aiohttp_client(app)
        resp = await client.get("/setup", headers=AT_PUBLIC_URL)
        assert resp.status == 200 and "register-form" in await resp.text()
    assert setup_link(Settings(public_url=LOCAL_URL, host=host), SecretBox(BOX_KEY).session_key) == \
        f"{LOCAL_URL}/setup"


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])  # noqa: S104 - the addresses judged
async def test_setup_opened_by_another_local_name_is_sent_to_public_url_once(
        aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database, host: str) -> None:
    """The quick start prints "listening on http://127.0.0.1:8000" while PUBLIC_URL is http://localhost:8000. Opened
    at 127.0.0.1, the state cookie was set for 127.0.0.1, GitHub sent the browser back to localhost without it, and
    setup failed as "not started from this browser" after GitHub had created the App."""
    async with aiohttp.ClientSession() as session:
        app = setup_app(fake_github, db, session, LOCAL_URL, Clock())
        app[keys.settings] = dataclasses.replace(app[keys.settings], host=host)
        client = await aiohttp_client(app)
        query = {"token": TOKEN, "organization": "acme"}
        resp = await client.get("/setup", params=query, allow_redirects=False)  # the test client is at 127.0.0.1
        assert resp.status == 302 and STATE_COOKIE not in resp.cookies
        location = URL(resp.headers["Location"])
        assert (location.scheme, location.host, location.port, location.path) == ("http", "localhost", 8080, "/setup")
        assert dict(location.query) == {**query, "moved": "1"}  # the token and the choices go along
        # Arrived (or a proxy that rewrites Host to another local name): never sent on a second time.
        resp = await client.get("/setup", params=dict(location.query), allow_redirects=False)
        assert resp.status == 200 and STATE_COOKIE in resp.cookies


async def test_setup_of_a_public_server_is_never_sent_elsewhere(
        aiohttp_client: Callable[..., Any], fake_github: FakeGitHub, db: Database) -> None:
    """A public server's Host may be what its proxy says: no redirect there, or it could loop."""
    async with aiohttp.ClientSession() as session:
        app = setup_app(fake_github, db, session, "https://qr.example.test", Clock())
        client = await aiohttp_client(app)
        resp = await client.get("/setup", params={"token": TOKEN}, allow_redirects=False)
        assert resp.status == 200 and STATE_COOKIE in resp.cookies
