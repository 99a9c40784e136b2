"""Repositories the user manages: the list, one repository's summary and the App's installation link."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from quantumreview import access, keys
from quantumreview.api.errors import bad_request, iso, paginated, parse_page, query_value
from quantumreview.api.guard import github_name, managed_repo, signed_in_user
from storage import dashboard
from storage.installations import get_installation

routes = web.RouteTableDef()
# owner/name: at most 39 + 1 + 100 characters on GitHub.
AFTER_MAX = 141


def parse_after(request: web.Request) -> str | None:
    """`after` (a repository's owner/name) from the query string, lower-cased; None when absent, or 400."""
    value = query_value(request.query, "after")
    if value is not None and not 0 < len(value) <= AFTER_MAX:
        raise bad_request(f"after must be a repository's owner/name, got {value[:40]!r}")
    return None if value is None else value.lower()


@routes.get("/api/repos")
async def list_repos(request: web.Request) -> web.Response:
    """One page of the user's managed repositories, by name, with counts."""
    user = await signed_in_user(request)
    page = parse_page(request.query)
    after = parse_after(request)
    repos = sorted(await access.managed_repositories(request, user), key=lambda r: r.repo.lower())
    if after is not None:
        # Why a cursor: by offset, a repository removed (or added) between two pages shifted the rest, and the next
        # page skipped (or repeated) as many; the last name shown is stable.
        repos = [r for r in repos if r.repo.lower() > after]
    window = repos[page.offset:page.offset + page.per_page]
    db = request.app[keys.db]
    names = await dashboard.stored_names(db, [(r.repo, r.repo_id) for r in window])
    counts = await dashboard.repo_counts(db, list(names.values()))
    items = [
        {"repo": r.repo, "installation_id": r.installation_id, "permission": r.permission,
         "issues": counts[names[r.repo]].issues, "open_issues": counts[names[r.repo]].open_issues,
         "open_pulls": counts[names[r.repo]].open_pulls}
        for r in window
    ]
    return web.json_response(paginated(items, page, len(repos)))


def health_json(point: dashboard.HealthPoint | None) -> dict[str, Any] | None:
    """A health score as the API shows it."""
    if point is None:
        return None
    return {"score": point.score, "head_sha": point.head_sha, "branch": point.branch, "counts": point.counts,
            "at": iso(point.at)}


def health_summary(history: list[dashboard.HealthPoint], branch: str | None) -> dict[str, Any]:
    """The branch followed, its latest score, the change since the one before, and its recent scores oldest
    first."""
    latest = history[0] if history else None
    change = history[0].score - history[1].score if len(history) > 1 else None
    return {"branch": branch, "latest": health_json(latest), "change": change,
            "trend": [health_json(point) for point in reversed(history)]}


@routes.get("/api/repos/{owner}/{repo}")
async def get_repo(request: web.Request) -> web.Response:
    """The repository's installation, counts and code health."""
    _user, repo = await managed_repo(request)
    db = request.app[keys.db]
    installation = await get_installation(db, repo.installation_id)
    counts = (await dashboard.repo_counts(db, [repo.repo]))[repo.repo]
    branch = await dashboard.trend_branch(db, repo.repo)
    history = await dashboard.health_history(db, repo.repo, branch=branch)
    return web.json_response({
        "repo": github_name(request), "permission": repo.permission,
        "installation": None if installation is None else {
            "id": installation.id, "account_login": installation.account_login,
            "account_type": installation.account_type, "suspended": installation.suspended,
            "deleted": installation.deleted,
        },
        "installation_id": repo.installation_id,
        "issues": counts.issues, "open_issues": counts.open_issues, "open_pulls": counts.open_pulls,
        "health": health_summary(history, branch),
    })


@routes.get("/api/repos/{owner}/{repo}/install")
async def get_install_url(request: web.Request) -> web.Response:
    """Where to install the App, or manage this repository's installation."""
    _user, repo = await managed_repo(request)
    github_url = request.app[keys.settings].github_url.rstrip("/")
    credentials = request.app[keys.credentials].current
    slug = credentials.slug if credentials is not None else None
    url = (f"{github_url}/apps/{slug}/installations/new" if slug
           else f"{github_url}/settings/installations/{repo.installation_id}")
    return web.json_response({"url": url, "installation_id": repo.installation_id})
