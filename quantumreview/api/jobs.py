"""Jobs the API queues on the user's behalf: answer 202 with the id, and show a job's state."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from quantumreview import access, keys
from quantumreview.api.errors import api_error, iso, not_found, path_int
from quantumreview.api.guard import signed_in_user
from quantumreview.jobs import enqueue
from storage import audit, dashboard
from storage.db import Database

routes = web.RouteTableDef()


async def accept_job(request: web.Request, actor: str, repo: access.RepoAccess, event: str, data: dict[str, Any],
                     number: int, *, audit_repo: str) -> web.Response:
    """Queue `event` for item #number of the repository (named as stored), audit it under `audit_repo` (GitHub's
    name, see guard.github_name), and answer 202 with the job id."""
    target = f"{repo.repo}#{number}"
    ids = await enqueue(request.app, event, data, ordering_key=target, installation_id=repo.installation_id)
    if not ids:
        raise api_error(503, "unavailable", f"no handler is installed for {event}")
    await audit.record(request.app[keys.db], repo=audit_repo, actor=actor, action=event.rpartition(".")[2],
                       target=f"{audit_repo}#{number}", details={"job_ids": ids})
    return web.json_response({"status": "accepted", "job_id": ids[0], "job_ids": ids}, status=202)


async def _reached(db: Database, managed: list[access.RepoAccess], repo: str) -> access.RepoAccess | None:
    """Which of `managed` is `repo`: by name ignoring case, or by GitHub id when `repo` is the name stored for a
    repository since renamed (jobs are queued under the stored name, see guard.managed_repo); None when none is."""
    found = next((a for a in managed if a.repo.lower() == repo.lower()), None)
    if found is not None:
        return found
    ids = await dashboard.repository_ids(db, repo)
    return next((a for a in managed if a.repo_id is not None and a.repo_id in ids), None)


@routes.get("/api/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    """A job's state, only when it works on a repository the user manages (else 404, no existence leak)."""
    user = await signed_in_user(request)
    job_id = path_int(request, "id")
    db = request.app[keys.db]
    job = await dashboard.get_job(db, job_id)
    # Why read first: a missing job and another's answer alike, whatever GitHub does (no existence leak).
    managed = await access.managed_repositories(request, user)
    reached = None if job is None or job.repo is None else await _reached(db, managed, job.repo)
    if job is None or reached is None:
        raise not_found("no such job in your repositories")
    # Why GitHub's name: as every other answer gives it (guard.github_name); the dashboard builds the repository's
    # routes from it, and the stored name of a renamed repository answers 404 there.
    return web.json_response({
        "id": job.id, "repo": reached.repo, "handler": job.handler, "status": job.status, "attempts": job.attempts,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
        "error": job.last_error,
    })
