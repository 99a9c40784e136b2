"""One-click install: GET /setup posts app.yml's manifest to GitHub; GET /setup/callback stores and loads the App.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import ipaddress
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from aiohttp import web

from quantumreview import keys, setup_pages
from quantumreview.app_manifest import (
    SETUP_CALLBACK_PATH,
    SETUP_INSTALLED_PATH,
    build_manifest,
    load_manifest_template,
)
from quantumreview.credentials import AppCredentials
from quantumreview.crypto import SecretBox, SecretBoxError
from quantumreview.github_auth import load_rsa_key
from quantumreview.github_client import read_capped
from quantumreview.settings import MIN_WEBHOOK_SECRET_BYTES, Settings
from quantumreview.setup_state import STATE_COOKIE, SetupStates
from quantumreview.startup import StartupError
from storage.credentials import StoredValue, load_values, save_values
from storage.db import Database, DatabaseBusy

log = logging.getLogger(__name__)

SETUP_PATH = "/setup"
# Marks a /setup request sent on from another local name (_public_setup_url), so it is never sent on twice.
MOVED_PARAM = "moved"
DEFAULT_PORTS = {"http": 80, "https": 443}
# Why a token on a public server: until an App is configured, whoever opens /setup first registers an App whose
# credentials the server then uses (a fresh *.fly.dev name is easy to guess). The link with the token is printed in
# the server's log, which only the operator reads; it is useless once an App is configured (/setup answers 404).
SETUP_TOKEN_LABEL = b"quantumreview setup link"
# GitHub logins: letters, digits, single inner hyphens, at most 39 characters.
ORGANIZATION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")
CONVERSION_TIMEOUT_SECONDS = 15.0
# A conversion answer is a few KB (the PEM is the largest field). Why a cap: a body that never ends was read
# until the 15 s timeout, gigabytes on loopback, enough to get the 512 MB machine killed mid-setup.
MAX_CONVERSION_BYTES = 1024 * 1024


class ConversionError(Exception):
    """GitHub did not turn a manifest code into App credentials; the message is safe to show."""


UNUSABLE_CREDENTIALS = (
    f"the stored GitHub App credentials are not usable (damaged, a webhook secret under {MIN_WEBHOOK_SECRET_BYTES} "
    "bytes, no numeric App id, or no RSA private key): set GITHUB_APP_ID, GITHUB_PRIVATE_KEY and "
    "GITHUB_WEBHOOK_SECRET (a new secret, also entered in the App's webhook settings on GitHub)")


class StoredCredentialsError(StartupError):
    """Stored App credentials exist but cannot be used: not decryptable with this server's key, or unusable."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _text(data: Mapping[str, Any], name: str) -> str | None:
    """A non-empty string field, or None. Why encodable only: a lone surrogate ("\\ud800" in the JSON) raised
    UnicodeEncodeError when the value was measured or stored, a 500 after GitHub had created the App."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _require_text(data: Mapping[str, Any], name: str) -> str:
    value = _text(data, name)
    if value is None:
        raise ConversionError(f"the response has no {name}")
    return value


def _is_rsa_key(pem: str) -> bool:
    try:
        load_rsa_key(pem)
    except ValueError:
        return False
    return True


def credentials_from_conversion(data: Mapping[str, Any]) -> AppCredentials:
    """Check GitHub's conversion response and turn it into AppCredentials."""
    app_id = data.get("id")
    if not isinstance(app_id, int) or isinstance(app_id, bool) or app_id < 1:
        raise ConversionError("the response has no App id")
    pem = _require_text(data, "pem")
    # Why parse it: a key that only looks like PEM was stored, then building the GitHub client from it raised
    # ValueError, a 500 here and at every start after, with /setup closed: the server was stuck until the
    # credentials rows were deleted by hand.
    try:
        load_rsa_key(pem)
    except ValueError:
        raise ConversionError("the response's private key is not a PEM RSA key") from None
    html_url = _require_text(data, "html_url")
    if urlsplit(html_url).scheme not in ("http", "https"):
        raise ConversionError("the response's html_url is not an http(s) URL")
    webhook_secret = _require_text(data, "webhook_secret")
    if len(webhook_secret.encode()) < MIN_WEBHOOK_SECRET_BYTES:
        # Why: the same floor as WEBHOOK_SECRET in the settings; a short secret makes signatures guessable.
        raise ConversionError(f"the response's webhook_secret is shorter than {MIN_WEBHOOK_SECRET_BYTES} bytes")
    return AppCredentials(
        app_id=app_id,
        private_key=pem,
        webhook_secret=webhook_secret,
        oauth_client_id=_text(data, "client_id"),
        oauth_client_secret=_text(data, "client_secret"),
        slug=_require_text(data, "slug"),
        html_url=html_url.rstrip("/"),
    )


