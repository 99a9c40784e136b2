"""JobRunner: retries, timeouts, outcomes, per-key ordering, concurrency, wake-ups, resume and drain."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.errors import InstallationGone, PermanentError, RateLimited, RetryLater
from quantumreview.github import GitHubApp
from quantumreview.jobs import MAX_RETRY_WAIT, WAKE_INTERVAL, Backoff, JobRunner, describe_error
from quantumreview.logs import redact
from quantumreview.plugins import HandlerRegistry, handler_name
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from storage import deliveries as store_deliveries
from storage import installations
from storage import jobs as store
from storage.db import Database
from storage.deliveries import DeliveryRecord, insert_deliveries_now
from tests.github_support import wait_until

Handler = Callable[[sansio.Event, Context], Awaitable[None]]
MINT = "/app/installations/{installation_id}/access_tokens"


@asynccontextmanager
async def running(db: Database, router: routing.Router, settings: Settings, **options: Any) -> AsyncIterator[JobRunner]:
    """A started runner with fast polling and millisecond backoff; stopped on exit."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("backoff", Backoff(base=0.02, cap=0.1))
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), settings, **options)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def add_delivery(db: Database, delivery_id: str, handlers: list[Handler], *, event: str = "issues",
                       data: dict[str, Any] | None = None, key: str | None = None,
                       installation_id: int | None = None) -> None:
    """Store a delivery and one queued job per handler, as the intake would."""
    now = time.time()
    body = json.dumps(data or {"action": "opened"}).encode()
    record = DeliveryRecord(delivery_id, event, None, installation_id, None, now, body)
    jobs = [store.NewJob(handler_name(h), key or f"delivery:{delivery_id}", now, now, delivery_id=delivery_id,
                         installation_id=installation_id) for h in handlers]
    def insert(conn: sqlite3.Connection) -> None:
        insert_deliveries_now(conn, [record])
        store.insert_jobs_now(conn, jobs)

    await db.run(insert)


async def statuses(db: Database) -> dict[str, str]:
    return {j.delivery_id or str(j.id): j.status for j in await store.list_jobs(db)}


async def settled(db: Database) -> bool:
    counts = await store.status_counts(db)
    return counts["queued"] == 0 and counts["running"] == 0


async def test_failing_job_is_retried_then_dead_while_a_sibling_completes(db: Database, make_settings: Any) -> None:
    router = routing.Router()
    times: list[float] = []

    @router.register("issues")
    async def explode(event: sansio.Event, ctx: Context) -> None:
        times.append(time.monotonic())
        raise ValueError("boom")

    @router.register("issues")
    async def succeed(event: sansio.Event, ctx: Context) -> None:
        pass

    await add_delivery(db, "d1", [explode], key="k1")
    await add_delivery(db, "d2", [succeed], key="k2")
    async with running(db, router, make_settings(job_max_attempts=3)):
        await wait_until(lambda: settled(db))
    jobs = {j.delivery_id: j for j in await store.list_jobs(db)}
    assert (jobs["d1"].status, jobs["d1"].attempts, jobs["d1"].last_error) == ("dead", 3, "ValueError: boom")
    assert jobs["d2"].status == "done"
    # Why: backoff is at least base·0.5 = 10 ms; a hot loop would retry within a millisecond.
    assert len(times) == 3
    assert all(later - earlier >= 0.009 for earlier, later in itertools.pairwise(times))


async def test_hanging_job_times_out_and_is_retried(db: Database, make_settings: Any) -> None:
    router = routing.Router()
    calls: list[int] = []

    @router.register("issues")
    async def hang(event: sansio.Event, ctx: Context) -> None:
        calls.append(ctx.attempt)
        await asyncio.Event().wait()

    await add_delivery(db, "d1", [hang])
    async with running(db, router, make_settings(job_timeout=0.05, job_max_attempts=2)):
        await wait_until(lambda: settled(db))
    [job] = await store.list_jobs(db)
    assert (job.status, calls) == ("dead", [1, 2])
    assert job.last_error == "TimeoutError: the handler ran past JOB_TIMEOUT (0.05 s)"


async def test_permanent_error_fails_without_retry(db: Database, settings: Settings) -> None:
    router = routing.Router()
    calls: list[int] = []

    @router.register("issues")
    async def refuse(event: sansio.Event, ctx: Context) -> None:
        calls.append(1)
        raise PermanentError("cannot do that")

    await add_delivery(db, "d1", [refuse])
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts, len(calls)) == ("failed", 1, 1)


async def test_installation_gone_cancels_that_installations_queued_jobs(db: Database, settings: Settings) -> None:
    router = routing.Router()

    @router.register("issues")
    async def gone(event: sansio.Event, ctx: Context) -> None:
        raise InstallationGone("404")

    @router.register("issues")
    async def later(event: sansio.Event, ctx: Context) -> None:
        ran.append(ctx.installation_id)

    ran: list[int | None] = []
    stored = await store_installation(db, 5, ["o/a"])
    await add_delivery(db, "d1", [gone, later], key="same", installation_id=5)
    await add_delivery(db, "d2", [later], key="other", installation_id=6)
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    jobs = await store.list_jobs(db)
    assert [(j.delivery_id, j.status) for j in jobs] == [("d1", "cancelled"), ("d1", "cancelled"), ("d2", "done")]
    assert ran == [6]
    # Why: a handler's 404 (gone_when_missing: one repository removed) is not the installation's deletion.
    assert (await installations.get_installation(db, 5)) == stored


