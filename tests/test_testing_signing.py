"""signed_delivery() and sign() produce what GitHub sends."""

import hashlib
import hmac
import json
import uuid

from quantumreview.testing import signing
from quantumreview.testing.signing import sign, signed_delivery


def test_sign_matches_githubs_documented_test_vector() -> None:
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == expected


def test_signed_delivery_of_bytes_keeps_the_body_exactly() -> None:
    headers, body = signed_delivery("ping", b"Hello, World!", "It's a Secret to Everybody")
    assert body == b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert headers["X-Hub-Signature-256"] == expected


def test_signed_delivery_sets_githubs_headers() -> None:
    headers, body = signed_delivery("issues", {"action": "opened"}, "s3cret", delivery_id="abc-123")
    assert headers["X-GitHub-Event"] == "issues"
    assert headers["X-GitHub-Delivery"] == "abc-123"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    mac = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={mac}"


def test_signed_delivery_encodes_a_mapping_as_json_that_round_trips() -> None:
    payload = {"action": "opened", "issue": {"title": "Ünïcode ✓", "number": 7}}
    _, body = signed_delivery("issues", payload, "s")
    assert json.loads(body) == payload
    assert "✓".encode() in body


def test_default_delivery_id_is_a_fresh_uuid4() -> None:
    first, _ = signed_delivery("ping", {}, "s")
    second, _ = signed_delivery("ping", {}, "s")
    assert uuid.UUID(first["X-GitHub-Delivery"]).version == 4
    assert first["X-GitHub-Delivery"] != second["X-GitHub-Delivery"]


def test_a_different_secret_gives_a_different_signature() -> None:
    assert signing.sign(b"body", "one") != signing.sign(b"body", "two")
