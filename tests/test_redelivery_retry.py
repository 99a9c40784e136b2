"""A redelivery request that failed on the way (a 502, a dropped connection) is asked again at the next sweep, first,
not when a later pass over GitHub's log reaches its page again (hours later on a busy App); a bounded number of
times, across a restart, never for a delivery that arrived or that GitHub took meanwhile."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quantumreview.errors import RateLimited
from quantumreview.github import GitHubApp
from quantumreview.redelivery import sweep
from quantumreview.redelivery_log import WINDOW_SECONDS
from quantumreview.redelivery_retry import MAX_REQUEST_TRIES, sort_retries
from quantumreview.testing.fake import FakeGitHub
from storage import redeliveries as store
from storage.db import Database
from tests.github_support import Clock, no_sleep

LIST = "/app/hook/deliveries"
POST_ATTEMPTS = "/app/hook/deliveries/{delivery_id}/attempts"


@pytest.fixture
async def fake(rsa_private_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key, clock=clock) as server:
        yield server
    assert server.contract_violations == []


@pytest.fixture
def app_client(fake: FakeGitHub, rsa_private_key: str, clock: Clock) -> Callable[[aiohttp.ClientSession], Any]:
    """The App's client on the test's clock, over a session (a new one plays a restarted server)."""

    def make(session: aiohttp.ClientSession) -> Any:
        github = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake.api_url, web_url=fake.url,
                           clock=clock, sleep=no_sleep, rand=lambda: 0.5, write_interval=0.0)
        return github.as_app()

    return make


@pytest.fixture
async def app_api(app_client: Callable[[aiohttp.ClientSession], Any]) -> AsyncIterator[Any]:
    async with aiohttp.ClientSession() as session:
        yield app_client(session)


def asked(fake: FakeGitHub) -> list[int]:
    """The attempt ids the sweeps asked GitHub to redeliver, in order (whatever GitHub answered)."""
    return [int(call.path.split("/")[-2]) for call in fake.calls("POST", POST_ATTEMPTS)]


def busy_log(fake: FakeGitHub, now: float, page2: Sequence[str] = (), page3: Sequence[str] = ()) -> dict[str, int]:
    """150 delivered attempts (10 s apart), the `page2` failures, 100 delivered, the `page3` failures, 200 delivered:
    5 pages, which sweeps reading two pages each cover in four. The failures' attempt ids by GUID."""
    ids: dict[str, int] = {}
    for ok, failed in ((150, page2), (100, page3), (200, ())):
        for _ in range(ok):
            fake.add_hook_delivery(f"ok{len(fake.state.hook_deliveries):04}", status="OK",
                                   delivered_at=now - 60 - 10 * len(fake.state.hook_deliveries))
        for guid in failed:
            ids[guid] = fake.add_hook_delivery(guid, status="failed to connect",
                                               delivered_at=now - 60 - 10 * len(fake.state.hook_deliveries))["id"]
    return ids


async def busy_sweep(fake: FakeGitHub, app_api: Any, db: Database, clock: Clock) -> list[str]:
    """One sweep 10 minutes after the last, reading two pages of the log; the GUIDs it asked for."""
    clock.advance(600)
    pages_read = lambda: float(len(fake.calls("GET", LIST)))  # noqa: E731 - a clock counting the pages read
    chosen = await sweep(app_api, db, now=clock(), list_seconds=1.5, clock=pages_read)
    return [r.guid for r in chosen]


async def test_a_request_that_failed_is_asked_again_first_at_the_next_sweep(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock) -> None:
    """A 502 on the POST left the GUID to the next pass over the log: the pass had moved past its page, so on a
    busy App it was asked again hours later, or never within GitHub's 3 days. The next sweep now asks it first,
    then goes on with the pass; once taken (202) it is never asked again, though the next pass reads its page."""
    ids = busy_log(fake, clock(), ["lost", "fine"], ("deeper",))
    fake.fail_next("POST", POST_ATTEMPTS, status=502)
    assert await busy_sweep(fake, app_api, handler_db, clock) == ["fine"]
    assert await busy_sweep(fake, app_api, handler_db, clock) == ["lost", "deeper"]
    assert asked(fake) == [ids["lost"], ids["fine"], ids["lost"], ids["deeper"]]
    assert await store.retries(handler_db) == []
    for _ in range(4):  # the pass ends, and the next one reads every page again
        assert await busy_sweep(fake, app_api, handler_db, clock) == []
    assert len(asked(fake)) == 4


async def test_a_failed_request_is_asked_again_after_a_restart(
        fake: FakeGitHub, app_client: Callable[[aiohttp.ClientSession], Any], tmp_path: Path, clock: Clock) -> None:
    """The failed request is kept in the database: a server restarted between two sweeps asks it first too."""
    ids = busy_log(fake, clock(), ["lost"], ("deeper",))
    fake.fail_next("POST", POST_ATTEMPTS, kind="reset")
    path = tmp_path / "qr.db"
    for run in range(2):  # two server lives, each its own database connections and HTTP session
        db = await Database.open(path)
        try:
            async with aiohttp.ClientSession() as session:
                requested = await busy_sweep(fake, app_client(session), db, clock)
        finally:
            await db.close()
        assert requested == [[], ["lost", "deeper"]][run]
    assert asked(fake) == [ids["lost"], ids["lost"], ids["deeper"]]


