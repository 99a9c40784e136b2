"""Logging: text or JSON lines; tokens, keys, JWTs and signed URLs never reach the output."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from quantumreview.logs import MAX_HEADER_SHOWN, AccessLog, configure_logging, redact
from quantumreview.settings import Settings
from quantumreview.setup_flow import setup_link


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("minted ghs_16CharactersOrMoreABCDEF", "ghs_16CharactersOrMoreABCDEF"),
        ("user token ghu_abcdefghijklmnopqrstuv", "ghu_abcdefghijklmnopqrstuv"),
        ("fetch https://blob.example/x?sig=SECRETSIG123&se=1", "SECRETSIG123"),
        ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl", "eyJhbGciOiJSUzI1NiJ9"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----", "MIIEabc"),
        ("referred by https://qr.example/auth/callback?code=c0de&state=st4te-9a8b", "st4te-9a8b"),
        ("opening https://qr.example/other?token=t0ken-5d6e", "t0ken-5d6e"),
        ("opening https://qr.example/setup/callback?token=t0ken-5d6e", "t0ken-5d6e"),
        # aiohttp's 400 for a bad request line or an overlong header quotes its start, at ERROR
        ("Invalid HTTP version:\n    b'GET /setup?token=t0ken-5d6e HTTP/9.9'", "t0ken-5d6e"),
        # the same in absolute form (as sent to a proxy): the URL before ?token= is shaped as the start-up link's
        ("Invalid HTTP version:\n    b'GET http://qr.example/setup?token=t0ken-5d6e HTTP/9.9'", "t0ken-5d6e"),
        ("Invalid URL:\n    b'POST https://qr.example/setup?token=t0ken-5d6e\\x01 HTTP/1.1'", "t0ken-5d6e"),
        ("GET http://qr.example/setup?token=t0ken-5d6e HTTP/1.1", "t0ken-5d6e"),
        ("Got more than 65536 bytes when reading: b'quantum_session=s3ss-1a2b; p=aaaa..'", "s3ss-1a2b"),
        ("b'__Host-quantum_oauth_state=st4te-3c4d'", "st4te-3c4d"),
    ],
)
def test_redact_removes_secret_shapes(text: str, leak: str) -> None:
    assert leak not in redact(text)
    assert "<redacted>" in redact(text)


@pytest.mark.parametrize(("log_format", "public_url"), [("text", "https://qr.example"), ("json", "https://qr.example"),
                                                       ("text", "https://example.org/qr/")])
def test_the_start_up_line_shows_the_setup_links_token(log_format: str, public_url: str) -> None:
    """The line printed the link as /setup?token=<redacted>: on a server whose PUBLIC_URL is not local, /setup opens
    only with that token, so nobody could register the App."""
    link = setup_link(Settings(public_url=public_url), b"k" * 32)
    stream = io.StringIO()
    configure_logging(log_format, "INFO", stream=stream)
    try:
        logging.getLogger("quantumreview.app").warning("no GitHub App configured: open %s to create one", link)
    finally:
        configure_logging("text", "INFO")
    line = stream.getvalue()
    assert "?token=" in link and f"open {link} to create" in (json.loads(line)["message"] if log_format == "json"
                                                             else line)


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


# --- the access log (quantumreview.logs.AccessLog, what `serve` runs aiohttp with) --------------------------------

SECRET_QUERY = {"code": "c0de-4f1e2d", "state": "st4te-9a8b7c", "token": "t0ken-5d6e7f"}


async def access_lines(aiohttp_client: Any, log_format: str, path: str, headers: dict[str, str]) -> list[str]:
    """The lines logged for one GET of `path` on an app served with AccessLog, at DEBUG."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/setup/callback", page)
    stream = io.StringIO()
    configure_logging(log_format, "DEBUG", stream=stream)
    try:
        server = TestServer(app)
        await server.start_server(access_log_class=AccessLog)  # as `serve` runs it
        client = await aiohttp_client(server)
        response = await client.get(path, headers=headers)
        assert response.status == 200, await response.text()
        await client.close()
    finally:
        configure_logging("text", "INFO")
    return [line for line in stream.getvalue().splitlines() if "aiohttp.access" in line]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_access_log_names_the_query_parameters_but_never_shows_their_values(aiohttp_client: Any,
                                                                                  log_format: str) -> None:
    """aiohttp's own access log wrote the request line whole: the manifest code (exchanged for the App's private
    key), a login's state, the setup token, whatever a Referer carried."""
    referer = "https://qr.example/auth/callback?code=ref-c0de&state=ref-st4te#frag"
    [line] = await access_lines(aiohttp_client, log_format, "/setup/callback?" + urlencode(SECRET_QUERY),
                                {"Referer": referer, "User-Agent": "probe/1.0"})
    for value in (*SECRET_QUERY.values(), "ref-c0de", "ref-st4te", "frag"):
        assert value not in line
    message = json.loads(line)["message"] if log_format == "json" else line
    assert ('"GET /setup/callback?code=<redacted>&state=<redacted>&token=<redacted> HTTP/1.1" 200 '
            in message)
    assert message.endswith('"https://qr.example/auth/callback" "probe/1.0"')
    assert re.search(r" 200 \d+ \d+\.\dms ", message)
    if log_format == "json":
        entry = json.loads(line)
        assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/setup/callback", 200)
        assert isinstance(entry["duration_ms"], float)


