"""POST /webhooks/github: cap the body, check the sha256 signature, store the delivery and its jobs, answer 202.

Only `application/json` deliveries are accepted (GitHub Apps always send JSON; a repository hook set to
`application/x-www-form-urlencoded` gets 415 with a message saying what to change).
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from quantumreview import keys
from quantumreview.delivery_fields import Arrival, InvalidPayload
from quantumreview.intake import IntakeWriter
from storage.db import DatabaseBusy

log = logging.getLogger("quantumreview.webhook")

PATH = "/webhooks/github"
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap
MAX_BODY_BYTES = 25 * 1024 * 1024
MAX_HEADER_CHARS = 200
# Why: storing a body takes several copies of it (text, SQLite's binding and JSON parse): about 8 x its size at the
# peak, 200 MB for a 24 MiB one. Bodies over LARGE_BODY_BYTES are stored one at a time, so a few arriving together
# cannot take a 512 MB machine down; GitHub's usual deliveries (a few KB to a few hundred) never wait for this.
LARGE_BODY_BYTES = 1024 * 1024
# A large delivery still waiting for its turn after this long is answered 503 (GitHub gives up at 10 s).
LARGE_BODY_WAIT = 8.0
# Why: a body is read whole before its signature can be checked, so unsigned senders could make the server hold
# any number of them: twenty 24 MiB POSTs at once peaked at 557 MB. Bodies that may be large (declared over
# LARGE_BODY_BYTES, or of unknown or encoded length; GitHub declares its length and does not encode) are read at
# most LARGE_READS at a time; the others wait in the socket, since aiohttp stops reading a body nobody consumes.
LARGE_READS = 2
# GitHub gives up on a delivery after 10 s; a body still arriving after that is not waited for (slowloris).
BODY_READ_TIMEOUT = 10.0
DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
SIGNATURE_PREFIX = "sha256="
SIGNATURE_PREFIX_BYTES = SIGNATURE_PREFIX.encode()

SecretSource = Callable[[], Sequence[str]]


class Rejected(Exception):
    """A delivery that is answered with an error status; the message never holds body or secret."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Headers:
    """The delivery headers that passed validation."""

    event: str
    delivery_id: str
    signature: str


def error_response(status: int, code: str, message: str) -> web.Response:
    """The one error shape: {"error": {"code", "message"}}."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def sign(body: bytes, secret: str) -> bytes:
    """The expected X-Hub-Signature-256 value for `body` under `secret`, as ASCII bytes."""
    # Why hmac.digest: OpenSSL's one-shot HMAC, a single C call (no HMAC object to key, copy and read out).
    return SIGNATURE_PREFIX_BYTES + hmac.digest(secret.encode(), body, "sha256").hex().encode()


def signature_matches(body: bytes, signature: str, secrets: Sequence[str]) -> bool:
    """True if `signature` is exactly sha256=<lowercase hex HMAC> of `body` under one of `secrets`."""
    # Why: compare bytes, so a non-ASCII header is a mismatch rather than a TypeError (a 500).
    given = signature.encode("utf-8", "surrogateescape")
    return any(hmac.compare_digest(given, sign(body, secret)) for secret in secrets if secret)


def single_header(request: web.Request, name: str) -> str | None:
    """The header's value if it is present exactly once, else None (two values are never guessed between)."""
    values = request.headers.getall(name, [])
    return values[0] if len(values) == 1 else None


def read_headers(request: web.Request) -> Headers:
    """Validate the event, delivery and signature headers."""
    found: dict[str, str] = {}
    for name, pattern in (("X-GitHub-Event", EVENT_NAME), ("X-GitHub-Delivery", DELIVERY_ID)):
        value = single_header(request, name)
        if not value or len(value) > MAX_HEADER_CHARS or not pattern.fullmatch(value):
            raise Rejected(400, "invalid_headers", f"{name} must be present once, 1-{MAX_HEADER_CHARS} characters")
        found[name] = value
    signature = single_header(request, "X-Hub-Signature-256")
    if signature is None:
        raise Rejected(401, "signature_required", "X-Hub-Signature-256 is required (SHA-1 signatures are refused)")
    return Headers(found["X-GitHub-Event"], found["X-GitHub-Delivery"], signature)


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES, timeout: float = BODY_READ_TIMEOUT) -> bytes:
    """Read the (decompressed) body, refusing more than `limit` bytes without buffering past it, or a body still
    arriving after `timeout` seconds."""
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, "payload_too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        if request.content.is_eof():  # the usual case: the whole body came with the headers
            body = request.content.read_nowait()
            if len(body) > limit:
                raise Rejected(413, "payload_too_large", f"the body is larger than {limit} bytes")
            return body
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise Rejected(413, "payload_too_large", f"the body is larger than {limit} bytes")
                chunks.append(chunk)
    except Rejected:
        raise
    except TimeoutError:
        raise Rejected(408, "body_timeout", f"the body did not arrive within {timeout:g} s") from None
    except Exception as exc:  # a truncated or badly encoded stream is the sender's fault
        raise Rejected(400, "unreadable_body", f"the body could not be read ({type(exc).__name__})") from exc
    return b"".join(chunks)


