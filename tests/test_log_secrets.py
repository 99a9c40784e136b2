"""No secret, code or token in any log line, at LOG_LEVEL=DEBUG, text and JSON: the real `quantumreview serve`
walks through the setup flow, an OAuth login, API calls, a webhook delivery, refused and malformed requests and a
logout against the fake GitHub, and every line it writes (every logger propagates to the one root handler:
quantumreview.*, aiohttp.access, aiohttp.server, aiohttp.client, gidgethub, aiosqlite) is searched for each
credential that passed through it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from lxml import html as lxml_html

from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.plugin import read_payload
from quantumreview.testing.signing import signed_delivery
from tests.github_support import wait_until
from tests.test_crash import ROOT, free_port

PUBLIC_URL = "http://qr.example.test"  # not a local address: /setup asks for the link's token
REPO = "Codertocat/Hello-World"
INSTALLATION = 4242
ISSUE_ROUTE = "/repos/{owner}/{repo}/issues/{issue_number}"
SETUP_LINE = "no GitHub App configured: open"
# Only what a process needs to start: a stray GITHUB_* or LOG_* of the caller must not change the server under test.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


@dataclass
class Secrets:
    """Every credential seen on the way, by what it is, to name the one that leaked."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str | None) -> None:
        if value:
            self.values.setdefault(kind, set()).add(value)

    def cookies(self, response: aiohttp.ClientResponse) -> None:
        for name, morsel in response.cookies.items():
            self.add(f"cookie {name}", morsel.value)

    def query(self, url: str, where: str) -> dict[str, str]:
        back = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        for name in ("code", "state", "token"):
            self.add(f"{where} {name}", back.get(name))
        return back


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")