async def store_installation(db: Database, installation_id: int, repos: list[str]) -> installations.Installation:
    """Store an active installation and its repositories, as the installation.created webhook would."""
    now = time.time()
    async with db.transaction() as conn:
        await installations.upsert_installation(conn, {"id": installation_id, "account": {"login": "o"}}, now)
        await installations.add_repositories(
            conn, installation_id, [{"id": installation_id * 100 + n, "full_name": r} for n, r in enumerate(repos)],
            now)
    stored = await installations.get_installation(db, installation_id)
    assert stored is not None and not stored.deleted
    return stored


async def test_a_mint_404_marks_the_installation_deleted_and_cancels_its_jobs(
        db: Database, settings: Settings, fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    """RELIABILITY GH-11: uninstalled while the webhook was missed; the first mint's 404 records it."""
    router = routing.Router()

    @router.register("issues")
    async def read(event: sansio.Event, ctx: Context) -> None:
        await ctx.gh.getitem("/installation/repositories")

    @router.register("issues")
    async def read_again(event: sansio.Event, ctx: Context) -> None:
        await ctx.gh.getitem("/installation/repositories")

    await store_installation(db, 5, ["o/a", "o/b"])  # stored, but GitHub (the fake) no longer knows it
    fake_github.add_installation(6, repositories=["p/c"])
    await store_installation(db, 6, ["p/c"])
    await add_delivery(db, "d1", [read, read_again], key="same", installation_id=5)
    await add_delivery(db, "d2", [read], key="other", installation_id=6)
    async with running(db, router, settings, github_factory=github_app.for_installation) as runner:
        await wait_until(lambda: settled(db))
        await add_delivery(db, "d3", [read], key="later", installation_id=5)
        runner.wake()
        await wait_until(lambda: settled(db))
    jobs = await store.list_jobs(db)
    assert [(j.delivery_id, j.status) for j in jobs] == [
        ("d1", "cancelled"), ("d1", "cancelled"), ("d2", "done"), ("d3", "cancelled")]
    gone = await installations.get_installation(db, 5)
    assert gone is not None and gone.deleted
    assert await installations.active_repositories(db, 5) == []
    assert await installations.active_repositories(db, 6) == ["p/c"]
    # Why 2: one mint per installation; the sibling job and the later delivery never ask GitHub again.
    assert sorted(call.path for call in fake_github.calls("POST", MINT)) == [
        "/app/installations/5/access_tokens", "/app/installations/6/access_tokens"]


async def test_retry_later_waits_until_the_given_time(db: Database, settings: Settings) -> None:
    router = routing.Router()
    retry_at = time.time() + 3600

    @router.register("issues")
    async def limited(event: sansio.Event, ctx: Context) -> None:
        raise RetryLater("rate limited", at=retry_at)

    await add_delivery(db, "d1", [limited])
    async with running(db, router, settings):
        await wait_until(lambda: db.fetchvalue("SELECT attempts = 1 AND status = 'queued' FROM jobs"))
        await asyncio.sleep(0.2)
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts, job.run_after) == ("queued", 1, retry_at)


@pytest.mark.parametrize("error", [RetryLater("in milliseconds", at=1.8e12), RateLimited("far", at=1e300)])
async def test_a_retry_time_past_a_day_defers_the_job_a_day(db: Database, make_settings: Any,
                                                            error: RetryLater) -> None:
    """An `at` in milliseconds (year 59000) parked the job, and every later job of its key, for good."""
    router = routing.Router()
    clock = time.time() + 1

    @router.register("issues")
    async def limited(event: sansio.Event, ctx: Context) -> None:
        raise error

    await add_delivery(db, "d1", [limited])
    async with running(db, router, make_settings(), now=lambda: clock):
        await wait_until(lambda: db.fetchvalue("SELECT attempts = 1 AND status = 'queued' FROM jobs"))
    [job] = await store.list_jobs(db)
    assert (job.status, job.run_after) == ("queued", clock + MAX_RETRY_WAIT)


async def test_repeated_rate_limits_back_off_exponentially_past_their_fixed_wait(
        db: Database, make_settings: Any) -> None:
    """RELIABILITY GH-04: a secondary limit without retry-after always says "in 60 s"; the waits must grow."""
    router = routing.Router()
    clock = [time.time() + 1]  # the delivery is due
    reset_in = [60.0] * 6 + [5000.0]  # six secondary limits, then a primary limit resetting in 5000 s

    @router.register("issues")
    async def limited(event: sansio.Event, ctx: Context) -> None:
        raise RateLimited("secondary rate limit", at=clock[0] + reset_in[ctx.attempt - 1])

    await add_delivery(db, "d1", [limited])
    waits: list[float] = []
    async with running(db, router, make_settings(job_max_attempts=10), now=lambda: clock[0],
                       backoff=Backoff(base=10, cap=900), rand=lambda: 0.5) as runner:
        for attempt in range(1, len(reset_in) + 1):
            await wait_until(lambda n=attempt: db.fetchvalue(
                "SELECT attempts = ? AND status = 'queued' FROM jobs", (n,)))
            [job] = await store.list_jobs(db)
            waits.append(job.run_after - clock[0])
            clock[0] = job.run_after  # the job is due: the runner's clock moves there
            runner.wake()
    # Backoff 10·2^(n-1) (rand 0.5 → factor 1): below 60 s the limit's wait holds, above it the backoff does.
    assert waits == [60, 60, 60, 80, 160, 320, 5000]


