"""Build webhook deliveries signed the way GitHub signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any

# https://docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers
HOOKSHOT_USER_AGENT = "GitHub-Hookshot/quantumreview-testing"


def sign(body: bytes, secret: str) -> str:
    """Return the X-Hub-Signature-256 value for body: "sha256=" + HMAC-SHA256 hex digest."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def encode_payload(payload: Mapping[str, Any] | bytes) -> bytes:
    """Return the body bytes: given bytes unchanged, a mapping as compact UTF-8 JSON like GitHub's."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_delivery(
    event: str,
    payload: Mapping[str, Any] | bytes,
    secret: str,
    *,
    delivery_id: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """Return (headers, body) for a webhook delivery of event, signed with secret."""
    body = encode_payload(payload)
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": HOOKSHOT_USER_AGENT,
    }
    if isinstance(payload, Mapping):
        installation = payload.get("installation")
        if isinstance(installation, Mapping) and "id" in installation:
            headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
    return headers, body