async def test_a_request_failing_every_time_is_given_up_once_after_the_bound(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock, rsa_private_key: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A request GitHub fails every time is asked at MAX_REQUEST_TRIES sweeps, then given up with one line
    (no credentials in it) and never asked again, though the next pass reads its page."""
    ids = busy_log(fake, clock(), ["lost"])
    fake.fail_next("POST", POST_ATTEMPTS, status=502, times=MAX_REQUEST_TRIES)
    with caplog.at_level(logging.INFO, logger="quantumreview"):
        for _ in range(MAX_REQUEST_TRIES + 4):
            assert await busy_sweep(fake, app_api, handler_db, clock) == []
    assert asked(fake) == [ids["lost"]] * MAX_REQUEST_TRIES
    gave_up = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gave up on delivery lost")]
    assert len(gave_up) == 1 and f"{MAX_REQUEST_TRIES} redelivery requests failed" in gave_up[0]
    assert "502" in gave_up[0]
    text = caplog.text
    assert "eyJ" not in text and "Bearer" not in text and rsa_private_key.splitlines()[1] not in text
    assert await store.retries(handler_db) == []


async def test_a_rate_limit_on_a_retry_waits_and_costs_no_try(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock) -> None:
    """A 403 saying rate limit means wait: the sweep ends, the retry stays with its tries, the next sweep asks."""
    ids = busy_log(fake, clock(), ["lost"])
    fake.fail_next("POST", POST_ATTEMPTS, status=503)
    await busy_sweep(fake, app_api, handler_db, clock)
    fake.secondary_limit("POST", POST_ATTEMPTS, retry_after=0, times=3)  # every try of that sweep
    with pytest.raises(RateLimited):
        await busy_sweep(fake, app_api, handler_db, clock)
    assert [(r.guid, r.tries) for r in await store.retries(handler_db)] == [("lost", 1)]
    assert await busy_sweep(fake, app_api, handler_db, clock) == ["lost"]
    taken = [c for c in fake.calls("POST", POST_ATTEMPTS) if c.status == 202]
    assert [int(c.path.split("/")[-2]) for c in taken] == [ids["lost"]]


async def test_a_retry_is_not_asked_for_a_delivery_that_arrived_or_that_github_sent_again_meanwhile(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    """Meanwhile one delivery arrived (an operator redelivered it by hand), GitHub lists an OK attempt of another,
    and a third was resent (our POST timed out after GitHub took it) and failed again: the first two are not asked
    again, the third only as the failed redelivery GitHub lists, once."""
    ids = busy_log(fake, clock(), ["arrived", "listed-ok", "resent"])
    fake.fail_next("POST", POST_ATTEMPTS, status=502, times=3)
    assert await busy_sweep(fake, app_api, handler_db, clock) == []
    await handler_db.execute("INSERT INTO deliveries (id, event, received_at, body) VALUES (?, 'issues', ?, ?)",
                             ("arrived", clock(), b"{}"))
    fake.add_hook_delivery("listed-ok", status="OK", redelivery=True)
    again = fake.add_hook_delivery("resent", status="failed to connect", redelivery=True)
    with caplog.at_level(logging.WARNING, logger="quantumreview.redelivery"):
        assert await busy_sweep(fake, app_api, handler_db, clock) == ["resent"]
    assert asked(fake)[3:] == [again["id"]]
    assert await store.retries(handler_db) == []
    assert not [r for r in caplog.records if r.getMessage().startswith("gave up")]
    for _ in range(4):
        assert await busy_sweep(fake, app_api, handler_db, clock) == []
    assert asked(fake) == [ids["arrived"], ids["listed-ok"], ids["resent"], again["id"]]


async def test_a_retry_whose_guid_the_same_sweep_lists_again_is_asked_once(
        fake: FakeGitHub, app_api: Any, handler_db: Database, clock: Clock) -> None:
    """The newest pages are read again every sweep: a failed request listed there is both a retry and a missed
    delivery of that sweep, and is asked once."""
    newest = fake.add_hook_delivery("lost", status="failed to connect", delivered_at=clock() - 5)
    busy_log(fake, clock() - 10)
    fake.fail_next("POST", POST_ATTEMPTS, status=502)
    assert await busy_sweep(fake, app_api, handler_db, clock) == []
    assert await busy_sweep(fake, app_api, handler_db, clock) == ["lost"]
    assert asked(fake) == [newest["id"], newest["id"]]


def test_retries_are_sorted_into_due_no_longer_needed_and_gone_from_githubs_log() -> None:
    now = 1_800_000_000.0

    def retry(guid: str, delivered_at: float = now - 600) -> store.Retry:
        return store.Retry(guid, 10, delivered_at, 0, 1)

    pending = [retry("due"), retry("arrived"), retry("recorded"), retry("resent"), retry("listed-older"),
               retry("expired", now - WINDOW_SECONDS - 1), retry("due-late", now - WINDOW_SECONDS + 1)]
    result = sort_retries(pending, arrived={"arrived"}, acted_on={"recorded": 10, "due": 9},
                          newest={"resent": 11, "listed-older": 10}, now=now)
    assert [r.guid for r in result.due] == ["due", "listed-older", "due-late"]
    assert [r.guid for r in result.needless] == ["arrived", "recorded", "resent"]
    assert [r.guid for r in result.expired] == ["expired"]
