"""Missed deliveries: only failed, unknown GUIDs inside 3 days are redelivered, again only when a redelivery
failed (at most MAX_REDELIVERIES times), paced (WH-28, JOB-13)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from quantumreview import keys
from quantumreview.app import create_app
from quantumreview.errors import RateLimited
from quantumreview.redelivery import (
    MAX_PER_SWEEP,
    MAX_REDELIVERIES,
    WINDOW_SECONDS,
    Redelivery,
    posts_per_sweep,
    select_redeliveries,
    sweep,
)
from quantumreview.testing.fake import FakeGitHub
from storage.db import Database
from tests.conftest import WEBHOOK_SECRET


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def test_select_skips_ok_known_and_old_guids() -> None:
    now = 1_800_000_000.0
    deliveries = [
        {"id": 1, "guid": "failed-once", "status": "Invalid HTTP Response: 503", "status_code": 503,
         "delivered_at": iso(now - 60)},
        {"id": 2, "guid": "failed-then-ok", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 120)},
        {"id": 3, "guid": "failed-then-ok", "status": "OK", "status_code": 200, "delivered_at": iso(now - 100)},
        {"id": 4, "guid": "too-old", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - WINDOW_SECONDS - 60)},
        {"id": 5, "guid": "known-here", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 60)},
        {"id": 6, "guid": "failed-twice", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 300)},
        {"id": 7, "guid": "failed-twice", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 30)},
    ]
    chosen = select_redeliveries(deliveries, {"known-here"}, now=now)
    assert sorted(chosen, key=lambda r: r.guid) == [Redelivery("failed-once", 1), Redelivery("failed-twice", 7)]


def test_select_waits_for_the_redelivery_it_asked_for() -> None:
    # Why: a GUID we requested comes back only when GitHub lists a newer (failed) attempt than the one we asked for.
    now = 1_800_000_000.0
    first = {"id": 10, "guid": "g", "status": "failed to connect", "status_code": 0, "delivered_at": iso(now - 600)}
    assert select_redeliveries([first], set(), {"g": 10}, now=now) == []
    again = {"id": 11, "guid": "g", "status": "Invalid HTTP Response: 503", "status_code": 503,
             "delivered_at": iso(now - 60), "redelivery": True}
    assert select_redeliveries([again, first], set(), {"g": 10}, now=now) == [Redelivery("g", 11, redeliveries=1)]


async def test_sweep_redelivers_each_failed_guid_exactly_once(fake_github: FakeGitHub, github_app: Any,
                                                              handler_db: Database) -> None:
    now = time.time()
    for guid in ("a", "b", "c"):
        fake_github.add_hook_delivery(guid, status="failed to connect", delivered_at=now - 600)
    fake_github.add_hook_delivery("ok", status="OK", delivered_at=now - 600)
    fake_github.add_hook_delivery("old", status="failed to connect", delivered_at=now - WINDOW_SECONDS - 600)
    await handler_db.execute(
        "INSERT INTO deliveries (id, event, received_at, body) VALUES ('c', 'issues', 0, x'7b7d')"
    )
    first = await sweep(github_app.as_app(), handler_db, now=now)
    second = await sweep(github_app.as_app(), handler_db, now=now)
    assert sorted(r.guid for r in first) == ["a", "b"]
    assert second == []
    attempts = fake_github.calls("POST", "/app/hook/deliveries/{delivery_id}/attempts")
    assert len(attempts) == 2


@pytest.mark.parametrize("odd", [
    "not an object", None, [1],
    {"id": 9, "guid": "odd", "status": "?", "status_code": "abc", "delivered_at": "NOW"},  # int() raised
    {"id": 9, "guid": "odd", "status": "?", "status_code": [500], "delivered_at": "NOW"},
    {"id": 9, "guid": "odd", "status": "?", "status_code": "9" * 5000, "delivered_at": "NOW"},
    {"id": 9, "guid": "odd", "status": "?", "status_code": float("nan"), "delivered_at": "NOW"},
    {"id": 9, "guid": "\ud800", "status": "?", "status_code": 0, "delivered_at": "NOW"},  # UnicodeEncodeError
])
async def test_one_odd_entry_in_the_delivery_log_does_not_stop_the_sweep(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database, odd: Any) -> None:
    """Such an entry raised AttributeError, ValueError or TypeError, so every sweep failed for the 3 days it
    stays listed, and no missed delivery was asked for again."""
    now = time.time()
    missed = fake_github.add_hook_delivery("missed", status="failed to connect", delivered_at=now - 60)
    if isinstance(odd, dict):
        odd = {**odd, "delivered_at": iso(now - 30)}
    fake_github.fail_next("GET", "/app/hook/deliveries", status=200, body=[odd, missed])
    chosen = await sweep(github_app.as_app(), handler_db, now=now)
    assert [r.guid for r in chosen] == ["missed"]


def test_select_reads_a_status_code_given_as_digits_or_a_float() -> None:
    now = 1_800_000_000.0
    ok = [{"id": 1, "guid": "a", "status": "?", "status_code": "200", "delivered_at": iso(now - 60)},
          {"id": 2, "guid": "b", "status": "?", "status_code": 204.0, "delivered_at": iso(now - 60)},
          {"id": 3, "guid": "c", "status": "?", "status_code": True, "delivered_at": iso(now - 60)}]
    assert select_redeliveries(ok, set(), now=now) == [Redelivery("c", 3)]


async def test_sweep_pages_through_the_delivery_log(fake_github: FakeGitHub, github_app: Any,
                                                    handler_db: Database) -> None:
    now = time.time()
    for i in range(130):
        fake_github.add_hook_delivery(f"g{i}", status="failed to connect", delivered_at=now - 60 - i)
    chosen = await sweep(github_app.as_app(), handler_db, now=now)
    assert len(chosen) == 130
    assert len(fake_github.calls("GET", "/app/hook/deliveries")) == 2


async def test_app_start_recovers_deliveries_missed_while_down(fake_github: FakeGitHub, make_settings: Any,
                                                               aiohttp_server: Any, load_payload: Any) -> None:
    """WH-28: three deliveries failed while the app was down; at start the sweep brings each back once."""
    now = time.time()
    payload = load_payload("issues.opened")
    for guid in ("d1", "d2", "d3"):
        fake_github.add_hook_delivery(guid, status="failed to connect", event="issues", action="opened",
                                      delivered_at=now - 120, payload=payload)
    settings = make_settings(github_api_url=fake_github.api_url, github_url=fake_github.url)
    app = create_app(settings)  # the real handlers package: the sweep is handlers/redeliveries.py
    server = await aiohttp_server(app)
    fake_github.send_webhooks_to(str(server.make_url("/webhooks/github")), WEBHOOK_SECRET)
    stored: list[Any] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(stored) < 3:
        await asyncio.sleep(0.05)
        stored = await app[keys.db].fetchall("SELECT id FROM deliveries ORDER BY id")
    assert [row[0] for row in stored] == ["d1", "d2", "d3"]
    assert len(fake_github.calls("POST", "/app/hook/deliveries/{delivery_id}/attempts")) == 3


POST_ATTEMPTS = "/app/hook/deliveries/{delivery_id}/attempts"


async def test_a_delivery_log_too_long_to_read_within_the_job_timeout_still_gets_its_newest_redelivered(
        fake_github: FakeGitHub, make_settings: Any, aiohttp_server: Any) -> None:
    """Reading every page of a busy App's 3-day log outlasted JOB_TIMEOUT: each sweep was cancelled before its
    first POST, so nothing was ever redelivered. The listing now stops at its share of the timeout."""
    now = time.time()
    for i in range(500):  # 5 pages, newest first
        fake_github.add_hook_delivery(f"g{i:03}", status="failed to connect", delivered_at=now - 60 - i)
    fake_github.fail_next("GET", "/app/hook/deliveries", kind="slow", delay=0.9, times=20)  # 4.5 s in all
    settings = make_settings(github_api_url=fake_github.api_url, github_url=fake_github.url, job_timeout=2.0)
    app = create_app(settings)
    await aiohttp_server(app)
    attempts: list[Any] = []
    deadline = time.monotonic() + 15  # ends at the 100th POST; the margin is for a loaded machine
    while time.monotonic() < deadline and len(attempts) < 100:
        await asyncio.sleep(0.1)
        attempts = fake_github.calls("POST", "/app/hook/deliveries/{delivery_id}/attempts")
    assert len(attempts) >= 100
    assert "g000" in {row[0] for row in await app[keys.db].fetchall("SELECT guid FROM redeliveries")}


async def test_failed_post_leaves_the_guid_for_the_next_sweep(fake_github: FakeGitHub, github_app: Any,
                                                              handler_db: Database) -> None:
    """A 502 on the POST must not be recorded as requested: the next sweep asks again."""
    now = time.time()
    fake_github.add_hook_delivery("lost", status="failed to connect", delivered_at=now - 600)
    fake_github.add_hook_delivery("fine", status="failed to connect", delivered_at=now - 700)
    fake_github.fail_next("POST", POST_ATTEMPTS, status=502, times=1)
    first = await sweep(github_app.as_app(), handler_db, now=now)
    assert [r.guid for r in first] == ["fine"]  # the 502 did not stop the sweep either
    second = await sweep(github_app.as_app(), handler_db, now=now + 600)
    assert [r.guid for r in second] == ["lost"]
    assert len(fake_github.calls("POST", POST_ATTEMPTS)) == 3


async def test_redelivery_that_failed_again_is_retried_then_given_up(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Each failed redelivery (a newer failed attempt, still no stored delivery) is asked again, up to the bound."""
    now = time.time()
    fake_github.add_hook_delivery("g", status="failed to connect", delivered_at=now - 3600, payload={"zen": "hi"})
    # Port 9 refuses connections: each redelivery fails and GitHub lists a newer failed attempt for "g".
    fake_github.send_webhooks_to("http://127.0.0.1:9/webhooks/github", WEBHOOK_SECRET)
    for n in range(MAX_REDELIVERIES):
        assert [r.guid for r in await sweep(github_app.as_app(), handler_db, now=now + n)] == ["g"], n
    with caplog.at_level(logging.WARNING, logger="quantumreview.redelivery"):
        assert await sweep(github_app.as_app(), handler_db, now=now + 10) == []
        assert await sweep(github_app.as_app(), handler_db, now=now + 20) == []
    assert len(fake_github.calls("POST", POST_ATTEMPTS)) == MAX_REDELIVERIES
    gave_up = [r for r in caplog.records if "gave up on delivery g" in r.getMessage()]
    assert len(gave_up) == 1  # logged once, not on every sweep for 3 days


