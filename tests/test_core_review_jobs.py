"""Core review of the job runner: what a handler raises once the shutdown's drain has cancelled its job, and a
RetryLater whose time cannot be stored."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest
from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.errors import RateLimited, RetryLater
from quantumreview.jobs import JobRunner
from quantumreview.plugins import HandlerRegistry
from storage import jobs as store
from storage.db import Database
from tests.github_support import wait_until
from tests.test_jobs import add_delivery, running, settled


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(), RuntimeError("aborted")])
async def test_a_handler_raising_anything_when_the_drain_cancels_it_is_requeued_and_stop_returns(
        db: Database, make_settings: Any, caplog: pytest.LogCaptureFixture, raised: BaseException) -> None:
    """Its SystemExit or KeyboardInterrupt went from the job's task into the runner's TaskGroup: stop raised it (the
    server's exit in a traceback) and the drain requeued nothing; another exception logged 'outcome not recorded'."""
    caplog.set_level(logging.INFO, logger="quantumreview.jobs")
    router = routing.Router()
    started = asyncio.Event()

    @router.register("issues")
    async def raises_on_cancel(event: sansio.Event, ctx: Context) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if isinstance(raised, SystemExit):
                sys.exit(raised.code)
            raise raised from None

    await add_delivery(db, "d1", [raises_on_cancel])
    runner = JobRunner(db, HandlerRegistry.from_routers([router]), make_settings(shutdown_grace=0.05),
                       cancel_allowance=0.5)
    await runner.start()
    await started.wait()
    await runner.stop()
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "interrupted by shutdown")
    assert "requeued 1 job(s) interrupted by shutdown" in caplog.text
    assert "outcome not recorded" not in caplog.text


@pytest.mark.parametrize("error", [RetryLater("not yet", at=float("nan")), RateLimited("limited", at=float("inf")),
                                   RetryLater("not yet", at="soon")])  # type: ignore[arg-type]
async def test_a_retry_later_with_a_time_that_is_no_time_is_retried_after_the_backoff(
        db: Database, make_settings: Any, caplog: pytest.LogCaptureFixture, error: RetryLater) -> None:
    """Its job stayed running for good (its key blocked until a restart) while the runner logged 'outcome not
    recorded yet' at every poll: run_after NaN broke NOT NULL, 'soon' a TypeError; inf queued it for ever."""
    router = routing.Router()

    @router.register("issues")
    async def later(event: sansio.Event, ctx: Context) -> None:
        raise error

    await add_delivery(db, "d1", [later])
    async with running(db, router, make_settings(job_max_attempts=2)):
        await wait_until(lambda: settled(db), timeout=3.0)
    [job] = await store.list_jobs(db)
    assert (job.status, job.attempts) == ("dead", 2)
    assert "outcome not recorded" not in caplog.text