def start(tmp_path: Path, fake: FakeGitHub, log_format: str, jwt_secret: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV}
    env.update({
        "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port), "PUBLIC_URL": PUBLIC_URL,
        "DATABASE_PATH": str(tmp_path / "qr.db"), "GITHUB_URL": fake.url, "GITHUB_API_URL": fake.api_url,
        "LOG_LEVEL": "debug", "LOG_FORMAT": log_format, "JWT_SECRET": jwt_secret, "SHUTDOWN_GRACE": "0.5",
        "GITHUB_WRITE_INTERVAL": "0",
    })
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen([sys.executable, "-m", "quantumreview", "serve"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    return Server(proc, f"http://127.0.0.1:{port}", log_path)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """The operator's browser on the server (cookies for 127.0.0.1 kept); GitHub's pages get their own session."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def setup_link(server: Server, browser: aiohttp.ClientSession) -> str:
    """The /setup link the server logs at start (with its token), once it answers /health."""
    async with asyncio.timeout(15):
        while True:
            assert server.proc.poll() is None, server.log()
            try:
                async with browser.get(f"{server.base}/health") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    line = next(line for line in server.log().splitlines() if SETUP_LINE in line)
    start_at = line.index(PUBLIC_URL + "/setup?token=")
    return line[start_at:].split()[0].rstrip('"\\,')


def local(server: Server, url: str) -> str:
    """A URL GitHub sends the browser back to (on PUBLIC_URL), as the test reaches the server."""
    assert url.startswith(PUBLIC_URL + "/"), url
    return server.base + url.removeprefix(PUBLIC_URL)


async def register_app(server: Server, browser: aiohttp.ClientSession, github: aiohttp.ClientSession,
                       fake: FakeGitHub, seen: Secrets) -> dict[str, Any]:
    """The manifest flow: /setup (token), GitHub's form, /setup/callback (code, state)."""
    link = await setup_link(server, browser)
    seen.query(link, "setup link")
    async with browser.get(local(server, link)) as response:
        assert response.status == 200, await response.text()
        seen.cookies(response)
        form = lxml_html.fromstring(await response.text()).get_element_by_id("register-form")
    action, manifest = str(form.get("action")), str(form.xpath(".//input[@name='manifest']/@value")[0])
    seen.query(action, "manifest form")
    async with github.post(action, data={"manifest": manifest}, allow_redirects=False) as response:
        callback = response.headers["Location"]
    seen.query(callback, "setup callback")
    # Why a Referer with the code: a browser sends the page it came from, query included, on the next request.
    async with browser.get(local(server, callback), headers={"Referer": callback}) as response:
        assert response.status == 200, await response.text()
        seen.cookies(response)
    created = fake.state.created_apps[-1]
    for kind in ("client_secret", "webhook_secret"):
        seen.add(kind, created[kind])
    # GitHub now knows the new App: its JWTs (same key, new id) and its OAuth client.
    fake.state.app_id = created["id"]
    fake.state.oauth_client_id, fake.state.oauth_client_secret = created["client_id"], created["client_secret"]
    fake.add_installation(INSTALLATION, account="Codertocat", repositories=[REPO])
    fake.add_issue(REPO, 1, title="Spelling", body="commit, not committ")
    fake.add_user("mona", 7, installations={INSTALLATION: [REPO]})
    fake.authorize_as("mona")
    return created


async def log_in(server: Server, browser: aiohttp.ClientSession, github: aiohttp.ClientSession,
                 seen: Secrets) -> None:
    """The OAuth web flow: /auth/github, GitHub's authorize page, /auth/callback (code, state)."""
    async with browser.get(f"{server.base}/auth/github", allow_redirects=False) as response:
        assert response.status == 302
        seen.cookies(response)
        authorize = response.headers["Location"]
    seen.query(authorize, "login authorize")
    async with github.get(authorize, allow_redirects=False) as response:
        callback = response.headers["Location"]
    seen.query(callback, "login callback")
    async with browser.get(local(server, callback), headers={"Referer": callback},
                           allow_redirects=False) as response:
        assert response.status in (302, 303), await response.text()
        seen.cookies(response)


async def call_api(server: Server, browser: aiohttp.ClientSession, seen: Secrets) -> None:
    """API calls with the session cookie, a bearer token and a Referer carrying a code and a state."""
    bearer = "qr-api-" + secrets.token_hex(20)
    seen.add("Authorization sent", bearer)
    referer = f"{PUBLIC_URL}/auth/callback?code={secrets.token_hex(10)}&state={secrets.token_hex(16)}"
    seen.query(referer, "referer")
    for path in ("/api/me", "/api/repos?page=1&token=" + secrets.token_hex(12)):
        seen.query(path, "api")
        async with browser.get(server.base + path, headers={"Authorization": f"Bearer {bearer}",
                                                            "Referer": referer}) as response:
            assert response.status == 200, await response.text()


async def refused_attempts(server: Server, browser: aiohttp.ClientSession, seen: Secrets, secret: str) -> None:
    """The paths that log a warning: a forged login callback, a replayed setup callback, a badly signed delivery."""
    forged = f"/auth/callback?code={secrets.token_hex(10)}&state={secrets.token_hex(16)}"
    replayed = f"/setup/callback?code={secrets.token_hex(10)}&state={secrets.token_hex(16)}"
    for path in (forged, replayed):
        seen.query(path, "refused")
        async with browser.get(server.base + path) as response:
            assert response.status in (400, 403, 404), await response.text()
    headers, body = signed_delivery("issues", {"action": "opened"}, "not-" + secret)
    async with browser.post(f"{server.base}/webhooks/github", data=body, headers=headers) as response:
        assert response.status == 401


async def malformed_requests(server: Server, seen: Secrets) -> None:
    """Requests aiohttp's parser refuses (400): it logs why at ERROR, quoting the start of the offending line."""
    [setup_token] = seen.values["setup link token"]
    cookies = [f"{kind.removeprefix('cookie ')}={value}" for kind, values in seen.values.items()
               if kind.startswith("cookie ") for value in values]
    raws = [f"GET /setup?token={setup_token} HTTP/9.9\r\nHost: x\r\n\r\n",
            f"GET /setup/callback?code={secrets.token_hex(10)}\x01 HTTP/1.1\r\nHost: x\r\n\r\n"]
    # A Cookie header over the 64 KiB a header may have here (many cookies for the host): its start is quoted.
    raws += [f"GET /api/me HTTP/1.1\r\nHost: x\r\nCookie: {cookie}; p={'a' * 70_000}\r\n\r\n" for cookie in cookies]
    port = int(server.base.rsplit(":", 1)[1])
    for raw in raws:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw.encode())
        assert (await reader.read()).startswith(b"HTTP/1.0 400 ")
        writer.close()
        await writer.wait_closed()


async def log_out(server: Server, browser: aiohttp.ClientSession) -> None:
    """Logout: the user's token is revoked on GitHub with the App's client id and secret (Basic auth)."""
    async with browser.post(f"{server.base}/auth/logout", headers={"Origin": PUBLIC_URL},
                            allow_redirects=False) as response:
        assert response.status < 400, await response.text()


async def deliver_issue(server: Server, browser: aiohttp.ClientSession, fake: FakeGitHub, secret: str) -> None:
    """An issues.opened delivery: its handler mints an installation token and reads the issue with it."""
    payload = {**read_payload("issues.opened"), "installation": {"id": INSTALLATION}}
    headers, body = signed_delivery("issues", payload, secret)
    async with browser.post(f"{server.base}/webhooks/github", data=body, headers=headers) as response:
        assert response.status == 202, await response.text()
    await wait_until(lambda: any(r.status == 200 for r in fake.calls("GET", ISSUE_ROUTE)))


def credentials_seen_by_github(fake: FakeGitHub, seen: Secrets) -> None:
    """The JWTs and tokens the server sent, and every token GitHub handed out."""
    for request in fake.requests:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "token", "basic"):
            seen.add(f"Authorization {scheme.lower()} to GitHub", credential)
    for value in [*fake.state.tokens, *fake.state.refresh_tokens, *fake.state.revoked_user_tokens]:
        seen.add("GitHub token", value)


