"""The scale probe's stage: the real server (create_app) on the fake GitHub, an organization with hundreds of
repositories, signed deliveries, OAuth logins of many maintainers and timed API calls."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from quantumreview import app as app_module
from quantumreview import auth, keys
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.signing import signed_delivery
from storage import jobs as job_store
from tests.conftest import WEBHOOK_SECRET
from tests.test_api_support import Api

ORG = "big-org"
INSTALLATION = 9100
SETTLE_TIMEOUT = 20.0


def repo_names(count: int, start: int = 0) -> list[str]:
    """`count` repository names of the organization, zero-padded so name order is index order."""
    return [f"{ORG}/repo-{i:04}" for i in range(start, start + count)]


async def no_periodic_work(_app: Any) -> AsyncIterator[None]:
    """Stands in for the redelivery sweep and the pruning (their calls are not the scenario's)."""
    yield


@dataclass
class Stage:
    """The fake GitHub, the real server on it, and the latencies measured per API route."""

    fake: FakeGitHub
    client: TestClient[Any, Any]
    settings: Settings
    timings: dict[str, list[float]] = field(default_factory=dict)

    @property
    def db(self) -> Any:
        return self.client.app[keys.db]

    async def deliver(self, event: str, payload: dict[str, Any]) -> Counter[tuple[str, str]]:
        """POST a signed delivery, wait for its jobs; return the GitHub requests they made by (method, route)."""
        seen = len(self.fake.requests)
        headers, body = signed_delivery(event, payload, WEBHOOK_SECRET)
        async with self.client.post("/webhooks/github", data=body, headers=headers) as response:
            assert response.status in (200, 202), await response.text()
        await self.settle()
        return Counter((r.method, r.route or r.path) for r in self.fake.requests[seen:])

    async def settle(self) -> None:
        """Wait until no job is queued or running (every job here finishes at once)."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while True:
                jobs = await job_store.list_jobs(self.db)
                if all(j.status not in ("queued", "running") for j in jobs):
                    failed = [(j.handler, j.status, j.last_error) for j in jobs if j.status != "done"]
                    assert failed == []
                    return
                await asyncio.sleep(0.01)

    async def log_in(self, login: str) -> Api:
        """The OAuth web flow for `login` (GitHub's authorize page approves); an Api with their session cookie."""
        self.fake.authorize_as(login)
        async with self.client.get("/auth/github", allow_redirects=False) as start:
            assert start.status == 302, await start.text()
            state = _cookies(start)[auth.state_cookie_name(self.settings)]
            authorize = start.headers["Location"]
        async with self.client.session.get(authorize, allow_redirects=False) as github:
            assert github.status == 302
            back = urlsplit(github.headers["Location"])
        cookie = f"{auth.state_cookie_name(self.settings)}={state}"
        async with self.client.get(f"{back.path}?{back.query}", headers={"Cookie": cookie},
                                   allow_redirects=False) as callback:
            assert callback.status == 302, await callback.text()
            session = _cookies(callback)[auth.session_cookie_name(self.settings)]
        # Why: the test client's jar kept the cookies set, which would ride along with every user's requests.
        self.client.session.cookie_jar.clear()
        return Api(self.client, f"{auth.session_cookie_name(self.settings)}={session}")

    async def timed_get(self, api: Api, route: str, path: str, **params: Any) -> Any:
        """GET through `api`, recording the latency under `route`; the body of a 200."""
        began = time.perf_counter()
        status, body = await api.get(path, **params)
        self.timings.setdefault(route, []).append(time.perf_counter() - began)
        assert status == 200, body
        return body

    async def all_pages(self, api: Api, route: str, path: str, per_page: int = 100, **params: Any) -> list[Any]:
        """Every item of a paginated API list, page after page until one comes back short."""
        items: list[Any] = []
        page = 1
        while True:
            body = await self.timed_get(api, route, path, page=page, per_page=per_page, **params)
            items += body["items"]
            if len(body["items"]) < per_page:
                assert body["total"] == len(items)
                return items
            page += 1

    def report(self) -> str:
        """p50/p99 (ms) and the number of calls per API route."""
        lines = []
        for route, seconds in sorted(self.timings.items()):
            ordered = sorted(seconds)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            lines.append(f"{route}: n={len(ordered)} p50={statistics.median(ordered) * 1000:.1f}ms "
                         f"p99={p99 * 1000:.1f}ms")
        return "\n".join(lines)


def _cookies(response: Any) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def route_calls(calls: Counter[tuple[str, str]], route: str) -> int:
    """How many GET requests of `route` (a template) a Counter from Stage.deliver holds."""
    return calls[("GET", route)]


@asynccontextmanager
async def stage(tmp_path: Path, private_key: str, aiohttp_client: Callable[..., Any],
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stage]:
    """A fresh fake GitHub and server (empty database)."""
    monkeypatch.setattr(app_module, "sweeper_ctx", no_periodic_work)
    monkeypatch.setattr(app_module, "retention_ctx", no_periodic_work)
    async with FakeGitHub(app_id=1, private_key_pem=private_key) as fake:
        settings = Settings(app_id=1, private_key=private_key, webhook_secret=WEBHOOK_SECRET,
                            database_path=tmp_path / "quantumreview.db", github_api_url=fake.api_url,
                            github_url=fake.url, oauth_client_id=fake.oauth_client_id,
                            oauth_client_secret=fake.oauth_client_secret, shutdown_grace=0.5,
                            github_write_interval=0.0)
        client = await aiohttp_client(app_module.create_app(settings))
        try:
            yield Stage(fake, client, settings)
        finally:
            await client.close()
        assert fake.contract_violations == []


def listed(repositories: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Repositories as a webhook lists them (id, node_id, name, full_name, private)."""
    return [{k: r[k] for k in ("id", "node_id", "name", "full_name", "private")} for r in repositories]
