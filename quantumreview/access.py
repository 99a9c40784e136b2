"""Which repositories a dashboard user may see and act on, read with their own token and cached a few minutes.

Decision (pinned in tests, OA-15): a user *sees* every repository they reach through an installation of this App
with any permission (pull included); *acting* on one (regenerate, revalidate, flag) needs push or higher.
Anything outside the set answers 404, never 403, so nothing about other repositories leaks (OA-14).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import gidgethub
from aiohttp import web
from cachetools import LRUCache, TTLCache

from quantumreview import auth, keys
from quantumreview.errors import PermissionDenied, QuantumReviewError, RateLimited
from storage import users
from storage.users import User, UserRepository

if TYPE_CHECKING:
    from quantumreview.github import GitHubApp

log = logging.getLogger("quantumreview.access")

CACHE_TTL = 300.0
CACHE_SIZE = 10_000
# Why: the GitHub client's own timeouts and retries (30 s a try, 3 tries) suit background jobs; a browser asking
# the dashboard gets an answer within this, GitHub's or a 503.
GITHUB_DEADLINE = 10.0
# After GitHub missed the deadline, the user's next requests answer at once (503, or the last list) this long.
SLOW_RETRY_AFTER = 30
# The last list read from GitHub stands in for a fresh one while GitHub is too slow or rate-limits the user, if it
# was read at most 15 minutes ago (at most 10 minutes past the cache's 5): access lost on GitHub meanwhile stays
# visible that long at worst (an uninstall or a removed repository still hides it at once, see
# managed_repositories).
STALE_MAX_AGE = 900.0
# Strongest first: a user's permission on a repository is the first one GitHub marks true.
PERMISSIONS = ("admin", "maintain", "push", "triage", "pull")
PUSH_OR_HIGHER = frozenset({"admin", "maintain", "push"})


@dataclass(frozen=True)
class RepoAccess:
    """A repository the user reaches, through which installation, with which permission."""

    repo: str
    installation_id: int
    permission: str
    # GitHub's id, which a rename keeps (None when not known): it finds rows still stored under an old name.
    repo_id: int | None = None

    @property
    def can_push(self) -> bool:
        """True for push, maintain and admin."""
        return self.permission in PUSH_OR_HIGHER


@dataclass(frozen=True)
class Unavailable:
    """GitHub could not list a user's repositories: the answer for that request and those waiting on it.

    `retry_after` (seconds) marks GitHub as unable to answer now (too slow, or rate-limiting the user): a 503 with
    Retry-After, which the user's last list may replace (see STALE_MAX_AGE); without it the answer is a 502.
    """

    code: str
    message: str
    retry_after: int | None = None
    until: float = 0.0  # on the cache's clock: till then the user's requests do not ask GitHub

    def error(self, now: float) -> web.HTTPException:
        """The JSON error to raise at `now` (the cache's clock)."""
        if self.retry_after is None:
            return _json_error(web.HTTPBadGateway, self.code, self.message)
        error = _json_error(web.HTTPServiceUnavailable, self.code, self.message)
        error.headers["Retry-After"] = str(max(1, math.ceil(self.until - now)))
        return error


GITHUB_FAILED = Unavailable("github_unavailable", "GitHub could not list your repositories; retry shortly")


class Flight:
    """One user's GitHub reads: the lock that makes them single-flight, and how the last one failed."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.failures = 0
        self.failure = GITHUB_FAILED


class AccessCache:
    """Each user's managed repositories for a few minutes, and one GitHub read per user at a time."""

    def __init__(self, *, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic,
                 maxsize: int = CACHE_SIZE, deadline: float = GITHUB_DEADLINE) -> None:
        self._repos: TTLCache[int, tuple[RepoAccess, ...]] = TTLCache(maxsize, ttl=ttl, timer=clock)
        self._flights: weakref.WeakValueDictionary[int, Flight] = weakref.WeakValueDictionary()
        # Each user's last list with when it was read, and until when GitHub cannot answer for them.
        self._last: LRUCache[int, tuple[float, tuple[RepoAccess, ...]]] = LRUCache(maxsize)
        self._down: LRUCache[int, Unavailable] = LRUCache(maxsize)
        self.clock = clock
        self.deadline = deadline  # seconds a request waits for GitHub's list (tests shorten it)

    def __repr__(self) -> str:
        return f"AccessCache(users={len(self._repos)})"

    def get(self, user_id: int) -> tuple[RepoAccess, ...] | None:
        """The cached set, or None when absent or stale."""
        return self._repos.get(user_id)

    def put(self, user_id: int, repos: tuple[RepoAccess, ...]) -> None:
        """Remember the user's set for the TTL (and as their last list, see STALE_MAX_AGE)."""
        self._repos[user_id] = repos
        self._last[user_id] = (self.clock(), repos)
        self._down.pop(user_id, None)

    def forget(self, user_id: int) -> None:
        """Drop the user's cached set, last list included (e.g. after logout)."""
        self._repos.pop(user_id, None)
        self._last.pop(user_id, None)

    def stale(self, user_id: int) -> tuple[RepoAccess, ...] | None:
        """The user's last list if it was read at most STALE_MAX_AGE ago, else None."""
        last = self._last.get(user_id)
        return None if last is None or self.clock() - last[0] > STALE_MAX_AGE else last[1]

    def mark_down(self, user_id: int, failure: Unavailable) -> None:
        """Remember that GitHub cannot answer for the user until `failure.until`."""
        self._down[user_id] = failure

    def down(self, user_id: int) -> Unavailable | None:
        """How GitHub last failed for the user, while that still holds; else None."""
        failure = self._down.get(user_id)
        if failure is not None and self.clock() >= failure.until:
            self._down.pop(user_id, None)
            return None
        return failure

    def flight(self, user_id: int) -> Flight:
        """The user's Flight (kept while a request holds it), which makes the GitHub read single-flight."""
        flight = self._flights.get(user_id)
        if flight is None:
            flight = self._flights[user_id] = Flight()
        return flight


ACCESS = web.AppKey("access_cache", AccessCache)


def setup(app: web.Application, *, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic,
          deadline: float = GITHUB_DEADLINE) -> AccessCache:
    """Hang the access cache on `app`; return it."""
    cache = AccessCache(ttl=ttl, clock=clock, deadline=deadline)
    app[ACCESS] = cache
    return cache


def highest_permission(permissions: Mapping[str, Any] | None) -> str | None:
    """The strongest permission GitHub marks true, or None."""
    if not isinstance(permissions, Mapping):
        return None
    return next((name for name in PERMISSIONS if permissions.get(name) is True), None)


def _json_error(kind: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": {"code": code, "message": message}}), content_type="application/json")


class MalformedAnswer(QuantumReviewError):
    """GitHub's list of installations or repositories is not a list of objects."""

    code = "malformed_answer"


async def _objects(read: Awaitable[list[Any]], what: str) -> list[Mapping[str, Any]]:
    """The items of a GitHub list, each an object; MalformedAnswer otherwise.

    Why: a body like {"installations": 5} or [1, 2] (a proxy, a changed API) raised TypeError or AttributeError
    here, a 500 on every dashboard route; it is GitHub failing, like a 5xx (502, nothing cached).
    """
    try:
        items = await read
    except TypeError:  # the client iterating a body that is no list
        raise MalformedAnswer(f"GitHub's {what} answer is not a list") from None
    if not all(isinstance(item, Mapping) for item in items):
        raise MalformedAnswer(f"GitHub's {what} answer holds items that are not objects")
    return items


async def read_managed_repositories(github: GitHubApp, token: str, installed: set[int]) -> list[RepoAccess]:
    """Ask GitHub (as the user) for the repositories they reach through the App's live installations."""
    found: list[RepoAccess] = []
    for installation in await _objects(github.get_user_installations(token), "installations"):
        installation_id = installation.get("id")
        if not isinstance(installation_id, int) or installation_id not in installed:
            continue
        try:
            repos = await _objects(github.get_installation_repositories_for_user(token, installation_id),
                                   "repositories")
        except PermissionDenied:  # e.g. an org enforcing SAML SSO this token has not been authorized for
            continue
        except gidgethub.BadRequest as exc:
            if exc.status_code not in (403, 404):  # an installation removed meanwhile is just skipped
                raise
            continue
        for repo in repos:
            name, permission = repo.get("full_name"), highest_permission(repo.get("permissions"))
            repo_id = repo.get("id")
            if isinstance(name, str) and permission is not None:
                found.append(RepoAccess(name, installation_id, permission,
                                        repo_id if isinstance(repo_id, int) else None))
    return sorted(found, key=lambda a: a.repo.lower())


async def managed_repositories(request: web.Request, user: User) -> list[RepoAccess]:
    """The repositories `user` may see (cached a few minutes; also written to user_repositories)."""
    cached = request.app[ACCESS].get(user.id)
    repos = list(cached) if cached is not None else await _read_through(request, user)
    # Why on every request, cached or not: an uninstall or a removed repository (recorded from its webhook) hides
    # the repository at once, not when the cache expires.
    deleted, removed = await users.gone_repositories(request.app[keys.db], {a.installation_id for a in repos})
    if not deleted and not removed:
        return repos
    return [a for a in repos if a.installation_id not in deleted and (a.installation_id, a.repo.lower()) not in removed]


async def refresh_if_stale(request: web.Request, user: User) -> None:
    """Read the user's set from GitHub if the cache has none, which rewrites user_repositories (what queries that
    filter by the stored set, like notifications, rely on)."""
    if request.app[ACCESS].get(user.id) is None:
        await _read_through(request, user)


async def _read_through(request: web.Request, user: User) -> list[RepoAccess]:
    """The user's set from GitHub (one read per user at a time, within the cache's deadline), cached and written
    to user_repositories; while GitHub cannot answer in time, the user's recent last list (STALE_MAX_AGE)."""
    cache = request.app[ACCESS]
    if (down := cache.down(user.id)) is not None:
        return _unavailable(cache, user.id, down)
    flight = cache.flight(user.id)
    failures = flight.failures
    async with flight.lock:
        cached = cache.get(user.id)
        if cached is not None:
            return list(cached)
        if flight.failures != failures:
            # Why share the failure: the read this request waited for has just failed, and its own would wait as
            # long again; with GitHub hanging, the nth of n concurrent requests answered after n client timeouts.
            return _unavailable(cache, user.id, flight.failure)
        db = request.app[keys.db]
        if request.app.get(keys.github) is None:
            raise _json_error(web.HTTPServiceUnavailable, "not_configured", "no GitHub App is configured yet")
        github = cast("GitHubApp", request.app[keys.github])
        installed = await users.active_installation_ids(db)
        deadline = asyncio.timeout(cache.deadline)
        try:
            async with deadline:
                repos = await auth.with_user_token(
                    request, user, lambda token: read_managed_repositories(github, token, installed))
        except web.HTTPServiceUnavailable:  # GitHub could not refresh the user's token
            flight.failures += 1
            raise
        except (gidgethub.GitHubException, QuantumReviewError, aiohttp.ClientError, TimeoutError) as exc:
            flight.failures += 1
            flight.failure = _failure(request, exc, timed_out=deadline.expired())
            log.warning("user %s: reading repositories from GitHub failed (%s)", user.id,
                        "deadline" if deadline.expired() else type(exc).__name__)
            if flight.failure.retry_after is not None:
                cache.mark_down(user.id, flight.failure)
            return _unavailable(cache, user.id, flight.failure)
        await users.set_user_repositories(
            db, user.id, [UserRepository(a.repo, a.installation_id, a.permission) for a in repos])
        cache.put(user.id, tuple(repos))
        return repos


def _failure(request: web.Request, exc: BaseException, *, timed_out: bool) -> Unavailable:
    """What a failed read of the user's list answers: 503 when GitHub was too slow or rate-limits, else 502."""
    now = request.app[ACCESS].clock()
    if timed_out:
        return Unavailable("github_timeout", "GitHub did not list your repositories in time; retry shortly",
                           SLOW_RETRY_AFTER, now + SLOW_RETRY_AFTER)
    if isinstance(exc, RateLimited):
        # `at` is on the GitHub client's clock (epoch seconds), as is the auth state's.
        wait = exc.seconds_left(request.app[auth.AUTH].clock(), SLOW_RETRY_AFTER)
        return Unavailable("github_rate_limited", "GitHub is rate-limiting requests for your account; retry after "
                           f"{wait} s", wait, now + wait)
    return GITHUB_FAILED


def _unavailable(cache: AccessCache, user_id: int, failure: Unavailable) -> list[RepoAccess]:
    """The user's recent last list when GitHub cannot answer now (a 503 failure); else raise the failure."""
    stale = cache.stale(user_id) if failure.retry_after is not None else None
    if stale is None:
        raise failure.error(cache.clock())
    return list(stale)


async def repo_access(request: web.Request, user: User, owner: str, repo: str) -> RepoAccess:
    """The user's access to owner/repo; 404 JSON when it is not among their managed repositories."""
    wanted = f"{owner}/{repo}".lower()
    managed = await managed_repositories(request, user)
    for access in managed:
        if access.repo.lower() == wanted:
            return access
    # Why: a rename reaches the repositories table by webhook at once, the user's list only when it is read from
    # GitHub again (up to CACHE_TTL): the new name answered 404 meanwhile. GitHub keeps the id; the same
    # installation must hold it (a transfer to another installation of the App may not be the user's).
    by_id = {(a.repo_id, a.installation_id): a for a in managed if a.repo_id is not None}
    for repo_id, installation_id, name in await users.live_repositories_named(request.app[keys.db], wanted):
        renamed = by_id.get((repo_id, installation_id))
        if renamed is not None:
            return dataclasses.replace(renamed, repo=name)
    raise _json_error(web.HTTPNotFound, "not_found", "no such repository, or you cannot reach it")


async def installation_access(request: web.Request, user: User, installation_id: int) -> list[RepoAccess]:
    """The user's repositories in one installation; 404 JSON when they reach none there (no enumeration)."""
    found = [a for a in await managed_repositories(request, user) if a.installation_id == installation_id]
    if not found:
        raise _json_error(web.HTTPNotFound, "not_found", "no such installation, or you cannot reach it")
    return found


def require_push(access: RepoAccess) -> None:
    """Raise a 403 JSON error unless the user has push, maintain or admin on the repository."""
    if not access.can_push:
        raise _json_error(web.HTTPForbidden, "forbidden",
                          f"this needs push access to {access.repo}; you have {access.permission}")
