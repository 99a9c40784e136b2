"""POST /webhooks/github: cap the body, check the sha256 signature, store the delivery and its jobs, answer 202.

Only `application/json` deliveries are accepted (GitHub Apps always send JSON; a repository hook set to
`application/x-www-form-urlencoded` gets 415 with a message saying what to change).
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from gidgethub import sansio

from quantumreview import keys
from quantumreview.plugins import HandlerRegistry
from storage.db import DatabaseBusy
from storage.deliveries import DeliveryRecord
from storage.jobs import NewJob

log = logging.getLogger("quantumreview.webhook")

PATH = "/webhooks/github"
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap
MAX_BODY_BYTES = 25 * 1024 * 1024
MAX_HEADER_CHARS = 200
# Why: GitHub gives up after 10 s; answer 503 before that so the failure is recorded and can be redelivered.
STORE_DEADLINE = 8.5
DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
SIGNATURE_PREFIX = "sha256="

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


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    # Why: keying HMAC hashes the secret twice; copying a keyed one skips that on every delivery.
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def sign(body: bytes, secret: str) -> bytes:
    """The expected X-Hub-Signature-256 value for `body` under `secret`, as ASCII bytes."""
    mac = _keyed(secret).copy()
    mac.update(body)
    return (SIGNATURE_PREFIX + mac.hexdigest()).encode()


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


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the (decompressed) body, refusing more than `limit` bytes without buffering past it."""
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, "payload_too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise Rejected(413, "payload_too_large", f"the body is larger than {limit} bytes")
            chunks.append(chunk)
    except Rejected:
        raise
    except Exception as exc:  # a truncated or badly encoded stream is the sender's fault
        raise Rejected(400, "unreadable_body", f"the body could not be read ({type(exc).__name__})") from exc
    return b"".join(chunks)


def parse_payload(body: bytes) -> dict[str, Any]:
    """Decode a UTF-8 JSON object; anything else is a 400."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected(400, "invalid_json", f"the body is not UTF-8 JSON ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise Rejected(400, "invalid_json", "the body must be a JSON object")
    return data


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _field(data: dict[str, Any], outer: str, inner: str) -> Any:
    obj = data.get(outer)
    return obj.get(inner) if isinstance(obj, dict) else None


def subject_number(data: dict[str, Any]) -> int | None:
    """The issue or pull request number the payload is about, if any."""
    for outer in ("issue", "pull_request"):
        if (number := _int(_field(data, outer, "number"))) is not None:
            return number
    return _int(data.get("number"))


def ordering_key(data: dict[str, Any], fallback: str) -> str:
    """Jobs with one key run in order: repo#number, else the installation, else `fallback`."""
    repo = _field(data, "repository", "full_name")
    number = subject_number(data)
    if isinstance(repo, str) and number is not None:
        return f"{repo}#{number}"
    installation_id = _int(_field(data, "installation", "id"))
    if installation_id is not None:
        return f"installation:{installation_id}"
    return fallback


def matching_handlers(registry: HandlerRegistry, data: dict[str, Any], headers: Headers) -> list[str]:
    """Names of the handlers that match the event (none for unknown events or actions)."""
    try:
        return registry.handlers_for(sansio.Event(data, event=headers.event, delivery_id=headers.delivery_id))
    except TypeError as exc:  # e.g. an unhashable "action"; gidgethub's router cannot look it up
        raise Rejected(400, "invalid_payload", "a routed field (such as action) has an invalid type") from exc


def build_delivery(headers: Headers, body: bytes, data: dict[str, Any], handlers: list[str],
                   now: float) -> tuple[DeliveryRecord, list[NewJob]]:
    """The delivery row and one job row per matching handler."""
    action = data.get("action")
    installation_id = _int(_field(data, "installation", "id"))
    repo = _field(data, "repository", "full_name")
    record = DeliveryRecord(
        id=headers.delivery_id,
        event=headers.event,
        action=action if isinstance(action, str) else None,
        installation_id=installation_id,
        repository=repo if isinstance(repo, str) else None,
        received_at=now,
        body=body,
    )
    key = ordering_key(data, f"delivery:{headers.delivery_id}")
    jobs = [NewJob(handler=name, ordering_key=key, run_after=now, created_at=now, delivery_id=headers.delivery_id,
                   installation_id=installation_id) for name in handlers]
    return record, jobs


class WebhookReceiver:
    """The webhook route; its secrets are read per request so the setup flow can swap them without a restart."""

    def __init__(self, secrets: SecretSource, registry: HandlerRegistry, *, now: Callable[[], float]) -> None:
        self._secrets = secrets
        self._registry = registry
        self._now = now

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one delivery; never a 500 for any input."""
        try:
            return await self._accept(request)
        except Rejected as exc:
            log.warning("webhook delivery=%s rejected %d %s", _loggable_delivery(request), exc.status, exc.code)
            response = error_response(exc.status, exc.code, str(exc))
            if exc.status == 413:
                response.force_close()
            return response

    async def _accept(self, request: web.Request) -> web.Response:
        secrets = self._secrets()
        if not secrets:
            raise Rejected(503, "setup_required", "the GitHub App is not configured yet; open /setup")
        headers = read_headers(request)
        body = await read_body(request)
        if not signature_matches(body, headers.signature, secrets):
            raise Rejected(401, "bad_signature", "X-Hub-Signature-256 does not match the body")
        if request.content_type != "application/json":
            raise Rejected(415, "unsupported_media_type", "set the webhook content type to application/json")
        data = parse_payload(body)
        handlers = matching_handlers(self._registry, data, headers)
        record, jobs = build_delivery(headers, body, data, handlers, self._now())
        try:
            async with asyncio.timeout(STORE_DEADLINE):
                is_new = await request.app[keys.intake].submit(record, jobs)
        except (TimeoutError, DatabaseBusy) as exc:
            raise Rejected(503, "database_unavailable", "the delivery could not be stored; retry later") from exc
        if not is_new:
            log.info("webhook delivery=%s duplicate", headers.delivery_id)
            return _json_reply(f'{{"delivery_id":"{headers.delivery_id}","duplicate":true}}', 200)
        runner = request.app.get(keys.runner)
        if jobs and runner is not None:
            # Why: the job then runs on this parse instead of reading and parsing the stored body again.
            runner.events.put(headers.delivery_id, headers.event, data, len(body))
        status = 200 if headers.event == "ping" else 202
        return _json_reply(f'{{"delivery_id":"{headers.delivery_id}","jobs":{len(jobs)}}}', status)


def _json_reply(text: str, status: int) -> web.Response:
    # Why not json_response: the id matched DELIVERY_ID (no character JSON would escape), so formatting
    # it in directly gives the same bytes without an encoder pass on every delivery.
    return web.Response(body=text.encode(), status=status, content_type="application/json")


def _loggable_delivery(request: web.Request) -> str:
    value = request.headers.get("X-GitHub-Delivery", "")
    # Why: only a well-formed id reaches the log, so a header cannot forge log lines.
    return value if len(value) <= MAX_HEADER_CHARS and DELIVERY_ID.fullmatch(value) else "<invalid>"
