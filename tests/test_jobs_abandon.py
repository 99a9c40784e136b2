"""A handler that swallows its cancellation for ever: at its timeout its job ends (retried or dead, its key freed)
and the handler is left running; at shutdown stop returns within the grace and the allowance; stop closes it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.jobs import JobRunner
from quantumreview.jobs_abandon import Releasable, Runaways, outcome
from quantumreview.plugins import HandlerRegistry
from storage import jobs as store
from storage.db import Database
from tests.github_support import wait_until
from tests.test_jobs import add_delivery, running, settled

ALLOWANCE = 0.1
# Why not for ever: without the runner's fix, the test then fails instead of hanging.
SWALLOWS_FOR = 5.0


def swallowing(router: routing.Router, started: asyncio.Event, closed: list[int]) -> Callable[..., Any]:
    """Register an `issues` handler that catches every CancelledError (a broad retry loop) for SWALLOWS_FOR s."""

    @router.register("issues")
    async def swallow(event: sansio.Event, ctx: Context) -> None:
        started.set()
        deadline = time.monotonic() + SWALLOWS_FOR
        try:
            while time.monotonic() < deadline:
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    pass
        finally:
            closed.append(ctx.job_id)

    return swallow


def abandoned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "ignored its cancellation for" in r.getMessage()]


async def test_a_handler_swallowing_its_timeouts_cancellation_is_left_behind_and_the_next_job_of_its_key_runs(
        db: Database, make_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    """It never ended: its job stayed running and every later job of its repository waited behind it for good."""
    caplog.set_level(logging.INFO, logger="quantumreview.jobs")
    router = routing.Router()
    closed: list[int] = []
    swallow = swallowing(router, asyncio.Event(), closed)
    ran: list[str] = []

    @router.register("issues")
    async def after(event: sansio.Event, ctx: Context) -> None:
        ran.append(event.delivery_id)

    await add_delivery(db, "d1", [swallow], key="k")
    await add_delivery(db, "d2", [after], key="k")
    async with running(db, router, make_settings(job_timeout=0.05, job_max_attempts=2),
                       cancel_allowance=ALLOWANCE):
        await wait_until(lambda: settled(db))
        assert closed == []  # left running meanwhile
    jobs = {j.delivery_id: j for j in await store.list_jobs(db)}
    assert (jobs["d1"].status, jobs["d1"].attempts, jobs["d1"].last_error) == (
        "dead", 2, "TimeoutError: the handler ran past JOB_TIMEOUT (0.05 s) and ignored its cancellation "
                   "(left running, its key freed)")
    assert (jobs["d2"].status, ran) == ("done", ["d2"])
    job_id, name = jobs["d1"].id, jobs["d1"].handler
    assert abandoned(caplog) == [f"job={job_id} handler={name} ignored its cancellation for 0.1 s: left running "
                                 f"({n} such), its job ended" for n in (1, 2)]
    assert closed == [job_id, job_id]  # stop closed both runs
    assert "closed 2 handler(s) left running after they ignored their cancellation" in caplog.text


async def test_stop_returns_within_the_grace_and_the_allowance_while_a_handler_swallows_every_cancellation(
        db: Database, make_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    """stop cancelled it again and again until it ended: never, so the process waited for SIGKILL."""
    caplog.set_level(logging.INFO, logger="quantumreview.jobs")
    router = routing.Router()
    started = asyncio.Event()
    closed: list[int] = []
    swallow = swallowing(router, started, closed)
    grace = 0.1
    await add_delivery(db, "d1", [swallow])
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(shutdown_grace=grace),
                       cancel_allowance=ALLOWANCE)
    await runner.start()
    await started.wait()
    began = time.monotonic()
    await runner.stop()
    took = time.monotonic() - began
    assert grace + ALLOWANCE <= took < grace + ALLOWANCE + 1.0
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "interrupted by shutdown")
    assert len(abandoned(caplog)) == 1 and f"job={job.id} handler={job.handler} " in abandoned(caplog)[0]
    assert "requeued 1 job(s) interrupted by shutdown" in caplog.text
    assert closed == [job.id]


async def test_a_handler_ending_within_the_allowance_after_its_timeout_is_not_left_behind(
        db: Database, make_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    router = routing.Router()
    cleaned: list[int] = []

    @router.register("issues")
    async def tidy(event: sansio.Event, ctx: Context) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # its cleanup
            cleaned.append(ctx.attempt)
            raise

    await add_delivery(db, "d1", [tidy])
    async with running(db, router, make_settings(job_timeout=0.05, job_max_attempts=1), cancel_allowance=1.0):
        await wait_until(lambda: settled(db))
    [job] = await store.list_jobs(db)
    assert (job.status, job.last_error, cleaned) == ("dead", "TimeoutError: the handler ran past JOB_TIMEOUT "
                                                              "(0.05 s)", [1])
    assert abandoned(caplog) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # "coroutine ignored GeneratorExit"
async def test_a_released_call_ends_even_if_it_swallows_generator_exit() -> None:
    """A handler catching BaseException cannot be closed; release still ends its task (its frame is dropped)."""
    steps: list[str] = []

    async def stubborn() -> None:
        for _ in range(100):  # Why not for ever: its frame is closed again when collected
            try:
                await asyncio.sleep(0.01)
                steps.append("step")
            except BaseException:
                steps.append("caught")

    call = Releasable(stubborn)
    task = asyncio.create_task(outcome(call))
    runaways = Runaways()
    runaways.add(task, call)
    await asyncio.sleep(0.03)
    assert await runaways.release(1.0) == 1
    assert task.done() and isinstance(task.result(), asyncio.CancelledError)
    assert len(runaways) == 0
    count = len(steps)
    await asyncio.sleep(0.03)
    assert len(steps) == count


async def test_a_call_passes_values_and_exceptions_through_as_await_does() -> None:
    async def compute() -> None:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, 7)
        assert await future == 7
        try:
            await asyncio.sleep(0)
            raise KeyError("inner")
        except KeyError:
            raise ValueError("outer") from None

    failure = await outcome(Releasable(compute))
    assert isinstance(failure, ValueError) and str(failure) == "outer"
    assert await outcome(Releasable(lambda: asyncio.sleep(0))) is None
    assert isinstance(await outcome(Releasable(lambda: _raise(SystemExit(2)))), SystemExit)


async def _raise(exc: BaseException) -> None:
    raise exc



async def test_a_shutdown_during_a_handlers_cleanup_after_its_timeout_requeues_its_job_quietly(
        db: Database, make_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The drain's cancellation came while the timed-out handler was still cleaning up: its end was taken for the
    timeout, and the log said the job's outcome was not recorded."""
    router = routing.Router()
    cleaning = asyncio.Event()

    @router.register("issues")
    async def slow_cleanup(event: sansio.Event, ctx: Context) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.sleep(0.3)
            raise

    await add_delivery(db, "d1", [slow_cleanup])
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(job_timeout=0.05, shutdown_grace=0),
                       cancel_allowance=1.0)
    await runner.start()
    await cleaning.wait()
    await runner.stop()
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "interrupted by shutdown")
    assert "outcome not recorded" not in caplog.text
