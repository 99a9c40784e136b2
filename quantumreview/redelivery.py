"""Missed deliveries: ask GitHub to send again every delivery it marks failed that never reached us.

GitHub does not retry failed deliveries by itself; it keeps them for 3 days at GET /app/hook/deliveries.
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gidgethub

from quantumreview.errors import RateLimited, RetryLater
from quantumreview.webhook import DELIVERY_ID, MAX_HEADER_CHARS
from storage import redeliveries as store
from storage.db import Database

WINDOW_SECONDS = 3 * 24 * 3600
SWEEP_EVENT = "quantumreview.sweep_deliveries"
SWEEP_INTERVAL = 600.0
PAGE_SIZE = 100  # GitHub's largest page
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
    """One GUID to redeliver, the id of the attempt GitHub should send again, and how many it already resent."""

    guid: str
    delivery_id: int
    redeliveries: int = 0


def _is_attempt(item: Any) -> bool:
    """True for a listed attempt we can act on: an object with a string guid and an integer id (not a bool,
    within SQLite's 64 bits, where it is recorded)."""
    if not isinstance(item, Mapping) or not isinstance(guid := item.get("guid"), str):
        return False
    if len(guid) > MAX_HEADER_CHARS or not DELIVERY_ID.fullmatch(guid):
        # Why: a guid the intake refuses as X-GitHub-Delivery can never be stored, and one with a lone
        # surrogate ("\ud800" in the JSON) made SQLite's binding raise UnicodeEncodeError, failing every sweep.
        return False
    attempt_id = item.get("id")
    return isinstance(attempt_id, int) and not isinstance(attempt_id, bool) and 0 < attempt_id < 2**63


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


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def select_redeliveries(
    deliveries: Iterable[Mapping[str, Any]], stored_guids: set[str], acted_on: Mapping[str, int] | None = None, *,
    now: float, window: float = WINDOW_SECONDS,
) -> list[Redelivery]:
    """GUIDs with no successful attempt, not stored here, inside the window: one entry each, newest attempt first.

    `acted_on` maps a GUID to the newest attempt we already requested again (or gave up on): such a GUID comes
    back only once GitHub lists a newer attempt, i.e. our redelivery failed too; until then it is in flight.
    """
    acted_on = acted_on or {}
    attempts: dict[str, list[Mapping[str, Any]]] = {}
    for delivery in deliveries:
        if _is_attempt(delivery):
            attempts.setdefault(delivery["guid"], []).append(delivery)
    chosen: list[Redelivery] = []
    for guid, tries in attempts.items():
        if guid in stored_guids:
            continue
        if any(t.get("status") == "OK" or 200 <= _status_code(t.get("status_code")) < 300 for t in tries):
            continue
        newest = max(tries, key=lambda t: (_timestamp(t.get("delivered_at")) or 0.0, int(t["id"])))
        delivered = _timestamp(newest.get("delivered_at"))
        if delivered is None or now - delivered > window:
            continue
        last_acted = acted_on.get(guid)
        if last_acted is not None and max(int(t["id"]) for t in tries) <= last_acted:
            continue
        resent = sum(1 for t in tries if t.get("redelivery") is True)
        chosen.append(Redelivery(guid=guid, delivery_id=int(newest["id"]), redeliveries=resent))
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
    """List recent deliveries with the App JWT client and request each missed one again; return those requested.

    POSTs go out `interval` seconds apart (GitHub: "wait at least one second between each" write), at most
    `limit` of them; the rest wait for the next sweep. A GUID whose redeliveries failed MAX_REDELIVERIES times,
    or whose redelivery GitHub refuses for good (GIVE_UP_STATUSES), is given up with a warning; one refused
    with a 5xx or a network failure is asked again next sweep, and a rate limit ends the sweep.
    """
    recent: list[Mapping[str, Any]] = []
    listed = 0
    deadline = None if list_seconds is None else clock() + list_seconds
    async for delivery in app_api.getiter(f"/app/hook/deliveries?per_page={PAGE_SIZE}"):
        listed += 1
        if _is_attempt(delivery):  # Why: a string or null in the list raised AttributeError, every sweep
            stamp = _timestamp(delivery.get("delivered_at"))
            if stamp is not None and now - stamp > WINDOW_SECONDS:
                break  # newest first: everything after this is outside the window
            recent.append(delivery)
        if deadline is not None and listed % PAGE_SIZE == 0 and clock() > deadline:
            # Why: an App with thousands of deliveries a day has hundreds of pages in 3 days; reading them all
            # outlasted JOB_TIMEOUT, so every sweep was cancelled before its first POST and nothing was ever
            # redelivered. The newest pages (where a restart's misses are) are acted on; older ones are not.
            log.warning("redelivery sweep: read %d deliveries of GitHub's log in %.0f s, its share of JOB_TIMEOUT; "
                        "older ones are not checked this time", listed, list_seconds)
            break
    guids = {d["guid"] for d in recent}
    stored = await store.stored_guids(db, guids)
    acted = await store.acted_on(db, guids - stored)
    requested: list[Redelivery] = []
    posts = 0
    for item in select_redeliveries(recent, stored, acted, now=now):
        if item.redeliveries >= MAX_REDELIVERIES:
            log.warning("gave up on delivery %s: GitHub redelivered it %d times and it never reached us",
                        item.guid, item.redeliveries)
            await store.record(db, item.guid, item.delivery_id, now)  # so it is given up (and logged) once
            continue
        if posts >= limit:
            break
        if posts and interval > 0:
            await sleep(interval)
        posts += 1
        try:
            await app_api.post(f"/app/hook/deliveries/{item.delivery_id}/attempts", data={})
        except RateLimited:
            raise  # the runner retries the sweep after the limit; the GUIDs requested so far are recorded
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) not in GIVE_UP_STATUSES:
                log.warning("could not request redelivery of %s (%s); the next sweep tries again", item.guid, exc)
                continue
            # Why: GitHub no longer has the attempt (404, 410) or will not resend it (422); asking again every
            # sweep for the 3 days it stays listed only repeats the refusal. Recorded like a redelivery we gave up.
            log.warning("gave up on delivery %s: GitHub answered %d to the redelivery request (%s)", item.guid,
                        int(exc.status_code), exc)
            await store.record(db, item.guid, item.delivery_id, now)
            continue
        except (RetryLater, gidgethub.HTTPException) as exc:
            log.warning("could not request redelivery of %s (%s); the next sweep tries again", item.guid, exc)
            continue
        # Recorded after the POST: a failed POST leaves the GUID to the next sweep. A crash in between only
        # asks GitHub once more, and intake stores a GUID once (WH-19).
        await store.record(db, item.guid, item.delivery_id, now)
        requested.append(item)
        log.info("requested redelivery of %s", item.guid)
    return requested
