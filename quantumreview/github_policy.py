"""Pure rules for GitHub responses: which are rate limits (and until when), which are retried, and backoff.

https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})  # retried without being told
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})  # paced per installation (WritePacer)
SECONDARY_LIMIT_WAIT = 60.0  # "Otherwise, wait for at least one minute before retrying."
# The primary limit's window is one hour, so no honest answer asks for a longer wait; a longer (or an infinite,
# or NaN) one from a proxy or a bug would block the installation and park its jobs for good.
MAX_RATE_LIMIT_WAIT = 3600.0
PERMISSION_MESSAGE = "resource not accessible by"  # "...by integration" / "...by personal access token"
SECONDARY_MARKERS = ("secondary rate limit", "abuse detection")
SUSPENDED_MARKER = "suspended"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries: `tries` in all, full-jitter exponential backoff, short waits slept inline."""

    tries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    inline_wait: float = 2.0  # a rate-limit wait this short is slept; longer ones are handed to the job runner

    def backoff(self, attempt: int, rand: float) -> float:
        """The wait after failed try number `attempt` (1-based): base·2^(attempt−1), jittered into [50 %, 100 %]."""
        return float(min(self.base_delay * 2.0 ** (attempt - 1), self.max_delay) * (0.5 + rand / 2))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Return a header by case-insensitive name (the fake and aiohttp both use CIMultiDict, plain dicts do not)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def error_message(body: bytes) -> str:
    """Return GitHub's JSON `message`, or "" when the body is not a JSON error."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else ""


def rate_limit_until(status: int, headers: Mapping[str, str], body: bytes, now: float) -> float | None:
    """Return when a rate-limited request may be retried, or None when the response is not a rate limit.

    Order from GitHub's docs: `retry-after`, then `x-ratelimit-reset` when remaining is 0, then one minute.
    The wait is at most MAX_RATE_LIMIT_WAIT; `retry-after` may be seconds or an HTTP date (RFC 9110).
    """
    if status not in (403, 429):
        return None
    until = _rate_limit_until(status, headers, body, now)
    return None if until is None else min(until, now + MAX_RATE_LIMIT_WAIT)


def _rate_limit_until(status: int, headers: Mapping[str, str], body: bytes, now: float) -> float | None:
    retry_after = _retry_after(header(headers, "retry-after"), now)
    remaining = _number(header(headers, "x-ratelimit-remaining"))
    secondary = any(marker in error_message(body).lower() for marker in SECONDARY_MARKERS)
    if retry_after is None and remaining != 0 and not secondary and status == 403:
        return None  # a plain 403: a permission problem, not a limit
    if retry_after is not None:
        return now + max(retry_after, 0.0)
    reset = _number(header(headers, "x-ratelimit-reset"))
    if remaining == 0 and reset is not None:
        served = _http_date(header(headers, "date"))
        if served is not None:
            # Why GitHub's Date: the reset is on GitHub's clock. Read on a host clock running ahead, a reset still
            # to come looked past, so the request was repeated at once while limited and the job soon went dead.
            return now + max(reset - served, 0.0)
        return max(reset, now)
    return now + SECONDARY_LIMIT_WAIT


def is_permission_denied(status: int, body: bytes) -> bool:
    """Tell whether a 403 is GitHub refusing the App a permission (never retried)."""
    return status == 403 and PERMISSION_MESSAGE in error_message(body).lower()


def is_installation_suspended(status: int, body: bytes) -> bool:
    """Tell whether a 403 refuses an installation token because the installation is suspended.

    GitHub's words: "This GitHub App installation is currently suspended.", "Sorry. This installation owned by
    X suspended your access at T." (octokit.rb matches "suspended your access").
    """
    return status == 403 and SUSPENDED_MARKER in error_message(body).lower()


def is_retryable_status(status: int) -> bool:
    """Tell whether GitHub's answer is a transient server failure."""
    return status >= 500


def may_retry(method: str, *, idempotent: bool) -> bool:
    """GET/PUT/PATCH/DELETE are retried; a POST only when the caller says repeating it is harmless."""
    return idempotent or method.upper() in SAFE_METHODS


def _number(value: str | None) -> float | None:
    """A finite number, else None: float() also reads "nan" and "inf", which no wait can be."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from `retry-after`: delay-seconds (what GitHub sends) or an HTTP date."""
    seconds = _number(value)
    if seconds is not None or value is None:
        return seconds
    stamp = _http_date(value)
    return None if stamp is None else stamp - now


def _http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP date ("Tue, 14 Nov 2023 22:13:20 GMT"), or None."""
    if value is None:
        return None
    try:
        stamp = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):  # not a date
        return None
    if stamp.tzinfo is None:  # "-0000": UTC, not the host's zone
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()
