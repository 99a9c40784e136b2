"""Logging: text or JSON lines; tokens, keys, JWTs and signed URLs never reach the output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from quantumreview.logs import configure_logging, redact


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("minted ghs_16CharactersOrMoreABCDEF", "ghs_16CharactersOrMoreABCDEF"),
        ("user token ghu_abcdefghijklmnopqrstuv", "ghu_abcdefghijklmnopqrstuv"),
        ("fetch https://blob.example/x?sig=SECRETSIG123&se=1", "SECRETSIG123"),
        ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl", "eyJhbGciOiJSUzI1NiJ9"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----", "MIIEabc"),
    ],
)
def test_redact_removes_secret_shapes(text: str, leak: str) -> None:
    assert leak not in redact(text)
    assert "<redacted>" in redact(text)


def test_redact_keeps_ordinary_text() -> None:
    assert redact("delivery 1234 stored with 2 jobs") == "delivery 1234 stored with 2 jobs"


def test_json_lines_carry_delivery_id_and_no_secret() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        logging.getLogger("quantumreview.test").warning(
            "token ghs_abcdefghijklmnopqrstuvwxyz rejected", extra={"delivery": "d-1"}
        )
    finally:
        configure_logging("text", "INFO")
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["delivery"] == "d-1"
    assert entry["level"] == "warning"
    assert "ghs_abcdefghijklmnopqrstuvwxyz" not in entry["message"]
