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
    """Run until cancelled: after a write, once `idle` seconds pass with no other, checkpoint the WAL."""
    while True:
        await db.wrote.wait()
        db.wrote.clear()
        while True:  # every further write restarts the quiet period
            try:
                async with asyncio.timeout(idle):
                    await db.wrote.wait()
            except TimeoutError:
                break
            db.wrote.clear()
        try:
            await db.checkpoint()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed checkpoint leaves the WAL as it was; the next pause retries
            log.warning("WAL checkpoint failed: %s", type(exc).__name__)
