"""Headless Chromium walks the one-click setup against the fake GitHub; then the new webhook secret is accepted.

Chromium is driven through the DevTools protocol with aiohttp's websocket client (no selenium/playwright).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from quantumreview import keys
from quantumreview.app import create_app
from quantumreview.crypto import SecretBox
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from quantumreview.setup_flow import add_routes, load_stored_credentials
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.signing import signed_delivery

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed: `apt-get install -y chromium` (Debian) to run this test")

STEP_TIMEOUT = 20.0
DEVTOOLS_LINE = re.compile(rb"DevTools listening on (ws://\S+)")


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            else:
                self.events.put_nowait(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result; raise on a protocol error."""
        call_id = next(self._ids)
        self._waiting[call_id] = asyncio.get_running_loop().create_future()
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        reply = await asyncio.wait_for(self._waiting[call_id], STEP_TIMEOUT)
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its value."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        """Poll until `expression` is truthy in the page (across navigations)."""
        async with asyncio.timeout(STEP_TIMEOUT):
            while True:
                with contextlib.suppress(AssertionError):  # the page may be mid-navigation
                    if value := await self.evaluate(expression):
                        return value
                await asyncio.sleep(0.05)

    async def click(self, element_id: str) -> None:
        """Click the centre of an element with real mouse events."""
        box = await self.evaluate(
            f"(() => {{ const r = document.getElementById({json.dumps(element_id)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[str]:
    """Start headless Chromium; yield the DevTools HTTP base URL."""
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
        "--no-proxy-server", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(STEP_TIMEOUT):
            while not (match := DEVTOOLS_LINE.search(await proc.stderr.readline())):
                if proc.stderr.at_eof():
                    raise AssertionError("Chromium exited before DevTools started listening")
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
        ws_url = match[1].decode()
        yield "http://" + ws_url.removeprefix("ws://").split("/", 1)[0]
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(NameError):
            drain.cancel()


async def open_page(session: aiohttp.ClientSession, devtools_url: str) -> DevTools:
    async with session.get(f"{devtools_url}/json/list") as resp:
        targets = await resp.json()
    page = next(t for t in targets if t["type"] == "page")
    ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
    tools = DevTools(ws)
    await tools.send("Page.enable")
    await tools.send("Runtime.enable")
    return tools


@contextlib.asynccontextmanager
async def running_server(fake: FakeGitHub, tmp_path: Path) -> AsyncIterator[tuple[web.Application, str]]:
    """The real app (intake included) plus the setup routes, on a port known before it starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(public_url=public_url, github_url=fake.url, github_api_url=fake.api_url,
                        database_path=tmp_path / "qr.db", shutdown_grace=0.5)
    app = create_app(settings, registry=HandlerRegistry.from_routers([]))
    # Why the checks: until create_app wires the box and the setup routes itself, the test adds them.
    if keys.secret_box not in app:
        app[keys.secret_box] = SecretBox.load_or_create(None, tmp_path)
    if not any(route.resource is not None and route.resource.canonical == "/setup" for route in app.router.routes()):
        add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield app, public_url
    finally:
        await runner.cleanup()


async def test_setup_in_a_real_browser_registers_the_app_and_its_webhook_secret_works(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    issue = {"action": "opened", "issue": {"number": 1, "title": "t", "body": ""},
             "repository": {"full_name": "octo-org/repo"}, "installation": {"id": 5}}
    async with running_server(fake_github, tmp_path) as (app, public_url), aiohttp.ClientSession() as session:
        headers, body = signed_delivery("issues", issue, "not-the-secret-yet-0123456789")
        async with session.post(f"{public_url}/webhooks/github", data=body, headers=headers) as before:
            assert before.status == 503  # setup mode: no App, so no delivery is accepted

        async with chromium(tmp_path / "profile") as devtools_url:
            page = await open_page(session, devtools_url)
            try:
                await page.send("Page.navigate", url=f"{public_url}/setup")
                await page.wait_for("document.getElementById('register') !== null")
                await page.click("register")
                install_href = await page.wait_for(
                    "document.getElementById('install') && document.getElementById('install').href")
                page_text = await page.evaluate("document.documentElement.outerHTML")
                final_url = await page.evaluate("location.href")
            finally:
                await page.close()

        created = fake_github.state.created_apps[-1]
        assert final_url.startswith(f"{public_url}/setup/callback?")
        assert install_href == f"{created['html_url']}/installations/new"
        assert created["webhook_secret"] not in page_text and "PRIVATE KEY" not in page_text
        current = app[keys.credentials].current
        assert current is not None and current.app_id == created["id"]
        assert await load_stored_credentials(app[keys.db], app[keys.secret_box]) == current

        headers, body = signed_delivery("issues", issue, created["webhook_secret"])
        async with session.post(f"{public_url}/webhooks/github", data=body, headers=headers) as accepted:
            assert 200 <= accepted.status < 300, await accepted.text()
        headers, body = signed_delivery("issues", issue, "not-the-secret-yet-0123456789")
        async with session.post(f"{public_url}/webhooks/github", data=body, headers=headers) as forged:
            assert forged.status == 401
        async with session.get(f"{public_url}/setup") as after:
            assert after.status == 404
