"""JobRunner: claim due jobs, run each in a TaskGroup with its own try/except and timeout, retry, drain at stop.

Outcomes: success → done; PermanentError → failed; InstallationGone → cancelled, and so are that
installation's other queued jobs (they would all hit the same 404), and when the token mint said so
(InstallationDeleted) the installation is marked deleted too; any other exception or a timeout → retried
with exponential backoff and jitter (RetryLater's `at` is honoured; RateLimited waits for the later of its
`at` and the backoff) until job_max_attempts → dead.
A suspended installation's jobs are put back with a delay, uncounted (a mint's 403 marks it suspended); so are
jobs whose token mint answered 404 while the App credentials are not shown to be the installations' App
(CredentialsUnproven), woken when they are replaced or shown right (quantumreview.credentials_watch).
`ctx.enqueue` must not be awaited inside a `db.transaction()` (the writer lock is not re-entrant).
A handler still running CANCEL_ALLOWANCE after its cancellation (at its timeout or the shutdown's) is left behind
(quantumreview.jobs_abandon): its job is recorded as timed out or interrupted, and its key freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from gidgethub import sansio

from quantumreview import keys
from quantumreview.context import Context, NotifyMany
from quantumreview.credentials_watch import CredentialsWatch
from quantumreview.errors import (
    CredentialsUnproven,
    InstallationDeleted,
    InstallationGone,
    InstallationSuspended,
    InstallationSuspendedByGitHub,
    PermanentError,
    RateLimited,
    RetryLater,
)
from quantumreview.jobs_abandon import CANCEL_ALLOWANCE, Releasable, Runaways, cancel_until_done, outcome
from quantumreview.keyed_locks import KeyedLocks
from quantumreview.logs import redact
from quantumreview.plugins import Handler, HandlerRegistry
from quantumreview.settings import Settings
from storage import installations
from storage import jobs as store
from storage.db import Database
from storage.deliveries import get_delivery

log = logging.getLogger("quantumreview.jobs")

MAX_ERROR_CHARS = 500
SUSPENDED_RECHECK = 300.0
# The furthest a RetryLater's `at` defers a job (see _usable_time): GitHub's rate limits reset within the hour.
MAX_RETRY_WAIT = 86400.0
# At shutdown, a job still running after shutdown_grace is cancelled again this often until it ends.
CANCEL_REPEAT = 0.1
# The most often an intake commit wakes the job runner (see JobRunner.wake_soon): a job of a burst starts at most
# this much later, where its handler takes tens of milliseconds to seconds (GitHub calls).
WAKE_INTERVAL = 0.05
# How last_error starts for a job deferred for its installation's suspension, whichever InstallationSuspended it
# was (describe_error writes the class name first; the mint's 403 raises a subclass): unsuspend wakes those.
SUSPENDED_ERROR_PREFIX = InstallationSuspended.__name__
# Why: installation events must run while suspended or deleted, or `unsuspend` could never be recorded.
LIFECYCLE_EVENTS = frozenset({"installation"})

GitHubFactory = Callable[[int], Any]
Notify = Callable[..., Awaitable[int]]
# Runs the runner's settle-and-claim in a write transaction (Database.run, or a ride on the intake's batch).
Transact = Callable[[Callable[[sqlite3.Connection], store.Claim]], Awaitable[store.Claim]]


async def no_notify(*args: Any, **kwargs: Any) -> int:
    """Default ctx.notify: notify nobody."""
    return 0


@dataclass(frozen=True)
class Backoff:
    """Retry delays: base · 2^(attempt-1), capped, times a random factor in [0.5, 1.5)."""

    base: float = 10.0
    cap: float = 900.0

    def delay(self, attempt: int, rand: float) -> float:
        """The wait before the next try after `attempt` failed runs."""
        return float(min(self.base * 2 ** max(attempt - 1, 0), self.cap) * (0.5 + rand))


def describe_error(exc: BaseException) -> str:
    """Type and message only (no traceback), scrubbed and truncated, as stored in last_error.

    A group (a TaskGroup in the handler) lists what it holds: its own message says only "1 sub-exception".
    """
    text = f"{type(exc).__name__}: {_message(exc)}"
    if isinstance(exc, BaseExceptionGroup):
        text += " [" + "; ".join(f"{type(e).__name__}: {_message(e)}" for e in _leaves(exc)) + "]"
    # Why cut before redacting too: a message of megabytes held the event loop in the redaction's regexes. Cut far
    # past MAX_ERROR_CHARS, so a secret split by this cut lies beyond the final one.
    return _printable(redact(text[:MAX_ERROR_CHARS * 8]))[:MAX_ERROR_CHARS]


def _printable(text: str) -> str:
    """Control and separator characters escaped (after redaction, whose patterns span whitespace). Why: a message
    quoting webhook text could hold a newline or a terminal escape, printed raw by `quantumreview jobs` and in
    the text log, where it forged lines."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _message(exc: BaseException) -> str:
    # Why: an exception whose __str__ raises made recording the failure raise, leaving the job running for good.
    try:
        return str(exc)
    except Exception as err:
        return f"<its message could not be read: {type(err).__name__}>"


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions a group holds, nested groups flattened."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]


