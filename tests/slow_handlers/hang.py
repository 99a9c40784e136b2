"""A handler that outlasts any shutdown grace: for the signal tests, a job still running when the signal comes."""

from __future__ import annotations

import asyncio

from gidgethub import routing, sansio

from quantumreview.context import Context

router = routing.Router()


@router.register("issues", action="opened")
async def hang(event: sansio.Event, ctx: Context) -> None:
    await asyncio.sleep(3600)