async def test_sweep_paces_its_posts(fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    """GitHub's secondary limits punish bursts of writes: one POST per interval, and at most `limit` a sweep."""
    now = time.time()
    for i in range(5):
        fake_github.add_hook_delivery(f"g{i}", status="failed to connect", delivered_at=now - 60 - i)
    slept: list[float] = []
    posts_seen: list[int] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        posts_seen.append(len(fake_github.calls("POST", POST_ATTEMPTS)))

    chosen = await sweep(github_app.as_app(), handler_db, now=now, interval=1.5, limit=4, sleep=sleep)
    assert len(chosen) == 4
    assert slept == [1.5, 1.5, 1.5]
    assert posts_seen == [1, 2, 3]  # a sleep between each two POSTs, none before the first
    rest = await sweep(github_app.as_app(), handler_db, now=now, interval=1.5, limit=4, sleep=sleep)
    assert [r.guid for r in rest] == ["g4"]


def test_posts_per_sweep_fits_half_the_job_timeout() -> None:
    # Why: a sweep slower than JOB_TIMEOUT would be cancelled and rerun; the rest waits for the next sweep.
    assert posts_per_sweep(1.0, 120.0) == 60
    assert posts_per_sweep(0.0, 120.0) == MAX_PER_SWEEP
    assert posts_per_sweep(60.0, 1.0) == 1


async def test_a_redelivery_github_refuses_for_good_is_given_up_and_a_transient_failure_is_asked_again(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """A 404 (the attempt is gone) or 422 (not redeliverable) was asked again every sweep for the 3 days GitHub
    lists the delivery; it is now recorded as given up, while a 5xx or a dropped connection is asked again."""
    now = time.time()
    for n, guid in enumerate(["gone", "refused", "busy", "dropped", "fine"]):  # newest first: asked in this order
        fake_github.add_hook_delivery(guid, status="failed to connect", delivered_at=now - 60 - n)
    fake_github.fail_next("POST", POST_ATTEMPTS, status=404)
    fake_github.fail_next("POST", POST_ATTEMPTS, status=422, body={"message": "Validation Failed"})
    fake_github.fail_next("POST", POST_ATTEMPTS, status=503)
    fake_github.fail_next("POST", POST_ATTEMPTS, kind="reset")
    with caplog.at_level(logging.WARNING, logger="quantumreview.redelivery"):
        first = await sweep(github_app.as_app(), handler_db, now=now)
    assert [r.guid for r in first] == ["fine"]
    gave_up = sorted(r.getMessage().split(":")[0] for r in caplog.records if "gave up" in r.getMessage())
    assert gave_up == ["gave up on delivery gone", "gave up on delivery refused"]
    second = await sweep(github_app.as_app(), handler_db, now=now + 600)
    assert [r.guid for r in second] == ["busy", "dropped"]
    third = await sweep(github_app.as_app(), handler_db, now=now + 1200)
    assert third == []
    asked = [call.path.split("/")[-2] for call in fake_github.calls("POST", POST_ATTEMPTS)]
    assert len(asked) == 7 and len(set(asked)) == 5  # the refused two were asked once each, never again


async def test_a_redelivery_github_refuses_this_app_is_given_up_and_the_sweep_goes_on(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """A 403 "Resource not accessible by integration" (the client's PermissionDenied, no rate-limit sign) on one
    POST failed the whole sweep, for the 3 days the delivery stays listed, so no missed delivery after it was
    asked for either. It is now given up like a 404 or 422: recorded, logged once, never asked again."""
    now = time.time()
    for n, guid in enumerate(["denied", "fine"]):  # newest first: asked in this order
        fake_github.add_hook_delivery(guid, status="failed to connect", delivered_at=now - 60 - n)
    fake_github.fail_next("POST", POST_ATTEMPTS, status=403,
                          body={"message": "Resource not accessible by integration"})
    with caplog.at_level(logging.WARNING, logger="quantumreview.redelivery"):
        first = await sweep(github_app.as_app(), handler_db, now=now)
        second = await sweep(github_app.as_app(), handler_db, now=now + 600)
    assert [r.guid for r in first] == ["fine"]
    assert second == []
    assert len(fake_github.calls("POST", POST_ATTEMPTS)) == 2  # the refused one was asked once
    gave_up = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gave up on delivery denied")]
    assert len(gave_up) == 1 and "403" in gave_up[0]


async def test_a_403_saying_rate_limit_ends_the_sweep_and_the_rest_is_asked_next_time(
        fake_github: FakeGitHub, github_app: Any, handler_db: Database) -> None:
    """A 403 is a rate limit when GitHub says so (secondary limit): not a refusal to give up on. The sweep ends
    (the runner retries it after the limit) and the next one asks what was left, nothing twice."""
    now = time.time()
    for n, guid in enumerate(["a", "b", "c"]):
        fake_github.add_hook_delivery(guid, status="failed to connect", delivered_at=now - 60 - n)
    fake_github.fail_next("POST", POST_ATTEMPTS, kind="slow", delay=0.0)  # "a" goes through
    fake_github.secondary_limit("POST", POST_ATTEMPTS, retry_after=0, times=3)  # "b": every try limited
    with pytest.raises(RateLimited):
        await sweep(github_app.as_app(), handler_db, now=now)
    rest = await sweep(github_app.as_app(), handler_db, now=now + 600)
    assert [r.guid for r in rest] == ["b", "c"]
    taken = [c for c in fake_github.calls("POST", POST_ATTEMPTS) if c.status == 202]
    assert len(taken) == 3
