"""Issues with checklists: the list with progress, one checklist in full, and regenerating it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from quantumreview import access, keys
from quantumreview.api.errors import (
    iso,
    not_found,
    paginated,
    parse_before,
    parse_choice,
    parse_page,
    path_int,
    query_value,
)
from quantumreview.api.guard import github_name, managed_repo
from quantumreview.api.jobs import accept_job
from storage import checklists, dashboard
from storage.db import Database
from storage.pulls import PullRow

REGENERATE_EVENT = "quantumreview.regenerate_checklist"
# Why a cap: any number of pull requests may link one issue, and the answer held every one of them.
LINKED_PULLS_MAX = 100

routes = web.RouteTableDef()


@routes.get("/api/repos/{owner}/{repo}/issues")
async def list_issues(request: web.Request) -> web.Response:
    """One page of the repository's issues that have a checklist, newest first, with progress."""
    _user, repo = await managed_repo(request)
    page = parse_page(request.query)
    before = parse_before(request.query)
    raw_state = query_value(request.query, "state")
    state = parse_choice("open" if raw_state is None else raw_state, "state", dashboard.ISSUE_STATES)
    issues, total = await dashboard.list_issues(request.app[keys.db], repo.repo, state=state,
                                                limit=page.per_page, offset=page.offset, before=before)
    items = [{"number": i.number, "title": i.title, "state": i.state, "updated_at": iso(i.updated_at),
              "progress": asdict(i.progress)} for i in issues]
    return web.json_response(paginated(items, page, total))


def pull_link_json(pull: PullRow, repo: str) -> dict[str, Any]:
    """A pull request as listed beside an issue, its repository named `repo`."""
    return {"repo": repo, "number": pull.number, "title": pull.title, "state": pull.state,
            "merged": pull.merged, "flagged_for_merge": pull.flagged_by is not None}


async def visible_linking_pulls(db: Database, repo: str, number: int,
                                reachable: set[str]) -> tuple[list[PullRow], bool]:
    """The first LINKED_PULLS_MAX pull requests linking the issue whose repository (lower case) is in `reachable`,
    most recently updated first, and whether more exist; read a slice at a time, as they are filtered here."""
    found: list[PullRow] = []
    offset, size = 0, LINKED_PULLS_MAX + 1
    while len(found) <= LINKED_PULLS_MAX:
        batch = await dashboard.pulls_linking(db, repo, number, limit=size, offset=offset)
        found += [pull for pull in batch if pull.repo.lower() in reachable]
        if len(batch) < size:
            break
        offset += size
    return found[:LINKED_PULLS_MAX], len(found) > LINKED_PULLS_MAX


@routes.get("/api/repos/{owner}/{repo}/issues/{number}")
async def get_issue(request: web.Request) -> web.Response:
    """The issue's checklist: live items with status, retired IDs and the pull requests that link it."""
    user, repo = await managed_repo(request)
    number = path_int(request, "number")
    db = request.app[keys.db]
    checklist = await checklists.get_checklist(db, repo.repo, number)
    if checklist is None:
        raise not_found(f"issue #{number} of {repo.repo} has no checklist")
    items, retired = await checklists.get_items(db, checklist.id)
    # Why filtered: a pull request of a repository the user cannot reach may link this issue; its title, state
    # and flag are not theirs to see (OA-14), as GitHub hides such cross-references.
    reachable = {a.repo.lower() for a in await access.managed_repositories(request, user)} | {repo.repo.lower()}
    pulls, more = await visible_linking_pulls(db, repo.repo, number, reachable)
    # Why: this repository's pulls may still be stored under an old name (see guard.managed_repo).
    named = {repo.repo.lower(): github_name(request)}
    progress = {status: sum(item.status == status for item in items) for status in checklists.STATUSES}
    return web.json_response({
        "repo": github_name(request), "number": number, "title": checklist.title, "state": checklist.state,
        "retired": checklist.retired, "truncated": checklist.truncated, "total_found": checklist.total_found,
        "progress": {"total": len(items), **progress},
        "items": [{"tid": i.tid, "text": i.text, "detail": i.detail, "status": i.status} for i in items],
        "retired_ids": [{"tid": tid, "text": text} for tid, text in sorted(retired.items())],
        "linked_pulls": [pull_link_json(pull, named.get(pull.repo.lower(), pull.repo)) for pull in pulls],
        "linked_pulls_truncated": more,
    })


@routes.post("/api/repos/{owner}/{repo}/issues/{number}/regenerate")
async def regenerate_checklist(request: web.Request) -> web.Response:
    """Queue a rebuild of the issue's checklist (the job fetches the issue); needs push permission."""
    user, repo = await managed_repo(request)
    number = path_int(request, "number")
    access.require_push(repo)
    data = {"repo": repo.repo, "issue_number": number}
    return await accept_job(request, user.login, repo, REGENERATE_EVENT, data, number,
                            audit_repo=github_name(request))
