"""POST /webhooks/github: signature, headers, body limits, storage before the reply, duplicates."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gidgethub import routing, sansio

from quantumreview import keys, webhook
from quantumreview.app import create_app
from quantumreview.context import Context
from quantumreview.credentials import AppCredentials
from quantumreview.intake import storage_failed
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from quantumreview.testing.signing import sign, signed_delivery
from quantumreview.webhook import MAX_BODY_BYTES, PATH, signature_matches
from storage.db import DatabaseBusy
from tests.conftest import PREVIOUS_SECRET, WEBHOOK_SECRET, SettingsFactory

Client = TestClient[Any, Any]
FIXTURE = Path(__file__).parent / "fixtures" / "webhooks" / "issues.opened.json"
ISSUE = {"action": "opened", "issue": {"number": 7}, "repository": {"full_name": "octo/repo"},
         "installation": {"id": 42}}


@pytest.fixture
def started() -> asyncio.Event:
    """Set by the blocking handler once it runs."""
    return asyncio.Event()


@pytest.fixture
def router(started: asyncio.Event) -> routing.Router:
    """Two handlers on issues.opened (one blocks forever, as a slow GitHub would), one on pull_request."""
    router = routing.Router()

    @router.register("issues", action="opened")
    async def build_checklist(event: sansio.Event, ctx: Context) -> None:
        started.set()
        await asyncio.Event().wait()

    @router.register("issues", action="opened")
    async def notify_managers(event: sansio.Event, ctx: Context) -> None:
        pass

    @router.register("pull_request")
    async def build_manifest(event: sansio.Event, ctx: Context) -> None:
        pass

    return router


async def post(client: Client, event: str, payload: Any, *, secret: str = WEBHOOK_SECRET,
               delivery_id: str | None = None, **overrides: str) -> tuple[int, dict[str, Any], str]:
    headers, body = signed_delivery(event, payload, secret, delivery_id=delivery_id)
    headers.update(overrides)
    response = await client.post(PATH, data=body, headers=headers)
    return response.status, await response.json(), headers["X-GitHub-Delivery"]


async def stored(client: Client) -> tuple[int, int]:
    db = client.app[keys.db]
    return await db.fetchvalue("SELECT count(*) FROM deliveries"), await db.fetchvalue("SELECT count(*) FROM jobs")


def test_signature_matches_githubs_test_vector() -> None:
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_matches(b"Hello, World!", expected, ["It's a Secret to Everybody"])
    assert not signature_matches(b"Hello, World!", expected, ["another secret entirely"])


async def test_valid_delivery_is_stored_with_one_job_per_matching_handler(client: Client) -> None:
    status, body, delivery_id = await post(client, "issues", ISSUE)
    assert (status, body) == (202, {"delivery_id": delivery_id, "jobs": 2})
    row = await client.app[keys.db].fetchone("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    assert (row["event"], row["action"], row["installation_id"], row["repository"]) == (
        "issues", "opened", 42, "octo/repo")
    jobs = await client.app[keys.db].fetchall("SELECT handler, ordering_key, installation_id FROM jobs ORDER BY id")
    assert [j["handler"].rsplit(".", 1)[-1] for j in jobs] == ["build_checklist", "notify_managers"]
    assert {(j["ordering_key"], j["installation_id"]) for j in jobs} == {("octo/repo#7", 42)}


async def test_ping_is_stored_and_answered_200_without_jobs(client: Client) -> None:
    status, body, _ = await post(client, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert status == 200 and body["jobs"] == 0
    assert await stored(client) == (1, 0)


async def test_redelivery_is_not_processed_twice(client: Client) -> None:
    first, _, delivery_id = await post(client, "issues", ISSUE)
    again, body, _ = await post(client, "issues", ISSUE, delivery_id=delivery_id)
    assert (first, again) == (202, 200)
    assert body == {"delivery_id": delivery_id, "duplicate": True}
    assert await stored(client) == (1, 2)


async def test_concurrent_copies_of_one_delivery_store_it_once(client: Client) -> None:
    replies = await asyncio.gather(*(post(client, "issues", ISSUE, delivery_id="same-guid") for _ in range(5)))
    assert sorted(status for status, _, _ in replies) == [200, 200, 200, 200, 202]
    assert await stored(client) == (1, 2)


@pytest.mark.parametrize(("event", "payload"), [("foo_bar", {"x": 1}), ("issues", {"action": "future_action"})])
async def test_unknown_event_or_action_is_accepted_with_no_jobs(client: Client, event: str, payload: Any) -> None:
    status, body, _ = await post(client, event, payload)
    assert (status, body["jobs"]) == (202, 0)
    assert await stored(client) == (1, 0)


async def test_reply_does_not_wait_for_a_hanging_handler(client: Client, started: asyncio.Event) -> None:
    await post(client, "issues", ISSUE)
    await asyncio.wait_for(started.wait(), 2)
    began = time.monotonic()
    status, _, _ = await post(client, "issues", {**ISSUE, "issue": {"number": 8}})
    assert status == 202 and time.monotonic() - began < 1.0


async def test_wrong_signature_is_401_and_logged_without_payload(client: Client,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    secret_text = {"action": "opened", "issue": {"number": 1, "body": "TOP-SECRET-BODY-TEXT"}}
    status, body, delivery_id = await post(client, "issues", secret_text, secret="a-wrong-secret-of-some-length")
    assert (status, body["error"]["code"]) == (401, "bad_signature")
    assert await stored(client) == (0, 0)
    assert delivery_id in caplog.text and "bad_signature" in caplog.text
    assert "TOP-SECRET-BODY-TEXT" not in caplog.text and WEBHOOK_SECRET not in caplog.text


async def test_missing_signature_is_401(client: Client) -> None:
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    del headers["X-Hub-Signature-256"]
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 401 and await stored(client) == (0, 0)


async def test_sha1_only_signature_is_refused(client: Client) -> None:
    import hashlib
    import hmac

    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 401


MALFORMED: dict[str, Callable[[str], str]] = {
    "63 hex": lambda good: good[:-1],
    "non-hex": lambda good: "sha256=" + "z" * 64,
    "upper prefix": lambda good: "SHA256=" + good[7:],
    "upper hex": lambda good: "sha256=" + good[7:].upper(),
    "empty": lambda good: "",
    "non-ascii": lambda good: "sha256=é" + good[8:],
    "8 KB": lambda good: good + "a" * 8000,
    "10 KB": lambda good: good + "a" * 10_000,  # past aiohttp's default 8 KiB header field (the app allows 64)
    "60 KB": lambda good: "sha256=" + "f" * 60_000,
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_signature_is_401_and_server_keeps_answering(client: Client, case: str) -> None:
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    headers["X-Hub-Signature-256"] = MALFORMED[case](headers["X-Hub-Signature-256"])
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 401
    status, _, _ = await post(client, "issues", ISSUE)
    assert status == 202


async def test_two_signature_headers_are_refused_even_if_one_is_good(client: Client) -> None:
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    good = headers.pop("X-Hub-Signature-256")
    pairs = [*headers.items(), ("X-Hub-Signature-256", "sha256=" + "0" * 64), ("X-Hub-Signature-256", good)]
    response = await client.post(PATH, data=body, headers=pairs)
    assert response.status == 401


@pytest.mark.parametrize("change", ["flip", "reformat", "reorder", "escape"])
async def test_body_changed_after_signing_is_401(client: Client, change: str) -> None:
    payload = {"action": "opened", "title": "café", "issue": {"number": 1}}
    headers, body = signed_delivery("issues", payload, WEBHOOK_SECRET)
    altered = {
        "flip": body[:-2] + bytes([body[-2] ^ 1]) + body[-1:],
        "reformat": json.dumps(payload, ensure_ascii=False, indent=1).encode(),
        "reorder": json.dumps(dict(reversed(list(payload.items()))), separators=(",", ":"),
                              ensure_ascii=False).encode(),
        "escape": body.replace("é".encode(), b"\\u00e9"),
    }[change]
    assert altered != body
    response = await client.post(PATH, data=altered, headers=headers)
    assert response.status == 401


async def test_signature_covers_raw_bytes_with_utf8_and_escapes(client: Client) -> None:
    body = '{"action":"opened","title":"caf\u00e9 \\u00e9 \U0001f600","issue":{"number":3}}'.encode()
    status, _, delivery_id = await post(client, "issues", body)
    assert status == 202
    row = await client.app[keys.db].fetchone("SELECT body FROM deliveries WHERE id = ?", (delivery_id,))
    assert bytes(row["body"]) == body


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
@pytest.mark.parametrize("value", [None, "", "x" * 201, "bad\nvalue"])
async def test_missing_empty_or_oversized_event_headers_are_400(client: Client, header: str,
                                                                value: str | None) -> None:
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    if value is None:
        del headers[header]
    else:
        headers[header] = value.replace("\n", " ")
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_headers"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
async def test_non_json_content_type_is_415(client: Client, content_type: str | None) -> None:
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)
    del headers["Content-Type"]
    if content_type:
        headers["Content-Type"] = content_type
    response = await client.post(PATH, data=body, headers=headers, skip_auto_headers=["Content-Type"])
    assert response.status == 415 and await stored(client) == (0, 0)


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe{}", b"[]", b"null", b"", b'"text"', b"[" * 100_000,
                                  b'{"action": ["unhashable"]}', b'{"action": "\\ud800"}', b'{"a": NaN}',
                                  b'{"repository": {"full_name": "\\udfff"}}'])
async def test_signed_body_that_is_not_a_json_object_is_400(client: Client, body: bytes) -> None:
    headers, signed = signed_delivery("issues", body, WEBHOOK_SECRET)
    response = await client.post(PATH, data=signed, headers=headers)
    assert response.status == 400
    assert await stored(client) == (0, 0)


async def test_two_mib_payload_is_accepted(client: Client) -> None:
    payload = {**ISSUE, "pull_request": {"number": 1, "body": "x" * (2 * 1024 * 1024)}}
    status, _, _ = await post(client, "pull_request", payload)
    assert status == 202


async def test_a_body_that_arrives_in_pieces_is_read_whole(client: Client) -> None:
    """Most bodies arrive with their headers and are taken at once; a slow sender's is read as it comes."""
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET)

    async def pieces() -> Any:
        for start in range(0, len(body), 16):
            yield body[start:start + 16]
            await asyncio.sleep(0.01)

    response = await client.post(PATH, data=pieces(), headers=headers)
    assert response.status == 202
    stored_body = await client.app[keys.db].fetchvalue("SELECT body FROM deliveries WHERE id = ?",
                                                       (headers["X-GitHub-Delivery"],))
    assert bytes(stored_body) == body