async def test_access_log_caps_a_long_user_agent_and_drops_a_referer_that_is_no_url(aiohttp_client: Any) -> None:
    [line] = await access_lines(aiohttp_client, "text", "/setup/callback",
                                {"Referer": "not a url?code=x1y2z3", "User-Agent": "A" * 8_000})
    assert '"GET /setup/callback HTTP/1.1" 200' in line and '"-"' in line and "x1y2z3" not in line
    assert "A" * MAX_HEADER_SHOWN in line and "A" * (MAX_HEADER_SHOWN + 1) not in line


def test_access_log_is_off_below_debug_and_on_at_debug() -> None:
    """configure_logging keeps aiohttp.access quiet but at DEBUG; AccessLog.enabled lets aiohttp skip the work."""
    access = AccessLog(logging.getLogger("aiohttp.access"), "")
    try:
        configure_logging("text", "INFO", stream=io.StringIO())
        assert not access.enabled
        configure_logging("text", "DEBUG", stream=io.StringIO())
        assert access.enabled
    finally:
        configure_logging("text", "INFO")


def test_json_fields_of_an_access_line_are_scrubbed_too() -> None:
    """A token put in the path reached the JSON line's own path field, past the message's scrubbing."""
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    try:
        logging.getLogger("aiohttp.access").info("GET /x/<redacted>", extra={"path": "/x/ghs_abcdefghijklmnopqrstuv"})
    finally:
        configure_logging("text", "INFO")
    assert json.loads(stream.getvalue())["path"] == "/x/<redacted>"


async def test_debug_logging_leaves_out_the_databases_statement_arguments(tmp_path: Any) -> None:
    from storage.db import Database

    stream = io.StringIO()
    configure_logging("text", "DEBUG", stream=stream)
    try:
        db = await Database.open(tmp_path / "q.db")
        try:
            await db.execute("INSERT INTO jobs (handler, ordering_key, run_after, created_at, payload) "
                             "VALUES ('m:f', 'k', 0, 0, ?)", ('{"data": "payload-8f3a"}',))
        finally:
            await db.close()
        logging.getLogger("quantumreview.test").debug("our own debug line")
    finally:
        configure_logging("text", "INFO")
    output = stream.getvalue()
    assert "our own debug line" in output  # DEBUG is on...
    assert "payload-8f3a" not in output  # ...but not for aiosqlite's echo of each call's arguments
