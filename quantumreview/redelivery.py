"""Missed deliveries: ask GitHub to send again every delivery it marks failed that never reached us.

GitHub does not retry failed deliveries by itself; it keeps them for 3 days at GET /app/hook/deliveries.
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gidgethub

from quantumreview.errors import PermissionDenied, RateLimited, RetryLater
from quantumreview.redelivery_log import WINDOW_SECONDS, is_attempt, read_log, timestamp
from quantumreview.redelivery_retry import Pacer, failed, forget, sort_retries
from storage import redeliveries as store
from storage.db import Database

SWEEP_EVENT = "quantumreview.sweep_deliveries"
SWEEP_INTERVAL = 600.0
# The share of the job's timeout the listing may take; the POSTs get half (posts_per_sweep), the rest is slack.
LIST_SHARE = 0.4
MAX_PER_SWEEP = 200  # Why: each attempt is a POST; stay well under the secondary rate limits.
# Why: a delivery our app keeps refusing (a bug, a payload it cannot store) must not be asked for every sweep
# for 3 days; three failed redeliveries are enough to say it will not arrive.
MAX_REDELIVERIES = 3
# Answers to POST .../attempts that will not change: the attempt is gone (404, 410) or not redeliverable (422).
GIVE_UP_STATUSES = frozenset({404, 410, 422})

log = logging.getLogger("quantumreview.redelivery")


@dataclass(frozen=True)
class Redelivery:
    """One GUID to redeliver, the id of the attempt GitHub should send again, and how many it already resent
    (`delivered_at`, that attempt's time, is kept with a failed request: GitHub keeps the attempt 3 days)."""

    guid: str
    delivery_id: int
    redeliveries: int = 0
    delivered_at: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class Outcome:
    """How a redelivery request went: taken, refused for good (both recorded), or failed on the way (not)."""

    accepted: bool
    failure: Exception | None = None


def _status_code(value: Any) -> int:
    """An attempt's HTTP status as an int; 0 (no answer) for anything else.

    Why: int() of whatever came raised on "abc", a list, NaN or 5,000 digits, so one odd entry in GitHub's
    delivery log failed every sweep for the 3 days it stays listed, and no missed delivery was asked for again.
    """
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 3:
        return int(value)
    return 0


def select_redeliveries(
    deliveries: Iterable[Mapping[str, Any]], stored_guids: set[str], acted_on: Mapping[str, int] | None = None,
    asked: Mapping[str, int] | None = None, *, now: float, window: float = WINDOW_SECONDS,
) -> list[Redelivery]:
    """GUIDs with no successful attempt, not stored here, inside the window: one entry each, newest attempt first.

    `acted_on` maps a GUID to the newest attempt we already requested again (or gave up on): such a GUID comes
    back only once GitHub lists a newer attempt, i.e. our redelivery failed too; until then it is in flight.
    `asked` counts the redeliveries we asked for: `deliveries` may hold only the newest of them.
    """
    acted_on, asked = acted_on or {}, asked or {}
    attempts: dict[str, list[Mapping[str, Any]]] = {}
    for delivery in deliveries:
        if is_attempt(delivery):
            attempts.setdefault(delivery["guid"], []).append(delivery)
    chosen: list[Redelivery] = []
    for guid, tries in attempts.items():
        if guid in stored_guids:
            continue
        if any(t.get("status") == "OK" or 200 <= _status_code(t.get("status_code")) < 300 for t in tries):
            continue
        newest = max(tries, key=lambda t: (timestamp(t.get("delivered_at")) or 0.0, int(t["id"])))
        delivered = timestamp(newest.get("delivered_at"))
        if delivered is None or now - delivered > window:
            continue
        last_acted = acted_on.get(guid)
        if last_acted is not None and max(int(t["id"]) for t in tries) <= last_acted:
            continue
        resent = max(sum(1 for t in tries if t.get("redelivery") is True), asked.get(guid, 0))
        chosen.append(Redelivery(guid=guid, delivery_id=int(newest["id"]), redeliveries=resent,
                                 delivered_at=delivered))
    return chosen


def posts_per_sweep(interval: float, job_timeout: float) -> int:
    """How many paced POSTs fit in half a job's timeout (the listing gets the rest), at most MAX_PER_SWEEP."""
    if interval <= 0:
        return MAX_PER_SWEEP
    return max(1, min(MAX_PER_SWEEP, int(job_timeout / 2 / interval)))


async def sweep(
    app_api: Any, db: Database, *, now: float, interval: float = 0.0, limit: int = MAX_PER_SWEEP,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, list_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Redelivery]:
    """List GitHub's deliveries with the App JWT client and request each missed one again; return those requested.

    The listing reads the pages new since the last sweep, then goes on with the pass over the older ones for
    `list_seconds` (redelivery_log), so successive sweeps cover the 3-day window however busy the App.
    POSTs go out `interval` seconds apart (GitHub: "wait at least one second between each" write), at most
    `limit` of them; the rest wait for the next sweep. A GUID whose redeliveries failed MAX_REDELIVERIES times,
    or whose redelivery GitHub refuses for good (GIVE_UP_STATUSES, or a 403 refusing the App that delivery), is
    given up with a warning. A request that failed on the way (a 5xx, a network failure) is kept and asked again
    first thing at the next sweeps, up to MAX_REQUEST_TRIES (redelivery_retry), unless the delivery arrived or
    GitHub resent it meanwhile; a rate limit (a 429, or a 403 saying so) ends the sweep and costs no try. Where
    the pass goes on is kept after each step, so a sweep ended by a failure or JOB_TIMEOUT loses none of its
    ground and skips nothing it did not deal with.
    """
    previous = await store.sweep_pass(db)
    deadline = None if list_seconds is None else clock() + list_seconds
    read = await read_log(app_api, previous, now=now, deadline=deadline, clock=clock)
    pending = await store.retries(db)
    guids = {d["guid"] for d in read.attempts}
    looked_up = guids | {retry.guid for retry in pending}
    stored = await store.stored_guids(db, looked_up)
    acted = await store.acted_on(db, looked_up - stored)
    asked = await store.times_asked(db, guids - stored)
    retries = sort_retries(pending, arrived=stored, acted_on=acted, newest=_newest_attempts(read.attempts), now=now)
    # Why left out: the retries deal with those GUIDs (asked first, or at a later sweep when the limit is spent).
    taken = {retry.guid for retry in retries.due + retries.expired}
    chosen = [item for item in select_redeliveries(read.attempts, stored, acted, asked, now=now)
              if item.guid not in taken]
    kept = previous

    async def keep_ground(done: int) -> None:
        """Keep where the next sweep goes on, `done` of `chosen` dealt with (a write only when it moves)."""
        nonlocal kept
        position = read.position_before([item.guid for item in chosen[done : done + 1]])
        if position != kept:
            await store.save_pass(db, position, now)
            kept = position

    await keep_ground(0)
    await forget(db, retries)
    if read.failure is not None:
        raise read.failure  # the runner retries the sweep after the limit; the POSTs would meet it too
    pacer = Pacer(limit, interval, sleep)
    requested: list[Redelivery] = []
    for retry in retries.due:  # before the pass goes on: these failed on its ground already covered
        if not await pacer.turn():
            return requested
        item = Redelivery(retry.guid, retry.github_delivery_id, retry.redeliveries, retry.delivered_at)
        outcome = await _request(app_api, db, item, now)
        if outcome.accepted:
            requested.append(item)
        elif outcome.failure is not None:
            await failed(db, retry, outcome.failure, now)
    for done, item in enumerate(chosen):
        if item.redeliveries >= MAX_REDELIVERIES:
            log.warning("gave up on delivery %s: GitHub redelivered it %d times and it never reached us",
                        item.guid, item.redeliveries)
            await store.record(db, item.guid, item.delivery_id, now)  # so it is given up (and logged) once
            await keep_ground(done + 1)
            continue
        if not await pacer.turn():
            break  # the ground kept is this one's page: the next sweep goes on from it
        outcome = await _request(app_api, db, item, now)
        if outcome.accepted:
            requested.append(item)
        elif outcome.failure is not None:
            # Kept before the pass moves past its page: the next sweep asks again, not the next pass.
            await failed(db, store.Retry(item.guid, item.delivery_id, item.delivered_at, item.redeliveries, 0),
                         outcome.failure, now)
        await keep_ground(done + 1)
    return requested


def _newest_attempts(attempts: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The highest attempt id listed for each GUID."""
    newest: dict[str, int] = {}
    for attempt in attempts:
        newest[attempt["guid"]] = max(newest.get(attempt["guid"], 0), int(attempt["id"]))
    return newest


async def _request(app_api: Any, db: Database, item: Redelivery, now: float) -> Outcome:
    """POST one redelivery request. Taken or refused for good: recorded (with any retry of it dropped). Failed on
    the way: nothing recorded, the failure comes back. Raises RateLimited (the sweep ends there)."""
    try:
        await app_api.post(f"/app/hook/deliveries/{item.delivery_id}/attempts", data={})
    except RateLimited:
        raise  # the runner retries the sweep after the limit; the GUIDs requested so far are recorded
    except PermissionDenied as exc:
        # Why given up: the client raises it for a 403 "Resource not accessible by …" without any rate-limit
        # sign (those raise RateLimited above): GitHub refuses this App the delivery, and would again every
        # sweep. It failed the whole sweep, so no later missed delivery was asked for either.
        log.warning("gave up on delivery %s: GitHub refused the redelivery request (403: %s)", item.guid, exc)
        await store.record(db, item.guid, item.delivery_id, now)
        return Outcome(accepted=False)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) not in GIVE_UP_STATUSES:
            return Outcome(accepted=False, failure=exc)
        # Why: GitHub no longer has the attempt (404, 410) or will not resend it (422); asking again every
        # sweep for the 3 days it stays listed only repeats the refusal. Recorded like a redelivery we gave up.
        log.warning("gave up on delivery %s: GitHub answered %d to the redelivery request (%s)", item.guid,
                    int(exc.status_code), exc)
        await store.record(db, item.guid, item.delivery_id, now)
        return Outcome(accepted=False)
    except (RetryLater, gidgethub.HTTPException) as exc:
        return Outcome(accepted=False, failure=exc)
    # Recorded after the POST: a failed POST leaves the GUID to a retry. A crash in between only asks GitHub
    # once more, and intake stores a GUID once (WH-19).
    await store.record_request(db, item.guid, item.delivery_id, now, times=item.redeliveries + 1)
    log.info("requested redelivery of %s", item.guid)
    return Outcome(accepted=True)
