"""Cross-site request refusal (OA-20), JSON-only bodies and CORS for the dashboard's origin only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from quantumreview import keys, web_security
from quantumreview.app import create_app
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings

PUBLIC = "https://qr.example"
DASHBOARD = "https://dash.example:8443"
EVIL = "https://evil.example"
COOKIE = {"Cookie": "__Host-quantum_session=abc"}


def build_app(dashboard_url: str | None = DASHBOARD, public_url: str = PUBLIC) -> tuple[web.Application, list[str]]:
    """An app whose routes record that they ran, behind the security middleware."""
    ran: list[str] = []

    async def act(request: web.Request) -> web.Response:
        ran.append(f"{request.method} {request.path}")
        await request.read()
        return web.json_response({"ok": True})

    async def fail(request: web.Request) -> web.Response:
        raise web.HTTPNotFound(text='{"error": {"code": "not_found", "message": "x"}}', content_type="application/json")

    app = web.Application(middlewares=[web_security.middleware])
    app[keys.settings] = Settings(public_url=public_url, dashboard_url=dashboard_url)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        app.router.add_route(method, "/api/things", act)
    app.router.add_get("/api/missing", fail)
    app.router.add_post("/auth/logout", act)
    app.router.add_post("/webhooks/github", act)
    app.router.add_get("/setup/callback", act)
    app.router.add_post("/setup/callback", act)
    return app, ran


@pytest.fixture
async def secured(aiohttp_client: Any) -> tuple[TestClient[Any, Any], list[str]]:
    app, ran = build_app()
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client, ran


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_state_change_with_a_cookie_from_another_origin_is_refused(secured: Any, method: str) -> None:
    client, ran = secured
    response = await client.request(method, "/api/things", json={}, headers={**COOKIE, "Origin": EVIL})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "csrf"
    assert ran == []


@pytest.mark.parametrize("origin", [PUBLIC, DASHBOARD, "HTTPS://QR.EXAMPLE"])
async def test_state_change_from_the_app_or_dashboard_origin_passes(secured: Any, origin: str) -> None:
    client, ran = secured
    response = await client.post("/api/things", json={"a": 1}, headers={**COOKIE, "Origin": origin})
    assert response.status == 200 and ran == ["POST /api/things"]


@pytest.mark.parametrize(("headers", "status"), [
    ({"Referer": f"{PUBLIC}/repos/x"}, 200), ({"Referer": f"{EVIL}/page"}, 403), ({}, 403),
    ({"Origin": "null"}, 403), ({"Origin": "https://qr.example.evil.example"}, 403),
    ({"Origin": "http://qr.example"}, 403), ({"Origin": "https://dash.example"}, 403)])
async def test_without_origin_the_referer_decides_and_nothing_means_refused(secured: Any, headers: dict[str, str],
                                                                            status: int) -> None:
    client, _ = secured
    response = await client.post("/api/things", json={}, headers={**COOKIE, **headers})
    assert response.status == status


async def test_logout_from_another_origin_is_refused(secured: Any) -> None:
    client, ran = secured
    response = await client.post("/auth/logout", headers={**COOKIE, "Origin": EVIL})
    assert response.status == 403 and ran == []


async def test_requests_without_a_cookie_are_left_to_authentication(secured: Any) -> None:
    client, ran = secured
    response = await client.post("/api/things", json={}, headers={"Origin": EVIL})
    assert response.status == 200 and ran == ["POST /api/things"]


async def test_get_is_never_refused_for_its_origin(secured: Any) -> None:
    client, ran = secured
    response = await client.get("/api/things", headers={**COOKIE, "Origin": EVIL})
    assert response.status == 200 and ran == ["GET /api/things"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "text/plain; charset=utf-8"])
async def test_bodies_a_cross_site_form_can_send_get_415(secured: Any, content_type: str) -> None:
    client, ran = secured
    response = await client.post("/api/things", data=b"a=1", headers={**COOKIE, "Origin": PUBLIC,
                                                                      "Content-Type": content_type})
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"
    assert ran == []


async def test_json_bodies_and_empty_posts_pass(secured: Any) -> None:
    client, ran = secured
    ok = await client.post("/api/things", data=b'{"a":1}', headers={**COOKIE, "Origin": PUBLIC,
                                                                   "Content-Type": "application/merge-patch+json"})
    empty = await client.post("/api/things", headers={**COOKIE, "Origin": PUBLIC})
    assert (ok.status, empty.status) == (200, 200) and len(ran) == 2


@pytest.mark.parametrize(("method", "path"), [("POST", "/webhooks/github"), ("POST", "/setup/callback")])
async def test_webhook_and_setup_routes_are_exempt(secured: Any, method: str, path: str) -> None:
    client, ran = secured
    response = await client.request(method, path, data=b"x", headers={**COOKIE, "Origin": EVIL,
                                                                       "Content-Type": "text/plain"})
    assert response.status == 200 and ran == [f"{method} {path}"]
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_allows_exactly_the_dashboard_origin_with_credentials(secured: Any) -> None:
    client, _ = secured
    response = await client.get("/api/things", headers={"Origin": DASHBOARD})
    assert response.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize("origin", [EVIL, PUBLIC, "https://dash.example", "null"])
async def test_cors_gives_nothing_to_other_origins(secured: Any, origin: str) -> None:
    client, _ = secured
    response = await client.get("/api/things", headers={"Origin": origin})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_cors_headers_are_on_error_answers_too(secured: Any) -> None:
    client, _ = secured
    response = await client.get("/api/missing", headers={"Origin": DASHBOARD})
    assert response.status == 404
    assert response.headers["Access-Control-Allow-Origin"] == DASHBOARD


async def test_preflight_from_the_dashboard_is_answered(secured: Any) -> None:
    client, ran = secured
    response = await client.options("/api/things", headers={
        "Origin": DASHBOARD, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert ran == []


async def test_preflight_from_another_origin_gets_no_cors_headers(secured: Any) -> None:
    client, _ = secured
    response = await client.options("/api/things", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_without_a_dashboard_url_no_origin_gets_cors(aiohttp_client: Any) -> None:
    app, _ = build_app(dashboard_url=None)
    client = await aiohttp_client(app)
    response = await client.get("/api/things", headers={"Origin": PUBLIC})
    assert response.status == 200 and "Access-Control-Allow-Origin" not in response.headers
    refused = await client.post("/api/things", json={}, headers={**COOKIE, "Origin": "https://dash.example"})
    assert refused.status == 403


@pytest.mark.parametrize(("url", "origin"), [
    ("https://Qr.Example/path?x", "https://qr.example"), ("http://h:8000", "http://h:8000"), ("ftp://h", None),
    ("/relative", None), ("", None), (None, None), ("https://user@evil.example", None),
    ("https://qr.example:443/", "https://qr.example"), ("HTTP://H:80", "http://h"), ("https://h:80", "https://h:80"),
    ("http://[::1]:8000", "http://[::1]:8000"), ("https://h:x", None), ("https://h:99999", None)])
def test_origin_of_keeps_scheme_host_and_port(url: str | None, origin: str | None) -> None:
    assert web_security.origin_of(url) == origin


async def test_a_url_setting_with_the_default_port_matches_what_browsers_send(aiohttp_client: Any) -> None:
    app, ran = build_app(dashboard_url="https://dash.example:443")
    app[keys.settings] = Settings(public_url="https://qr.example:443", dashboard_url="https://dash.example:443")
    client = await aiohttp_client(app)
    own = await client.post("/auth/logout", headers={**COOKIE, "Origin": PUBLIC})
    assert own.status == 200 and ran == ["POST /auth/logout"]
    preflight = await client.options("/api/things", headers={"Origin": "https://dash.example",
                                                              "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://dash.example"


# --- HSTS ---------------------------------------------------------------------------------------------------------

HSTS = "Strict-Transport-Security"
ANSWERS = [("GET", "/api/things", 200), ("GET", "/api/missing", 404), ("GET", "/nowhere", 404),
           ("POST", "/api/things", 403), ("GET", "/setup/callback", 200), ("POST", "/webhooks/github", 200)]


@pytest.mark.parametrize(("method", "path", "status"), ANSWERS)
async def test_every_answer_of_an_https_server_carries_hsts(aiohttp_client: Any, method: str, path: str,
                                                            status: int) -> None:
    """Without it a browser that had used the dashboard over https still sent a typed http:// request (session
    cookie, login or setup code in the URL) in the clear before any redirect."""
    app, _ = build_app()
    client = await aiohttp_client(app)
    headers = {**COOKIE, "Origin": EVIL} if status == 403 else {}
    response = await client.request(method, path, headers=headers, json={} if method == "POST" else None)
    assert response.status == status
    assert response.headers[HSTS] == "max-age=31536000"  # no includeSubDomains, no preload


@pytest.mark.parametrize("public_url", ["http://qr.example", "https://localhost:8443", "https://qr.localhost",
                                        "https://127.0.0.1:8443", "https://[::1]:8443", "http://localhost:8000"])
async def test_plain_http_and_local_servers_never_send_hsts(aiohttp_client: Any, public_url: str) -> None:
    """On https://localhost it would force every local development server onto https for a year."""
    app, _ = build_app(public_url=public_url)
    client = await aiohttp_client(app)
    for method, path, _status in ANSWERS:
        response = await client.request(method, path, json={} if method == "POST" else None)
        assert HSTS not in response.headers, path


async def test_the_whole_app_sends_hsts_on_html_json_and_errors(aiohttp_client: Any,
                                                               make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(public_url="https://qr.example"), registry=HandlerRegistry.from_routers([]))
    client = await aiohttp_client(app)
    for path, status in (("/health", 200), ("/api/me", 401), ("/auth/github", 503), ("/setup", 404),
                         ("/nowhere", 404)):
        response = await client.get(path, allow_redirects=False)
        assert response.status == status, path
        assert response.headers[HSTS] == "max-age=31536000", path
