"""ctx.enqueue refuses arguments the job queue cannot store, alike in the server's jobs and in plugin tests."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import pytest
from gidgethub import routing, sansio

from quantumreview.jobs import JobRunner
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from quantumreview.testing.context import make_context
from storage.db import Database

BAD = [
    (("later", {"when": datetime.date(2026, 1, 1)}, {}), r"data must be JSON .*date is not JSON serializable"),
    (("later", {"tags": {"a"}}, {}), r"data must be JSON .*set is not JSON serializable"),
    (("later", '{"a": 1}', {}), r"data must be a dict \(the payload\), not str"),
    ((None, {}, {}), r"event must be a non-empty str"),
    (("later", {}, {"delay": float("nan")}), r"delay must be a finite number of seconds, not nan"),
    (("later", {}, {"delay": "60"}), r"delay must be a finite number of seconds, not '60'"),
    (("later", {}, {"installation_id": "5"}), r"installation_id must be a positive int or None, not '5'"),
    (("later", {}, {"installation_id": True}), r"installation_id must be a positive int or None, not True"),
    (("later", {}, {"ordering_key": 7}), r"ordering_key must be a str or None, not int"),
]


@pytest.mark.parametrize(("call", "message"), BAD)
async def test_plugin_test_context_refuses_what_the_server_cannot_queue(
        handler_db: Database, call: tuple[Any, Any, dict[str, Any]], message: str) -> None:
    # The test recorder accepted all of these, so a plugin's test passed where the server's job failed.
    ctx, recorder = make_context("issues", {"action": "opened"}, db=handler_db)
    event, data, options = call
    with pytest.raises(TypeError, match=rf"^ctx\.enqueue: {message}"):
        await ctx.enqueue(event, data, **options)
    assert recorder.enqueued == []


async def later(event: sansio.Event, ctx: Any) -> None:
    """A handler for the enqueued event."""


@pytest.mark.parametrize(("call", "message"), BAD)
async def test_server_context_refuses_them_before_writing(
        tmp_path: Path, call: tuple[Any, Any, dict[str, Any]], message: str) -> None:
    # Before: json's bare TypeError, "NOT NULL constraint failed: jobs.run_after" for a NaN delay, or a job
    # stored with the text "5" as its installation.
    router = routing.Router()
    router.add(later, "later")
    db = await Database.open(tmp_path / "app.db")
    try:
        runner = JobRunner(db, HandlerRegistry.from_routers([router]), Settings(database_path=db.path))
        # The Context as the job runner builds it: with the runner's own enqueue.
        ctx = dataclasses.replace(make_context("issues", {}, db=db)[0], enqueue=runner.enqueue)
        event, data, options = call
        with pytest.raises(TypeError, match=rf"^ctx\.enqueue: {message}"):
            await ctx.enqueue(event, data, **options)
        assert await ctx.enqueue("later", {"n": 1}, installation_id=5, delay=-1) != []
        assert [row["installation_id"] for row in await db.fetchall("SELECT installation_id FROM jobs")] == [5]
    finally:
        await db.close()


async def test_good_arguments_are_passed_on(handler_db: Database) -> None:
    ctx, recorder = make_context("issues", {}, db=handler_db)
    assert await ctx.enqueue("later", {"n": 1}, ordering_key="k", installation_id=5, delay=1.5) == [1]
    assert recorder.enqueued == [{"event": "later", "data": {"n": 1}, "ordering_key": "k", "installation_id": 5,
                                  "delay": 1.5}]