async def test_body_over_the_cap_is_413(client: Client) -> None:
    body = b"{" + b" " * MAX_BODY_BYTES + b"}"
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "big", "Content-Type": "application/json",
               "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET)}
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 413 and await stored(client) == (0, 0)


async def test_chunked_body_over_the_cap_is_413(client: Client) -> None:
    async def chunks() -> Any:
        for _ in range(27):
            yield b" " * (1024 * 1024)

    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "chunked", "Content-Type": "application/json",
               "X-Hub-Signature-256": "sha256=" + "0" * 64}
    response = await client.post(PATH, data=chunks(), headers=headers)
    assert response.status == 413


async def test_gzip_bomb_is_413(client: Client) -> None:
    bomb = gzip.compress(b" " * (MAX_BODY_BYTES + 1024 * 1024))
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "bomb", "Content-Type": "application/json",
               "Content-Encoding": "gzip", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    response = await client.post(PATH, data=bomb, headers=headers)
    assert response.status == 413


async def test_get_on_the_webhook_path_is_405_json(client: Client) -> None:
    response = await client.get(PATH)
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_previous_secret_is_accepted_during_rotation(make_settings: SettingsFactory, aiohttp_client: Any,
                                                           router: routing.Router) -> None:
    app = create_app(make_settings(webhook_secret_previous=PREVIOUS_SECRET),
                     registry=HandlerRegistry.from_routers([router]))
    client = await aiohttp_client(app)
    assert (await post(client, "issues", ISSUE, secret=PREVIOUS_SECRET))[0] == 202
    assert (await post(client, "issues", ISSUE, secret=WEBHOOK_SECRET))[0] == 202