async def test_jobs_with_one_key_run_one_at_a_time_in_arrival_order(db: Database, settings: Settings) -> None:
    router = routing.Router()
    order: list[str] = []
    active: dict[str, int] = {"a": 0, "b": 0}
    overlap: list[str] = []

    @router.register("issues")
    async def step(event: sansio.Event, ctx: Context) -> None:
        key = event.data["key"]
        active[key] += 1
        if active[key] > 1:
            overlap.append(key)
        await asyncio.sleep(0.01)
        order.append(f"{key}{event.data['n']}")
        active[key] -= 1

    for n in range(6):
        for key in "ab":
            await add_delivery(db, f"{key}{n}", [step], key=key, data={"key": key, "n": n})
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert overlap == []
    assert [s for s in order if s[0] == "a"] == [f"a{n}" for n in range(6)]
    assert [s for s in order if s[0] == "b"] == [f"b{n}" for n in range(6)]


async def test_a_job_ending_while_a_claim_is_in_flight_does_not_hold_up_its_keys_next_job(
        db: Database, settings: Settings) -> None:
    """The key freed while a claim that looked at it was in flight is looked at again by the next claim.

    That claim saw the ended job still running, so found nothing for the key; the runner used to drop the key
    then, and the key's next job waited for a full scan (the poll interval; here 30 s, never)."""
    router = routing.Router()
    started = {name: asyncio.Event() for name in "zab"}
    go = {name: asyncio.Event() for name in "za"}

    @router.register("issues")
    async def step(event: sansio.Event, ctx: Context) -> None:
        name = event.data["n"]
        started[name].set()
        if name in go:
            await go[name].wait()

    for name in "zab":
        await add_delivery(db, name, [step], key="o/r#1", data={"n": name})
    clock = [0.0]
    held, permit = asyncio.Event(), asyncio.Event()
    permit.set()

    async def transact(work: Callable[[sqlite3.Connection], Any]) -> Any:
        if not permit.is_set():
            held.set()
            await permit.wait()
        return await db.run(work, relaxed=True)

    async with running(db, router, settings, poll_interval=30.0, transact=transact,
                       monotonic=lambda: clock[0]) as runner:
        await asyncio.wait_for(started["z"].wait(), 5)
        clock[0] += 60  # the next claim is a full one: it claims a, and leaves z's key among the freed ones
        go["z"].set()
        await asyncio.wait_for(started["a"].wait(), 5)
        permit.clear()
        runner.wake()  # a claim looking at the key goes in flight (held here) while a is still running...
        await asyncio.wait_for(held.wait(), 5)
        go["a"].set()  # ...and a ends before that claim reaches the database
        await asyncio.sleep(0.05)
        permit.set()
        await asyncio.wait_for(started["b"].wait(), 5)
    assert await statuses(db) == {"z": "done", "a": "done", "b": "done"}


async def test_at_most_job_concurrency_jobs_run_at_once(db: Database, make_settings: Any) -> None:
    router = routing.Router()
    now_running = [0]
    peak = [0]

    @router.register("issues")
    async def work(event: sansio.Event, ctx: Context) -> None:
        now_running[0] += 1
        peak[0] = max(peak[0], now_running[0])
        await asyncio.sleep(0.02)
        now_running[0] -= 1

    for n in range(40):
        await add_delivery(db, f"d{n}", [work])
    async with running(db, router, make_settings(job_concurrency=4)):
        await wait_until(lambda: settled(db))
    assert peak[0] == 4
    assert set((await statuses(db)).values()) == {"done"}


async def test_enqueue_wakes_the_runner_within_milliseconds(db: Database, settings: Settings) -> None:
    router = routing.Router()
    ran = asyncio.Event()
    seen: list[tuple[str, Any, str]] = []

    @router.register("quantumreview.regenerate")
    async def regenerate(event: sansio.Event, ctx: Context) -> None:
        seen.append((event.event, event.data, event.delivery_id))
        ran.set()

    async with running(db, router, settings, poll_interval=30.0) as runner:
        await asyncio.sleep(0.05)
        began = time.monotonic()
        ids = await runner.enqueue("quantumreview.regenerate", {"repo": "o/r"}, ordering_key="o/r#1")
        await asyncio.wait_for(ran.wait(), 5.0)
        # Woken, not polled: the poll interval is 30 s (bounded loosely so a slow CI machine cannot flake it).
        assert time.monotonic() - began < 2.0
    assert seen == [("quantumreview.regenerate", {"repo": "o/r"}, f"job-{ids[0]}")]


async def test_intake_commits_in_a_burst_wake_the_runner_at_most_once_per_wake_interval(
        db: Database, settings: Settings) -> None:
    """Each intake commit woke the runner, whose claim rode the writer's next transaction: during a burst (a commit
    every few milliseconds) that was a claim per commit, mostly finding nothing new to run. Every job still starts:
    the last commit's wake-up comes at most WAKE_INTERVAL later (the poll here is 30 s)."""
    router = routing.Router()
    started: list[str] = []

    @router.register("issues")
    async def handle(event: sansio.Event, ctx: Context) -> None:
        started.append(event.delivery_id)

    claims = [0]

    async def transact(work: Callable[[sqlite3.Connection], Any]) -> Any:
        claims[0] += 1
        return await db.run(work, relaxed=True)

    commits = 50
    async with running(db, router, settings, poll_interval=30.0, transact=transact) as runner:
        await wait_until(lambda: claims[0] >= 1)  # the first claim, at start
        await asyncio.sleep(2 * WAKE_INTERVAL)
        claims[0] = 0
        began = time.monotonic()
        for n in range(commits):
            await add_delivery(db, f"d{n}", [handle], key=f"k{n}")
            runner.wake_soon()
            await asyncio.sleep(0.002)  # the next commit, a few milliseconds later
        burst = time.monotonic() - began
        await asyncio.wait_for(wait_until(lambda: len(started) == commits), 5.0)
    # A claim per wake-up would be about `commits`; jobs ending wake the runner too (at most one claim each).
    bound = burst / WAKE_INTERVAL + 2
    assert claims[0] - commits <= bound < commits, (claims[0], burst)


