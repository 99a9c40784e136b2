"""Who is asking and which repository they may see: thin calls into auth and access."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from quantumreview import access, auth, keys
from storage import dashboard


async def signed_in_user(request: web.Request) -> auth.User:
    """The session's user, or 401 JSON."""
    return await auth.current_user(request)


async def managed_repo(request: web.Request) -> tuple[auth.User, access.RepoAccess]:
    """The user and their access to the path's {owner}/{repo}, named as its rows are stored (see
    dashboard.stored_names); 404 JSON when they do not manage it."""
    user = await auth.current_user(request)
    repo = await access.repo_access(request, user, request.match_info["owner"], request.match_info["repo"])
    stored = (await dashboard.stored_names(request.app[keys.db], [(repo.repo, repo.repo_id)]))[repo.repo]
    return user, dataclasses.replace(repo, repo=stored)


async def github_name(request: web.Request, user: auth.User) -> str:
    """The path's repository as GitHub names it now (from the user's cached list).

    Why: the audit log and the managers (user_repositories) are kept under it, and a rename re-keys neither, while
    managed_repo names the stored rows, which may still be under an older name.
    """
    found = await access.repo_access(request, user, request.match_info["owner"], request.match_info["repo"])
    return found.repo

