"""Group-commit writer: concurrent deliveries are stored together, one transaction and one fsync per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage import deliveries as delivery_store
from storage import jobs as job_store
from storage.db import Database, DatabaseBusy

log = logging.getLogger("quantumreview.intake")

MAX_BATCH = 512
# Why: the webhook must answer within GitHub's 10 s; the writer gives up on the lock well before that...
LOCK_TIMEOUT = 7.0
# ...and a delivery not stored after STORE_DEADLINE (a hung disk) is answered 503, checked every DEADLINE_TICK.
STORE_DEADLINE = 8.5
DEADLINE_TICK = 0.25


Prepared = tuple[delivery_store.DeliveryRecord, list[job_store.NewJob]]
T = TypeVar("T")
R = TypeVar("R")
# Builds the rows of a whole batch on the writer's thread: for each item its rows, or the exception that
# refuses that item alone (InvalidPayload). Raising fails the batch.
PrepareBatch = Callable[[sqlite3.Connection, list[T]], list[Prepared | Exception]]


def prepare_one_by_one(conn: sqlite3.Connection, items: Sequence[T],
                       prepare: Callable[[sqlite3.Connection, T], Prepared]) -> list[Prepared | Exception]:
    """`prepare` each item; an exception refuses that item only, unless SQLite ended the batch's transaction."""
    results: list[Prepared | Exception] = []
    for item in items:
        try:
            results.append(prepare(conn, item))
        except Exception as exc:
            if not conn.in_transaction:  # SQLite rolled the batch back (disk full, I/O): write nothing
                raise
            results.append(exc)
    return results


@dataclass
class Rider:
    """Other write work (the job runner's settle-and-claim) done in the writer's next transaction."""

    work: Callable[[sqlite3.Connection], Any]
    done: asyncio.Future[Any]


@dataclass
class PendingDelivery(Generic[T]):
    """A delivery waiting for the next commit; `done` resolves to (new, jobs stored) or an exception.

    A delivery whose `done` is already resolved (it expired, or its request was cancelled) is dropped from
    its batch unwritten.
    """

    item: T
    done: asyncio.Future[tuple[bool, int]]
    deadline: float