def hook_app_id(request: web.Request) -> int | None:
    """The App id GitHub names on an App's webhook (X-GitHub-Hook-Installation-Target-ID), or None.

    Why: credentials of another App get 404 for every installation, as an uninstall does; knowing from every
    signed delivery which App the installations are of, such a 404 never marks one deleted (GitHubApp).
    """
    if request.headers.get("X-GitHub-Hook-Installation-Target-Type") != "integration":
        return None  # a repository or organization webhook names its repository or organization
    value = request.headers.get("X-GitHub-Hook-Installation-Target-ID", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 20 else None


def may_be_large(request: web.Request) -> bool:
    """Whether the body may take more than LARGE_BODY_BYTES in memory once read (see LARGE_READS)."""
    length = request.content_length
    return length is None or length > LARGE_BODY_BYTES or "Content-Encoding" in request.headers


class WebhookReceiver:
    """The webhook route; its secrets are read per request so the setup flow can swap them without a restart."""

    def __init__(self, secrets: SecretSource, *, now: Callable[[], float], large_body_wait: float = LARGE_BODY_WAIT,
                 body_read_timeout: float = BODY_READ_TIMEOUT) -> None:
        self._secrets = secrets
        self._now = now
        self._large = asyncio.Semaphore(1)
        self._large_reads = asyncio.Semaphore(LARGE_READS)
        self._large_body_wait = large_body_wait
        self._body_read_timeout = body_read_timeout

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one delivery; never a 500 for any input."""
        try:
            return await self._accept(request)
        except Rejected as exc:
            log.warning("webhook delivery=%s rejected %d %s", _loggable_delivery(request), exc.status, exc.code)
            response = error_response(exc.status, exc.code, str(exc))
            if exc.status in (408, 413) or exc.code == "busy":  # the rest of that body is not read
                response.force_close()
            return response

    async def _accept(self, request: web.Request) -> web.Response:
        secrets = self._secrets()
        if not secrets:
            raise Rejected(503, "setup_required", "the GitHub App is not configured yet; open /setup")
        headers = read_headers(request)
        if not may_be_large(request):  # GitHub's usual deliveries: a few KB, read at once
            return await self._accept_body(request, headers, secrets)
        try:
            await self._turn(self._large_reads)
        except TimeoutError:
            raise Rejected(503, "busy", "other large deliveries are being received; retry later") from None
        try:
            return await self._accept_body(request, headers, secrets)
        finally:
            self._large_reads.release()

    async def _accept_body(self, request: web.Request, headers: Headers, secrets: Sequence[str]) -> web.Response:
        body = await read_body(request, timeout=self._body_read_timeout)
        if not signature_matches(body, headers.signature, secrets):
            raise Rejected(401, "bad_signature", "X-Hub-Signature-256 does not match the body")
        if request.content_type != "application/json":
            raise Rejected(415, "unsupported_media_type", "set the webhook content type to application/json")
        if (app_id := hook_app_id(request)) is not None and (github := request.app.get(keys.github)) is not None:
            github.note_webhook_app_id(app_id)
        arrival = Arrival(headers.delivery_id, headers.event, body, self._now())
        try:
            # The body is validated and read where it is stored (see delivery_fields); the writer answers
            # DatabaseBusy for a delivery it has not stored within its deadline (GitHub waits 10 s).
            if len(body) <= LARGE_BODY_BYTES:
                is_new, jobs = await request.app[keys.intake].submit(arrival)
            else:
                is_new, jobs = await self._submit_large(request.app[keys.intake], arrival)
        except InvalidPayload as exc:
            raise Rejected(400, exc.code, str(exc)) from None
        except Exception as exc:  # busy, stuck or failing: the delivery is not stored, GitHub may redeliver
            if not isinstance(exc, DatabaseBusy):  # busy is an expected answer under load
                log.error("webhook delivery=%s not stored: %s", headers.delivery_id, type(exc).__name__)
            raise Rejected(503, "database_unavailable", "the delivery could not be stored; retry later") from exc
        if not is_new:
            log.info("webhook delivery=%s duplicate", headers.delivery_id)
            return _json_reply(f'{{"delivery_id":"{headers.delivery_id}","duplicate":true}}', 200)
        status = 200 if headers.event == "ping" else 202
        return _json_reply(f'{{"delivery_id":"{headers.delivery_id}","jobs":{jobs}}}', status)

    async def _submit_large(self, intake: IntakeWriter[Arrival], arrival: Arrival) -> tuple[bool, int]:
        """Store a large delivery once no other large one is being stored (waiting up to large_body_wait)."""
        try:
            await self._turn(self._large)
        except TimeoutError:
            raise DatabaseBusy("other large deliveries are being stored") from None
        try:
            return await intake.submit(arrival)
        finally:
            self._large.release()

    async def _turn(self, turns: asyncio.Semaphore) -> None:
        """Take one of `turns`, waiting up to large_body_wait (TimeoutError if none comes); release it after."""
        async with asyncio.timeout(self._large_body_wait):
            await turns.acquire()


def _json_reply(text: str, status: int) -> web.Response:
    # Why not json_response: the id matched DELIVERY_ID (no character JSON would escape), so formatting
    # it in directly gives the same bytes without an encoder pass on every delivery.
    return web.Response(body=text.encode(), status=status, content_type="application/json")


def _loggable_delivery(request: web.Request) -> str:
    value = request.headers.get("X-GitHub-Delivery", "")
    # Why: only a well-formed id reaches the log, so a header cannot forge log lines.
    return value if len(value) <= MAX_HEADER_CHARS and DELIVERY_ID.fullmatch(value) else "<invalid>"
