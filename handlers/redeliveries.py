"""The scheduled sweep that asks GitHub to redeliver webhooks we missed while down."""

from __future__ import annotations

import time

from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.redelivery import LIST_SHARE, SWEEP_EVENT, posts_per_sweep, sweep

router = routing.Router()


@router.register(SWEEP_EVENT)
async def redeliver_missed_deliveries(event: sansio.Event, ctx: Context) -> None:
    """List GitHub's failed deliveries of the last 3 days and request each unknown GUID again, paced."""
    if ctx.github is None:
        ctx.log.info("no GitHub App configured yet; nothing to sweep")
        return
    interval = ctx.settings.github_write_interval
    chosen = await sweep(ctx.github.as_app(), ctx.db, now=time.time(), interval=interval,
                         limit=posts_per_sweep(interval, ctx.settings.job_timeout),
                         list_seconds=LIST_SHARE * ctx.settings.job_timeout)
    ctx.log.info("redelivery sweep requested %d deliveries", len(chosen))
