"""Scripted failures: error statuses, rate limits, dropped connections, hangs and delays."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import struct
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from quantumreview.testing import fake_shapes as shapes
from quantumreview.testing.fake_state import Fault

KINDS = ("status", "reset", "hang", "slow", "endless")
ENDLESS_CHUNK = 64 * 1024
BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
    "<p>We couldn't respond to your request in time.</p></body></html>"
)
DEFAULT_MESSAGES = {
    401: "Bad credentials",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    422: "Validation Failed",
    429: "Too Many Requests",
    500: "Server Error",
    503: "Service Unavailable",
}
SECONDARY_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach "
    "out to GitHub Support for help, please include the request ID."
)


def fault_response(fault: Fault) -> web.Response:
    """Render a status fault: JSON for a given mapping or list, raw for text/bytes, GitHub's default otherwise."""
    headers = dict(fault.headers)
    body = fault.body
    if body is None and fault.status in (502, 504):
        headers.setdefault("Content-Type", "text/html")
        return web.Response(status=fault.status, text=BAD_GATEWAY_HTML, headers=headers)
    if body is None:
        if fault.status < 400:
            return web.Response(status=fault.status, headers=headers)
        body = shapes.error_json(fault.status, DEFAULT_MESSAGES.get(fault.status, "Error"))
    if isinstance(body, bytes | str):
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(status=fault.status, body=raw, headers=headers)
    headers.setdefault("Content-Type", "application/json; charset=utf-8")
    return web.Response(status=fault.status, text=json.dumps(body), headers=headers)


def reset_connection(request: web.Request) -> None:
    """Drop the client's connection with a TCP RST (SO_LINGER 0), like a crashed proxy."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def endless_body(request: web.Request, fault: Fault, closing: asyncio.Event) -> web.StreamResponse:
    """Answer `fault.status` with a JSON array that never ends, as fast as the client reads, until it gives up."""
    response = web.StreamResponse(status=fault.status, headers={"Content-Type": "application/json", **fault.headers})
    await response.prepare(request)
    chunk = b"[" + b"0," * (ENDLESS_CHUNK // 2)
    while not closing.is_set():
        try:
            await response.write(chunk)
        except (ConnectionError, RuntimeError):  # the client hung up (aiohttp raises either, by version)
            break
        chunk = b"0," * (ENDLESS_CHUNK // 2)
    return response


async def apply_fault(request: web.Request, fault: Fault, closing: asyncio.Event) -> web.StreamResponse | None:
    """Act out a fault; return the response to send, or None to serve the request normally."""
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.kind == "slow":
        return None
    if fault.kind == "endless":
        return await endless_body(request, fault, closing)
    if fault.kind == "hang":
        await closing.wait()  # until the fake closes; the client's timeout should fire first
        reset_connection(request)
        return web.Response(status=499)
    if fault.kind == "reset":
        reset_connection(request)
        return web.Response(status=499)  # never reaches the client; recorded as 499
    return fault_response(fault)


def rate_limit_fault(*, status: int, reset_at: float, now: float, limit: int = 5000) -> Fault:
    """Return a primary rate limit response: remaining 0 until reset_at, dated `now` on the fake's clock."""
    headers = {
        "x-ratelimit-limit": str(limit), "x-ratelimit-remaining": "0", "x-ratelimit-used": str(limit),
        "x-ratelimit-reset": str(int(reset_at)), "x-ratelimit-resource": "core",
        "Date": email.utils.formatdate(int(now), usegmt=True),  # GitHub's clock, against which reset counts
    }
    body = shapes.error_json(status, "API rate limit exceeded for installation.")
    return Fault(status=status, headers=headers, body=body)


def secondary_limit_fault(*, status: int, retry_after: int | None, remaining: int = 4999) -> Fault:
    """Return a secondary rate limit response, with retry-after when given."""
    headers: dict[str, str] = {"x-ratelimit-remaining": str(remaining), "x-ratelimit-limit": "5000"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return Fault(status=status, headers=headers, body=shapes.error_json(status, SECONDARY_LIMIT_MESSAGE))


def make_fault(*, kind: str, status: int, headers: Mapping[str, str], body: Any, delay: float) -> Fault:
    """Validate and build a Fault."""
    if kind not in KINDS:
        raise ValueError(f"fault kind must be one of {KINDS}, not {kind!r}")
    return Fault(kind=kind, status=status, headers=dict(headers), body=body, delay=delay)
