"""A user revoked the App's authorization on GitHub: forget their tokens and end their dashboard sessions (WH-26)."""

from __future__ import annotations

from gidgethub import routing, sansio

from quantumreview.context import Context
from storage import users

router = routing.Router()


@router.register("github_app_authorization", action="revoked")
async def revoke_authorization(event: sansio.Event, ctx: Context) -> None:
    """Delete the sender's stored tokens and bump their session version, so their cookies get 401."""
    sender = event.data.get("sender")
    user_id = sender.get("id") if isinstance(sender, dict) else None
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        ctx.log.warning("github_app_authorization.revoked without a sender id; nothing to revoke")
        return
    await users.revoke_user(ctx.db, user_id)
    ctx.log.info("user %s revoked the App's authorization; tokens deleted, sessions ended", user_id)