async def test_new_secret_applies_without_restart(client: Client, rsa_private_key: str) -> None:
    new_secret = "rotated-secret-abcdefghijklmnop"
    client.app[keys.credentials].replace(AppCredentials(1, rsa_private_key, new_secret))
    assert (await post(client, "issues", ISSUE, secret=new_secret))[0] == 202
    assert (await post(client, "issues", ISSUE, secret=WEBHOOK_SECRET))[0] == 401


async def test_setup_mode_answers_503_setup_required(make_settings: SettingsFactory, aiohttp_client: Any) -> None:
    app = create_app(make_settings(app_id=None, private_key=None, webhook_secret=None),
                     registry=HandlerRegistry.from_routers([]))
    client = await aiohttp_client(app)
    status, body, _ = await post(client, "issues", ISSUE)
    assert (status, body["error"]["code"]) == (503, "setup_required")


async def test_locked_database_gives_503_within_9_seconds(client: Client, settings: Settings) -> None:
    blocker = sqlite3.connect(settings.database_path, isolation_level=None, check_same_thread=False)
    # Why: in a thread, so the app's own short transactions can finish while the blocker waits for the lock.
    await asyncio.to_thread(blocker.execute, "BEGIN IMMEDIATE")
    try:
        began = time.monotonic()
        status, body, _ = await post(client, "issues", ISSUE)
        elapsed = time.monotonic() - began
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert (status, body["error"]["code"]) == (503, "database_unavailable")
    assert elapsed < 9.0
    assert await stored(client) == (0, 0)
    assert (await post(client, "issues", ISSUE))[0] == 202