class IntakeWriter(Generic[T]):
    """Owns the queue of pending deliveries and the task that commits them in batches.

    `prepare` turns the submitted items of one batch into rows, on the writer's thread.
    """

    def __init__(self, db: Database, prepare: PrepareBatch[T], *, on_commit: Callable[[], None] = lambda: None,
                 lock_timeout: float = LOCK_TIMEOUT, max_batch: int = MAX_BATCH,
                 store_deadline: float = STORE_DEADLINE, tick: float = DEADLINE_TICK) -> None:
        self._db = db
        self._prepare = prepare
        self._on_commit = on_commit
        self._lock_timeout = lock_timeout
        self._max_batch = max_batch
        self._store_deadline = store_deadline
        self._tick = tick
        # None wakes the writer for riders alone.
        self._queue: asyncio.Queue[PendingDelivery[T] | None] = asyncio.Queue()
        self._riders: list[Rider] = []
        # Every submitted delivery in arrival order (so by deadline) until the watchdog sees it resolved.
        self._waiting: deque[PendingDelivery[T]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        # Why: /health says so while the storage fails writes (a full volume: reads still work, every delivery
        # gets 503); SQLite's reason for the last such failure, until a write succeeds.
        self.failing: str | None = None

    async def submit(self, item: T) -> tuple[bool, int]:
        """Store durably the rows prepared from `item`: (True, jobs stored) if new, (False, 0) if the id is
        already stored; the exception that refused it; or DatabaseBusy (also when not stored within
        `store_deadline` seconds)."""
        self._check_running()
        loop = asyncio.get_running_loop()
        pending = PendingDelivery(item, loop.create_future(), loop.time() + self._store_deadline)
        self._waiting.append(pending)
        self._queue.put_nowait(pending)
        # Why no shield: each delivery has its own future; if the request is cancelled, so is the future,
        # and the writer skips it. One deadline watchdog replaces a timeout per request.
        return await pending.done

    async def ride(self, work: Callable[[sqlite3.Connection], R]) -> R:
        """Run `work` in the writer's next transaction, after that batch's deliveries and jobs are inserted.

        Why: the job runner marks jobs done and claims new ones after every few jobs. In a transaction of its
        own that is a second writer queueing for the lock between intake batches (and a second commit); riding
        along costs one SAVEPOINT. If `work` raises, its own changes are rolled back and the batch still commits.
        """
        self._check_running()
        rider = Rider(work, asyncio.get_running_loop().create_future())
        self._riders.append(rider)
        self._queue.put_nowait(None)
        result: R = await rider.done
        return result

    def _check_running(self) -> None:
        if not self._tasks or any(task.done() for task in self._tasks):
            raise DatabaseBusy("the intake writer is not running")

    def start(self) -> None:
        """Start the writer and its deadline watchdog."""
        self._tasks = [asyncio.create_task(self._run(), name="intake-writer"),
                       asyncio.create_task(self._expire(), name="intake-deadlines")]

    async def stop(self) -> None:
        """Stop the writer task; deliveries still queued (abandoned by their requests) fail."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_queued(DatabaseBusy("the server is shutting down"))

    async def _expire(self) -> None:
        """Answer DatabaseBusy to every delivery still unresolved at its deadline (the writer is stuck)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick)
            now = loop.time()
            while self._waiting and (self._waiting[0].done.done() or self._waiting[0].deadline <= now):
                pending = self._waiting.popleft()
                if not pending.done.done():
                    pending.done.set_exception(DatabaseBusy("the delivery was not stored in time"))

    async def _run(self) -> None:
        while True:
            taken = [await self._queue.get()]
            while len(taken) < self._max_batch and not self._queue.empty():
                taken.append(self._queue.get_nowait())
            batch = [pending for pending in taken if pending is not None and not pending.done.done()]
            riders, self._riders = [rider for rider in self._riders if not rider.done.done()], []
            if not batch and not riders:
                continue
            try:
                await self._commit(batch, riders)
                self.failing = None
            except asyncio.CancelledError:
                self._fail(batch, DatabaseBusy("the server is shutting down"), riders)
                raise
            except Exception as exc:  # the batch fails as a whole; the writer carries on
                # Why SQLite's message: it says which (disk full, read-only, I/O error) and never holds row data.
                reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, sqlite3.Error) else type(exc).__name__
                log.warning("intake batch of %d not stored: %s", len(batch), reason)
                if storage_failed(exc):
                    self.failing = reason
                self._fail(batch, exc if isinstance(exc, DatabaseBusy) else DatabaseBusy(type(exc).__name__),
                           riders)

    async def _commit(self, batch: list[PendingDelivery[T]], riders: list[Rider]) -> None:
        # Riders alone (the intake is idle) commit relaxed, as the runner's own transactions did.
        results, rode = await self._db.run(lambda conn: self._store(conn, batch, riders),
                                           timeout=self._lock_timeout, relaxed=not batch)
        if batch:
            self.batches += 1
        # Deliveries first: their requests resume before the runner does.
        for future, result in [*zip((p.done for p in batch), results, strict=True),
                               *zip((r.done for r in riders), rode, strict=True)]:
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        # Why only with jobs: a wake-up costs the runner a claim.
        if any(not isinstance(result, Exception) and result[0] and result[1] for result in results):
            self._on_commit()

    def _store(self, conn: sqlite3.Connection, batch: list[PendingDelivery[T]],
               riders: list[Rider]) -> tuple[list[tuple[bool, int] | Exception], list[Any]]:
        # Runs on the writer's thread: preparing, the dedupe read and both inserts cost one hop and one fsync.
        results = self._insert(conn, batch) if batch else []
        return results, [self._ride(conn, rider) for rider in riders]

    @staticmethod
    def _ride(conn: sqlite3.Connection, rider: Rider) -> Any:
        conn.execute("SAVEPOINT rider")
        try:
            value = rider.work(conn)
        except Exception as exc:
            if not conn.in_transaction:  # SQLite rolled everything back: the batch fails too
                raise
            conn.execute("ROLLBACK TO rider")
            value = exc
        conn.execute("RELEASE rider")
        return value

    def _insert(self, conn: sqlite3.Connection, batch: list[PendingDelivery[T]]) -> list[tuple[bool, int] | Exception]:
        prepared = self._prepare(conn, [pending.item for pending in batch])
        if not conn.in_transaction:  # SQLite rolled the batch back (disk full, I/O): write nothing
            raise DatabaseBusy("the transaction ended while the batch was prepared")
        results: list[tuple[bool, int] | Exception] = []
        ready: list[tuple[int, delivery_store.DeliveryRecord, list[job_store.NewJob]]] = []
        for n, rows in enumerate(prepared):
            if isinstance(rows, Exception):  # refuses this delivery only
                results.append(rows)
            else:
                record, jobs = rows
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

    def _fail(self, batch: list[PendingDelivery[T]], exc: BaseException, riders: Sequence[Rider] = ()) -> None:
        for future in [*(pending.done for pending in batch), *(rider.done for rider in riders)]:
            if not future.done():
                future.set_exception(exc)

    def _fail_queued(self, exc: BaseException) -> None:
        # Every queued delivery is also in _waiting (it leaves only once resolved); None only wakes the writer.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._fail(list(self._waiting), exc, self._riders)
        self._waiting.clear()
        self._riders = []


# SQLite's primary result codes that say the storage itself fails (full, read-only, I/O, damaged), unlike a lock
# held for a while (busy), which the next write usually gets past.
STORAGE_FAILURES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
                              sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOTADB})


def storage_failed(exc: Exception) -> bool:
    """Whether `exc` says the database cannot be written at all, not merely that it was busy."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in STORAGE_FAILURES


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

