"""Group-commit writer: concurrent deliveries are stored together, one transaction and one fsync per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from storage import deliveries as delivery_store
from storage import jobs as job_store
from storage.db import Database, DatabaseBusy

log = logging.getLogger("quantumreview.intake")

MAX_BATCH = 512
# Why: the webhook must answer within GitHub's 10 s; the writer gives up on the lock well before that.
LOCK_TIMEOUT = 7.0


@dataclass
class PendingDelivery:
    """A delivery and its jobs waiting for the next commit; `done` resolves to True (new) or False (duplicate)."""

    record: delivery_store.DeliveryRecord
    jobs: list[job_store.NewJob]
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class IntakeWriter:
    """Owns the queue of pending deliveries and the task that commits them in batches."""

    def __init__(self, db: Database, *, on_commit: Callable[[], None] = lambda: None,
                 lock_timeout: float = LOCK_TIMEOUT, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._on_commit = on_commit
        self._lock_timeout = lock_timeout
        self._max_batch = max_batch
        self._queue: asyncio.Queue[PendingDelivery] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    async def submit(self, record: delivery_store.DeliveryRecord, jobs: list[job_store.NewJob]) -> bool:
        """Store the delivery and its jobs durably; True if new, False if already stored; DatabaseBusy if not."""
        if self._task is None or self._task.done():
            raise DatabaseBusy("the intake writer is not running")
        pending = PendingDelivery(record, jobs)
        pending.done.add_done_callback(_consume_result)
        self._queue.put_nowait(pending)
        # Why: shield so a client hanging up does not cancel a result other requests in the batch share.
        return await asyncio.shield(pending.done)

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="intake-writer")

    async def stop(self) -> None:
        """Stop the writer task; deliveries still queued (abandoned by their requests) fail."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._fail_queued(DatabaseBusy("the server is shutting down"))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                self._fail(batch, DatabaseBusy("the server is shutting down"))
                raise
            except Exception as exc:  # the batch fails as a whole; the writer carries on
                log.warning("intake batch of %d not stored: %s", len(batch), type(exc).__name__)
                self._fail(batch, exc if isinstance(exc, DatabaseBusy) else DatabaseBusy(type(exc).__name__))

    async def _commit(self, batch: list[PendingDelivery]) -> None:
        ids = [p.record.id for p in batch]

        def store(conn: sqlite3.Connection) -> tuple[list[PendingDelivery], list[bool]]:
            # Runs on the writer's thread: the dedupe read and both inserts cost one hop and one fsync in all.
            new, outcome = split_new(batch, delivery_store.known_ids_now(conn, ids))
            delivery_store.insert_deliveries_now(conn, [p.record for p in new])
            job_store.insert_jobs_now(conn, [job for p in new for job in p.jobs])
            return new, outcome

        new, outcome = await self._db.run(store, timeout=self._lock_timeout)
        self.batches += 1
        for pending, is_new in zip(batch, outcome, strict=True):
            if not pending.done.done():
                pending.done.set_result(is_new)
        # Why only with jobs: a wake-up costs the runner a claim transaction that competes for the writer.
        if any(p.jobs for p in new):
            self._on_commit()

    def _fail(self, batch: list[PendingDelivery], exc: BaseException) -> None:
        for pending in batch:
            if not pending.done.done():
                pending.done.set_exception(exc)

    def _fail_queued(self, exc: BaseException) -> None:
        while not self._queue.empty():
            self._fail([self._queue.get_nowait()], exc)


def split_new(batch: list[PendingDelivery], stored: set[str]) -> tuple[list[PendingDelivery], list[bool]]:
    """The deliveries to insert (first of each id not yet stored) and, per batch entry, whether it is new."""
    seen = set(stored)
    new: list[PendingDelivery] = []
    outcome: list[bool] = []
    for pending in batch:
        is_new = pending.record.id not in seen
        seen.add(pending.record.id)
        outcome.append(is_new)
        if is_new:
            new.append(pending)
    return new, outcome


def _consume_result(future: asyncio.Future[bool]) -> None:
    # Why: a request that hung up never reads its result; reading it here keeps asyncio from logging it.
    if not future.cancelled():
        future.exception()
