"""The API's one error shape, query parsing that answers 400 (never 500), and pagination."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

PER_PAGE_DEFAULT = 30
PER_PAGE_MAX = 100
# Why: beyond this an OFFSET only burns time; no dashboard pages that far.
PAGE_MAX = 100_000
INT_MAX = 2**63 - 1
_STATUS_CLASSES: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
    409: web.HTTPConflict, 503: web.HTTPServiceUnavailable,
}


def api_error(status: int, code: str, message: str) -> web.HTTPException:
    """An HTTP error carrying {"error": {"code", "message"}} (raise it)."""
    body = json.dumps({"error": {"code": code, "message": message}})
    return _STATUS_CLASSES[status](text=body, content_type="application/json")


def bad_request(message: str) -> web.HTTPException:
    """400 with code bad_request."""
    return api_error(400, "bad_request", message)


def not_found(message: str) -> web.HTTPException:
    """404 with code not_found."""
    return api_error(404, "not_found", message)


def parse_int(value: str, name: str, *, minimum: int = 1, maximum: int = INT_MAX) -> int:
    """A decimal integer in [minimum, maximum], or 400 naming the parameter."""
    text = value.strip()
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(text) > 20:
        raise bad_request(f"{name} must be an integer, got {value[:40]!r}")
    number = int(text)
    if not minimum <= number <= maximum:
        raise bad_request(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def parse_bool(value: str, name: str) -> bool:
    """true/false (also 1/0), or 400."""
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise bad_request(f"{name} must be true or false, got {value[:40]!r}")


def parse_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """One of `choices`, or 400 listing them."""
    if value not in choices:
        raise bad_request(f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def path_int(request: web.Request, name: str) -> int:
    """A positive integer path parameter, or 400."""
    return parse_int(request.match_info[name], name)


@dataclass(frozen=True)
class Page:
    """Which slice of a list the client asked for."""

    page: int
    per_page: int

    @property
    def offset(self) -> int:
        """Rows to skip."""
        return (self.page - 1) * self.per_page


def query_value(query: Mapping[str, str], name: str) -> str | None:
    """The query parameter's value, None when absent, or 400 when it is given more than once.

    Why: `?per_page=5&per_page=500` silently meant 5 (the first); a proxy or client reading the last would
    disagree with the server about what was asked, so an ambiguous query is refused like any bad value.
    """
    values = query.getall(name, []) if isinstance(query, MultiMapping) else ([query[name]] if name in query else [])
    if len(values) > 1:
        raise bad_request(f"{name} must be given once, got it {len(values)} times")
    return values[0] if values else None


def parse_page(query: Mapping[str, str]) -> Page:
    """`page` (≥ 1, default 1) and `per_page` (1..100, default 30) from the query string, or 400."""
    page, per_page = query_value(query, "page"), query_value(query, "per_page")
    return Page(1 if page is None else parse_int(page, "page", maximum=PAGE_MAX),
                PER_PAGE_DEFAULT if per_page is None else parse_int(per_page, "per_page", maximum=PER_PAGE_MAX))


def parse_before(query: Mapping[str, str]) -> int | None:
    """`before` (an item id, ≥ 1) from the query string, None when absent, or 400.

    Why: lists newest first gain rows at the top; a client that passes the last id it was shown reads the next
    page without repeating or skipping rows however many arrived meanwhile (pages by number shift).
    """
    value = query_value(query, "before")
    return None if value is None else parse_int(value, "before")


def paginated(items: Sequence[Any], page: Page, total: int) -> dict[str, Any]:
    """The list envelope every list endpoint answers with."""
    return {"items": list(items), "page": page.page, "per_page": page.per_page, "total": total}


def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC time, or None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
