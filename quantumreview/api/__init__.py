"""The dashboard JSON API: one module per resource; `add_routes(app)` mounts them all under /api."""

from __future__ import annotations

from aiohttp import web

from quantumreview.api import audit, issues, jobs, me, notifications, openapi, pulls, repos

ROUTE_TABLES = (me.routes, repos.routes, issues.routes, pulls.routes, audit.routes, jobs.routes,
                notifications.routes, openapi.routes)


def add_routes(app: web.Application) -> None:
    """Register every API route on `app`."""
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
