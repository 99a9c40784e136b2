"""Dashboard login: GitHub OAuth web flow (state + PKCE S256), the session cookie, current_user and user tokens.

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app

Cookie names: `__Host-quantum_session` when PUBLIC_URL is https (the prefix needs Secure, Path=/ and no Domain),
`quantum_session` on plain http (local development), where browsers refuse `__Host-` cookies.
The session cookie is an HS256 JWT holding only the user id, the session version, iat and exp; GitHub tokens stay
in the database, encrypted. Logout and revocation bump the user's session version, so old cookies stop working.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlencode

import aiohttp
import gidgethub
import jwt
from aiohttp import web
from cachetools import TTLCache

from quantumreview import keys
from quantumreview.crypto import SecretBoxError
from quantumreview.errors import QuantumReviewError, RetryLater
from quantumreview.github_oauth import OAuthError, UserTokens
from quantumreview.settings import Settings
from storage import users
from storage.users import StoredTokens, User

if TYPE_CHECKING:
    from quantumreview.github import GitHubApp

__all__ = ["AUTH", "AuthState", "User", "current_user", "routes", "setup", "user_token", "with_user_token"]

log = logging.getLogger("quantumreview.auth")
T = TypeVar("T")

SESSION_LIFETIME = 8 * 3600
STATE_TTL = 600
STATE_BYTES = 32  # 256 bits
MAX_PENDING_LOGINS = 4096
MAX_USED_STATES = 65_536
# A failed token refresh (GitHub down or rate-limiting) answers 503 with Retry-After: GitHub's time, else this,
# within MAX_RETRY_AFTER.
REFRESH_RETRY_AFTER = 30
MAX_RETRY_AFTER = 3600
REFRESH_MARGIN = 60.0  # refresh a user token this early, so a request never carries one about to expire
CLOCK_SKEW = 60
# Why a short wait: logout must answer promptly when GitHub is slow; an unrevoked token expires on its own (8 h).
REVOKE_TIMEOUT = 5.0
CALLBACK_PATH = "/auth/callback"
CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")
GITHUB_ERROR_CODE = re.compile(r"[a-z0-9_]{1,64}")
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

routes = web.RouteTableDef()


@dataclass(frozen=True)
class PendingLogin:
    """A login started by GET /auth/github: its PKCE verifier and where to go afterwards."""

    verifier: str
    next_path: str | None


class AuthState:
    """Logins in progress (one use each, 10 minutes) and one refresh lock per user; held on the app.

    A login's state is valid by its signed cookie, and its PKCE verifier is derived from it with the key, so
    neither is stored. Why: the stored logins were bounded (4096) and evicted oldest first, so anyone requesting
    /auth/github a few thousand times made every login in progress fail. Only the `next` path (lost under such a
    flood: the user lands on the dashboard) and the states already used (one use each) are kept.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, session_lifetime: int = SESSION_LIFETIME,
                 state_ttl: int = STATE_TTL) -> None:
        self.clock = clock
        self.session_lifetime = session_lifetime
        self.state_ttl = state_ttl
        # Why: a session signed with JWT_SECRET_PREVIOUS was issued before this server started (since then every
        # session is signed with JWT_SECRET); see current_user.
        self.started = clock()
        # Why bounded: reloading the login page forever must not grow memory.
        self._next: TTLCache[str, str] = TTLCache(MAX_PENDING_LOGINS, ttl=state_ttl, timer=clock)
        self._used: TTLCache[str, bool] = TTLCache(MAX_USED_STATES, ttl=state_ttl + CLOCK_SKEW, timer=clock)
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._detached: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"AuthState(next_paths={len(self._next)}, used={len(self._used)})"

    def issue(self, key: bytes, next_path: str | None) -> tuple[str, str, str]:
        """Return a new state, the signed cookie value binding it to this browser, and its PKCE verifier."""
        state = secrets.token_urlsafe(STATE_BYTES)
        expires = int(self.clock()) + self.state_ttl
        if next_path:
            self._next[state] = next_path
        return state, f"{state}.{expires}.{_state_signature(key, state, expires)}", pkce_verifier(key, state)

    def redeem(self, key: bytes, state: str | None, cookie: str | None) -> PendingLogin | None:
        """Accept `state` once if this browser's signed, unexpired cookie carries it; None otherwise."""
        # Why ASCII and a bounded expiry: the cookie is the browser's to send; a non-ASCII signature made
        # compare_digest raise TypeError, and 5000 digits made int() raise ValueError (both a 500, not a 400).
        if not state or not cookie or not cookie.isascii() or cookie.count(".") != 2:
            return None
        cookie_state, raw_expires, signature = cookie.split(".")
        if not raw_expires.isdigit() or len(raw_expires) > 12 or int(raw_expires) <= self.clock():
            return None
        if not hmac.compare_digest(signature, _state_signature(key, cookie_state, int(raw_expires))):
            return None
        if not hmac.compare_digest(cookie_state.encode(), state.encode()) or state in self._used:
            return None
        self._used[state] = True
        return PendingLogin(pkce_verifier(key, state), self._next.pop(state, None))

    def detach(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` in a task that outlives a cancelled caller (kept referenced until it ends)."""
        task = asyncio.ensure_future(work)
        self._detached.add(task)
        task.add_done_callback(self._detached_done)
        return task

    def _detached_done(self, task: asyncio.Task[Any]) -> None:
        self._detached.discard(task)
        if not task.cancelled():
            task.exception()  # a caller that was cancelled never reads it: no "never retrieved" warning

    def refresh_lock(self, user_id: int) -> asyncio.Lock:
        """The lock that makes token refreshes single-flight per user."""
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return lock


AUTH = web.AppKey("auth_state", AuthState)


def setup(app: web.Application, *, clock: Callable[[], float] = time.time,
          session_lifetime: int = SESSION_LIFETIME) -> AuthState:
    """Add the /auth routes and the login state to `app`; return the state (tests drive its clock)."""
    state = AuthState(clock=clock, session_lifetime=session_lifetime)
    app[AUTH] = state
    app.add_routes(routes)
    return state


def _state_signature(key: bytes, state: str, expires: int) -> str:
    mac = hmac.new(key, f"oauth-state:{state}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _secure(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


def session_cookie_name(settings: Settings) -> str:
    """`__Host-quantum_session` on https, `quantum_session` on http (browsers refuse the prefix without TLS)."""
    return "__Host-quantum_session" if _secure(settings) else "quantum_session"


def state_cookie_name(settings: Settings) -> str:
    """The login-state cookie's name (same prefix rule as the session cookie)."""
    return "__Host-quantum_oauth_state" if _secure(settings) else "quantum_oauth_state"


def callback_url(settings: Settings) -> str:
    """The configured redirect_uri; never built from Host or X-Forwarded-Host."""
    return settings.public_url.rstrip("/") + CALLBACK_PATH


def safe_next(value: str | None) -> str | None:
    """Return `value` if it is a same-origin relative path (allow-list), else None."""
    if not value or len(value) > 2048 or not value.startswith("/") or value.startswith("//"):
        return None
    # Why: browsers drop tabs/newlines and read "\" as "/", so "/\t/evil" or "/\evil" would leave the site.
    if "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return None
    return value


def pkce_verifier(key: bytes, state: str) -> str:
    """The login's PKCE verifier (43 characters, 256 bits): only this server, holding `key`, can derive it."""
    mac = hmac.new(key, f"pkce-verifier:{state}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def pkce_challenge(verifier: str) -> str:
    """The S256 code_challenge for `verifier`."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def encode_session(key: bytes, user: User, now: float, lifetime: int) -> str:
    """The session JWT: user id, session version, iat and exp only."""
    claims = {"sub": str(user.id), "ver": user.session_version, "iat": int(now), "exp": int(now) + lifetime}
    return jwt.encode(claims, key, algorithm="HS256")


def decode_session(key: bytes, token: str, now: float, lifetime: int,
                   issued_by: float | None = None) -> tuple[int, int] | None:
    """Return (user id, session version) from a valid session JWT (issued at `issued_by` or before, when given),
    or None."""
    try:
        # Why fixed algorithms: the token's own `alg` must never choose how it is checked (RFC 8725).
        claims = jwt.decode(token, key, algorithms=["HS256"],
                            options={"require": ["exp", "iat", "sub"], "verify_exp": False, "verify_iat": False})
    except jwt.PyJWTError:
        return None
    exp, iat, sub, ver = claims.get("exp"), claims.get("iat"), claims.get("sub"), claims.get("ver")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat, ver)):
        return None
    assert isinstance(exp, int) and isinstance(iat, int) and isinstance(ver, int)
    if exp <= now or iat > now + CLOCK_SKEW or exp - iat > lifetime or not isinstance(sub, str) or not sub.isdigit():
        return None
    if issued_by is not None and iat > issued_by:
        return None
    return int(sub), ver


def unauthenticated(message: str = "log in to continue") -> web.HTTPUnauthorized:
    """The 401 every API call gets without a valid session."""
    body = json.dumps({"error": {"code": "unauthenticated", "message": message}})
    return web.HTTPUnauthorized(text=body, content_type="application/json")


def _github(app: web.Application) -> GitHubApp:
    return cast("GitHubApp", app[keys.github])


def _auth_state(request: web.Request) -> AuthState:
    state = request.app.get(AUTH)
    if state is None:
        raise RuntimeError("quantumreview.auth.setup(app) was not called")
    return state


async def current_user(request: web.Request) -> User:
    """The signed-in user; raise a 401 JSON error without a valid, current session."""
    app = request.app
    settings, state = app[keys.settings], _auth_state(request)
    token = request.cookies.get(session_cookie_name(settings))
    if not token:
        raise unauthenticated()
    current, *previous = app[keys.secret_box].session_keys
    now = state.clock()
    decoded = decode_session(current, token, now, state.session_lifetime)
    # Why only sessions issued before this server started: the previous key signed those, and they live out their
    # lifetime; one it "signed" later was made by whoever holds that key (a key rotated because it leaked), and
    # was accepted for as long as JWT_SECRET_PREVIOUS stayed set.
    for key in previous:
        if decoded is None:
            decoded = decode_session(key, token, now, state.session_lifetime, issued_by=state.started + CLOCK_SKEW)
    if decoded is None:
        raise unauthenticated("the session is invalid or expired; log in again")
    user = await users.get_user(app[keys.db], decoded[0])
    if user is None or user.session_version != decoded[1]:
        raise unauthenticated("the session has ended; log in again")
    return user


def _stored(app: web.Application, tokens: UserTokens) -> StoredTokens:
    box = app[keys.secret_box]
    refresh = None if tokens.refresh_token is None else box.encrypt(tokens.refresh_token)
    return StoredTokens(token_enc=box.encrypt(tokens.access_token), refresh_enc=refresh,
                        token_expires_at=tokens.expires_at, refresh_expires_at=tokens.refresh_token_expires_at)


async def user_token(request: web.Request, user: User, *, rejected: str | None = None) -> str:
    """A live GitHub token for `user`, refreshed (once per user at a time) when expired or `rejected` by GitHub."""
    state = _auth_state(request)
    # Why a task the request only waits for: GitHub spends the refresh token when it answers; a request cancelled
    # meanwhile (the access lookup's deadline) dropped the new pair, and the next refresh, with the spent token,
    # ended the session. The task keeps the user's refresh lock until the new pair is stored.
    return await asyncio.shield(state.detach(_user_token(request.app, state, user, rejected)))


async def _user_token(app: web.Application, state: AuthState, user: User, rejected: str | None) -> str:
    db, box = app[keys.db], app[keys.secret_box]
    async with state.refresh_lock(user.id):
        # Why read under the lock: a request that waited here finds the token another one just refreshed.
        stored = await users.get_tokens(db, user.id)
        if stored is None:
            raise unauthenticated("the session has ended; log in again")
        try:
            token = box.decrypt(stored.token_enc)
            now = state.clock()
            expired = stored.token_expires_at is not None and stored.token_expires_at <= now + REFRESH_MARGIN
            if not expired and token != rejected:
                return token
            refresh_expired = stored.refresh_expires_at is not None and stored.refresh_expires_at <= now
            if stored.refresh_enc is None or refresh_expired:
                raise OAuthError("no_refresh_token", "the user token expired and cannot be refreshed")
            fresh = await _github(app).refresh_user_token(box.decrypt(stored.refresh_enc))
        except (OAuthError, SecretBoxError) as exc:
            # Why end the session: a consumed or revoked refresh token never works again; no retry loop.
            log.info("user %s: token refresh failed (%s); session ended", user.id, type(exc).__name__)
            await users.end_sessions(db, user.id, now=state.clock())
            raise unauthenticated("GitHub no longer accepts your login; log in again") from None
        except RetryLater as exc:
            error = _json_error(web.HTTPServiceUnavailable, "github_unavailable",
                                "GitHub could not be reached; retry shortly")
            # Why: a browser or script told when to come back does not hammer GitHub through us meanwhile.
            wait = exc.seconds_left(state.clock(), REFRESH_RETRY_AFTER)
            error.headers["Retry-After"] = str(min(wait, MAX_RETRY_AFTER))
            raise error from None
        stored = _stored(app, fresh)
        if not await users.replace_tokens(db, user.id, stored, session_version=user.session_version,
                                          now=state.clock()):
            # Why: the user logged out while GitHub refreshed; storing the new pair would keep a live token of a
            # logged-out user (logout revoked only the old one), so it is revoked instead.
            await _revoke(app, user, stored)
            raise unauthenticated("the session has ended; log in again")
        return fresh.access_token


async def with_user_token(request: web.Request, user: User, call: Callable[[str], Awaitable[T]]) -> T:
    """Run `call(token)`; on GitHub's 401 refresh once and retry once; a second 401 ends the session."""
    token = await user_token(request, user)
    try:
        return await call(token)
    except gidgethub.BadRequest as exc:
        if exc.status_code != 401:
            raise
    token = await user_token(request, user, rejected=token)
    try:
        return await call(token)
    except gidgethub.BadRequest as exc:
        if exc.status_code != 401:
            raise
    await users.end_sessions(request.app[keys.db], user.id, now=_auth_state(request).clock())
    raise unauthenticated("GitHub no longer accepts your login; log in again")


def _json_error(kind: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": {"code": code, "message": message}}), content_type="application/json")


def _page(status: int, title: str, message: str) -> web.Response:
    body = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
            f'<p><a href="/auth/github">Log in with GitHub again</a></p>')
    return web.Response(status=status, text=body, content_type="text/html", headers=PAGE_HEADERS)


def _oauth_client_id(app: web.Application) -> str | None:
    current = app[keys.credentials].current
    if current is not None and current.oauth_client_id:
        return current.oauth_client_id
    return app[keys.settings].oauth_client_id


@routes.get("/auth/github")
@routes.get("/login")
async def start_login(request: web.Request) -> web.Response:
    """Redirect to GitHub's authorize page with state (bound to a signed cookie) and a PKCE S256 challenge."""
    app = request.app
    settings, state = app[keys.settings], _auth_state(request)
    client_id = _oauth_client_id(app)
    if not client_id or app.get(keys.github) is None:
        return _page(503, "Login is not configured", "Set GITHUB_OAUTH_CLIENT_ID and GITHUB_OAUTH_CLIENT_SECRET "
                     "(or finish /setup), then try again.")
    login_state, cookie, verifier = state.issue(app[keys.secret_box].session_key, safe_next(request.query.get("next")))
    query = urlencode({"client_id": client_id, "redirect_uri": callback_url(settings), "state": login_state,
                       "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"})
    response = web.Response(status=302, headers={"Location": f"{settings.github_url}/login/oauth/authorize?{query}",
                                                 **PAGE_HEADERS})
    response.set_cookie(state_cookie_name(settings), cookie, max_age=state.state_ttl, path="/", httponly=True,
                        samesite="Lax", secure=_secure(settings))
    return response


@routes.get(CALLBACK_PATH)
async def finish_login(request: web.Request) -> web.Response:
    """Check state, exchange the code (with the verifier), store the user and their encrypted tokens, log in."""
    app = request.app
    settings, state = app[keys.settings], _auth_state(request)
    query = request.query
    pending = state.redeem(app[keys.secret_box].session_key, query.get("state"),
                           request.cookies.get(state_cookie_name(settings)))
    if "error" in query:
        code = query["error"] if GITHUB_ERROR_CODE.fullmatch(query["error"]) else "unknown"
        return _forget_state(settings, _page(403 if code == "access_denied" else 400, "Login cancelled",
                                             f"GitHub did not authorize QuantumReview ({code})."))
    if pending is None:
        log.warning("login callback rejected: state missing, wrong, expired, reused or from another browser")
        return _forget_state(settings, _page(400, "Login expired", "This login link is not valid for this "
                                             "browser or has expired. Start again."))
    if not CODE.fullmatch(query.get("code", "")):
        return _forget_state(settings, _page(400, "Login failed", "GitHub sent no valid code."))
    github = app.get(keys.github)
    if github is None:
        # Why: a login's state outlives a restart (its cookie is all it needs), and the restart may have been into
        # setup mode, with no GitHub App: that was an AttributeError on None, a 500.
        return _forget_state(settings, _page(503, "Login is not configured", "Finish /setup, then log in again."))
    try:
        tokens = await github.exchange_code(query["code"], redirect_uri=callback_url(settings),
                                            code_verifier=pending.verifier)
        profile = _user_from_profile(await github.get_user(tokens.access_token))
    except OAuthError as exc:
        code = exc.oauth_code if GITHUB_ERROR_CODE.fullmatch(exc.oauth_code) else "unknown"
        log.warning("login failed: GitHub refused the code exchange (%s)", code)
        return _forget_state(settings, _page(400, "Login failed", f"GitHub refused the login ({code}). Start again."))
    except (QuantumReviewError, gidgethub.GitHubException, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("login failed: GitHub call failed (%s)", type(exc).__name__)
        return _forget_state(settings, _page(502, "Login failed", "GitHub could not be reached. Try again."))
    user = await users.save_user(app[keys.db], profile, _stored(app, tokens),
                                 now=state.clock())
    target = (settings.public_url + pending.next_path if pending.next_path
              else settings.dashboard_url or settings.public_url + "/")
    response = _forget_state(settings, web.Response(status=302, headers={"Location": target, **PAGE_HEADERS}))
    set_session_cookie(response, settings, encode_session(app[keys.secret_box].session_key, user, state.clock(),
                                                          state.session_lifetime), state.session_lifetime)
    log.info("user %s logged in", user.login)
    return response


class MalformedProfile(QuantumReviewError):
    """GET /user did not answer a user object with an integer id and a login."""

    code = "malformed_profile"


def _user_from_profile(profile: object) -> User:
    """The user GET /user describes; MalformedProfile (a 502 like an unreachable GitHub, not a 500) otherwise."""
    if not isinstance(profile, dict):
        raise MalformedProfile("GET /user did not answer an object")
    user_id, login = profile.get("id"), profile.get("login")
    # Why the bounds: the id is the users table's key and the session's subject; SQLite holds 64-bit integers.
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2**63 \
            or not isinstance(login, str) or not login:
        raise MalformedProfile("GET /user answered no integer id or no login")

    def text(key: str) -> str | None:
        value = profile.get(key)
        return value if isinstance(value, str) else None

    return User(id=user_id, login=login, name=text("name"), email=text("email"), avatar_url=text("avatar_url"))


def set_session_cookie(response: web.StreamResponse, settings: Settings, value: str, max_age: int) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, Path=/, no Domain, Secure on https."""
    response.set_cookie(session_cookie_name(settings), value, max_age=max_age, path="/", httponly=True,
                        samesite="Lax", secure=_secure(settings))


async def _revoke(app: web.Application, user: User, stored: StoredTokens) -> None:
    """Best effort: the session has already ended and the token is forgotten here, whatever GitHub answers."""
    github = app.get(keys.github)
    try:
        if github is None:
            raise OAuthError("not_configured", "the GitHub App is not configured")
        token = app[keys.secret_box].decrypt(stored.token_enc)
        async with asyncio.timeout(REVOKE_TIMEOUT):
            await github.revoke_user_token(token)
    except (OAuthError, RetryLater, SecretBoxError, TimeoutError) as exc:
        log.warning("user %s: GitHub token not revoked at logout (%s); it expires on its own", user.login,
                    type(exc).__name__)


def _forget_state(settings: Settings, response: web.Response) -> web.Response:
    response.del_cookie(state_cookie_name(settings), path="/", secure=_secure(settings), samesite="Lax")
    return response


@routes.post("/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """End the session server-side (every cookie issued so far stops working), forget the user's GitHub token
    and ask GitHub to revoke it, and clear the cookie."""
    settings = request.app[keys.settings]
    try:
        user: User | None = await current_user(request)
    except web.HTTPUnauthorized:
        user = None
    if user is not None:
        db = request.app[keys.db]
        stored = await users.get_tokens(db, user.id)
        await users.end_sessions(db, user.id, now=_auth_state(request).clock())
        log.info("user %s logged out", user.login)
        if stored is not None:
            await _revoke(request.app, user, stored)
    response = web.json_response({"logged_out": True}, headers=PAGE_HEADERS)
    response.del_cookie(session_cookie_name(settings), path="/", secure=_secure(settings), samesite="Lax")
    return response
