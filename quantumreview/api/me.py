"""GET /api/me: the signed-in user, how many repositories they manage and their unread notifications."""

from __future__ import annotations

from aiohttp import web

from quantumreview import access, keys
from quantumreview.api.guard import signed_in_user
from storage import notifications

routes = web.RouteTableDef()


@routes.get("/api/me")
async def get_me(request: web.Request) -> web.Response:
    """The user's profile and counts."""
    user = await signed_in_user(request)
    repos = await access.managed_repositories(request, user)
    unread = await notifications.unread_count(request.app[keys.db], user.id)
    return web.json_response({
        "id": user.id, "login": user.login, "name": user.name, "avatar_url": user.avatar_url,
        "repositories": len(repos), "unread_notifications": unread,
    })