async def test_handler_can_enqueue_follow_up_work(db: Database, settings: Settings) -> None:
    router = routing.Router()
    done = asyncio.Event()

    @router.register("issues")
    async def first(event: sansio.Event, ctx: Context) -> None:
        await ctx.enqueue("quantumreview.follow_up", {"from": ctx.delivery_id}, delay=0.0)

    @router.register("quantumreview.follow_up")
    async def second(event: sansio.Event, ctx: Context) -> None:
        assert event.data == {"from": "d1"}
        done.set()

    await add_delivery(db, "d1", [first])
    async with running(db, router, settings):
        await asyncio.wait_for(done.wait(), 2.0)


async def test_enqueue_with_no_matching_handler_writes_nothing(db: Database, settings: Settings) -> None:
    async with running(db, routing.Router(), settings) as runner:
        assert await runner.enqueue("nobody.listens", {}) == []
    assert await store.list_jobs(db) == []


async def test_context_has_the_stored_event_and_an_installation_client(db: Database, settings: Settings) -> None:
    router = routing.Router()
    contexts: list[Context] = []

    @router.register("issues", action="opened")
    async def capture(event: sansio.Event, ctx: Context) -> None:
        contexts.append(ctx)

    await add_delivery(db, "d1", [capture], data={"action": "opened", "x": "é"}, installation_id=9)
    async with running(db, router, settings, github_factory=lambda iid: f"client-for-{iid}"):
        await wait_until(lambda: settled(db))
    [ctx] = contexts
    assert (ctx.event.event, ctx.event.data, ctx.event.delivery_id) == ("issues", {"action": "opened", "x": "é"}, "d1")
    assert (ctx.gh, ctx.installation_id, ctx.attempt, ctx.job_id) == ("client-for-9", 9, 1, 1)


async def test_every_job_of_a_runner_shares_its_keyed_locks(db: Database, settings: Settings) -> None:
    """Jobs of different keys publishing on one pull request serialise on these locks; one per job would not."""
    router = routing.Router()
    seen: list[Any] = []

    @router.register("issues")
    async def record(event: sansio.Event, ctx: Context) -> None:
        seen.append(ctx.locks)

    await add_delivery(db, "d1", [record], key="a")
    await add_delivery(db, "d2", [record], key="b")
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert len(seen) == 2 and seen[0] is seen[1]
    assert seen[0]("comment", "o/r", 1) is seen[1]("comment", "o/r", 1)


async def test_without_a_github_factory_ctx_gh_is_none(db: Database, settings: Settings) -> None:
    router = routing.Router()
    clients: list[Any] = []

    @router.register("issues")
    async def capture(event: sansio.Event, ctx: Context) -> None:
        clients.append(ctx.gh)

    await add_delivery(db, "d1", [capture], installation_id=9)
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert clients == [None]


async def test_jobs_left_running_by_a_crash_run_again_at_start(db: Database, settings: Settings) -> None:
    router = routing.Router()
    attempts: list[int] = []

    @router.register("issues")
    async def record(event: sansio.Event, ctx: Context) -> None:
        attempts.append(ctx.attempt)

    await add_delivery(db, "d1", [record])
    [claimed] = (await db.run(lambda conn: store.settle_and_claim(conn, [], time.time(), 10))).jobs
    assert claimed.attempts == 1
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert attempts == [2]
    assert await statuses(db) == {"d1": "done"}


async def test_shutdown_requeues_unfinished_jobs_without_counting_an_attempt(db: Database, make_settings: Any) -> None:
    router = routing.Router()
    started = asyncio.Event()

    @router.register("issues")
    async def slow(event: sansio.Event, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(30)

    await add_delivery(db, "d1", [slow])
    began = time.monotonic()
    async with running(db, router, make_settings(shutdown_grace=0.1)):
        await asyncio.wait_for(started.wait(), 2.0)
    assert time.monotonic() - began < 2.0
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts) == ("queued", 0)