class JobRunner:
    """Runs queued jobs in-process: at most `job_concurrency` at once, one at a time per ordering key.

    `transact` runs its settle-and-claim transactions; in the app they ride on the intake's batches.
    """

    def __init__(self, db: Database, registry: HandlerRegistry, settings: Settings, *,
                 github_factory: GitHubFactory | None = None, github: Any = None, notify: Notify = no_notify,
                 notify_many: NotifyMany | None = None,
                 now: Callable[[], float] = time.time, backoff: Backoff | None = None,
                 rand: Callable[[], float] = random.random, poll_interval: float = 1.0,
                 transact: Transact | None = None, monotonic: Callable[[], float] = time.monotonic,
                 cancel_allowance: float = CANCEL_ALLOWANCE) -> None:
        self._db = db
        self._transact: Transact = transact or (lambda work: db.run(work, timeout=poll_interval, relaxed=True))
        self._registry = registry
        self._settings = settings
        self._github_factory = github_factory
        # Why a getter: the setup flow can swap the GitHub client while the runner runs.
        self._github: Callable[[], Any] = github if callable(github) else (lambda: github)
        self._notify = notify
        self._notify_many = notify_many
        self._now = now
        self._backoff = backoff or Backoff()
        self._rand = rand
        self._poll = poll_interval
        self._monotonic = monotonic
        self._cancel_allowance = cancel_allowance
        # Handlers that ignored their cancellation: their jobs are recorded, they are closed at stop.
        self._runaways = Runaways()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # Jobs of deliveries over CLAIM_BODY_MAX run one at a time (memory). Those waiting for their turn hold no slot
        # of job_concurrency, and while any is in progress claims pass large ones over; when one ends, the next claim
        # looks at every key again (`_rescan`), since those in between passed some over.
        self._large_bodies = asyncio.Semaphore(1)
        self._large_active = 0
        self._large_waiting = 0
        self._rescan = False
        # Shared by every job's Context: see KeyedLocks.
        self._locks = KeyedLocks()
        self._running: dict[int, asyncio.Task[None]] = {}
        # Jobs the drain cancelled. Why not only Task.cancelling(): Python 3.11 leaves it raised after a TaskGroup
        # inside a handler fails, and a handler may raise CancelledError itself.
        self._cancelled: set[int] = set()
        # Why a list: successes are marked done with the next claim, one relaxed commit for many jobs.
        self._finished: list[int] = []
        # Narrow claims look only past `_last_id` and at the keys whose job ended; a full scan every poll.
        self._last_id: int | None = None
        self._freed_keys: set[str] = set()
        self._full_scan_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._credentials = CredentialsWatch(db, now)
        self._last_wake = -WAKE_INTERVAL
        self._wake_pending: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        """Look for due jobs now."""
        self._wake.set()

    def wake_soon(self) -> None:
        """Look for due jobs within WAKE_INTERVAL (called after each intake commit with jobs).

        Why not at once every time: during a burst the intake commits every few milliseconds, and each wake-up cost
        a claim riding the writer's next transaction, mostly finding the new jobs' keys busy."""
        if self._wake_pending is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_wake + WAKE_INTERVAL - loop.time()
        if wait <= 0:
            self._wake_at_interval()
        else:
            self._wake_pending = loop.call_later(wait, self._wake_at_interval)

    def _wake_at_interval(self) -> None:
        self._wake_pending = None
        self._last_wake = asyncio.get_running_loop().time()
        self._wake.set()

    async def start(self) -> None:
        """Requeue jobs a crash left running, then start claiming."""
        async with self._db.transaction() as conn:
            requeued, dead = await store.recover_interrupted(conn, self._now(), self._settings.job_max_attempts)
        if requeued or dead:
            log.info("resumed %d interrupted job(s); %d out of attempts", requeued, dead)
        await self._credentials.load()
        self._task = asyncio.create_task(self._run(), name="job-runner")

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within shutdown_grace, then cancel and requeue the rest."""
        self._stopping.set()
        self._wake.set()
        if self._wake_pending is not None:
            self._wake_pending.cancel()
            self._wake_pending = None
        if self._task is not None:
            await self._task
        if closed := await self._runaways.release(CANCEL_REPEAT):
            log.info("closed %d handler(s) left running after they ignored their cancellation", closed)

    async def enqueue(self, event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
                      installation_id: int | None = None, delay: float = 0.0) -> list[int]:
        """Queue one job per handler matching a synthetic `event`; return their ids."""
        token = f"job-{uuid.uuid4().hex}"
        names = self._registry.handlers_for(sansio.Event(dict(data), event=event, delivery_id=token))
        if not names:
            return []
        now = self._now()
        payload = json.dumps({"event": event, "data": data}, separators=(",", ":"))
        key = ordering_key or (f"installation:{installation_id}" if installation_id is not None else token)
        async with self._db.transaction() as conn:
            ids = [await store.insert_job(conn, store.NewJob(
                handler=name, ordering_key=key, run_after=now + delay, created_at=now, payload=payload,
                installation_id=installation_id)) for name in names]
        self.wake()
        return ids

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while not self._stopping.is_set():
                self._wake.clear()
                # Before claiming: a new client learns the webhooks' App id before its first mint.
                try:
                    await self._credentials.follow(self._github())
                except Exception as exc:  # the runner must outlive whatever a client does
                    log.warning("could not follow the GitHub client's credentials: %s", describe_error(exc))
                free = self._settings.job_concurrency - len(self._running) + self._large_waiting
                if free > 0 or self._finished:
                    await self._settle_and_claim(group, max(free, 0))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):
                        await self._wake.wait()
            await self._drain()

    async def _settle_and_claim(self, group: asyncio.TaskGroup, limit: int) -> None:
        """Record finished jobs as done and claim due ones, in one relaxed transaction and one thread hop."""
        done, self._finished, now = self._finished, [], self._now()
        full = self._last_id is None or self._rescan or self._monotonic() - self._full_scan_at >= self._poll
        rescan, self._rescan = self._rescan, False
        large_ok = self._large_active == 0
        # Why take the keys out now: a job of one of them may end while this claim is in flight (the claim then
        # saw it still running); its key must stay for the next claim, or that key's next job waits for a full scan.
        freed, self._freed_keys = self._freed_keys, set()
        after_id, keys = (None, []) if full else (self._last_id, sorted(freed))
        try:
            claim = await self._transact(
                lambda conn: store.settle_and_claim(conn, done, now, limit, after_id=after_id, keys=keys,
                                                    large_ok=large_ok))
        except Exception as exc:  # a busy or failing database is retried at the next poll
            self._finished[:0] = done
            self._freed_keys |= freed
            self._rescan |= rescan
            log.warning("claiming jobs failed: %s", describe_error(exc))
            return
        if full:
            self._full_scan_at = self._monotonic()
        # Why only below the limit: then every candidate (a full claim: every key) was looked at; otherwise look
        # again next time.
        if len(claim.jobs) < limit:
            self._last_id = claim.last_id
        else:
            self._freed_keys |= freed
        for job in claim.jobs:
            blocked = claim.blocked.get(job.installation_id) if job.installation_id is not None else None
            delivery = claim.deliveries.get(job.delivery_id) if job.delivery_id is not None else None
            self._running[job.id] = group.create_task(self._run_job(job, blocked, delivery), name=f"job-{job.id}")

    async def _drain(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        if self._running:
            _, pending = await asyncio.wait(self._running.values(), timeout=self._settings.shutdown_grace)
        interrupted = [job_id for job_id, task in self._running.items() if task in pending]
        self._cancelled.update(interrupted)
        # Why cancel again and again: a handler that catches CancelledError (a broad retry loop) went on after the
        # one cancel, and stop waited for it, past the platform's kill_timeout, until SIGKILL. Each job passes them
        # on to its handler and ends within CANCEL_ALLOWANCE, leaving behind a handler that ignores them all.
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_REPEAT)
        await self._flush_finished()
        if interrupted:
            try:
                async with self._db.transaction() as conn:
                    await store.defer(conn, interrupted, self._now(), "interrupted by shutdown")
            except Exception as exc:  # Why: stop raised, ending the shutdown in a traceback (and a non-zero exit)
                log.error("%d job(s) interrupted by shutdown not requeued (the next start requeues them): %s",
                          len(interrupted), describe_error(exc))
                return
            log.info("requeued %d job(s) interrupted by shutdown", len(interrupted))

    async def _flush_finished(self) -> None:
        """Mark the remaining finished jobs done before stopping (else a restart would run them again)."""
        if not self._finished:
            return
        done, self._finished, now = self._finished, [], self._now()
        try:
            await self._db.run(lambda conn: store.settle_and_claim(conn, done, now, 0), relaxed=True)
        except Exception as exc:  # they stay running and are requeued at start: rerun, idempotently
            log.error("%d finished job(s) not recorded: %s", len(done), describe_error(exc))

    async def _run_job(self, job: store.Job, blocked: str | None,
                       delivery: tuple[str, bytes | None] | None) -> None:
        try:
            try:
                await self._execute(job, blocked, delivery)
            except BaseException as exc:
                if job.id in self._cancelled or (isinstance(exc, asyncio.CancelledError) and _cancelling()):
                    # Cancelled (by the drain, which requeues the job). Why end as cancelled whatever the handler
                    # raised meanwhile: its SystemExit escaped into the TaskGroup and out of stop, and the drain
                    # requeued nothing.
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    raise asyncio.CancelledError(f"interrupted by shutdown ({type(exc).__name__})") from exc
                # Why every BaseException: a handler's own SystemExit or KeyboardInterrupt went through the event
                # loop and ended the process; its own CancelledError, a GeneratorExit or a BaseExceptionGroup ended
                # the task with the job left running, its key blocked until a restart.
                await self._record_failure_persistently(job, exc)
            else:
                self._finished.append(job.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recording failed at shutdown: the job stays running, requeued at the next start
            log.error("job=%s outcome not recorded: %s", job.id, describe_error(exc))
        finally:
            self._running.pop(job.id, None)
            self._freed_keys.add(job.ordering_key)
            self._wake.set()

    async def _execute(self, job: store.Job, blocked: str | None,
                       delivery: tuple[str, bytes | None] | None) -> None:
        handler = self._registry.get(job.handler)
        if handler is None:
            raise PermanentError(f"handler {job.handler} is not loaded")
        if delivery is None:
            await self._handle(handler, job, blocked, _load_event(job, None))
            return
        name, body = delivery
        if body is None:
            await self._execute_large(handler, job, blocked)
        else:
            await self._handle(handler, job, blocked, _load_event(job, (name, body)))

    async def _execute_large(self, handler: Handler, job: store.Job, blocked: str | None) -> None:
        """A job of a delivery over CLAIM_BODY_MAX: read and parse its body on its turn, one at a time.

        Why: a payload parses to several times its size (an 18 MiB one of small objects to about 100 MB); eight
        large ones at once would not fit the 512 MB machine.
        """
        self._large_active += 1
        self._large_waiting += 1
        waiting = True
        self._wake.set()  # this job gives its slot back while it waits
        try:
            async with self._large_bodies:
                self._large_waiting -= 1
                waiting = False
                record = await get_delivery(self._db, job.delivery_id) if job.delivery_id is not None else None
                event = _load_event(job, None if record is None else (record.event, record.body))
                del record  # the raw bytes, not needed once parsed
                await self._handle(handler, job, blocked, event)
        finally:
            if waiting:  # cancelled before its turn
                self._large_waiting -= 1
            self._large_active -= 1
            self._rescan = True

    async def _handle(self, handler: Handler, job: store.Job, blocked: str | None, event: sansio.Event) -> None:
        # `blocked` was read in the claim's transaction, just before this run.
        if blocked == "deleted" and event.event not in LIFECYCLE_EVENTS:
            raise InstallationGone(f"installation {job.installation_id} was deleted")
        if blocked == "suspended" and event.event not in LIFECYCLE_EVENTS:
            raise InstallationSuspended(f"installation {job.installation_id} is suspended")
        ctx = self._context(job, event)
        await self._run_handler(job, Releasable(lambda: handler(event, ctx)))

    async def _run_handler(self, job: store.Job, call: Releasable) -> None:
        """Run the handler within job_timeout and raise what it raised; one still running CANCEL_ALLOWANCE after
        its cancellation (the timeout's or the drain's) is left behind, its job ended as timed out or cancelled."""
        # Why not a child of the TaskGroup: its exit would wait for a handler that never ends (jobs_abandon).
        task = asyncio.create_task(outcome(call), name=f"job-{job.id}-handler")
        interrupted = False
        try:
            await asyncio.wait({task}, timeout=self._settings.job_timeout)
        except asyncio.CancelledError:  # the drain's: passed on to the handler
            interrupted = True
        expired = not interrupted and not task.done()
        # Why a message: asyncio's TimeoutError has none, so last_error and the log said only "TimeoutError: ".
        past = f"the handler ran past JOB_TIMEOUT ({self._settings.job_timeout:g} s)"
        if not task.done():
            ended, cancelled = await cancel_until_done(task, self._cancel_allowance, CANCEL_REPEAT)
            interrupted = interrupted or cancelled
            if not ended:
                self._abandon(job, task, call)
                if interrupted:
                    raise asyncio.CancelledError
                raise TimeoutError(f"{past} and ignored its cancellation (left running, its key freed)")
        failure = asyncio.CancelledError() if task.cancelled() else task.result()
        if failure is None:
            return
        # Why not the CancelledError it ended with: that is taken for the drain's, and the job left running.
        if expired and not interrupted and isinstance(failure, asyncio.CancelledError | TimeoutError):
            raise TimeoutError(past) from (None if isinstance(failure, asyncio.CancelledError) else failure)
        raise failure

    @property
    def left_running(self) -> int:
        """Handlers given up on (they ignored their cancellation) and still running: /health shows them."""
        return len(self._runaways)

    def _abandon(self, job: store.Job, task: asyncio.Task[BaseException | None], call: Releasable) -> None:
        """Leave a handler that ignores its cancellation running (closed at stop), so its job can end."""
        self._runaways.add(task, call)
        log.warning("job=%s handler=%s ignored its cancellation for %g s: left running (%d such), its job ended",
                    job.id, job.handler, self._cancel_allowance, len(self._runaways),
                    extra={"delivery": job.delivery_id, "job": job.id})

    def _context(self, job: store.Job, event: sansio.Event) -> Context:
        gh = None
        if self._github_factory is not None and job.installation_id is not None:
            gh = self._github_factory(job.installation_id)
        return Context(event=event, db=self._db, settings=self._settings, gh=gh, github=self._github(),
                       installation_id=job.installation_id, delivery_id=job.delivery_id, job_id=job.id,
                       attempt=job.attempts, enqueue=self.enqueue, notify=self._notify, locks=self._locks,
                       notify_many=self._notify_many)

    async def _record_failure_persistently(self, job: store.Job, failure: BaseException) -> None:
        """Record the failure, trying again each poll while the database refuses (until the runner stops).

        Why: one busy moment (a backup or the CLI holding the write lock) left the job running, and every later
        job of its key waiting behind it, until a restart.
        """
        while True:
            try:
                await self._record_failure(job, failure)
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                log.warning("job=%s outcome not recorded yet, trying again: %s", job.id, describe_error(exc))
            await asyncio.sleep(self._poll)

    async def _record_failure(self, job: store.Job, failure: BaseException) -> None:
        now = self._now()
        error = describe_error(failure)
        exc = _sole_exception(failure)
        async with self._db.transaction() as conn:
            if isinstance(exc, CredentialsUnproven):
                # Why uncounted: only the operator can fix the credentials, perhaps hours later, and counted tries
                # made every job dead within JOB_MAX_ATTEMPTS though the error said they were tried again. Its own
                # description: credentials_watch wakes the jobs whose last_error starts with its class name.
                at = _usable_time(exc.at, now)
                await store.defer(conn, [job.id], now + SUSPENDED_RECHECK if at is None else max(at, now),
                                  describe_error(exc))
                return
            if isinstance(exc, InstallationSuspended):
                if isinstance(exc, InstallationSuspendedByGitHub) and exc.installation_id == job.installation_id:
                    # Why: then the claim holds its jobs without minting, until the unsuspend webhook clears it.
                    await installations.set_suspended(conn, job.installation_id, now)
                # Why its own description, not its group's: unsuspend wakes the jobs whose last_error starts with
                # SUSPENDED_ERROR_PREFIX.
                await store.defer(conn, [job.id], now + SUSPENDED_RECHECK, describe_error(exc))
                return
            if isinstance(exc, InstallationGone) and job.installation_id is not None:
                await store.mark_final(conn, job.id, "cancelled", now, error)
                # Why keep its lifecycle events: a 404 for one repository raises InstallationGone too, and cancelling
                # a queued installation.deleted or unsuspend lost it (an unsuspend lost held the jobs for good).
                await store.cancel_installation_jobs(conn, job.installation_id, now, error,
                                                     keep_events=LIFECYCLE_EVENTS)
                if isinstance(exc, InstallationDeleted) and exc.installation_id == job.installation_id:
                    # Why: else the dashboard shows it active and new deliveries keep minting for it.
                    await installations.mark_deleted(conn, job.installation_id, now)
            elif isinstance(exc, PermanentError):
                await store.mark_final(conn, job.id, "failed", now, error)
            elif job.attempts >= self._settings.job_max_attempts:
                await store.mark_final(conn, job.id, "dead", now, error)
            else:
                await store.schedule_retry(conn, job.id, self._retry_at(job, exc, now), error)
        log.warning("job=%s delivery=%s handler=%s attempt=%d failed: %s", job.id, job.delivery_id or "-",
                    job.handler, job.attempts, error, extra={"delivery": job.delivery_id, "job": job.id})

    def _retry_at(self, job: store.Job, exc: BaseException, now: float) -> float:
        backoff_at = now + self._backoff.delay(job.attempts, self._rand())
        at = _usable_time(exc.at, now) if isinstance(exc, RetryLater) else None
        if isinstance(exc, RateLimited) and at is not None:
            # Why the later one: a secondary limit without retry-after always says "in 60 s"; a job hitting it
            # again and again must back off further. A primary limit's reset is still never run before.
            return max(at, backoff_at)
        if at is not None:
            return max(at, now)
        return backoff_at


def _usable_time(at: object, now: float) -> float | None:
    """A RetryLater's `at` as epoch seconds, at most MAX_RETRY_WAIT after `now`; None when it is none (NaN, infinite,
    not a number). Why: a handler's RetryLater(at=float('nan')) or at='soon' could not be stored (NOT NULL run_after,
    or a TypeError), so recording the failure failed at every poll, the job stayed running and its key blocked until
    a restart. Why the bound: an `at` in milliseconds (1.8e12, year 59000) parked the job, and every later job of its
    issue or pull request behind it, for good."""
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return min(float(at), now + MAX_RETRY_WAIT)
    return None


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _sole_exception(exc: BaseException) -> BaseException:
    """What decides a failure's outcome: a group's only exception (a TaskGroup in the handler wraps what a child
    raised: its PermanentError was retried until dead, its RateLimited not waited for)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _load_event(job: store.Job, delivery: tuple[str, bytes] | None) -> sansio.Event:
    """The job's event: its delivery's body (read with its claim), or the payload of enqueued work. Each job
    parses its own copy, so no two handlers share (and could mutate) one payload dict."""
    if job.delivery_id is not None:
        if delivery is None:
            raise PermanentError(f"delivery {job.delivery_id} is gone")
        name, body = delivery
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # stored, but nothing a handler could read
            raise PermanentError(f"delivery {job.delivery_id} is not a JSON payload "
                                 f"({type(exc).__name__})") from exc
        if not isinstance(data, dict):
            raise PermanentError(f"delivery {job.delivery_id} is not a JSON object")
        return sansio.Event(data, event=name, delivery_id=job.delivery_id)
    try:
        payload = json.loads(job.payload or "")
        return sansio.Event(payload["data"], event=payload["event"], delivery_id=f"job-{job.id}")
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError("the job's payload is not {event, data} JSON") from exc


async def enqueue(app: web.Application, event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
                  installation_id: int | None = None, delay: float = 0.0) -> list[int]:
    """Queue work on a running app's job runner (for the API and the CLI)."""
    runner = app[keys.runner]
    return await runner.enqueue(event, data, ordering_key=ordering_key, installation_id=installation_id,
                                delay=delay)
