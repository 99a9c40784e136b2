"""gidgethub clients on the shared session: GitHub's headers, timeouts, retries, rate-limit gate, token auth.

Retry rule: network errors (connection reset, disconnect, timeout) and 5xx are retried with jittered backoff,
`RetryPolicy.tries` tries in all, for GET/PUT/PATCH/DELETE. A POST is retried only when the caller passes
`idempotent=True` (e.g. minting a token); a POST that creates a comment is never repeated blindly, nor a PATCH
sent with `idempotent=False` (one that appends check-run annotations).
Rate limits (403/429 with `retry-after`, remaining 0, or a secondary-limit message) raise `RateLimited(at=T)`
(a wait ≤ `inline_wait` is slept instead) and block that client's key until T without touching the network.
Writes (POST/PATCH/PUT/DELETE) of one installation go out at least the WritePacer's interval apart, as
GitHub asks, so a burst of comments and check runs does not trip the secondary rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import gidgethub
import gidgethub.aiohttp
from gidgethub import abc as gh_abc
from gidgethub import sansio
from uritemplate import variable as gh_variable

from quantumreview import github_policy as policy
from quantumreview.errors import (
    InstallationGone,
    PermanentError,
    PermissionDenied,
    RateLimited,
    RetryLater,
)
from quantumreview.github_auth import TokenCache

ACCEPT = "application/vnd.github+json"
API_VERSION = "2022-11-28"
IDEMPOTENT_HEADER = "x-quantumreview-idempotent"  # internal marker, stripped before sending
ONCE_HEADER = "x-quantumreview-once"  # internal marker: never repeat this request (stripped before sending)
NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10, sock_read=20)
# GitHub's largest pages (100 comments or check runs of 65,536 characters each) stay well under this. Why a cap:
# a body that never ends was read whole until the 30 s timeout, gigabytes on loopback, and the process died.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
READ_CHUNK = 64 * 1024
KNOWN_STATUSES = frozenset(int(status) for status in http.HTTPStatus)

log = logging.getLogger("quantumreview.github")

Response = tuple[int, Mapping[str, str], bytes]


class RateGate:
    """Remembers, per client key (installation, App, user), until when GitHub said to stop asking."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def check(self, key: str) -> None:
        """Raise RateLimited without a request while `key` is known to be limited."""
        until = self._until.get(key)
        if until is None:
            return
        if self._clock() < until:
            raise RateLimited(f"GitHub rate limit for {key} until {until:.0f}", at=until)
        self._until.pop(key, None)

    def block(self, key: str, until: float) -> None:
        """Hold requests for `key` until `until` (epoch seconds)."""
        self._until[key] = max(until, self._until.get(key, 0.0))


class WritePacer:
    """Spaces the writes of each client key `interval` seconds apart, in the order they ask.

    https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api: "If you are making
    a large number of POST, PATCH, PUT, or DELETE requests for a single user or client ID, wait at least one
    second between each request." One a second per installation also stays under the 80 content-creating
    requests a minute of the secondary limits.
    """

    def __init__(self, clock: Callable[[], float], interval: float) -> None:
        self._clock = clock
        self._interval = interval
        self._next: dict[str, float] = {}

    def reserve(self, key: str) -> float:
        """Take the next write slot of `key`; return how long to wait for it (0 when it is free now)."""
        if self._interval <= 0:
            return 0.0
        now = self._clock()
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + self._interval
        return slot - now


@dataclass
class Transport:
    """What every client of one GitHubApp shares: session, limits, ETag cache, clock and sleep."""

    session: aiohttp.ClientSession
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rand: Callable[[], float]
    user_agent: str
    base_url: str
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT
    retry: policy.RetryPolicy = field(default_factory=policy.RetryPolicy)
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(100))
    cache: gh_abc.CACHE_TYPE | None = None
    gate: RateGate | None = None
    pacer: WritePacer | None = None  # spaces installation writes; None paces nothing
    max_response_bytes: int = MAX_RESPONSE_BYTES  # a longer body (after decompression) raises RetryLater

    def rate_gate(self) -> RateGate:
        """Return the shared gate, created on first use."""
        if self.gate is None:
            self.gate = RateGate(self.clock)
        return self.gate


def path_of(url: str) -> str:
    """Return the URL's path only (what may be logged: no host, no query)."""
    return urlsplit(url).path


