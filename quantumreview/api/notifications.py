"""The signed-in user's notifications: list (optionally unread only) and mark one read."""

from __future__ import annotations

from aiohttp import web

from quantumreview import access, keys
from quantumreview.api.errors import (
    iso,
    not_found,
    paginated,
    parse_before,
    parse_bool,
    parse_page,
    path_int,
    query_value,
)
from quantumreview.api.guard import signed_in_user
from storage import notifications

routes = web.RouteTableDef()


@routes.get("/api/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    """One page of the user's notifications, newest first."""
    user = await signed_in_user(request)
    page = parse_page(request.query)
    before = parse_before(request.query)
    unread_value = query_value(request.query, "unread")
    unread = False if unread_value is None else parse_bool(unread_value, "unread")
    # Why: the listing filters by the stored access set; a stale one is read again from GitHub first (OA-17).
    await access.refresh_if_stale(request, user)
    found, total = await notifications.list_notifications(request.app[keys.db], user.id, unread_only=unread,
                                                          page=page.page, per_page=page.per_page, before=before)
    items = [{"id": n.id, "repo": n.repo, "kind": n.kind, "title": n.title, "url": n.url, "data": n.data,
              "created_at": iso(n.created_at), "read": n.read, "read_at": iso(n.read_at)} for n in found]
    return web.json_response(paginated(items, page, total))


@routes.post("/api/notifications/{id}/read")
async def mark_notification_read(request: web.Request) -> web.Response:
    """Mark one of the user's notifications read (404 for anyone else's, or one they may no longer read)."""
    user = await signed_in_user(request)
    notification_id = path_int(request, "id")
    # Why: only notifications the listing shows may be marked, judged by the same stored access set (OA-17).
    await access.refresh_if_stale(request, user)
    if not await notifications.mark_read(request.app[keys.db], user.id, notification_id):
        raise not_found(f"no notification {notification_id}")
    return web.json_response({"id": notification_id, "read": True})
