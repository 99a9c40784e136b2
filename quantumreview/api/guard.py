"""Who is asking and which repository they may see: thin calls into auth and access."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from quantumreview import access, auth, keys
from storage import dashboard

# The path's repository as GitHub names it now, kept on the request by managed_repo.
GITHUB_NAME = web.RequestKey("github_name", str)


async def signed_in_user(request: web.Request) -> auth.User:
    """The session's user, or 401 JSON."""
    return await auth.current_user(request)


async def managed_repo(request: web.Request) -> tuple[auth.User, access.RepoAccess]:
    """The user and their access to the path's {owner}/{repo}, named as its rows are stored (see
    dashboard.stored_names); 404 JSON when they do not manage it."""
    user = await auth.current_user(request)
    repo = await access.repo_access(request, user, request.match_info["owner"], request.match_info["repo"])
    stored = (await dashboard.stored_names(request.app[keys.db], [(repo.repo, repo.repo_id)]))[repo.repo]
    request[GITHUB_NAME] = repo.repo
    return user, dataclasses.replace(repo, repo=stored)


def github_name(request: web.Request) -> str:
    """The path's repository as GitHub names it now (the user's list); call managed_repo first.

    Why: answers name it so (the dashboard builds routes from them, which match GitHub's names), and the audit log
    and the managers (user_repositories) are kept under it, a rename re-keying neither; managed_repo names the
    stored rows, which may still be under an older name.
    """
    return request[GITHUB_NAME]