async def convert_manifest_code(
    session: aiohttp.ClientSession, api_url: str, code: str, *, timeout: float = CONVERSION_TIMEOUT_SECONDS
) -> AppCredentials:
    """POST /app-manifests/{code}/conversions and return the new App's credentials."""
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
               "User-Agent": "quantumreview-setup"}
    try:
        async with session.post(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await _read_capped(resp)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConversionError(f"GitHub could not be reached ({type(exc).__name__})") from None
    if resp.status != 201:
        raise ConversionError(f"GitHub answered HTTP {resp.status} ({_github_message(body)})")
    data = _json_or_none(body)
    if not isinstance(data, Mapping):
        raise ConversionError("GitHub's response is not a JSON object")
    return credentials_from_conversion(data)


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The response body, or ConversionError once it passes MAX_CONVERSION_BYTES (declared or read)."""
    body = await read_capped(resp, MAX_CONVERSION_BYTES)
    if body is None:
        raise ConversionError(f"GitHub answered HTTP {resp.status} with a body over {MAX_CONVERSION_BYTES} bytes")
    return body


def _json_or_none(body: bytes) -> Any:
    """The parsed JSON body, or None when it is not JSON (malformed, not UTF-8, or nested too deeply)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # Why RecursionError: "[[[[…" within the cap is not a ValueError
        return None


def _github_message(body: bytes) -> str:
    data = _json_or_none(body)
    message = data.get("message") if isinstance(data, Mapping) else None
    return str(message)[:200] if message else "no message"


def _stored_values(creds: AppCredentials, box: SecretBox) -> list[StoredValue]:
    plain = {"app_id": str(creds.app_id), "slug": creds.slug, "html_url": creds.html_url,
             "oauth_client_id": creds.oauth_client_id}
    secret = {"private_key": creds.private_key, "webhook_secret": creds.webhook_secret,
              "oauth_client_secret": creds.oauth_client_secret}
    values = [StoredValue(k, v.encode(), secret=False) for k, v in plain.items() if v is not None]
    return values + [StoredValue(k, box.encrypt(v), secret=True) for k, v in secret.items() if v is not None]


async def store_credentials(db: Database, box: SecretBox, creds: AppCredentials, *, now: float | None = None) -> None:
    """Save the App's credentials in one transaction, secrets encrypted with `box`."""
    async with db.transaction() as conn:
        await save_values(conn, _stored_values(creds, box), now=time.time() if now is None else now)


async def load_stored_credentials(db: Database, box: SecretBox) -> AppCredentials | None:
    """The App credentials saved by the setup flow, or None if there are none."""
    stored = await load_values(db)
    if not {"app_id", "private_key", "webhook_secret"} <= stored.keys():
        return None
    try:
        values = {n: box.decrypt(v.value) if v.secret else v.value.decode() for n, v in stored.items()}
    except UnicodeDecodeError:
        raise StoredCredentialsError(UNUSABLE_CREDENTIALS) from None
    except SecretBoxError:
        raise StoredCredentialsError(
            "the stored GitHub App credentials cannot be decrypted: JWT_SECRET (or secret.key beside the "
            "database) changed since setup; restore it (to rotate it, set the old value as JWT_SECRET_PREVIOUS "
            "beside the new JWT_SECRET), or set the GITHUB_* variables"
        ) from None
    app_id, secret = values["app_id"], values["webhook_secret"]
    if len(secret.encode()) < MIN_WEBHOOK_SECRET_BYTES or not (app_id.isascii() and app_id.isdigit()) \
            or not _is_rsa_key(values["private_key"]):
        # Why refuse: a short secret is as weak stored as in GITHUB_WEBHOOK_SECRET, which is refused at start too.
        raise StoredCredentialsError(UNUSABLE_CREDENTIALS)
    return AppCredentials(
        app_id=int(app_id),
        private_key=values["private_key"],
        webhook_secret=secret,
        oauth_client_id=values.get("oauth_client_id"),
        oauth_client_secret=values.get("oauth_client_secret"),
        slug=values.get("slug"),
        html_url=values.get("html_url"),
    )


async def initial_credentials(settings: Settings, db: Database, box: SecretBox) -> AppCredentials | None:
    """Credentials to start with: the environment's when set (they win), else those stored by the setup flow."""
    from_env = AppCredentials.from_settings(settings)
    if from_env is not None:
        return from_env
    stored = await load_stored_credentials(db, box)
    return None if stored is None else with_environment_secrets(stored, settings)


def with_environment_secrets(stored: AppCredentials, settings: Settings) -> AppCredentials:
    """Stored credentials with GITHUB_WEBHOOK_SECRET, GITHUB_WEBHOOK_SECRET_PREVIOUS and the OAuth client
    (GITHUB_OAUTH_CLIENT_ID and _SECRET, set together) in force when set.

    Why: rotating a secret of an App registered through /setup is setting those variables, as for an App
    configured by variables; they used to be ignored beside stored credentials, so every delivery signed with the
    new webhook secret was refused (401), or every login failed with the new client secret, while the server said
    nothing.
    """
    creds = stored
    if settings.webhook_secret is not None or settings.webhook_secret_previous is not None:
        creds = dataclasses.replace(creds, webhook_secret=settings.webhook_secret or creds.webhook_secret,
                                    webhook_secret_previous=settings.webhook_secret_previous)
    if settings.oauth_client_id is not None and settings.oauth_client_secret is not None:
        creds = dataclasses.replace(creds, oauth_client_id=settings.oauth_client_id,
                                    oauth_client_secret=settings.oauth_client_secret)
    return creds


def environment_overrides(settings: Settings) -> list[str]:
    """The variables with_environment_secrets puts in force over stored credentials, as the page names them."""
    names = ["GITHUB_WEBHOOK_SECRET"] if settings.webhook_secret is not None else []
    if settings.oauth_client_id is not None and settings.oauth_client_secret is not None:
        names.append("GITHUB_OAUTH_CLIENT_ID and GITHUB_OAUTH_CLIENT_SECRET")
    return names


async def stored_credentials_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx after the database opens: put stored credentials in force unless the environment set some."""
    holder = app[keys.credentials]
    if not holder.configured:
        stored = await load_stored_credentials(app[keys.db], app[keys.secret_box])
        if stored is not None:
            holder.replace(with_environment_secrets(stored, app[keys.settings]))
            log.info("GitHub App %s (id %d) loaded from the database", stored.slug, stored.app_id)
    yield


def _html(body: str, *, settings: Settings, status: int = 200) -> web.Response:
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'; "
           f"form-action 'self' {_origin(settings.github_url)} {_origin(settings.public_url)}")
    # Why no-referrer: the callback URL carries the manifest code; links on the page must not leak it.
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": csp, "Referrer-Policy": "no-referrer",
               "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
    return web.Response(text=body, status=status, content_type="text/html", headers=headers)


def public_url_problem(url: str) -> str | None:
    """Why `url` cannot be the base of the App's URLs, or None. The settings accept any http(s) URL with a host,
    but the manifest appends paths to it: a query or fragment swallowed them (https://host/?a=1/webhooks/github
    is https://host/ to GitHub), so GitHub registered an App whose webhooks and callback could never arrive."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port past 65535 or not a number
    except ValueError:
        return "its port is not a port number"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "it has a query (?…) or a fragment (#…)"
    if parts.username is not None or parts.password is not None:
        return "it holds a user name or password"
    if any(ch.isspace() or ch in "\"<>\\^`{|}" or not ch.isprintable() for ch in url):
        return "it holds spaces or characters a URL must not hold"
    return None


def _setup_url(settings: Settings) -> str:
    """/setup as browsers reach it: under PUBLIC_URL's path when a proxy serves this server under one."""
    return f"{settings.public_url.rstrip('/')}{SETUP_PATH}"


def _cookie_path(settings: Settings) -> str:
    """The state cookie's path: /setup under PUBLIC_URL's path. Why: with PUBLIC_URL https://host/qr the
    browser is at /qr/setup/callback, which a cookie of path /setup is never sent to, so every setup failed as
    "not started from this browser", after GitHub had created the App."""
    return urlsplit(settings.public_url).path.rstrip("/") + SETUP_PATH


def setup_token(key: bytes) -> str:
    """The token a public server's /setup asks for: derived from the server's key, so nothing is stored, the link
    in the log stays valid across restarts, and no one without the log or the key can compute it."""
    return base64.urlsafe_b64encode(hmac.digest(key, SETUP_TOKEN_LABEL, "sha256")[:16]).rstrip(b"=").decode()


def setup_link(settings: Settings, key: bytes) -> str:
    """Where the operator registers the App: /setup, with the token unless only this machine can reach it."""
    base = f"{settings.public_url.rstrip('/')}{SETUP_PATH}"
    return f"{base}?{urlencode({'token': setup_token(key)})}" if needs_token(settings) else base


def needs_token(settings: Settings) -> bool:
    """Whether /setup asks for the token: unless PUBLIC_URL is a local address and the server listens on loopback.

    Why HOST too: the Docker image listens on 0.0.0.0, where PUBLIC_URL left unset is http://localhost:PORT, so
    judged by PUBLIC_URL alone /setup opened without the token to anyone reaching the server.
    """
    return not (_is_local(settings.public_url) and _is_loopback(settings.host))


def _public_setup_url(request: web.Request, settings: Settings) -> str | None:
    """Where to send a browser that opened a local server's /setup by another local name, else None.

    Why: the quick start listens on 127.0.0.1 while PUBLIC_URL is http://localhost:8000. Opened at 127.0.0.1, the
    state cookie was set there, GitHub sent the browser back to localhost without it, and setup failed as "not
    started from this browser" after GitHub had created the App. Only between local names, and once (MOVED_PARAM):
    a public server's Host may be rewritten by its proxy, where a redirect could loop.
    """
    public = urlsplit(settings.public_url)
    if not _is_local(settings.public_url) or MOVED_PARAM in request.query:
        return None
    default = DEFAULT_PORTS.get(public.scheme)
    wanted = (public.hostname or "", public.port or default)
    try:
        here = (request.url.host or "", request.url.port or default)
    except ValueError:  # a Host header that is no host
        return None
    if here == wanted or not _is_local(f"http://{_bracketed(here[0])}/"):
        return None
    query = [(name, value) for name, value in request.query.items()]
    return f"{_setup_url(settings)}?{urlencode([*query, (MOVED_PARAM, '1')])}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


def _is_loopback(host: str) -> bool:
    """Whether a listening address (HOST) is reachable from this machine only."""
    name = host.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another name or several addresses: maybe reachable from elsewhere


class SetupFlow:
    """The setup routes; the pending states live here, so nothing sits in module globals."""

    def __init__(self, *, clock: Callable[[], float] = time.time, template: Mapping[str, Any] | None = None) -> None:
        self._clock = clock
        self._states = SetupStates(clock=clock)
        self._template = dict(template) if template is not None else load_manifest_template()
        # Why: two tabs finishing at once must not both convert and overwrite each other's App.
        self._finishing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SetupFlow({self._states!r})"

    async def show_setup(self, request: web.Request) -> web.Response:
        """GET /setup: the Register button, with a fresh state bound to a cookie; 404 once configured."""
        app = request.app
        if app[keys.credentials].configured:
            raise web.HTTPNotFound()
        settings = app[keys.settings]
        if (problem := public_url_problem(settings.public_url)) is not None:
            log.error("the setup page cannot register a GitHub App for PUBLIC_URL: %s", problem)
            return _html(setup_pages.bad_public_url_page(settings.public_url, problem), settings=settings,
                         status=500)
        if (elsewhere := _public_setup_url(request, settings)) is not None:
            raise web.HTTPFound(elsewhere)
        token: str | None = None
        if needs_token(settings):
            token = setup_token(app[keys.secret_box].session_key)
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
                log.warning("setup page refused: %s setup token", "a wrong" if given else "no")
                return _html(setup_pages.token_required_page(), settings=settings, status=403)
        start = _setup_url(settings) if token is None else f"{_setup_url(settings)}?{urlencode({'token': token})}"
        organization = request.query.get("organization", "").strip()
        if organization and not ORGANIZATION.fullmatch(organization):
            page = setup_pages.bad_organization_page(organization[:100], start=start)
            return _html(page, settings=settings, status=400)
        state, cookie = self._states.issue(app[keys.secret_box].session_key, request.cookies.get(STATE_COOKIE))
        path = f"/organizations/{quote(organization, safe='')}/settings/apps/new" if organization else \
            "/settings/apps/new"
        action = f"{settings.github_url}{path}?{urlencode({'state': state})}"
        manifest = build_manifest(self._template, settings.public_url)
        page = setup_pages.setup_page(action=action, manifest_json=json.dumps(manifest, separators=(",", ":")),
                                      organization=organization, webhook_url=manifest["hook_attributes"]["url"],
                                      local=_is_local(settings.public_url),
                                      overrides=environment_overrides(settings), start=_setup_url(settings),
                                      token=token)
        response = _html(page, settings=settings)
        self._set_cookie(response, cookie, settings)
        return response

    def _set_cookie(self, response: web.Response, cookie: str, settings: Settings) -> None:
        response.set_cookie(STATE_COOKIE, cookie, max_age=self._states.ttl, path=_cookie_path(settings),
                            httponly=True, samesite="Lax", secure=settings.public_url.startswith("https://"))

    async def finish_setup(self, request: web.Request) -> web.Response:
        """GET /setup/callback: check state, convert the code, store and load the App; 404 once configured."""
        app = request.app
        settings = app[keys.settings]
        async with self._finishing:
            if app[keys.credentials].configured:
                raise web.HTTPNotFound()
            key = app[keys.secret_box].session_key
            state, code = request.query.get("state"), request.query.get("code", "")
            if not self._states.redeem(key, state, request.cookies.get(STATE_COOKIE)):
                log.warning("setup callback rejected: state missing, wrong, expired or already used")
                page = setup_pages.bad_state_page(start=_setup_url(settings), github_url=settings.github_url)
                return self._keep_other_states(request, _html(page, settings=settings, status=400))
            if not CODE.fullmatch(code):
                page = setup_pages.conversion_failed_page("the code from GitHub is missing or malformed",
                                                          start=_setup_url(settings))
                return self._keep_other_states(request, _html(page, settings=settings, status=400))
            try:
                creds = await convert_manifest_code(app[keys.http], settings.github_api_url, code)
            except ConversionError as exc:
                log.warning("GitHub App manifest conversion failed: %s", exc)
                page = setup_pages.conversion_failed_page(str(exc), start=_setup_url(settings))
                return self._keep_other_states(request, _html(page, settings=settings, status=502))
            assert creds.html_url is not None and creds.slug is not None
            try:
                await store_credentials(app[keys.db], app[keys.secret_box], creds, now=self._clock())
            except (DatabaseBusy, sqlite3.Error) as exc:
                log.error("GitHub App %s (id %d) created but not saved: %s", creds.slug, creds.app_id,
                          type(exc).__name__)
                page = setup_pages.store_failed_page(creds.html_url, start=_setup_url(settings))
                return self._keep_other_states(request, _html(page, settings=settings, status=503))
            # Why with the environment's: a restart puts GITHUB_WEBHOOK_SECRET (and the OAuth client variables)
            # in force over the stored ones; using GitHub's here only worked until the next deploy, then every
            # delivery was refused (401) without a word. The page says which variables win.
            app[keys.credentials].replace(with_environment_secrets(creds, settings))
        log.info("GitHub App %s (id %d) registered from the manifest; its credentials are stored and in use",
                 creds.slug, creds.app_id)
        page = setup_pages.success_page(name=creds.slug, html_url=creds.html_url,
                                        overrides=environment_overrides(settings))
        return self._forget_cookie(_html(page, settings=settings), settings)

    async def show_installed(self, request: web.Request) -> web.Response:
        """GET /setup/installed: where GitHub sends people after installing (the manifest's setup_url)."""
        settings = request.app[keys.settings]
        return _html(setup_pages.installed_page(settings.dashboard_url), settings=settings)

    def _keep_other_states(self, request: web.Request, response: web.Response) -> web.Response:
        """After a failed callback: the cookie keeps this browser's other pending states (other tabs), if any."""
        remaining = self._states.remaining(request.app[keys.secret_box].session_key,
                                           request.cookies.get(STATE_COOKIE))
        if remaining is None:
            return self._forget_cookie(response, request.app[keys.settings])
        self._set_cookie(response, remaining, request.app[keys.settings])
        return response

    @staticmethod
    def _forget_cookie(response: web.Response, settings: Settings) -> web.Response:
        response.del_cookie(STATE_COOKIE, path=_cookie_path(settings))
        return response


def add_routes(app: web.Application, *, clock: Callable[[], float] = time.time) -> SetupFlow:
    """Register /setup, /setup/callback and /setup/installed on `app`; return the flow (tests drive its clock)."""
    flow = SetupFlow(clock=clock)
    app.router.add_get(SETUP_PATH, flow.show_setup)
    app.router.add_get(SETUP_CALLBACK_PATH, flow.finish_setup)
    app.router.add_get(SETUP_INSTALLED_PATH, flow.show_installed)
    return flow