def leaks(log: str, seen: Secrets, setup_token: str) -> list[str]:
    """What leaked, named; the setup link's token may stand in the one start-up line meant to show it."""
    found = []
    for kind, values in seen.values.items():
        for value in values:
            lines = [line for line in log.splitlines() if value in line]
            if value == setup_token:
                lines = [line for line in lines if SETUP_LINE not in line]
            found += [f"{kind} ({value[:12]}...) in: {line[:300]}" for line in lines]
    return found


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_reaches_any_log_line_at_debug(tmp_path: Path, fake_github: FakeGitHub,
                                                        browser: aiohttp.ClientSession, rsa_private_key: str,
                                                        log_format: str) -> None:
    seen = Secrets()
    jwt_secret = "jwt-" + secrets.token_hex(24)
    seen.add("JWT_SECRET", jwt_secret)
    seen.add("private key", "".join(rsa_private_key.splitlines()[1:4]))
    for line in rsa_private_key.splitlines()[1:-1]:
        seen.add("private key line", line)
    server = start(tmp_path, fake_github, log_format, jwt_secret)
    try:
        async with aiohttp.ClientSession() as github:
            created = await register_app(server, browser, github, fake_github, seen)
            await log_in(server, browser, github, seen)
        await call_api(server, browser, seen)
        await deliver_issue(server, browser, fake_github, created["webhook_secret"])
        await refused_attempts(server, browser, seen, created["webhook_secret"])
        await malformed_requests(server, seen)
        await log_out(server, browser)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0, server.log()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    credentials_seen_by_github(fake_github, seen)
    log = server.log()
    [setup_token] = seen.values["setup link token"]
    assert leaks(log, seen, setup_token) == []
    assert {"Authorization bearer to GitHub", "Authorization token to GitHub", "Authorization basic to GitHub",
            "GitHub token", "cookie quantum_session", "cookie quantum_oauth_state", "cookie quantum_setup_state",
            "login callback code", "setup callback code"} <= set(seen.values)  # the walk really went through
    # The access log is still there, and useful: method, path (query names only), status.
    messages = [json.loads(line)["message"] for line in log.splitlines()] if log_format == "json" else log.splitlines()
    for request, status in (("GET /setup/callback?code=<redacted>&state=<redacted>", 200),
                            ("GET /auth/callback?code=<redacted>&state=<redacted>", 302),
                            ("POST /webhooks/github", 202), ("GET /api/me", 200)):
        assert any(f'"{request} HTTP/1.1" {status} ' in message for message in messages), request
