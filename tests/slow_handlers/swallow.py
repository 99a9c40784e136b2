"""A handler that swallows every cancellation (a broad retry loop): for the signal test of a job that never ends."""

from __future__ import annotations

import asyncio

from gidgethub import routing, sansio

from quantumreview.context import Context

router = routing.Router()


@router.register("issues", action="reopened")
async def swallow(event: sansio.Event, ctx: Context) -> None:
    while True:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass
