"""HTTP plumbing shared by the fake's routes: route table entries, errors, pagination, auth."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from quantumreview.testing import fake_shapes as shapes
from quantumreview.testing.fake_state import FakeState, Token

STATE = web.AppKey("quantumreview_fake_state", FakeState)
TOKEN = web.RequestKey("quantumreview_fake_token", Token)
JWT_CLAIMS = web.RequestKey("quantumreview_fake_jwt_claims", dict)
API_PREFIX = "/api/v3"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One served route: method, path template, handler and the credentials it needs."""

    method: str
    path: str
    handler: Handler
    auth: str = "none"  # "app" (App JWT) | "token" (installation or user token) | "user" | "none"
    host: str = "api"  # "api" (under /api/v3) | "web" | "blob"


class GitHubError(Exception):
    """An error answered with GitHub's JSON error body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Keep status, message and extra headers."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> web.Response:
        """Render the error like GitHub."""
        return web.json_response(shapes.error_json(self.status, self.message), status=self.status,
                                 headers=self.headers)


def state_of(request: web.Request) -> FakeState:
    """Return the fake's state."""
    return request.app[STATE]


def token_of(request: web.Request) -> Token:
    """Return the access token the middleware accepted for this request."""
    return request[TOKEN]


def int_param(request: web.Request, name: str) -> int:
    """Return an integer path parameter, or answer 404 like GitHub for a non-number."""
    try:
        return int(request.match_info[name])
    except ValueError:
        raise GitHubError(404, "Not Found") from None


def repo_name(request: web.Request) -> str:
    """Return owner/repo from the path after checking the token reaches it."""
    full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
    if not state_of(request).token_reaches(token_of(request), full_name):
        raise GitHubError(404, "Not Found")
    return full_name


def found(item: T | None) -> T:
    """Return item, or answer 404 when it is missing."""
    if item is None:
        raise GitHubError(404, "Not Found")
    return item


async def json_body(request: web.Request) -> dict[str, Any]:
    """Return the JSON object body (already checked by the contract when enabled)."""
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise GitHubError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise GitHubError(400, "Problems parsing JSON")
    return data


def page_args(request: web.Request) -> tuple[int, int]:
    """Return (per_page, page) from the query with GitHub's defaults and cap."""
    try:
        per_page = int(request.query.get("per_page", DEFAULT_PER_PAGE))
    except ValueError:
        per_page = DEFAULT_PER_PAGE
    try:
        page = int(request.query.get("page", 1))
    except ValueError:
        page = 1
    return max(1, min(per_page, MAX_PER_PAGE)), max(1, page)


def link_header(request: web.Request, pages: dict[str, dict[str, str]]) -> str:
    """Return a Link header with one URL per rel, each the request URL with the given query changes."""
    parts = []
    for rel, changes in pages.items():
        url = request.url.update_query(changes)
        parts.append(f'<{url}>; rel="{rel}"')
    return ", ".join(parts)


def paginate(request: web.Request, items: Sequence[T]) -> tuple[list[T], dict[str, str]]:
    """Return one page of items and the headers (Link) GitHub sends with it."""
    per_page, page = page_args(request)
    last = max(1, math.ceil(len(items) / per_page))
    chunk = list(items[(page - 1) * per_page: page * per_page])
    rels: dict[str, dict[str, str]] = {}
    if page > 1:
        rels["prev"] = {"page": str(min(page - 1, last))}
    if page < last:
        rels["next"] = {"page": str(page + 1)}
        rels["last"] = {"page": str(last)}
    if page > 1:
        rels["first"] = {"page": "1"}
    headers = {"Link": link_header(request, rels)} if rels else {}
    return chunk, headers


def paged_json(request: web.Request, items: Sequence[Any], *, key: str | None = None,
               extra: dict[str, Any] | None = None) -> web.Response:
    """Answer one page of items: a bare list, or {total_count, key: [...], **extra} like GitHub."""
    chunk, headers = paginate(request, items)
    if key is None:
        return web.json_response(chunk, headers=headers)
    return web.json_response({"total_count": len(items), key: chunk, **(extra or {})}, headers=headers)
