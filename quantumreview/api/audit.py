"""The repository's audit log: who regenerated, revalidated or flagged what, and when."""

from __future__ import annotations

from aiohttp import web

from quantumreview import keys
from quantumreview.api.errors import iso, paginated, parse_before, parse_page
from quantumreview.api.guard import github_name, managed_repo
from storage import audit

routes = web.RouteTableDef()


@routes.get("/api/repos/{owner}/{repo}/audit")
async def list_audit(request: web.Request) -> web.Response:
    """One page of the repository's audit entries, newest first."""
    _user, repo = await managed_repo(request)
    page = parse_page(request.query)
    before = parse_before(request.query)
    # Why also the stored name: entries made before a rename stay under the old name until an event re-keys the
    # repository's rows (audit.rename_repository), and were missing from the log meanwhile.
    entries, total = await audit.list_for_repo(request.app[keys.db], github_name(request), page.page, page.per_page,
                                               also=[repo.repo], before=before)
    items = [{"id": e.id, "actor": e.actor, "action": e.action, "target": e.target, "details": e.details,
              "at": iso(e.at)} for e in entries]
    return web.json_response(paginated(items, page, total))
