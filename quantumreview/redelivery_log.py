"""Reading GitHub's webhook delivery log for the redelivery sweep: the pages new since the last sweep, then
the pass over the older ones, from where the last sweep left it.

GitHub lists the log newest first, a page at a time by cursor, for 3 days. A busy App has hundreds of pages,
more than a sweep may read in its share of JOB_TIMEOUT, so successive sweeps share one pass over the log:
each reads the newest pages down to where the pass began (its `top`), then goes on from the pass's cursor.
A pass that reaches the end of the window is complete; the next sweep starts another at the newest page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import gidgethub

from quantumreview.errors import RateLimited, RetryLater
from quantumreview.webhook import DELIVERY_ID, MAX_HEADER_CHARS
from storage.redeliveries import SweepPass, usable_cursor

WINDOW_SECONDS = 3 * 24 * 3600
PAGE_SIZE = 100  # GitHub's largest page
# Why an overlap: an attempt is logged when it ends (GitHub waits up to 10 s for an answer, longer when it
# throttles), so one may appear below attempts listed before it; reading 2 minutes again costs a page or two.
OVERLAP_SECONDS = 120

log = logging.getLogger("quantumreview.redelivery")

# Where a sweep may resume to read a page again: None is GitHub's newest page (a new pass).
Position = SweepPass | None


def is_attempt(item: Any) -> bool:
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


def timestamp(value: Any) -> float | None:
    """An ISO 8601 time as epoch seconds; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class LogRead:
    """What one sweep read of the log, newest first, and where the pass resumes to read any of it again."""

    attempts: list[Mapping[str, Any]] = field(default_factory=list)
    # Where to resume to read a GUID's newest listed attempt again; and once every one is dealt with.
    resume: dict[str, Position] = field(default_factory=dict)
    end: Position = None
    # A rate limit met while listing: the sweep keeps its ground, then raises it (POSTs would meet it too).
    failure: RateLimited | None = None

    def position_before(self, guids: list[str]) -> Position:
        """Where the next sweep resumes while `guids` (in listing order) are still to be dealt with."""
        return self.resume[guids[0]] if guids else self.end


async def fetch_page(app_api: Any, cursor: str | None) -> tuple[list[Any], str | None]:
    """One page of the log (at `cursor`, else the newest) and the cursor of the next, None after the last."""
    url = f"/app/hook/deliveries?per_page={PAGE_SIZE}"
    if cursor is not None:
        url += f"&cursor={quote(cursor, safe='')}"
    data, more = await app_api.getpage(url)
    if more is None:
        return data, None
    found = parse_qs(urlsplit(more).query).get("cursor", [])
    if len(found) != 1 or not usable_cursor(found[0]):
        # Why not fail: the page is read; without a cursor to go on from, the pass ends here, and the next
        # sweep starts another at the newest page.
        log.warning("redelivery sweep: GitHub's next page of the delivery log has no usable cursor; the pass "
                    "over the log ends there")
        return data, None
    return data, found[0]


