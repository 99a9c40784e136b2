"""Cross-site safety for the dashboard: Origin checks on state-changing requests, JSON-only bodies, and CORS.

Why an Origin check on top of SameSite=Lax: Lax still sends the cookie on same-site subdomains and old
browsers; a request that changes state with a cookie must come from PUBLIC_URL's or DASHBOARD_URL's origin.
Why 415 for text/plain and forms: those are the content types a cross-site page can POST without a preflight.
Why HSTS on every answer when PUBLIC_URL is https: a browser that once reached the dashboard over https never again
sends its session cookie, or a login or setup code, over plain http to that host (a redirect from http is too late).
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from urllib.parse import urlsplit

from aiohttp import web

from quantumreview import keys
from quantumreview.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WEBHOOK_PATH = "/webhooks/github"
SETUP_PREFIX = "/setup"
PROTECTED_EXACT = frozenset({"/auth/logout"})
API_PREFIX = "/api/"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = "Content-Type, X-Requested-With"
PREFLIGHT_MAX_AGE = "600"
DEFAULT_PORTS = {"http": 80, "https": 443}
# A year: a returning user stays covered between visits. No includeSubDomains: other hosts under PUBLIC_URL's domain
# are not ours to force onto https. No preload: it needs includeSubDomains and binds the whole domain for months.
HSTS = "max-age=31536000"


def origin_of(url: str | None) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, lower-cased, without the scheme's default port; None
    otherwise."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        return None
    host = parts.hostname
    if not host:
        return None
    # Why drop the default port: browsers serialize an origin without it (RFC 6454 §6.2), so a PUBLIC_URL of
    # https://qr.example:443 refused every logout and POST from its own pages as cross-site.
    shown = "" if port is None or port == DEFAULT_PORTS[parts.scheme] else f":{port}"
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{shown}"


def trusted_origins(settings: Settings) -> frozenset[str]:
    """The origins allowed to change state: PUBLIC_URL's and DASHBOARD_URL's."""
    return frozenset(o for o in (origin_of(settings.public_url), origin_of(settings.dashboard_url)) if o)


def is_exempt(path: str) -> bool:
    """Webhooks (signed) and the setup flow (its own state) are not dashboard requests."""
    return path == WEBHOOK_PATH or path.startswith(SETUP_PREFIX)


def is_protected(path: str) -> bool:
    """Dashboard endpoints that act with the session cookie."""
    return path.startswith(API_PREFIX) or path in PROTECTED_EXACT


def request_origin(request: web.Request) -> str | None:
    """The Origin header, or lacking it the Referer's origin; None for `Origin: null`.

    Why not the Referer when Origin is null: a browser sends null for a request from an opaque origin (a sandboxed
    frame, a POST redirected across origins), whose Referer is still the page around it or the page that started it:
    attacker content framed in the dashboard, or a dashboard form sent to an attacker's URL that answers 307.
    """
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin_of(origin)
    return origin_of(request.headers.get("Referer"))


def _sends_body(request: web.Request) -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/")
                                                  and content_type.endswith("+json"))


def _error(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json")


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}


def check_request(request: web.Request, settings: Settings) -> web.Response | None:
    """Return the error response a cross-site or non-JSON state-changing request gets, or None if it may pass."""
    if request.method not in STATE_CHANGING or not is_protected(request.path):
        return None
    if request.cookies and request_origin(request) not in trusted_origins(settings):
        return _error(403, "csrf", "cross-site request refused: it must come from the dashboard")
    if request.path.startswith(API_PREFIX) and _sends_body(request) and not _is_json(request.content_type):
        return _error(415, "unsupported_media_type", "send the body as application/json")
    return None


def preflight(request: web.Request, dashboard: str | None) -> web.Response:
    """Answer a CORS preflight: allowed for the dashboard's origin only."""
    origin = origin_of(request.headers.get("Origin"))
    if dashboard is None or origin != dashboard:
        return _error(403, "cors", "this origin may not call the API")
    return web.Response(status=204, headers={
        **_cors_headers(dashboard), "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": PREFLIGHT_MAX_AGE})


# Why on every /api response, errors included: they carry the signed-in user's data; a shared cache must not keep
# them, and a browser must not sniff them into something other than JSON.
API_RESPONSE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@functools.lru_cache(maxsize=8)
def hsts_value(public_url: str) -> str | None:
    """Strict-Transport-Security for answers of a server at `public_url`: HSTS if it is https on a host that is not
    this machine, else None.

    Why not for localhost: a browser applies HSTS to a host on every port, so https://localhost would force every
    other local development server onto https for a year. Plain http never gets it (RFC 6797 §7.2).
    """
    parts = urlsplit(public_url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme != "https" or not host or host == "localhost" or host.endswith(".localhost"):
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        loopback = False
    return None if loopback else HSTS


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cross-site checks and CORS (guard), and HSTS on every answer, errors included, when PUBLIC_URL is https."""
    hsts = hsts_value(request.app[keys.settings].public_url)
    if hsts is None:
        return await guard(request, handler)
    try:
        response = await guard(request, handler)
    except web.HTTPException as exc:
        exc.headers.setdefault("Strict-Transport-Security", hsts)
        raise
    response.headers.setdefault("Strict-Transport-Security", hsts)
    return response


async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-site state changes (403 csrf) and non-JSON bodies (415); add CORS for DASHBOARD_URL, and
    API_RESPONSE_HEADERS to every /api answer (it runs outside error_middleware, so error answers get them too)."""
    if is_exempt(request.path):
        return await handler(request)
    settings = request.app[keys.settings]
    dashboard = origin_of(settings.dashboard_url)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return preflight(request, dashboard)
    refused = check_request(request, settings)
    api = request.path.startswith(API_PREFIX)
    cors = None
    if dashboard is not None and origin_of(request.headers.get("Origin")) == dashboard:
        cors = _cors_headers(dashboard)
    try:
        response = refused or await handler(request)
    except web.HTTPException as exc:
        _decorate(exc.headers, api, cors)
        raise
    _decorate(response.headers, api, cors)
    return response


def _decorate(headers: MutableMapping[str, str], api: bool, cors: Mapping[str, str] | None) -> None:
    if api:
        for name, value in API_RESPONSE_HEADERS.items():
            headers.setdefault(name, value)  # a handler's own Cache-Control wins
    if cors is not None:
        headers.update(cors)