async def test_shutdown_lets_a_job_finish_within_the_grace(db: Database, make_settings: Any) -> None:
    router = routing.Router()
    started = asyncio.Event()

    @router.register("issues")
    async def brief(event: sansio.Event, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(0.1)

    await add_delivery(db, "d1", [brief])
    async with running(db, router, make_settings(shutdown_grace=2.0)):
        await asyncio.wait_for(started.wait(), 2.0)
    assert await statuses(db) == {"d1": "done"}


async def test_suspended_installation_jobs_wait_uncounted(db: Database, settings: Settings) -> None:
    router = routing.Router()
    ran: list[str] = []

    @router.register("issues")
    async def act(event: sansio.Event, ctx: Context) -> None:
        ran.append(event.event)

    @router.register("installation")
    async def lifecycle(event: sansio.Event, ctx: Context) -> None:
        ran.append(event.event)

    now = time.time()
    await db.execute(
        "INSERT INTO installations (id, account_login, suspended_at, created_at, updated_at) VALUES (5, 'o', ?, ?, ?)",
        (now, now, now),
    )
    await add_delivery(db, "d1", [act], installation_id=5, key="k1")
    await add_delivery(db, "d2", [lifecycle], event="installation", installation_id=5, key="k2")
    async with running(db, router, settings):
        await wait_until(lambda: db.fetchvalue("SELECT count(*) = 1 FROM jobs WHERE status = 'done'"))
        await wait_until(lambda: db.fetchvalue("SELECT last_error LIKE 'InstallationSuspended%' FROM jobs WHERE id=1"))
    job = (await store.list_jobs(db))[0]
    assert ran == ["installation"]
    assert (job.status, job.attempts) == ("queued", 0) and job.run_after > now + 60


async def test_a_mint_403_marks_the_installation_suspended_until_unsuspend(
        db: Database, settings: Settings, fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    """RELIABILITY GH-12: suspended while the webhook was missed; no re-mint every 5 minutes until unsuspend."""
    router = routing.Router()

    @router.register("issues")
    async def read(event: sansio.Event, ctx: Context) -> None:
        await ctx.gh.getitem("/installation/repositories")

    clock = [time.time() + 1]  # the delivery is due
    await store_installation(db, 5, ["o/a"])
    fake_github.add_installation(5, repositories=["o/a"])
    fake_github.suspend_installation(5)
    await add_delivery(db, "d1", [read], installation_id=5)

    async def deferred_after(t: float) -> bool:
        [job] = await store.list_jobs(db)
        return job.status == "queued" and job.run_after > t

    async with running(db, router, settings, now=lambda: clock[0],
                       github_factory=github_app.for_installation) as runner:
        await wait_until(lambda: deferred_after(clock[0]))
        suspended = await installations.get_installation(db, 5)
        assert suspended is not None and suspended.suspended
        for _ in range(3):  # recheck after recheck: held at the claim, GitHub is not asked again
            clock[0] += 301
            runner.wake()
            await wait_until(lambda: deferred_after(clock[0]))
        assert len(fake_github.calls("POST", MINT)) == 1
        fake_github.state.suspended.discard(5)
        async with db.transaction() as conn:  # what the installation.unsuspend webhook does
            await installations.set_suspended(conn, 5, None)
        clock[0] += 301
        runner.wake()
        await wait_until(lambda: settled(db))
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts) == ("done", 1)  # the suspended waits were never counted
    assert len(fake_github.calls("POST", MINT)) == 2


async def test_deleted_installation_jobs_are_cancelled_before_running(db: Database, settings: Settings) -> None:
    router = routing.Router()

    @router.register("issues")
    async def act(event: sansio.Event, ctx: Context) -> None:
        raise AssertionError("must not call GitHub for a deleted installation")

    now = time.time()
    await db.execute(
        "INSERT INTO installations (id, account_login, deleted_at, created_at, updated_at) VALUES (5, 'o', ?, ?, ?)",
        (now, now, now),
    )
    await add_delivery(db, "d1", [act], installation_id=5)
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert await statuses(db) == {"d1": "cancelled"}


async def test_handler_no_longer_loaded_fails_the_job(db: Database, settings: Settings) -> None:
    async def vanished(event: sansio.Event, ctx: Context) -> None:
        pass

    await add_delivery(db, "d1", [vanished])
    async with running(db, routing.Router(), settings):
        await wait_until(lambda: settled(db))
    [job] = await store.list_jobs(db)
    assert job.status == "failed" and "not loaded" in (job.last_error or "")


async def test_jobs_of_large_deliveries_read_and_parse_their_body_one_at_a_time(
        db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies over CLAIM_BODY_MAX stay out of the claim and are parsed one at a time (memory); small ones don't wait."""
    monkeypatch.setattr(store, "CLAIM_BODY_MAX", 2000)
    router = routing.Router()
    active = {"large": 0, "small": 0}
    peak = {"large": 0, "small": 0}
    seen: dict[str, int] = {}

    @router.register("issues")
    async def work(event: sansio.Event, ctx: Context) -> None:
        kind = event.data["kind"]
        active[kind] += 1
        peak[kind] = max(peak[kind], active[kind])
        seen[event.delivery_id] = len(event.data["filler"])
        await asyncio.sleep(0.05)
        active[kind] -= 1

    for n in range(4):  # each its own key: only the body size keeps the large ones apart
        await add_delivery(db, f"large{n}", [work], data={"kind": "large", "filler": ["x" * 100] * 50})
        await add_delivery(db, f"small{n}", [work], data={"kind": "small", "filler": ["x"]})
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert set((await statuses(db)).values()) == {"done"}
    assert peak == {"large": 1, "small": 4}
    assert seen == {**{f"large{n}": 50 for n in range(4)}, **{f"small{n}": 1 for n in range(4)}}


async def test_jobs_of_large_deliveries_waiting_their_turn_leave_the_slots_to_small_ones(
        db: Database, make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three large deliveries (three keys) and two slots: one large job runs, the others wait without a slot, and
    the small jobs run meanwhile; once the large one ends the next large one is claimed at once (poll 30 s)."""
    monkeypatch.setattr(store, "CLAIM_BODY_MAX", 2000)
    router = routing.Router()
    release = asyncio.Event()
    started: list[str] = []
    finished: list[str] = []

    @router.register("issues")
    async def work(event: sansio.Event, ctx: Context) -> None:
        started.append(event.delivery_id)
        if event.delivery_id.startswith("large"):
            await release.wait()
        finished.append(event.delivery_id)

    for n in range(3):
        await add_delivery(db, f"large{n}", [work], data={"filler": ["x" * 100] * 50})
    for n in range(4):
        await add_delivery(db, f"small{n}", [work])
    async with running(db, router, make_settings(job_concurrency=2), poll_interval=30.0):
        await wait_until(lambda: len(finished) == 4)
        assert sorted(finished) == [f"small{n}" for n in range(4)]
        assert [name for name in started if name.startswith("large")] == ["large0"]
        release.set()
        await wait_until(lambda: settled(db))
    assert [name for name in finished if name.startswith("large")] == ["large0", "large1", "large2"]


async def test_a_claim_carries_small_bodies_only(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "CLAIM_BODY_MAX", 2000)

    async def work(event: sansio.Event, ctx: Context) -> None:
        pass

    await add_delivery(db, "large", [work], data={"filler": "x" * 2000})
    await add_delivery(db, "small", [work], data={"filler": "x" * 1900})
    claim = await db.run(lambda conn: store.settle_and_claim(conn, [], time.time(), 10), relaxed=True)
    assert {job.delivery_id for job in claim.jobs} == {"large", "small"}
    assert claim.deliveries["large"] == ("issues", None)
    assert json.loads(claim.deliveries["small"][1] or b"") == {"filler": "x" * 1900}


async def test_a_large_delivery_deleted_before_its_turn_runs_no_handler(
        db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "CLAIM_BODY_MAX", 10)
    router = routing.Router()
    ran: list[str] = []

    @router.register("issues")
    async def work(event: sansio.Event, ctx: Context) -> None:
        ran.append(event.delivery_id)

    await add_delivery(db, "d1", [work], data={"filler": "x" * 100})
    real_get = store_deliveries.get_delivery

    async def deleted_first(db_: Database, delivery_id: str) -> Any:
        await db_.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))  # retention got there first
        return await real_get(db_, delivery_id)

    monkeypatch.setattr("quantumreview.jobs.get_delivery", deleted_first)
    async with running(db, router, settings):
        await wait_until(lambda: db.fetchvalue("SELECT count(*) = 0 FROM jobs WHERE status IN ('queued', 'running')"))
    assert ran == []


def test_stored_error_has_no_traceback_and_no_token() -> None:
    try:
        raise RuntimeError("auth with ghs_abcdefghijklmnopqrstuvwxyz0123 failed " + "x" * 1000)
    except RuntimeError as exc:
        text = describe_error(exc)
    assert text.startswith("RuntimeError: auth with <redacted> failed")
    assert "ghs_" not in text and "Traceback" not in text and len(text) == 500


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    backoff = Backoff(base=10, cap=100)
    assert [backoff.delay(n, 0.5) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]
    assert backoff.delay(1, 0.0) == 5 and backoff.delay(1, 0.999) == pytest.approx(14.99)


async def test_every_job_of_a_delivery_parses_its_body_into_its_own_dict(
        db: Database, settings: Settings) -> None:
    router = routing.Router()
    seen: list[dict[str, Any]] = []

    @router.register("issues", action="opened")
    async def first(event: sansio.Event, ctx: Context) -> None:
        seen.append(event.data)

    @router.register("issues", action="opened")
    async def second(event: sansio.Event, ctx: Context) -> None:
        seen.append(event.data)

    await add_delivery(db, "d1", [first, second], data={"action": "opened", "from": "store"})
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert [d["from"] for d in seen] == ["store", "store"]  # the body read with the claim
    assert seen[0] is not seen[1]  # one dict each: a handler mutating its payload cannot touch another's


async def test_a_stored_body_that_does_not_parse_fails_its_job_permanently(db: Database, settings: Settings) -> None:
    router = routing.Router()

    @router.register("issues")
    async def handler(event: sansio.Event, ctx: Context) -> None:
        raise AssertionError("never called")

    await add_delivery(db, "d1", [handler])
    deep = b'{"nested": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    await db.execute("UPDATE deliveries SET body = ? WHERE id = 'd1'", (deep,))
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    (job,) = await store.list_jobs(db)
    assert job.status == "failed" and "not a JSON payload (RecursionError)" in (job.last_error or "")


async def test_a_job_finishing_during_shutdown_is_marked_done_before_stop_returns(
        db: Database, make_settings: Any) -> None:
    router = routing.Router()
    started, release = asyncio.Event(), asyncio.Event()

    @router.register("issues")
    async def slow(event: sansio.Event, ctx: Context) -> None:
        started.set()
        await release.wait()

    await add_delivery(db, "d1", [slow])
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(shutdown_grace=5.0))
    await runner.start()
    await started.wait()
    stopping = asyncio.create_task(runner.stop())
    await asyncio.sleep(0.05)
    release.set()
    await stopping
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts) == ("done", 1)


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


@pytest.mark.parametrize(("raised", "error"), [
    (SystemExit(3), "SystemExit: 3"),
    (KeyboardInterrupt(), "KeyboardInterrupt: "),
    (GeneratorExit(), "GeneratorExit: "),
    (asyncio.CancelledError("by the handler"), "CancelledError: by the handler"),
    (BaseExceptionGroup("g", [KeyboardInterrupt()]), "BaseExceptionGroup: g (1 sub-exception) [KeyboardInterrupt: ]"),
    (_UnprintableError(), "_UnprintableError: <its message could not be read: RuntimeError>"),
])
async def test_a_handler_raising_a_base_exception_or_an_unprintable_one_is_retried_then_dead(
        db: Database, make_settings: Any, raised: BaseException, error: str) -> None:
    """A handler's own SystemExit/KeyboardInterrupt went through the event loop and ended the process; its own
    CancelledError, a GeneratorExit, a BaseExceptionGroup or an exception whose str() raises left the job running
    for good, and the next job of its key never ran."""
    router = routing.Router()

    @router.register("issues")
    async def bad(event: sansio.Event, ctx: Context) -> None:
        raise raised

    @router.register("issues")
    async def after(event: sansio.Event, ctx: Context) -> None:
        pass

    await add_delivery(db, "d1", [bad], key="k")
    await add_delivery(db, "d2", [after], key="k")
    async with running(db, router, make_settings(job_max_attempts=2)):
        await wait_until(lambda: settled(db))
    jobs = {j.delivery_id: j for j in await store.list_jobs(db)}
    assert (jobs["d1"].status, jobs["d1"].attempts, jobs["d1"].last_error) == ("dead", 2, error)
    assert jobs["d2"].status == "done"


async def test_a_permanent_error_inside_a_handlers_task_group_fails_the_job_and_says_what_it_was(
        db: Database, settings: Settings) -> None:
    """A TaskGroup wraps a child's PermanentError in an ExceptionGroup: it was retried until dead, and last_error
    said only 'unhandled errors in a TaskGroup (1 sub-exception)'."""
    router = routing.Router()

    @router.register("issues")
    async def fan_out(event: sansio.Event, ctx: Context) -> None:
        async def child() -> None:
            raise PermanentError("repository archived")

        async with asyncio.TaskGroup() as group:
            group.create_task(child())

    await add_delivery(db, "d1", [fan_out])
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.last_error == ("ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception) "
                              "[PermanentError: repository archived]")


def test_a_megabyte_error_message_is_cut_before_its_tokens_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The redaction's regexes ran over the whole message: 6 MB of 'token ' held the event loop about a second."""
    import quantumreview.jobs

    scanned: list[int] = []

    def spy(text: str) -> str:
        scanned.append(len(text))
        return redact(text)

    monkeypatch.setattr(quantumreview.jobs, "redact", spy)
    text = describe_error(ValueError("ghs_abcdefghijklmnopqrstuvwxyz0123 " + "token " * 1_000_000))
    assert text.startswith("ValueError: <redacted> token") and len(text) == 500
    assert max(scanned) <= 8 * 500


async def test_a_suspension_met_inside_a_handlers_task_group_defers_the_job_for_unsuspend_to_wake(
        db: Database, settings: Settings) -> None:
    """A child's InstallationSuspendedByGitHub, wrapped by the handler's TaskGroup, defers the job uncounted with a
    last_error that unsuspend recognises (SUSPENDED_ERROR_PREFIX), and marks the installation suspended."""
    from quantumreview.errors import InstallationSuspendedByGitHub
    from quantumreview.jobs import SUSPENDED_ERROR_PREFIX

    router = routing.Router()

    @router.register("issues")
    async def fan_out(event: sansio.Event, ctx: Context) -> None:
        async def child() -> None:
            raise InstallationSuspendedByGitHub("installation 3 is suspended", installation_id=3)

        async with asyncio.TaskGroup() as group:
            group.create_task(child())

    await db.execute("INSERT INTO installations (id, account_login, created_at, updated_at) VALUES (3, 'o', 0, 0)")
    await add_delivery(db, "d1", [fan_out], installation_id=3)
    async with running(db, router, settings):
        await wait_until(lambda: db.fetchvalue("SELECT count(*) FROM jobs WHERE status = 'queued' AND last_error "
                                               "IS NOT NULL"))
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts) == ("queued", 0)
    assert (job.last_error or "").startswith(SUSPENDED_ERROR_PREFIX)
    assert await db.fetchvalue("SELECT suspended_at IS NOT NULL FROM installations WHERE id = 3")


async def test_a_failure_met_while_the_database_is_busy_is_recorded_at_the_next_try(
        db: Database, make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recording a failure that met a busy database (a backup or the CLI holding the write lock) left the job
    running, and the next job of its key waiting behind it, until a restart."""
    from storage.db import DatabaseBusy

    router = routing.Router()

    @router.register("issues")
    async def explode(event: sansio.Event, ctx: Context) -> None:
        raise ValueError("boom")

    @router.register("issues")
    async def after(event: sansio.Event, ctx: Context) -> None:
        pass

    real, refused = store.schedule_retry, []

    async def busy_once(*args: Any) -> None:
        if not refused:
            refused.append(True)
            raise DatabaseBusy("database is locked")
        await real(*args)

    monkeypatch.setattr(store, "schedule_retry", busy_once)
    await add_delivery(db, "d1", [explode], key="k")
    await add_delivery(db, "d2", [after], key="k")
    async with running(db, router, make_settings(job_max_attempts=2)):
        await wait_until(lambda: settled(db))
    jobs = {j.delivery_id: j for j in await store.list_jobs(db)}
    assert (jobs["d1"].status, jobs["d1"].attempts, jobs["d1"].last_error) == ("dead", 2, "ValueError: boom")
    assert jobs["d2"].status == "done" and refused


async def test_stop_ends_a_handler_that_catches_the_shutdowns_cancellation(
        db: Database, make_settings: Any) -> None:
    """A handler catching CancelledError in a retry loop went on after the drain's one cancel: stop waited for its
    whole loop (here 3 x 30 s), past the platform's kill_timeout. It is cancelled again until it ends, then requeued
    uncounted."""
    router = routing.Router()
    started = asyncio.Event()

    @router.register("issues")
    async def stubborn(event: sansio.Event, ctx: Context) -> None:
        started.set()
        for _ in range(3):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass  # a broad retry loop
        await asyncio.sleep(30)

    await add_delivery(db, "d1", [stubborn])
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(shutdown_grace=0.05))
    await runner.start()
    await started.wait()
    async with asyncio.timeout(3):
        await runner.stop()
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "interrupted by shutdown")


async def test_installation_gone_for_one_repository_keeps_the_installations_queued_lifecycle_events(
        db: Database, settings: Settings) -> None:
    """gone_when_missing turns one repository's 404 into InstallationGone, which cancels the installation's queued
    jobs: a queued installation.deleted (or unsuspend) was cancelled with them, so it was never recorded."""
    router = routing.Router()
    lifecycle: list[str] = []

    @router.register("issues")
    async def repo_gone(event: sansio.Event, ctx: Context) -> None:
        raise InstallationGone("the installation or repository is gone (404)")

    @router.register("issues")
    async def sibling(event: sansio.Event, ctx: Context) -> None:
        raise AssertionError("would hit the same 404")

    @router.register("installation")
    async def record(event: sansio.Event, ctx: Context) -> None:
        lifecycle.append(event.data["action"])

    await db.execute("INSERT INTO installations (id, account_login, created_at, updated_at) VALUES (7, 'o', 0, 0)")
    await add_delivery(db, "d1", [repo_gone], key="k", installation_id=7)
    await add_delivery(db, "d2", [sibling], key="k", installation_id=7)
    await add_delivery(db, "d3", [record], key="k", installation_id=7, event="installation",
                       data={"action": "deleted", "installation": {"id": 7}})
    async with running(db, router, settings):
        await wait_until(lambda: settled(db))
    assert await statuses(db) == {"d1": "cancelled", "d2": "cancelled", "d3": "done"}
    assert lifecycle == ["deleted"]


async def test_stop_when_the_database_refuses_the_requeue_of_interrupted_jobs_ends_cleanly(
        db: Database, make_settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A busy database at the drain's requeue made stop raise (an ExceptionGroup traceback at shutdown, a non-zero
    exit). The job stays running, for the next start to requeue, and the log says so."""
    from storage.db import DatabaseBusy

    router = routing.Router()
    started = asyncio.Event()

    @router.register("issues")
    async def hang(event: sansio.Event, ctx: Context) -> None:
        started.set()
        await asyncio.Event().wait()

    async def refuse(*args: Any) -> None:
        raise DatabaseBusy("database is locked")

    await add_delivery(db, "d1", [hang])
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(shutdown_grace=0.05))
    await runner.start()
    await started.wait()
    monkeypatch.setattr(store, "defer", refuse)
    await runner.stop()
    [job] = await store.list_jobs(db)
    assert job.status == "running"
    assert "1 job(s) interrupted by shutdown not requeued (the next start requeues them)" in caplog.text


async def test_a_handler_that_caught_its_task_groups_failure_still_times_out(
        db: Database, make_settings: Any) -> None:
    """On Python 3.11 a TaskGroup whose child failed leaves the task's cancelling() raised: JOB_TIMEOUT then ended
    the handler with CancelledError, not TimeoutError, and the job stayed running, its key blocked."""
    router = routing.Router()

    @router.register("issues")
    async def hang_after_an_optional_part(event: sansio.Event, ctx: Context) -> None:
        async def optional() -> None:
            raise ValueError("optional part failed")

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(optional())
        except* ValueError:
            pass
        await asyncio.Event().wait()

    @router.register("issues")
    async def after(event: sansio.Event, ctx: Context) -> None:
        pass

    await add_delivery(db, "d1", [hang_after_an_optional_part], key="k")
    await add_delivery(db, "d2", [after], key="k")
    async with running(db, router, make_settings(job_timeout=0.05, job_max_attempts=2)):
        await wait_until(lambda: settled(db))
    jobs = {j.delivery_id: j for j in await store.list_jobs(db)}
    assert (jobs["d1"].status, jobs["d1"].last_error) == (
        "dead", "TimeoutError: the handler ran past JOB_TIMEOUT (0.05 s)")
    assert jobs["d2"].status == "done"


def test_a_stored_error_escapes_newlines_and_terminal_escapes() -> None:
    """An error quoting webhook text printed its newline or escape sequence raw in `quantumreview jobs` and the
    text log (a forged line, a recoloured terminal)."""
    text = describe_error(ValueError("bad title 'x\nERROR forged line \x1b[2J' token "
                                     "ghs_abcdefghijklmnopqrstuvwxyz0123"))
    assert text == "ValueError: bad title 'x\\nERROR forged line \\x1b[2J' token <redacted>"
    assert describe_error(ValueError("Bearer\nabcdefghijklmnopqrstuvwxyz")) == "ValueError: Bearer <redacted>"