class _Reader:
    """One sweep's walk: the new pages (stage "new"), then the pass's (stage "pass")."""

    def __init__(self, app_api: Any, previous: Position, *, now: float, deadline: float | None,
                 clock: Callable[[], float]) -> None:
        self.app_api, self.previous, self.now, self.deadline, self.clock = app_api, previous, now, deadline, clock
        self.read = LogRead()
        self.pages: dict[str, tuple[str, str | None]] = {}  # guid -> (stage, cursor) of its newest attempt
        self.newest: float | None = None
        self.cursors: set[str | None] = set()
        self.listed = 0

    @property
    def top(self) -> int:
        """The newest delivered_at the pass has read down from."""
        tops = [t for t in (self.newest, None if self.previous is None else self.previous.top) if t is not None]
        return int(max(tops)) if tops else int(self.now)

    def late(self) -> bool:
        return self.deadline is not None and self.clock() > self.deadline

    async def page(self, cursor: str | None) -> tuple[list[Any], str | None] | Exception:
        """A page, or what kept it from being read (a rate limit, a failure): the sweep keeps what it read."""
        if cursor in self.cursors:
            log.warning("redelivery sweep: GitHub's delivery log links back to a page already read; the pass "
                        "over the log ends there")
            return [], None
        self.cursors.add(cursor)
        try:
            return await fetch_page(self.app_api, cursor)
        except (RetryLater, gidgethub.HTTPException) as exc:  # RateLimited included
            if cursor is None:
                raise  # the newest page: nothing is read, the sweep fails as before and the runner retries it
            return exc

    def take(self, items: list[Any], stage: str, cursor: str | None, boundary: float | None) -> str:
        """Keep a page's attempts; say why it stops there: "window", "met" (the pass's top) or "" (go on)."""
        for item in items:
            self.listed += 1
            if not is_attempt(item):  # Why: a string or null in the list raised AttributeError, every sweep
                continue
            stamp = timestamp(item.get("delivered_at"))
            if stamp is not None and self.now - stamp > WINDOW_SECONDS:
                return "window"  # newest first: everything after this is outside the window
            if stamp is not None and boundary is not None and stamp < boundary:
                return "met"
            if stamp is not None and stage == "new":
                self.newest = stamp if self.newest is None else max(self.newest, stamp)
            self.read.attempts.append(item)
            self.pages.setdefault(item["guid"], (stage, cursor))
        return ""

    def failed(self, exc: Exception, cursor: str | None, stage: str) -> Position:
        """Where the pass resumes after `exc` fetching the page at `cursor`."""
        if isinstance(exc, RateLimited):
            self.read.failure = exc  # the sweep raises it once it has kept its ground
        elif isinstance(exc, gidgethub.BadRequest):
            # Why not again: GitHub refuses the cursor (e.g. its attempt left the log); it would again.
            log.warning("redelivery sweep: GitHub refused a page of the delivery log (%s); the pass does not go on "
                        "from that page", exc)
        else:
            log.warning("redelivery sweep: could not read a page of the delivery log (%s); the next sweep reads it "
                        "again", exc)
        if isinstance(exc, gidgethub.BadRequest) or cursor is None:
            return None  # a new pass at the newest page
        if stage == "new" and self.previous is not None:
            return self.previous  # the new pages are read again next time, down to the pass's unchanged top
        return SweepPass(cursor, self.top)

    async def walk(self) -> str:
        """Read the new pages, then the pass's; return the stage whose pages the positions before it keep."""
        previous = self.previous
        boundary = None if previous is None else previous.top - OVERLAP_SECONDS
        cursor: str | None = None
        while True:  # the new pages
            got = await self.page(cursor)
            if isinstance(got, Exception):
                self.read.end = self.failed(got, cursor, "new")
                return "kept" if self.read.end is previous else "new"
            items, following = got
            stop = self.take(items, "new", cursor, boundary)
            if stop == "met":
                break
            if stop == "window" or following is None:
                self.read.end = None  # the whole window is read: the pass is complete
                return "new"
            if self.late():
                # Why a deadline: an App with thousands of deliveries a day has hundreds of pages in 3 days;
                # reading them all outlasted JOB_TIMEOUT, so every sweep was cancelled before its first POST.
                # Why a new pass: the new pages outrun the budget (after a long outage), so the old pass's top
                # would never be met; this one starts at the newest page and reads the old one's ground again.
                self.warn()
                self.read.end = SweepPass(following, self.top)
                return "new"
            cursor = following
        assert previous is not None  # "met" needs a boundary
        cursor = previous.cursor
        self.cursors = set()  # Why: the new pages may hold the pass's first one; reading it twice is harmless
        while True:  # the pass: at least one page a sweep, so it moves on however busy the new pages are
            got = await self.page(cursor)
            if isinstance(got, Exception):
                self.read.end = self.failed(got, cursor, "pass")
                return "met"
            items, following = got
            if self.take(items, "pass", cursor, None) == "window" or following is None:
                self.read.end = None
                return "met"
            if self.late():
                self.warn()
                self.read.end = SweepPass(following, self.top)
                return "met"
            cursor = following

    def warn(self) -> None:
        log.warning("redelivery sweep: read %d deliveries of GitHub's log in its share of JOB_TIMEOUT; the next "
                    "sweep goes on from there", self.listed)

    def positions(self, stage_kept: str) -> None:
        """Where to resume for each GUID: its page; a new page's is the old pass while that pass goes on."""
        for guid, (stage, cursor) in self.pages.items():
            if stage == "new" and stage_kept != "new":
                self.read.resume[guid] = self.previous  # re-read next time: the pass's top has not moved
            else:
                self.read.resume[guid] = None if cursor is None else SweepPass(cursor, self.top)


async def read_log(app_api: Any, previous: Position, *, now: float, deadline: float | None,
                   clock: Callable[[], float]) -> LogRead:
    """Read the log from the newest page down to the pass `previous` began at, then go on with that pass,
    until the window's end or `deadline` (by `clock`); see LogRead for what comes back."""
    reader = _Reader(app_api, previous, now=now, deadline=deadline, clock=clock)
    reader.positions(await reader.walk())
    return reader.read
