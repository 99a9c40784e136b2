"""The redelivery sweep on a busy App: successive sweeps share one pass over GitHub's 3-day delivery log, so a
failure deeper than one sweep reads is still redelivered, and a sweep cut short keeps its ground."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from quantumreview.errors import RateLimited
from quantumreview.github import GitHubApp
from quantumreview.redelivery import MAX_REDELIVERIES, sweep
from quantumreview.testing.fake import FakeGitHub
from storage import redeliveries as store
from storage.db import Database
from tests.conftest import WEBHOOK_SECRET
from tests.github_support import Clock, no_sleep

LIST = "/app/hook/deliveries"
POST_ATTEMPTS = "/app/hook/deliveries/{delivery_id}/attempts"


@pytest.fixture
async def fake(rsa_private_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key, clock=clock) as server:
        yield server
    assert server.contract_violations == []


@pytest.fixture
async def app_api(fake: FakeGitHub, rsa_private_key: str, clock: Clock) -> AsyncIterator[Any]:
    """The App's client on the test's clock; its retries do not wait."""
    async with aiohttp.ClientSession() as session:
        github = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url,
                           clock=clock, sleep=no_sleep, rand=lambda: 0.5, write_interval=0.0)
        yield github.as_app()


def pages_read(fake: FakeGitHub) -> Callable[[], float]:
    """A listing clock that counts the log's pages read: with `list_seconds=1.5` a sweep reads two."""
    return lambda: float(len(fake.calls("GET", LIST)))


def asked(fake: FakeGitHub) -> list[int]:
    """The attempt ids the sweeps asked GitHub to redeliver, in order."""
    return [int(call.path.split("/")[-2]) for call in fake.calls("POST", POST_ATTEMPTS)]


def busy_log(fake: FakeGitHub, now: float, *, ok: int, failed: int) -> dict[int, str]:
    """`ok` delivered attempts (the newest, 10 s apart), then `failed` older ones; the failed ones' id -> guid."""
    for i in range(ok):
        fake.add_hook_delivery(f"ok{i:04}", status="OK", delivered_at=now - 60 - 10 * i)
    missed = {}
    for i in range(failed):
        attempt = fake.add_hook_delivery(f"f{i:04}", status="failed to connect",
                                         delivered_at=now - 60 - 10 * (ok + i))
        missed[attempt["id"]] = attempt["guid"]
    return missed


async def busy_sweep(fake: FakeGitHub, app_api: Any, db: Database, clock: Clock, **options: Any) -> list[str]:
    """One sweep 10 minutes after the last, reading two pages; the GUIDs it asked for."""
    clock.advance(600)
    chosen = await sweep(app_api, db, now=clock(), list_seconds=1.5, clock=pages_read(fake), **options)
    return [r.guid for r in chosen]


async def test_successive_sweeps_reach_failures_deeper_than_one_sweep_reads(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock) -> None:
    """Every sweep read the same newest pages (its share of JOB_TIMEOUT), so failures an hour deep in a busy
    App's log were never redelivered. Each sweep now reads the new pages, then goes on where the last one
    stopped; once the pass reaches the window's end, the next sweep starts another."""
    missed = busy_log(fake, clock(), ok=500, failed=3)  # the failures are on the 6th page
    requested: list[str] = []
    for _ in range(5):
        requested += await busy_sweep(fake, app_api, handler_db, clock)
    assert sorted(requested) == sorted(missed.values())
    assert sorted(asked(fake)) == sorted(missed)
    assert await store.sweep_pass(handler_db) is None  # complete: the next sweep starts at the newest page
    assert await busy_sweep(fake, app_api, handler_db, clock) == []
    assert len(asked(fake)) == 3  # never twice


