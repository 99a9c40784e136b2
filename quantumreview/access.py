"""Which repositories a dashboard user may see and act on, read with their own token and cached a few minutes.

Decision (pinned in tests, OA-15): a user *sees* every repository they reach through an installation of this App
with any permission (pull included); *acting* on one (regenerate, revalidate, flag) needs push or higher.
Anything outside the set answers 404, never 403, so nothing about other repositories leaks (OA-14).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import gidgethub
from aiohttp import web
from cachetools import TTLCache

from quantumreview import auth, keys
from quantumreview.errors import PermissionDenied, QuantumReviewError
from storage import users
from storage.users import User, UserRepository

if TYPE_CHECKING:
    from quantumreview.github import GitHubApp

log = logging.getLogger("quantumreview.access")

CACHE_TTL = 300.0
CACHE_SIZE = 10_000
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


class Flight:
    """One user's GitHub reads: the lock that makes them single-flight, and how many have failed so far."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.failures = 0


class AccessCache:
    """Each user's managed repositories for a few minutes, and one GitHub read per user at a time."""

    def __init__(self, *, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic,
                 maxsize: int = CACHE_SIZE) -> None:
        self._repos: TTLCache[int, tuple[RepoAccess, ...]] = TTLCache(maxsize, ttl=ttl, timer=clock)
        self._flights: weakref.WeakValueDictionary[int, Flight] = weakref.WeakValueDictionary()

    def __repr__(self) -> str:
        return f"AccessCache(users={len(self._repos)})"

    def get(self, user_id: int) -> tuple[RepoAccess, ...] | None:
        """The cached set, or None when absent or stale."""
        return self._repos.get(user_id)

    def put(self, user_id: int, repos: tuple[RepoAccess, ...]) -> None:
        """Remember the user's set for the TTL."""
        self._repos[user_id] = repos

    def forget(self, user_id: int) -> None:
        """Drop the user's cached set (e.g. after logout)."""
        self._repos.pop(user_id, None)

    def flight(self, user_id: int) -> Flight:
        """The user's Flight (kept while a request holds it), which makes the GitHub read single-flight."""
        flight = self._flights.get(user_id)
        if flight is None:
            flight = self._flights[user_id] = Flight()
        return flight


ACCESS = web.AppKey("access_cache", AccessCache)


def setup(app: web.Application, *, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic) -> AccessCache:
    """Hang the access cache on `app`; return it."""
    cache = AccessCache(ttl=ttl, clock=clock)
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
    """The user's set from GitHub (one read per user at a time), cached and written to user_repositories."""
    cache = request.app[ACCESS]
    flight = cache.flight(user.id)
    failures = flight.failures
    async with flight.lock:
        cached = cache.get(user.id)
        if cached is not None:
            return list(cached)
        if flight.failures != failures:
            # Why share the failure: the read this request waited for has just failed, and its own would wait as
            # long again; with GitHub hanging, the nth of n concurrent requests answered after n client timeouts.
            raise _json_error(web.HTTPBadGateway, "github_unavailable",
                              "GitHub could not list your repositories; retry shortly")
        db = request.app[keys.db]
        if request.app.get(keys.github) is None:
            raise _json_error(web.HTTPServiceUnavailable, "not_configured", "no GitHub App is configured yet")
        github = cast("GitHubApp", request.app[keys.github])
        installed = await users.active_installation_ids(db)
        try:
            repos = await auth.with_user_token(
                request, user, lambda token: read_managed_repositories(github, token, installed))
        except web.HTTPServiceUnavailable:  # GitHub could not refresh the user's token
            flight.failures += 1
            raise
        except (gidgethub.GitHubException, QuantumReviewError, aiohttp.ClientError, TimeoutError) as exc:
            flight.failures += 1
            log.warning("user %s: reading repositories from GitHub failed (%s)", user.id, type(exc).__name__)
            raise _json_error(web.HTTPBadGateway, "github_unavailable",
                              "GitHub could not list your repositories; retry shortly") from None
        await users.set_user_repositories(
            db, user.id, [UserRepository(a.repo, a.installation_id, a.permission) for a in repos])
        cache.put(user.id, tuple(repos))
        return repos


async def repo_access(request: web.Request, user: User, owner: str, repo: str) -> RepoAccess:
    """The user's access to owner/repo; 404 JSON when it is not among their managed repositories."""
    wanted = f"{owner}/{repo}".lower()
    for access in await managed_repositories(request, user):
        if access.repo.lower() == wanted:
            return access
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
