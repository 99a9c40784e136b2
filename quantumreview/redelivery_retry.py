"""Redelivery requests that failed on the way (a 5xx, a timeout, a dropped connection): kept in the database and
asked again at the next sweeps, before the pass over GitHub's log goes on, a bounded number of times.

Why: the pass moves on past a failed request's page, and reaches it again only in its next pass over the 3-day log,
hours later on a busy App, or never within the 3 days.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from quantumreview.redelivery_log import WINDOW_SECONDS
from storage import redeliveries as store
from storage.db import Database

# Why a bound: a request GitHub fails every time (its bug, our App's) must not be repeated every sweep for 3 days;
# five tries over four sweeps after the first failure (about 40 minutes at SWEEP_INTERVAL) outlast a passing outage.
MAX_REQUEST_TRIES = 5

log = logging.getLogger("quantumreview.redelivery")


@dataclass
class Pacer:
    """The sweep's POSTs: `interval` seconds apart, at most `limit` of them."""

    limit: int
    interval: float
    sleep: Callable[[float], Awaitable[None]]
    posts: int = field(default=0)

    async def turn(self) -> bool:
        """Wait for the next POST's turn; False once the sweep's `limit` is spent (the rest waits a sweep)."""
        if self.posts >= self.limit:
            return False
        if self.posts and self.interval > 0:
            await self.sleep(self.interval)
        self.posts += 1
        return True


@dataclass
class Sorted:
    """The pending retries of one sweep: to ask again, no longer needed, and gone from GitHub's log."""

    due: list[store.Retry] = field(default_factory=list)
    needless: list[store.Retry] = field(default_factory=list)
    expired: list[store.Retry] = field(default_factory=list)


def sort_retries(pending: list[store.Retry], *, arrived: set[str], acted_on: Mapping[str, int],
                 newest: Mapping[str, int], now: float, window: float = WINDOW_SECONDS) -> Sorted:
    """Sort `pending`: a GUID stored here (`arrived`), recorded since as requested or given up (`acted_on`), or
    listed with an attempt newer than the one to ask for (`newest`: GitHub sent it since, OK or not, and the
    selection judges that attempt) is no longer needed; one whose attempt left the window is expired; the rest
    are due, in the order they first failed."""
    result = Sorted()
    for retry in pending:
        if (retry.guid in arrived or acted_on.get(retry.guid, 0) >= retry.github_delivery_id
                or newest.get(retry.guid, 0) > retry.github_delivery_id):
            result.needless.append(retry)
        elif now - retry.delivered_at > window:
            result.expired.append(retry)
        else:
            result.due.append(retry)
    return result


async def failed(db: Database, retry: store.Retry, reason: Exception, now: float) -> None:
    """Count one more failed request for `retry`: keep it for the next sweep, or give up at MAX_REQUEST_TRIES."""
    tries = retry.tries + 1
    if tries >= MAX_REQUEST_TRIES:
        log.warning("gave up on delivery %s: %d redelivery requests failed (the last: %s)", retry.guid, tries, reason)
        await store.record(db, retry.guid, retry.github_delivery_id, now)  # never asked again; drops the retry
        return
    log.warning("could not request redelivery of %s (%s); the next sweep asks again", retry.guid, reason)
    await store.save_retry(db, store.Retry(retry.guid, retry.github_delivery_id, retry.delivered_at,
                                           retry.redeliveries, tries), now)


async def forget(db: Database, sorted_retries: Sorted) -> None:
    """Drop the retries no longer needed, and give up (one line each) those GitHub's log no longer keeps."""
    for retry in sorted_retries.needless:
        log.info("redelivery of %s is no longer needed (it arrived, or GitHub sent it again since)", retry.guid)
        await store.drop_retry(db, retry.guid)
    for retry in sorted_retries.expired:
        log.warning("gave up on delivery %s: it left GitHub's 3-day log before a redelivery request went through "
                    "(%d failed)", retry.guid, retry.tries)
        await store.drop_retry(db, retry.guid)
