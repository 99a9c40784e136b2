"""Two handlers per issues.opened delivery; each logs its runs and makes its effect at most once."""

from __future__ import annotations

import asyncio

from gidgethub import routing, sansio

from quantumreview.context import Context

router = routing.Router()

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS crash_runs (delivery_id TEXT NOT NULL, handler TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS crash_effects (delivery_id TEXT NOT NULL, handler TEXT NOT NULL)",
)


async def record(ctx: Context, handler: str) -> None:
    """Log the run, wait as a GitHub call would, then make the effect once (lookup-before-create)."""
    async with ctx.db.transaction() as conn:
        for statement in SCHEMA:
            await conn.execute(statement)
        await conn.execute("INSERT INTO crash_runs VALUES (?, ?)", (ctx.delivery_id, handler))
    await asyncio.sleep(0.005)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO crash_effects SELECT ?, ? WHERE NOT EXISTS "
            "(SELECT 1 FROM crash_effects WHERE delivery_id = ? AND handler = ?)",
            (ctx.delivery_id, handler, ctx.delivery_id, handler),
        )


@router.register("issues", action="opened")
async def post_checklist(event: sansio.Event, ctx: Context) -> None:
    """Stand-in for a comment on the issue."""
    await record(ctx, "post_checklist")


@router.register("issues", action="opened")
async def notify_managers(event: sansio.Event, ctx: Context) -> None:
    """Stand-in for notifications."""
    await record(ctx, "notify_managers")
