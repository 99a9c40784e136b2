"""Build JSON objects shaped like GitHub's REST responses (fields the app and plugins read)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def iso(timestamp: float) -> str:
    """Format a Unix time the way GitHub does: 2024-01-02T03:04:05Z."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int) -> str:
    """Return a stable opaque node id."""
    return f"{kind}_{number:08d}"


def user_json(login: str, user_id: int, *, api: str, web: str, kind: str = "User") -> dict[str, Any]:
    """Return a simple user (or organization / bot) object."""
    return {
        "login": login,
        "id": user_id,
        "node_id": node_id("U", user_id),
        "avatar_url": f"{web}/avatars/{login}",
        "url": f"{api}/users/{login}",
        "html_url": f"{web}/{login}",
        "type": kind,
        "site_admin": False,
    }


def repo_json(full_name: str, repo_id: int, owner: Mapping[str, Any], *, api: str, web: str) -> dict[str, Any]:
    """Return a repository object."""
    name = full_name.split("/", 1)[1]
    return {
        "id": repo_id,
        "node_id": node_id("R", repo_id),
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": dict(owner),
        "html_url": f"{web}/{full_name}",
        "url": f"{api}/repos/{full_name}",
        "default_branch": "main",
        "fork": False,
    }


def issue_json(
    repo: str, number: int, item_id: int, *, title: str, body: str | None, state: str,
    user: Mapping[str, Any], now: float, api: str, web: str,
) -> dict[str, Any]:
    """Return an issue object."""
    return {
        "id": item_id,
        "node_id": node_id("I", item_id),
        "number": number,
        "title": title,
        "body": body,
        "state": state,
        "locked": False,
        "user": dict(user),
        "labels": [],
        "assignees": [],
        "comments": 0,
        "url": f"{api}/repos/{repo}/issues/{number}",
        "comments_url": f"{api}/repos/{repo}/issues/{number}/comments",
        "repository_url": f"{api}/repos/{repo}",
        "html_url": f"{web}/{repo}/issues/{number}",
        "created_at": iso(now),
        "updated_at": iso(now),
        "closed_at": None,
        "author_association": "OWNER",
    }


def comment_json(
    repo: str, issue_number: int, comment_id: int, *, body: str, user: Mapping[str, Any], now: float,
    api: str, web: str,
) -> dict[str, Any]:
    """Return an issue comment object."""
    return {
        "id": comment_id,
        "node_id": node_id("IC", comment_id),
        "body": body,
        "user": dict(user),
        "url": f"{api}/repos/{repo}/issues/comments/{comment_id}",
        "issue_url": f"{api}/repos/{repo}/issues/{issue_number}",
        "html_url": f"{web}/{repo}/issues/{issue_number}#issuecomment-{comment_id}",
        "created_at": iso(now),
        "updated_at": iso(now),
        "author_association": "NONE",
    }


def pull_file_json(repo: str, head_sha: str, raw: Mapping[str, Any], *, api: str, web: str) -> dict[str, Any]:
    """Return a pull request file entry, filling GitHub's defaults around the given fields."""
    filename = str(raw["filename"])
    patch = raw.get("patch")
    additions = sum(1 for line in (patch or "").splitlines() if line.startswith("+"))
    deletions = sum(1 for line in (patch or "").splitlines() if line.startswith("-"))
    entry: dict[str, Any] = {
        "sha": hashlib.sha1(filename.encode(), usedforsecurity=False).hexdigest(),
        "filename": filename,
        "status": "modified",
        "additions": additions,
        "deletions": deletions,
        "changes": additions + deletions,
        "blob_url": f"{web}/{repo}/blob/{head_sha}/{filename}",
        "raw_url": f"{web}/{repo}/raw/{head_sha}/{filename}",
        "contents_url": f"{api}/repos/{repo}/contents/{filename}?ref={head_sha}",
    }
    if patch is not None:
        entry["patch"] = patch
    entry.update({k: v for k, v in raw.items() if k != "patch"})
    return entry


def workflow_json(repo: str, workflow_id: int, name: str, path: str, *, now: float, api: str,
                  web: str) -> dict[str, Any]:
    """Return an Actions workflow object, as GitHub's list of a repository's workflows gives it."""
    return {
        "id": workflow_id,
        "node_id": node_id("W", workflow_id),
        "name": name,
        "path": path,
        "state": "active",
        "created_at": iso(now),
        "updated_at": iso(now),
        "url": f"{api}/repos/{repo}/actions/workflows/{workflow_id}",
        "html_url": f"{web}/{repo}/blob/main/{path}",
        "badge_url": f"{web}/{repo}/workflows/{name}/badge.svg",
    }


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """Return a real zip archive holding files (name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def error_json(status: int, message: str) -> dict[str, Any]:
    """Return GitHub's error body."""
    return {
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": str(status),
    }
