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


Prepare = Callable[[sqlite3.Connection], tuple[delivery_store.DeliveryRecord, list[job_store.NewJob]]]


@dataclass
class PendingDelivery:
    """A delivery waiting for the next commit; `done` resolves to (new, jobs stored) or an exception.

    `prepare` runs on the writer's thread: it builds the rows, or raises (InvalidPayload) to refuse just
    this delivery and not its batch.
    """

    prepare: Prepare
    done: asyncio.Future[tuple[bool, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


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

    async def submit(self, prepare: Prepare) -> tuple[bool, int]:
        """Store durably what `prepare` builds on the writer's thread: (True, jobs stored) if new, (False, 0)
        if the id is already stored; what `prepare` raised; or DatabaseBusy."""
        if self._task is None or self._task.done():
            raise DatabaseBusy("the intake writer is not running")
        pending = PendingDelivery(prepare)
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
        def store(conn: sqlite3.Connection) -> list[tuple[bool, int] | Exception]:
            # Runs on the writer's thread: preparing, the dedupe read and both inserts cost one hop and one fsync.
            results: list[tuple[bool, int] | Exception] = []
            ready: list[tuple[int, delivery_store.DeliveryRecord, list[job_store.NewJob]]] = []
            for n, pending in enumerate(batch):
                try:
                    record, jobs = pending.prepare(conn)
                except Exception as exc:  # refuses this delivery only...
                    if not conn.in_transaction:  # ...unless SQLite rolled the batch back: then write nothing
                        raise
                    results.append(exc)
                else:
                    results.append((True, len(jobs)))
                    ready.append((n, record, jobs))
            known = delivery_store.known_ids_now(conn, [record.id for _, record, _ in ready])
            new = split_new(ready, known)
            for n, _, _ in ready:
                if n not in new:
                    results[n] = (False, 0)
            delivery_store.insert_deliveries_now(conn, [record for n, record, _ in ready if n in new])
            job_store.insert_jobs_now(conn, [job for n, _, jobs in ready if n in new for job in jobs])
            return results

        results = await self._db.run(store, timeout=self._lock_timeout)
        self.batches += 1
        for pending, result in zip(batch, results, strict=True):
            if pending.done.done():
                continue
            if isinstance(result, Exception):
                pending.done.set_exception(result)
            else:
                pending.done.set_result(result)
        # Why only with jobs: a wake-up costs the runner a claim transaction that competes for the writer.
        if any(not isinstance(result, Exception) and result[0] and result[1] for result in results):
            self._on_commit()

    def _fail(self, batch: list[PendingDelivery], exc: BaseException) -> None:
        for pending in batch:
            if not pending.done.done():
                pending.done.set_exception(exc)

    def _fail_queued(self, exc: BaseException) -> None:
        while not self._queue.empty():
            self._fail([self._queue.get_nowait()], exc)


def split_new(ready: list[tuple[int, delivery_store.DeliveryRecord, list[job_store.NewJob]]],
              stored: set[str]) -> set[int]:
    """Which of the prepared deliveries to insert: the first of each id not yet stored (by batch position)."""
    seen = set(stored)
    new: set[int] = set()
    for n, record, _ in ready:
        if record.id not in seen:
            new.add(n)
        seen.add(record.id)
    return new


def _consume_result(future: asyncio.Future[tuple[bool, int]]) -> None:
    # Why: a request that hung up never reads its result; reading it here keeps asyncio from logging it.
    if not future.cancelled():
        future.exception()
