"""Logging set-up: text or JSON lines, with anything that looks like a secret scrubbed; an access log that shows
no query value."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# The setup link as the start-up line writes it, up to its ?token=: an absolute URL whose path ends in /setup.
SETUP_LINK = re.compile(r"https?://[^\s/?#'\"]+(?:/[^\s?#'\"]*)?/setup")
# A quoted request line's method before the URL (aiohttp quotes it as b'GET ...): the link is then a request's.
REQUEST_METHOD = re.compile(r"(?:b['\"])?[A-Z]+")
MAX_URL_CHARS = 2048


def _hide_query_value(match: re.Match[str]) -> str:
    """`?name=<redacted>`, except the setup link's token where the start-up line shows it to the operator.

    Why only there: it is where the operator copies the link from (a server whose PUBLIC_URL is not local opens
    /setup only with it); a request line quoting it (`GET /setup?token=` in aiohttp's 400 errors) is still hidden.
    """
    if match.group(2).lower() == "token":
        before = match.string[max(0, match.start() - MAX_URL_CHARS):match.start()].rsplit(None, 2)
        # Why not after a method: a request line in absolute form (GET http://host/setup?token=..., as sent to a
        # proxy) is quoted whole by aiohttp's 400 error, its URL shaped as the start-up line's link.
        if (before and SETUP_LINK.fullmatch(before[-1])
                and not (len(before) > 1 and REQUEST_METHOD.fullmatch(before[-2]))):
            return match.group(0)
    return f"{match.group(1)}<redacted>"


Replacement = str | Callable[[re.Match[str]], str]
# Why: a token or key can reach a log line through an exception message; scrub it at the last step.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], Replacement], ...] = (
    (re.compile(r"\b(gh[pousr]_|github_pat_)[A-Za-z0-9_]{8,}"), "<redacted>"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S), "<redacted>"),
    (re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9_\-.=]{16,}"), r"\1 <redacted>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "<redacted>"),  # JWTs
    (re.compile(r"(?i)([?&](sig|signature|x-amz-signature|token|code|state|client_secret)=)[^&\s]+"),
     _hide_query_value),
    # Our session and state cookies, wherever a Cookie header is quoted (aiohttp's 400 for an overlong header).
    (re.compile(r"\b((?:__Host-)?quantum_[a-z_]+=)[^;\s'\"]+"), r"\1<redacted>"),
)


def redact(text: str) -> str:
    """Replace token-, key- and signature-like substrings with a marker."""
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Text lines, scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the delivery/job ids when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in ("delivery", "job", "event", "installation", *ACCESS_FIELDS):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = redact(f"{record.exc_info[0].__name__}: {record.exc_info[1]}")
        return json.dumps(entry, ensure_ascii=False)


# Fields an access log record carries for the JSON lines (AccessLog.log's extra).
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")
MAX_QUERY_NAMES = 20
MAX_HEADER_SHOWN = 256


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log without query values: remote, method, path, status, size, time, Referer, User-Agent.

    Why no value at all rather than a list of sensitive parameters: the same name is a secret on one route and
    harmless on another (state is the login's CSRF nonce on /auth/callback, a filter on /api), and a list misses
    the next one added; /setup/callback?code= is exchanged for the App's private key, /setup?token= opens setup.
    The names stay, so a line still tells which callback or filter was used. The Referer keeps no query either
    (the page before may be a callback); the User-Agent is capped (headers may be 64 KiB here).
    """

    @property
    def enabled(self) -> bool:
        # Why: aiohttp skips formatting when this is False; configure_logging keeps aiohttp.access quiet but at DEBUG.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = request_target(request)
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        duration = round(time * 1000, 1)
        referer = without_query(request.headers.get("Referer"))
        agent = request.headers.get("User-Agent", "-")[:MAX_HEADER_SHOWN]
        self.logger.info('%s "%s %s %s" %d %d %.1fms "%s" "%s"', request.remote or "-", request.method, target,
                         version, response.status, response.body_length, duration, referer, agent,
                         extra={"method": request.method, "path": request.rel_url.raw_path,
                                "status": response.status, "duration_ms": duration})


def request_target(request: web.BaseRequest) -> str:
    """The path and the query's names as sent (percent-encoded: no line break gets in), each value hidden."""
    raw = request.rel_url.raw_query_string
    names = list(dict.fromkeys(part.partition("=")[0] for part in raw.split("&") if part))  # each once, in order
    shown = "&".join(f"{name[:MAX_HEADER_SHOWN]}=<redacted>" for name in names[:MAX_QUERY_NAMES])
    if len(names) > MAX_QUERY_NAMES:
        shown += "&..."
    return request.rel_url.raw_path + (f"?{shown}" if shown else "")


def without_query(url: str | None) -> str:
    """A Referer as scheme://host[:port]/path: no user, password, query or fragment; "-" if absent or not a URL."""
    if not url:
        return "-"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # a bad port or IPv6 literal
        return "-"
    if not parts.scheme or not host:
        return "-"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"[:MAX_HEADER_SHOWN]


def configure_logging(log_format: str = "text", level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Install one handler on the root logger in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Why: aiohttp.access logs every request line; keep it, but one level down from our own lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)
    # Why: at DEBUG aiosqlite logs every call with its arguments: stored payloads, enqueued work, comment data.
    logging.getLogger("aiosqlite").setLevel(max(root.level, logging.INFO))