async def test_real_payload_fixture_is_accepted(client: Client) -> None:
    raw = FIXTURE.read_bytes()
    status, body, delivery_id = await post(client, "issues", raw)
    assert status == 202 and body["jobs"] == 2
    row = await client.app[keys.db].fetchone("SELECT repository FROM deliveries WHERE id = ?", (delivery_id,))
    assert row["repository"] == "Codertocat/Hello-World"




async def test_an_unexpected_failure_while_storing_is_a_503_and_the_next_delivery_is_fine(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from quantumreview.delivery_fields import FieldReader

    real = FieldReader.prepare
    calls: list[int] = []

    def broken_once(self: FieldReader, conn: Any, arrival: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug, not the sender's fault")
        return real(self, conn, arrival)

    monkeypatch.setattr(FieldReader, "prepare", broken_once)
    with caplog.at_level("ERROR", logger="quantumreview.webhook"):
        status, body, delivery = await post(client, "issues", ISSUE)
    assert status == 503 and body["error"]["code"] == "database_unavailable"
    assert f"delivery={delivery} not stored: RuntimeError" in caplog.text and "a bug" not in caplog.text
    assert await stored(client) == (0, 0)

    status, _, _ = await post(client, "issues", ISSUE)
    assert status == 202 and (await stored(client))[0] == 1


async def test_a_full_disk_answers_503_keeps_every_acknowledged_row_and_recovers(
        client: TestClient[Any, Any], settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """DB-09, with SQLite's real SQLITE_FULL: the database may not grow past two more pages."""
    caplog.set_level(logging.WARNING)
    writer = client.app[keys.db]._writer
    (pages,) = await (await writer.execute("PRAGMA page_count")).fetchone()
    await writer.execute(f"PRAGMA max_page_count = {pages + 2}")
    statuses: dict[str, int] = {}
    for n in range(40):
        payload = {"action": "opened", "issue": {"number": n, "body": "x" * 3000},
                   "repository": {"full_name": "octo/repo"}, "installation": {"id": 42}}
        headers, body = signed_delivery("issues", payload, WEBHOOK_SECRET, delivery_id=f"full-{n}")
        response = await client.post(PATH, data=body, headers=headers)
        statuses[f"full-{n}"] = response.status
        if response.status == 503:
            assert (await response.json())["error"]["code"] == "database_unavailable"
    assert 503 in statuses.values() and 202 in statuses.values()
    health = await client.get("/health")  # the operator's health check sees it, not only GitHub
    assert health.status == 503
    assert {key: value for key, value in (await health.json()).items() if key.startswith("db")} == {
        "db": "not writable", "db_error": "OperationalError: database or disk is full"}
    await writer.execute("PRAGMA max_page_count = 1073741823")
    headers, body = signed_delivery("issues", {"action": "opened"}, WEBHOOK_SECRET, delivery_id="after")
    assert (await client.post(PATH, data=body, headers=headers)).status == 202
    assert (await client.get("/health")).status == 200
    conn = sqlite3.connect(settings.database_path)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM deliveries")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert stored == {d for d, status in statuses.items() if status == 202} | {"after"}
    assert "Traceback" not in caplog.text


def large_issue(n: int) -> dict[str, Any]:
    return {**ISSUE, "issue": {"number": n, "body": "x" * (1024 * 1024 + 10)}}


async def test_large_deliveries_are_stored_one_at_a_time_small_ones_alongside(client: Client) -> None:
    """WH-15: a body over 1 MiB costs several copies of itself while stored; two at once never."""
    intake = client.app[keys.intake]
    submit = intake.submit
    in_flight: list[int] = []
    most = {"large": 0, "small": 0}

    async def counting(arrival: Any) -> tuple[bool, int]:
        kind = "large" if len(arrival.body) > webhook.LARGE_BODY_BYTES else "small"
        in_flight.append(1 if kind == "large" else 0)
        most[kind] = max(most[kind], in_flight.count(1) if kind == "large" else len(in_flight))
        try:
            await asyncio.sleep(0.05)  # long enough for the others to arrive meanwhile
            return await submit(arrival)
        finally:
            in_flight.remove(1 if kind == "large" else 0)

    intake.submit = counting  # type: ignore[method-assign]
    sent = [post(client, "issues", large_issue(n)) for n in range(4)]
    sent += [post(client, "issues", {**ISSUE, "issue": {"number": 100 + n}}) for n in range(4)]
    results = await asyncio.gather(*sent)
    assert [status for status, _, _ in results] == [202] * 8
    assert most["large"] == 1
    assert most["small"] >= 4  # the small ones did not queue behind the large ones
    assert (await stored(client))[0] == 8


async def test_a_large_delivery_that_cannot_get_its_turn_in_time_is_503_and_not_stored(client: Client) -> None:
    receiver = next(route.handler.__self__ for route in client.app.router.routes()  # type: ignore[attr-defined]
                    if route.method == "POST" and route.resource is not None
                    and route.resource.canonical == PATH)
    receiver._large_body_wait = 0.1
    await receiver._large.acquire()  # another large delivery is being stored
    try:
        status, body, _ = await post(client, "issues", large_issue(1))
    finally:
        receiver._large.release()
    assert (status, body["error"]["code"]) == (503, "database_unavailable")
    assert await stored(client) == (0, 0)
    status, _, _ = await post(client, "issues", large_issue(2))
    assert status == 202


def receiver_of(client: Client) -> Any:
    return next(route.handler.__self__ for route in client.app.router.routes()  # type: ignore[attr-defined]
                if route.method == "POST" and route.resource is not None and route.resource.canonical == PATH)


async def send_raw(client: Client, head: bytes, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and send a request's head and the first part of its body, nothing more."""
    assert client.server.host is not None and client.server.port is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + body)
    await writer.drain()
    return reader, writer


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP response's status line and body (the connection may stay open)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return lines[0], await asyncio.wait_for(reader.readexactly(length), 5.0)


def raw_head(body_length: int, delivery_id: str, *, signature: str = "sha256=" + "0" * 64) -> bytes:
    return (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: issues\r\n"
            f"X-GitHub-Delivery: {delivery_id}\r\nX-Hub-Signature-256: {signature}\r\n"
            f"Content-Length: {body_length}\r\n\r\n").encode()


async def test_a_body_still_arriving_after_the_read_timeout_is_408_and_others_are_answered_meanwhile(
        client: Client) -> None:
    """WH-17: a sender trickling its body (slowloris) is not waited for past the read timeout; others go on."""
    receiver_of(client)._body_read_timeout = 0.3
    headers, body = signed_delivery("issues", ISSUE, WEBHOOK_SECRET, delivery_id="slow")
    reader, writer = await send_raw(client, raw_head(len(body), "slow", signature=headers["X-Hub-Signature-256"]),
                                    body[:100])
    try:
        began = time.monotonic()
        status, _, _ = await post(client, "issues", ISSUE)
        assert status == 202 and time.monotonic() - began < 1.0
        status_line, answer = await read_answer(reader)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408 ") and json.loads(answer)["error"]["code"] == "body_timeout"
    assert await stored(client) == (1, 2)  # the good delivery only


async def test_bodies_that_may_be_large_are_read_two_at_a_time(client: Client) -> None:
    """An unsigned sender could make the server hold any number of 25 MiB bodies at once; a third large one waits
    in its socket and gets 503 if no turn comes, while small deliveries are answered as usual."""
    receiver = receiver_of(client)
    receiver._large_body_wait = 0.2
    for _ in range(webhook.LARGE_READS):  # two large bodies are being read
        await receiver._large_reads.acquire()
    try:
        big = webhook.LARGE_BODY_BYTES + 1
        reader, writer = await send_raw(client, raw_head(big, "third"), b"{")
        try:
            status_line, answer = await read_answer(reader)
        finally:
            writer.close()
        assert status_line.startswith(b"HTTP/1.1 503 ") and json.loads(answer)["error"]["code"] == "busy"
        status, _, _ = await post(client, "issues", ISSUE)  # a small one does not queue behind them
        assert status == 202
        async def chunked() -> Any:  # no declared length counts as large too
            yield b"{}"
        response = await client.post(PATH, data=chunked(), headers={
            "X-GitHub-Event": "issues", "X-GitHub-Delivery": "chunked", "Content-Type": "application/json",
            "X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert response.status == 503
    finally:
        for _ in range(webhook.LARGE_READS):
            receiver._large_reads.release()
    assert await stored(client) == (1, 2)
    status, _, _ = await post(client, "issues", {**ISSUE, "issue": {"number": 9, "body": "x" * big}})
    assert status == 202  # once a turn is free, a large delivery is read and stored


def test_only_a_failing_storage_marks_the_intake_not_writable() -> None:
    """A lock held by another process for a while is busy, not broken: /health must not turn red for it."""
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    io_error = sqlite3.OperationalError("disk I/O error")
    io_error.sqlite_errorcode = sqlite3.SQLITE_IOERR | (3 << 8)  # type: ignore[attr-defined]  # an extended code
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert [storage_failed(exc) for exc in (full, io_error, locked, DatabaseBusy("lock timeout"))] == [
        True, True, False, False]


@pytest.mark.parametrize(("target_type", "target_id", "noted"), [
    ("integration", "2", [2]),
    ("repository", "35129377", []),  # a repository webhook names its repository, not an App
    ("integration", "x1", []),
    ("integration", "1" * 21, []),
])
async def test_the_app_id_github_names_on_a_signed_delivery_is_told_to_the_github_client(
        client: Client, monkeypatch: pytest.MonkeyPatch, target_type: str, target_id: str, noted: list[int]) -> None:
    # What the client makes of it (a 404 under another App's credentials is not an uninstall) is in
    # tests/test_credentials_mismatch.py; here: every signed App delivery tells it, an unsigned one never does.
    github = client.app[keys.github]
    calls: list[object] = []
    monkeypatch.setattr(github, "note_webhook_app_id", calls.append)
    hook = {"X-GitHub-Hook-Installation-Target-Type": target_type, "X-GitHub-Hook-Installation-Target-ID": target_id}
    status, _, _ = await post(client, "issues", ISSUE, **hook)
    assert status == 202 and calls == noted
    status, _, _ = await post(client, "issues", ISSUE, secret="not-the-secret-at-all", **hook)
    assert status == 401 and calls == noted

