"""Checkpoint the WAL when writes pause, so no delivery waits behind one.

SQLite's automatic checkpoint runs inside whichever commit crosses its threshold, and every delivery in
that commit's batch (and those queued behind it) waits for the copy and its fsyncs. Webhook traffic comes
in bursts; between them the writer is idle, and that is when the copy costs nobody anything. The
automatic checkpoint stays on as a backstop (storage.db.WAL_BACKSTOP_PAGES) for load that never pauses.
"""

from __future__ import annotations

import asyncio
import logging

from storage.db import Database

log = logging.getLogger("quantumreview.storage")

# Long enough to span the gaps inside a burst (a batch commits every few ms), short enough that a quiet
# server's WAL is folded back within a second.
IDLE_SECONDS = 0.5


async def checkpoint_when_idle(db: Database, *, idle: float = IDLE_SECONDS) -> None:
    """Run until cancelled: after a write, once a whole `idle` period passes with no other (between `idle` and
    twice that after the last), checkpoint the WAL."""
    while True:
        await db.wrote.wait()
        # Why poll a counter: waking on every commit of a burst cost the event loop a timer per batch.
        seen = -1
        while seen != db.commits:
            seen = db.commits
            await asyncio.sleep(idle)
        db.wrote.clear()
        try:
            await db.checkpoint()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed checkpoint leaves the WAL as it was; the next pause retries
            log.warning("WAL checkpoint failed: %s", type(exc).__name__)