def origin_of(url: str) -> tuple[str, str | None, int | None]:
    """Return the URL's scheme, host and port, the scheme's default port filled in (so GITHUB_API_URL
    "https://api.github.com:443" matches GitHub's links): what must match before credentials are sent.

    A URL carrying user:password@ never matches (credentials of its own are not GitHub's API).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is not a number
        return scheme, None, None
    host = None if parts.username is not None or parts.password is not None else parts.hostname
    return scheme, host, port


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's client with GitHub's current headers, timeouts, retries and the rate-limit gate.

    With `pace_writes` its writes wait for their slot in the transport's WritePacer (by `limit_key`).
    """

    def __init__(self, transport: Transport, *, limit_key: str, use_cache: bool = True,
                 pace_writes: bool = False) -> None:
        super().__init__(transport.session, transport.user_agent, cache=transport.cache if use_cache else None,
                         base_url=transport.base_url)
        self._transport = transport
        self.limit_key = limit_key
        self._pace_writes = pace_writes

    async def post(self, url: str, url_vars: Mapping[str, Any] | None = {}, *, data: Any,
                   accept: str = sansio.accept_format(), jwt: str | None = None, oauth_token: str | None = None,
                   extra_headers: dict[str, str] | None = None, content_type: str = gh_abc.JSON_CONTENT_TYPE,
                   idempotent: bool = False) -> Any:
        """POST; with `idempotent=True` a failed try is repeated like a GET (only when a repeat is harmless)."""
        if idempotent:
            extra_headers = {**(extra_headers or {}), IDEMPOTENT_HEADER: "1"}
        return await super().post(url, url_vars, data=data, accept=accept, jwt=jwt, oauth_token=oauth_token,
                                   extra_headers=extra_headers, content_type=content_type)

    async def patch(self, url: str, url_vars: Mapping[str, Any] | None = {}, *, data: Any,
                    accept: str = sansio.accept_format(), jwt: str | None = None, oauth_token: str | None = None,
                    extra_headers: dict[str, str] | None = None, idempotent: bool = True) -> Any:
        """PATCH; with `idempotent=False` a failed try is not repeated (e.g. one that appends annotations)."""
        if not idempotent:
            extra_headers = {**(extra_headers or {}), ONCE_HEADER: "1"}
        return await super().patch(url, url_vars, data=data, accept=accept, jwt=jwt, oauth_token=oauth_token,
                                   extra_headers=extra_headers)

    async def sleep(self, seconds: float) -> None:
        """Sleep with the injected sleep (tests stay fast)."""
        await self._transport.sleep(seconds)

    async def _make_request(self, method: str, url: str, url_vars: Mapping[str, Any] | None, data: Any,
                            accept: str, jwt: str | None = None, oauth_token: str | None = None,
                            content_type: str = gh_abc.JSON_CONTENT_TYPE,
                            extra_headers: dict[str, str] | None = None) -> tuple[Any, str | None, int]:
        """gidgethub's request; a 2xx whose body is not the JSON asked for (a proxy's page, a cut-off or
        garbled reply, or an empty body on a GET other than 204) raises RetryLater, so no handler works on
        garbage and the job is tried again later."""
        try:
            body, more, status = await super()._make_request(
                method, url, url_vars, data, accept, jwt=jwt, oauth_token=oauth_token, content_type=content_type,
                extra_headers=extra_headers)
        except (json.JSONDecodeError, UnicodeDecodeError, LookupError) as exc:  # json.loads, body.decode, charset
            raise RetryLater(f"GitHub {method} {path_of(url)} answered with a body that is not JSON "
                             f"({type(exc).__name__})") from None
        if isinstance(body, str) and "json" in accept:  # gidgethub hands back any other content type as text
            raise RetryLater(f"GitHub {method} {path_of(url)} answered {status} with a body that is not JSON")
        if body is None and status == 201 and "json" in accept:
            # Why: GitHub answers every 201 with the resource it created; without it the caller failed far away
            # with "'NoneType' object is not subscriptable", naming neither the request nor GitHub.
            raise RetryLater(f"GitHub {method} {path_of(url)} answered 201 with no JSON body: the created "
                             "resource is missing")
        if body is None and method == "GET" and status != 204 and "json" in accept:
            # Why: a resource GET answers JSON; None (empty or untyped body, a proxy's doing) would read as
            # "gone" to getitem_or_none's callers and end the job done with nothing stored. 204 is really empty.
            if self._cache is not None:  # gidgethub cached it if it came with an ETag: a 304 would repeat it
                self._cache.pop(sansio.format_url(url, url_vars, base_url=self.base_url), None)
            raise RetryLater(f"GitHub {method} {path_of(url)} answered {status} with no JSON body")
        return body, more, status

    async def getiter(self, url: str, url_vars: Mapping[str, gh_variable.VariableValue] | None = {}, *,
                      accept: str = sansio.accept_format(), jwt: str | None = None, oauth_token: str | None = None,
                      extra_headers: dict[str, str] | None = None,
                      iterable_key: str | None = gh_abc.ITERABLE_KEY) -> AsyncGenerator[Any, None]:
        """gidgethub's getiter, but a page that is not a list, or a `Link: rel="next"` back to a page already
        read, raises RetryLater.

        Why: gidgethub follows `next` for as long as there is one, so a loop (a proxy or cache serving page 1
        again) re-read the same pages until the job timed out, re-yielding every item each time.
        """
        seen: set[str] = set()
        current: str | None = url
        while current:
            filled = sansio.format_url(current, url_vars, base_url=self.base_url)
            if filled in seen:
                raise RetryLater(f"GitHub's pages of {path_of(url)} link back to a page already read")
            seen.add(filled)
            data, current, _ = await self._make_request("GET", current, url_vars, b"", accept, jwt=jwt,
                                                        oauth_token=oauth_token, extra_headers=extra_headers)
            if isinstance(data, dict) and iterable_key in data:
                data = data[iterable_key]
            if not isinstance(data, list):
                # Why: gidgethub iterated whatever came (an object's keys, a string's letters), so a page of the
                # wrong shape read as an empty list, e.g. a PR with no files, and the job ended done with that.
                raise RetryLater(f"GitHub GET {path_of(url)} answered a page that is not a list")
            for item in data:
                yield item

    async def getpage(self, url: str) -> tuple[list[Any], str | None]:
        """One page of a listing and the URL of the next (None after the last); RetryLater if it is not a list.

        Why beside getiter: a reader that goes on from where it stopped (the redelivery sweep's pass over
        GitHub's delivery log) must keep the next page's cursor, which getiter does not show.
        """
        data, more, _ = await self._make_request("GET", url, {}, b"", sansio.accept_format())
        if not isinstance(data, list):
            raise RetryLater(f"GitHub GET {path_of(url)} answered a page that is not a list")
        return data, more

    async def _request(self, method: str, url: str, headers: Mapping[str, str], body: bytes = b"") -> Response:
        if origin_of(url)[1] is None or origin_of(url) != origin_of(self.base_url):
            # Why: gidgethub sends any absolute URL it is given, e.g. a `Link: rel="next"` naming another host,
            # and the subclasses add the installation token or App JWT to whatever is sent.
            raise RetryLater(f"GitHub {method} {path_of(url)}: refused, the URL is not on the API host "
                             f"({urlsplit(url).hostname or 'no host'})")  # hostname: no user:password@
        reply = await self._exchange(method, url, self._github_headers(headers), body, follow_redirects=True)
        if reply[0] == 422 and not policy.error_message(reply[2]).strip():
            raise unexplained_422(method, url.removeprefix(self.base_url), reply[2])
        return reply

    async def _exchange(self, method: str, url: str, headers: dict[str, str], body: bytes, *,
                        follow_redirects: bool) -> Response:
        """Authorize and send; subclasses add credentials here."""
        return await self._resilient(method, url, headers, body, follow_redirects=follow_redirects)

    def _github_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        out = {k.lower(): v for k, v in headers.items()}
        if out.get("accept") == sansio.accept_format():
            out["accept"] = ACCEPT  # gidgethub still defaults to the v3 media type
        out.pop("x-github-api-version", None)
        out["X-GitHub-Api-Version"] = API_VERSION  # GitHub's spelling, for anyone reading recorded requests
        return out

    async def _resilient(self, method: str, url: str, headers: dict[str, str], body: bytes, *,
                         follow_redirects: bool) -> Response:
        """Send with the gate, the in-flight limit, timeouts and the retry policy; classify the answer."""
        transport, gate, retry = self._transport, self._transport.rate_gate(), self._transport.retry
        headers = dict(headers)
        idempotent = headers.pop(IDEMPOTENT_HEADER, None) is not None
        once = headers.pop(ONCE_HEADER, None) is not None
        retryable = policy.may_retry(method, idempotent=idempotent) and not once
        pacer = transport.pacer if self._pace_writes and method.upper() in policy.WRITE_METHODS else None
        for attempt in range(1, retry.tries + 1):
            gate.check(self.limit_key)
            if pacer is not None and (wait := pacer.reserve(self.limit_key)) > 0:
                await transport.sleep(wait)
                gate.check(self.limit_key)  # a rate limit may have come in while it waited
            last_try = attempt == retry.tries or not retryable
            try:
                status, reply_headers, data = await self._send(method, url, headers, body, follow_redirects)
            except NETWORK_ERRORS as exc:
                wait = retry.backoff(attempt, transport.rand())
                if last_try:
                    raise RetryLater(f"GitHub {method} {path_of(url)} failed: {type(exc).__name__}",
                                     at=transport.clock() + wait) from None
                log.info("GitHub %s %s: %s; try %d of %d", method, path_of(url), type(exc).__name__,
                         attempt + 1, retry.tries)
                await transport.sleep(wait)
                continue
            until = policy.rate_limit_until(status, reply_headers, data, transport.clock())
            if until is not None:
                wait = until - transport.clock()
                if wait <= retry.inline_wait and attempt < retry.tries:
                    await transport.sleep(max(wait, 0.0))
                    continue
                gate.block(self.limit_key, until)
                raise RateLimited(f"GitHub rate limit ({status}) on {method} {path_of(url)}", at=until)
            if policy.is_permission_denied(status, data):
                raise PermissionDenied(f"GitHub refused {method} {path_of(url)}: {policy.error_message(data)}")
            if policy.is_retryable_status(status):
                wait = retry.backoff(attempt, transport.rand())
                if last_try:
                    raise RetryLater(f"GitHub {method} {path_of(url)} answered {status}", at=transport.clock() + wait)
                log.info("GitHub %s %s answered %d; try %d of %d", method, path_of(url), status, attempt + 1,
                         retry.tries)
                await transport.sleep(wait)
                continue
            if status not in KNOWN_STATUSES:
                # Why: gidgethub reads the status with http.HTTPStatus, so a proxy's 499 or 460 escaped as
                # "ValueError: 499 is not a valid HTTPStatus", naming neither GitHub nor the request.
                raise RetryLater(f"GitHub {method} {path_of(url)} answered {status}, a status HTTP does not define")
            return status, reply_headers, data
        raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover

    async def _send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                    follow_redirects: bool) -> Response:
        transport = self._transport
        async with transport.in_flight, transport.session.request(
                method, url, headers=headers, data=body or None, timeout=transport.timeout,
                allow_redirects=follow_redirects, max_redirects=3) as response:
            limit = transport.max_response_bytes
            data = await read_capped(response, limit)
            if data is None:
                raise RetryLater(f"GitHub {method} {path_of(url)} answered {response.status} with a body over "
                                 f"{limit} bytes: not read")
            return response.status, response.headers, data


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (declared, or read after decompression: a gzip bomb stops
    too). Why: a body that never ends was read until the timeout, gigabytes on a fast link."""
    if (response.content_length or 0) > limit:
        return None
    data = bytearray()
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


MAX_ERROR_FIELDS = 5


def unexplained_422(method: str, url: str, body: bytes) -> gidgethub.InvalidField:
    """The error for a 422 without GitHub's `message`: the request, the status, and the fields GitHub named.

    Why: gidgethub read such a body as "not JSON (KeyError)" (then retried it as if GitHub were down), "None for
    'title'", or a bare "Unprocessable Entity", none naming the request. Only each error's resource, field and
    code are shown: its `message` or `value` may echo what was sent.
    """
    try:
        data: Any = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        data = None
    errors = data.get("errors") if isinstance(data, dict) else None
    named = [
        " ".join(_printable(str(e.get(k))) for k in ("resource", "field", "code") if e.get(k) is not None)
        for e in (errors if isinstance(errors, list) else []) if isinstance(e, Mapping)
    ]
    named = [n for n in named if n][:MAX_ERROR_FIELDS]
    detail = f"; errors: {', '.join(named)}" if named else ""
    text = f"GitHub {method} {path_of(url)} answered 422 (Unprocessable Entity) without an error message{detail}"
    return gidgethub.InvalidField(errors if isinstance(errors, list) else None, text)


def _printable(text: str) -> str:
    """At most 60 printable characters (a field name from GitHub goes into logs and job errors)."""
    return "".join(c if c.isprintable() else "?" for c in text[:60])


# The App JWT is signed with the host's clock: one running ahead of GitHub's makes its iat "in the future".
APP_JWT_REFUSED = ("GitHub refused the App JWT (401): check GITHUB_APP_ID, GITHUB_PRIVATE_KEY and the host clock "
                   "(NTP)")


class AppClient(GitHubClient):
    """Authenticated as the App itself with a JWT (for /app/... endpoints)."""

    def __init__(self, transport: Transport, jwt: Callable[[], str]) -> None:
        super().__init__(transport, limit_key="app")
        self._jwt = jwt

    async def _exchange(self, method: str, url: str, headers: dict[str, str], body: bytes, *,
                        follow_redirects: bool) -> Response:
        headers.setdefault("authorization", f"bearer {self._jwt()}")
        reply = await self._resilient(method, url, headers, body, follow_redirects=follow_redirects)
        if reply[0] == 401:  # GH-14: say what to check, on every App call (the sweep's included), not a bare 401
            log.error("GitHub %s %s: %s", method, path_of(url), APP_JWT_REFUSED)
            raise PermanentError(APP_JWT_REFUSED)
        return reply


class InstallationAPI(GitHubClient):
    """Authenticated as one installation; the token comes from the shared cache at request time.

    A 401 (or a 403 saying the installation is suspended) drops the token it was sent with and the request is
    repeated once with a freshly minted token.
    """

    def __init__(self, transport: Transport, tokens: TokenCache, installation_id: int) -> None:
        super().__init__(transport, limit_key=f"installation:{installation_id}", pace_writes=True)
        self._tokens = tokens
        self.installation_id = installation_id

    async def _exchange(self, method: str, url: str, headers: dict[str, str], body: bytes, *,
                        follow_redirects: bool) -> Response:
        if "authorization" in headers:  # the caller chose other credentials (jwt= / oauth_token=)
            return await self._resilient(method, url, headers, body, follow_redirects=follow_redirects)
        token = await self._tokens.get(self.installation_id)
        reply = await self._resilient(method, url, {**headers, "authorization": f"token {token}"}, body,
                                      follow_redirects=follow_redirects)
        # Why a suspension too: GitHub refuses a cached token of a suspended installation with a 403, which was
        # retried as any 403 until the job was dead; minting now answers 403 as well, and the mint's check of
        # the installation raises InstallationSuspendedByGitHub, so the job waits for the unsuspend.
        if reply[0] != 401 and not policy.is_installation_suspended(reply[0], reply[2]):
            return reply
        self._tokens.drop(self.installation_id, token)
        fresh = await self._tokens.get(self.installation_id)
        log.info("GitHub %s %s answered %d: token re-minted, one more try", method, path_of(url), reply[0])
        return await self._resilient(method, url, {**headers, "authorization": f"token {fresh}"}, body,
                                     follow_redirects=follow_redirects)

    async def redirect_location(self, url: str) -> tuple[int, str | None]:
        """GET url without following redirects; return the status and the Location header (if any)."""
        headers = self._github_headers(sansio.create_headers(self.requester, accept=sansio.accept_format()))
        status, reply_headers, _ = await self._exchange("GET", sansio.format_url(url, {}, base_url=self.base_url),
                                                        headers, b"", follow_redirects=False)
        return status, policy.header(reply_headers, "location")


def is_gone(exc: gidgethub.BadRequest) -> bool:
    """Whether GitHub's error says the resource is not there (404) or no longer is (410)."""
    return exc.status_code in (404, 410)


@contextlib.contextmanager
def gone_when_missing(what: str = "the installation or repository") -> Iterator[None]:
    """Turn GitHub's 404/410 inside the block into InstallationGone (the job ends cleanly, no retries).

    Rule: minting answers 404 → InstallationGone everywhere; other 404s are plain gidgethub BadRequest unless
    the handler wraps the call in this block because, for it, a missing resource means the install is gone.
    """
    try:
        yield
    except gidgethub.BadRequest as exc:
        if is_gone(exc):
            raise InstallationGone(f"{what} is gone ({int(exc.status_code)})") from None
        raise


async def getitem_or_none(gh: Any, url: str) -> dict[str, Any] | None:
    """GET one resource; None when GitHub answers 404/410 (deleted, transferred, or never there).

    Anything but a JSON object raises RetryLater: handlers index it (a list failed with a bare TypeError).
    """
    try:
        item: Any = await gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if is_gone(exc):
            return None
        raise
    if not isinstance(item, dict):
        raise RetryLater(f"GitHub GET {path_of(url)} answered {type(item).__name__}, not an object")
    return item
