"""create_app: health, one error shape, group commit, end-to-end delivery → job, setup-mode start."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from gidgethub import routing, sansio

from quantumreview import keys
from quantumreview.app import create_app, database_ctx, github_ctx, http_ctx
from quantumreview.context import Context
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from quantumreview.startup import Resources
from quantumreview.testing.signing import signed_delivery
from quantumreview.webhook import PATH
from tests.conftest import WEBHOOK_SECRET, SettingsFactory

Client = TestClient[Any, Any]
ISSUE = {"action": "opened", "issue": {"number": 1}, "repository": {"full_name": "o/r"}}


@pytest.fixture
def handled() -> asyncio.Queue[str]:
    """Delivery ids in the order the handler saw them."""
    return asyncio.Queue()


@pytest.fixture
def router(handled: asyncio.Queue[str]) -> routing.Router:
    router = routing.Router()

    @router.register("issues", action="opened")
    async def record_delivery(event: sansio.Event, ctx: Context) -> None:
        handled.put_nowait(event.delivery_id)

    return router


async def test_health_reports_database_and_job_counts(client: Client) -> None:
    response = await client.get("/health")
    body = await response.json()
    assert response.status == 200
    assert (body["status"], body["db"], body["jobs"]) == ("ok", "ok", {"queued": 0, "running": 0, "dead": 0})
    assert body["version"]


async def test_health_is_503_when_the_database_is_unusable(client: Client) -> None:
    await client.app[keys.db].close()
    response = await client.get("/health")
    assert response.status == 503
    assert (await response.json())["db"] == "error"


async def test_health_names_app_credentials_that_look_like_another_apps(client: Client,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The mix-up is detected by GitHubApp (tests/test_credentials_mismatch.py); /health is where an operator looks.
    github = client.app[keys.github]
    assert github is not None and github.credentials_problem is None
    assert (await (await client.get("/health")).json())["status"] == "ok"
    problem = "The GitHub App credentials in use look like App 2's, but the webhooks come from App 1"
    monkeypatch.setattr(type(github), "credentials_problem", property(lambda self: problem))
    response = await client.get("/health")
    body = await response.json()
    assert response.status == 200  # a restart cannot fix credentials
    assert (body["status"], body["github"], body["db"]) == ("degraded", problem, "ok")


async def test_health_counts_handlers_left_running_after_ignoring_their_cancellation(
        make_settings: SettingsFactory, aiohttp_client: Any) -> None:
    router = routing.Router()

    @router.register("issues", action="opened")
    async def swallow(event: sansio.Event, ctx: Context) -> None:
        for _ in range(200):  # ignores its timeout's cancellation for up to 20 s, then ends (the test's bound)
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                pass

    app = create_app(make_settings(job_timeout=0.2), registry=HandlerRegistry.from_routers([router]))
    client: Client = await aiohttp_client(app)
    assert "handlers_left_running" not in await (await client.get("/health")).json()
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    assert (await client.post(PATH, data=body, headers=headers)).status == 202
    for _ in range(100):  # the timeout (0.2 s), then the cancellation allowance (1 s)
        health = await (await client.get("/health")).json()
        if "handlers_left_running" in health:
            break
        await asyncio.sleep(0.05)
    assert (health["status"], health.get("handlers_left_running")) == ("degraded", 1)


async def test_unknown_route_is_404_json(client: Client) -> None:
    response = await client.get("/no/such/page")
    assert response.status == 404
    assert await response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_a_method_a_route_does_not_take_is_405_json_with_allow(client: Client) -> None:
    response = await client.put("/health")
    assert response.status == 405 and (await response.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_unexpected_exception_is_500_json_without_traceback(app: web.Application, aiohttp_client: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("internal detail ghp_secretsecretsecret")

    app.router.add_get("/explode", explode)
    client = await aiohttp_client(app)
    response = await client.get("/explode")
    text = await response.text()
    assert response.status == 500
    assert (await response.json())["error"]["code"] == "internal_error"
    assert "Traceback" not in text and "internal detail" not in text
    assert "ghp_secret" not in caplog.text


async def test_delivery_runs_its_job_end_to_end(client: Client, handled: asyncio.Queue[str]) -> None:
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 202
    assert await asyncio.wait_for(handled.get(), 2.0) == headers["X-GitHub-Delivery"]


async def test_concurrent_deliveries_share_commits(client: Client) -> None:
    deliveries = [signed_delivery("issues", ISSUE, WEBHOOK_SECRET) for _ in range(64)]
    responses = await asyncio.gather(*(client.post(PATH, data=b, headers=h) for h, b in deliveries))
    assert [r.status for r in responses] == [202] * 64
    assert await client.app[keys.db].fetchvalue("SELECT count(*) FROM deliveries") == 64
    assert client.app[keys.intake].batches < 64


async def test_resources_start_in_order_db_http_github_intake_runner(app: web.Application) -> None:
    [resources] = app.cleanup_ctx
    assert isinstance(resources, Resources)
    names = [getattr(ctx, "__qualname__", "").split(".")[0] for ctx in resources.contexts]
    assert resources.contexts[0] is database_ctx
    assert names == ["database_ctx", "secrets_ctx", "stored_credentials_ctx", "http_ctx", "github_ctx", "intake_ctx",
                     "runner_ctx", "sweeper_ctx", "retention_ctx"]
    assert resources.contexts[3:5] == (http_ctx, github_ctx)


async def test_setup_mode_start_says_how_to_finish_setup(make_settings: SettingsFactory, aiohttp_client: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    settings = make_settings(app_id=None, private_key=None, webhook_secret=None, public_url="https://qr.example")
    client = await aiohttp_client(create_app(settings, registry=HandlerRegistry.from_routers([])))
    assert client.app[keys.github] is None
    assert "https://qr.example/setup?token=" in caplog.text
    link = caplog.text.split("open ", 1)[1].split()[0]  # the link the log gives opens the setup page
    path = link.removeprefix("https://qr.example")
    assert (await client.get(path)).status == 200 and (await client.get("/setup")).status == 403


async def test_handlers_package_comes_from_the_environment(tmp_path: Any) -> None:
    settings = Settings.from_env({"QUANTUMREVIEW_HANDLERS": "tests.crash_handlers",
                                  "DATABASE_PATH": str(tmp_path / "x.db")})
    app = create_app(settings)
    assert app[keys.handlers].modules[0] == "tests.crash_handlers.effects"
