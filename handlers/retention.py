"""The scheduled pruning of old deliveries and finished jobs, so the database does not fill its volume."""

from __future__ import annotations

import time

from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.retention import PRUNE_EVENT
from storage.retention import STAGED_DAYS, prune, prune_staged

router = routing.Router()


@router.register(PRUNE_EVENT)
async def prune_old_deliveries(event: sansio.Event, ctx: Context) -> None:
    """Delete deliveries older than DELIVERY_RETENTION_DAYS whose jobs all finished well, and enqueued jobs that
    finished before then (failed or dead ones too, but each handler's latest); and staged work no run sent."""
    now = time.time()
    days = ctx.settings.delivery_retention_days
    deliveries, jobs = await prune(ctx.db, now - days * 86400, now=now)
    if deliveries or jobs:  # hourly: a line only when there was something to delete
        ctx.log.info("retention: deleted %d deliveries (with their jobs) and %d enqueued jobs older than %d days",
                     deliveries, jobs, days)
    notes, owed = await prune_staged(ctx.db, now)
    if notes or owed:
        ctx.log.info("retention: dropped %d staged notification(s) and %d owed follow-up(s) older than %d day(s), "
                     "which no run sent", notes, owed, STAGED_DAYS)