async def test_a_sweep_cut_short_while_asking_goes_on_from_the_page_it_was_on(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock) -> None:
    """JOB_TIMEOUT cancelling a sweep between two POSTs must lose nothing: the next sweep asks the rest of
    that page, and no GUID is asked twice."""
    missed = busy_log(fake, clock(), ok=300, failed=150)  # pages 4 and 5
    for _ in range(2):  # the pass reaches page 4
        assert await busy_sweep(fake, app_api, handler_db, clock) == []
    pauses = 0

    async def cancelled_after_30(_seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 30:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await busy_sweep(fake, app_api, handler_db, clock, interval=1.0, sleep=cancelled_after_30)
    assert len(asked(fake)) == 30
    fourth = await busy_sweep(fake, app_api, handler_db, clock)
    assert fourth[0] == "f0030"  # the page it was on, not the one after
    for _ in range(3):
        await busy_sweep(fake, app_api, handler_db, clock)
    assert sorted(asked(fake)) == sorted(missed)  # each once


async def test_a_redelivery_failing_again_is_given_up_though_a_sweep_reads_only_its_newest_attempts(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    """While a pass is under way a sweep reads only the pages new since the last one, so it saw the newest two of
    a GUID's failed redeliveries and asked again every sweep for 3 days; how many were asked is now kept."""
    busy_log(fake, clock() - 1000, ok=800, failed=0)
    fake.add_hook_delivery("g", status="failed to connect", delivered_at=clock() - 10, payload={"zen": "hi"})
    fake.send_webhooks_to("http://127.0.0.1:9/webhooks/github", WEBHOOK_SECRET)  # each redelivery fails
    with caplog.at_level(logging.WARNING, logger="quantumreview.redelivery"):
        for _ in range(MAX_REDELIVERIES + 2):
            await busy_sweep(fake, app_api, handler_db, clock)
            assert await store.sweep_pass(handler_db) is not None  # the pass is under way throughout
    assert len(asked(fake)) == MAX_REDELIVERIES
    assert len([r for r in caplog.records if "gave up on delivery g" in r.getMessage()]) == 1


async def test_a_page_of_the_pass_that_fails_is_read_again_next_sweep(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock) -> None:
    """A 502 on the pass's page must not lose the pass, nor keep the new pages' failures from being asked."""
    missed = busy_log(fake, clock(), ok=300, failed=1)
    await busy_sweep(fake, app_api, handler_db, clock)
    kept = await store.sweep_pass(handler_db)
    assert kept is not None
    fresh = fake.add_hook_delivery("fresh", status="failed to connect", delivered_at=clock())
    fake.fail_next("GET", LIST, kind="slow", delay=0.0)  # the newest page as it is
    fake.fail_next("GET", LIST, status=502, times=3)  # the pass's page, every try
    assert await busy_sweep(fake, app_api, handler_db, clock) == ["fresh"]
    after = await store.sweep_pass(handler_db)
    assert after is not None and after.cursor == kept.cursor  # the failed page is read again next time
    rest: list[str] = []
    for _ in range(3):
        rest += await busy_sweep(fake, app_api, handler_db, clock)
    assert rest == list(missed.values())
    assert sorted(asked(fake)) == sorted([fresh["id"], *missed])


async def test_a_pass_whose_cursor_github_refuses_starts_again_at_the_newest_page(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    """A cursor GitHub no longer takes (422) must not fail every sweep: the new pages are still acted on and the
    next sweep starts a new pass."""
    fake.add_hook_delivery("old", status="OK", delivered_at=clock() - 7200)  # below the pass's top
    fake.add_hook_delivery("new", status="failed to connect", delivered_at=clock() - 10)
    await store.save_pass(handler_db, store.SweepPass("not-a-cursor", int(clock()) - 3600), clock())
    with caplog.at_level(logging.WARNING, logger="quantumreview.redelivery"):
        chosen = await sweep(app_api, handler_db, now=clock())
    assert [r.guid for r in chosen] == ["new"]
    assert await store.sweep_pass(handler_db) is None
    assert any("refused a page of the delivery log" in r.getMessage() for r in caplog.records)


async def test_a_rate_limit_on_the_pass_keeps_its_ground_and_ends_the_sweep(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock) -> None:
    busy_log(fake, clock(), ok=300, failed=1)
    await busy_sweep(fake, app_api, handler_db, clock)
    kept = await store.sweep_pass(handler_db)
    fake.add_hook_delivery("fresh", status="failed to connect", delivered_at=clock())
    fake.fail_next("GET", LIST, kind="slow", delay=0.0)
    fake.rate_limit("GET", LIST, reset_in=600)
    with pytest.raises(RateLimited):
        await busy_sweep(fake, app_api, handler_db, clock)
    assert await store.sweep_pass(handler_db) == kept  # "fresh" is on the new pages, read again next time
    assert asked(fake) == []


async def test_the_pass_and_the_ask_counts_are_kept_apart_from_what_was_asked(handler_db: Database) -> None:
    await store.save_pass(handler_db, store.SweepPass("v1_abc", 1700000000), 1.0)
    await store.record_request(handler_db, "g", 7, 1.0, times=2)
    await store.record(handler_db, "g", 8, 2.0)  # a later give-up keeps the count
    await store.record(handler_db, "h", 9, 2.0)
    assert await store.sweep_pass(handler_db) == store.SweepPass("v1_abc", 1700000000)
    assert await store.times_asked(handler_db, ["g", "h", "x"]) == {"g": 2}
    assert await store.acted_on(handler_db, ["g", "h", "x"]) == {"g": 8, "h": 9}
    assert {row[0] for row in await handler_db.fetchall("SELECT guid FROM redeliveries")} == {"g", "h"}
    await store.save_pass(handler_db, None, 3.0)
    assert await store.sweep_pass(handler_db) is None
