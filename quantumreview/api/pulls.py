"""Pull requests: linked issues, manifest, verdict per criterion, code health; revalidate and flag for merge."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from quantumreview import access, keys
from quantumreview.api.errors import iso, not_found, path_int
from quantumreview.api.guard import github_name, managed_repo
from quantumreview.api.jobs import accept_job
from quantumreview.api.repos import health_json
from storage import audit, dashboard, notifications, pulls

REVALIDATE_EVENT = "quantumreview.revalidate_pr"
FLAG_ACTION = "flag_for_merge"
FLAG_KIND = "flagged_for_merge"

routes = web.RouteTableDef()
CriterionKey = tuple[str, int, str]


def _criterion(value: object) -> tuple[CriterionKey, str] | None:
    """(repo, issue, tid) and text of a stored criterion, or None when it is not shaped like one."""
    if not isinstance(value, Mapping):
        return None
    repo, issue, tid = value.get("repo"), value.get("issue_number"), value.get("tid")
    if not (isinstance(repo, str) and isinstance(issue, int) and isinstance(tid, str)):
        return None
    return (repo, issue, tid), str(value.get("text", ""))


def criteria_json(record: dashboard.ManifestRecord) -> list[dict[str, Any]]:
    """Each criterion the manifest covers, with its tests in this PR and the verdict's outcome (None before CI)."""
    rows: dict[CriterionKey, dict[str, Any]] = {}
    coverage = record.manifest.get("coverage")
    for entry in coverage if isinstance(coverage, list) else []:
        found = _criterion(entry.get("criterion")) if isinstance(entry, Mapping) else None
        if found is not None:
            (repo, issue, tid), text = found
            tests = entry.get("tests")
            rows[found[0]] = {"repo": repo, "issue_number": issue, "tid": tid, "text": text,
                              "tests": len(tests) if isinstance(tests, list) else 0, "outcome": None}
    results = (record.verdict or {}).get("results")
    for result in results if isinstance(results, list) else []:
        found = _criterion(result.get("criterion")) if isinstance(result, Mapping) else None
        if found is not None:
            (repo, issue, tid), text = found
            row = rows.setdefault(found[0], {"repo": repo, "issue_number": issue, "tid": tid, "text": text,
                                             "tests": 0, "outcome": None})
            outcome = result.get("outcome")
            row["outcome"] = outcome if isinstance(outcome, str) else None
    return list(rows.values())


def verdict_json(record: dashboard.ManifestRecord | None) -> dict[str, Any] | None:
    """The verdict's conclusion and counts, or None before CI reported."""
    if record is None or record.verdict is None:
        return None
    counts = {k: record.verdict.get(k) for k in ("passed", "failed", "skipped", "missing")}
    return {"conclusion": record.conclusion or record.verdict.get("conclusion"),
            **{k: v if isinstance(v, int) else 0 for k, v in counts.items()}}


def manifest_json(record: dashboard.ManifestRecord | None, head_sha: str | None) -> dict[str, Any] | None:
    """The manifest as stored, for which commit, and whether that is the PR's head."""
    if record is None:
        return None
    return {"head_sha": record.head_sha, "current": record.head_sha == head_sha, "updated_at": iso(record.updated_at),
            "data": record.manifest}


@routes.get("/api/repos/{owner}/{repo}/prs/{number}")
async def get_pull(request: web.Request) -> web.Response:
    """Everything the dashboard shows about one pull request."""
    _user, repo = await managed_repo(request)
    number = path_int(request, "number")
    db = request.app[keys.db]
    pull = await pulls.get_pull(db, repo.repo, number)
    if pull is None:
        raise not_found(f"pull request #{number} of {repo.repo} is not known")
    record = await dashboard.latest_manifest(db, repo.repo, number, pull.head_sha)
    health = await dashboard.health_for_sha(db, repo.repo, pull.head_sha) if pull.head_sha else None
    return web.json_response({
        "repo": github_name(request), "number": number, "title": pull.title, "state": pull.state, "merged": pull.merged,
        "head_sha": pull.head_sha, "updated_at": iso(pull.updated_at),
        "linked_issues": [{"repo": str(link.get("repo", "")), "number": link.get("number"),
                           "source": link.get("source")} for link in pull.linked
                          if isinstance(link.get("number"), int)],
        "manifest": manifest_json(record, pull.head_sha),
        "verdict": verdict_json(record),
        "criteria": criteria_json(record) if record is not None else [],
        "health": health_json(health),
        "flag": {"flagged": pull.flagged_by is not None, "by": pull.flagged_by, "at": iso(pull.flagged_at)},
    })


@routes.post("/api/repos/{owner}/{repo}/prs/{number}/revalidate")
async def revalidate_pull(request: web.Request) -> web.Response:
    """Queue a fresh manifest and verdict for the pull request; needs push permission."""
    user, repo = await managed_repo(request)
    number = path_int(request, "number")
    access.require_push(repo)
    data = {"repo": repo.repo, "pr_number": number}
    return await accept_job(request, user.login, repo, REVALIDATE_EVENT, data, number,
                            audit_repo=github_name(request))


@routes.post("/api/repos/{owner}/{repo}/prs/{number}/flag_for_merge")
async def flag_pull_for_merge(request: web.Request) -> web.Response:
    """Flag the pull request for merge: audit who, when and the verdict at that moment; tell the managers."""
    user, repo = await managed_repo(request)
    number = path_int(request, "number")
    access.require_push(repo)
    db = request.app[keys.db]
    pull = await pulls.get_pull(db, repo.repo, number)
    if pull is None:
        raise not_found(f"pull request #{number} of {repo.repo} is not known")
    record = await dashboard.latest_manifest(db, repo.repo, number, pull.head_sha)
    # Why only the head's: the audit entry names the head, and the latest manifest can be an older commit's
    # (just after a push), whose verdict would read as the head's.
    verdict = verdict_json(record) if record is not None and record.head_sha == pull.head_sha else None
    now = time.time()
    async with db.transaction() as conn:
        await dashboard.flag_for_merge(conn, repo.repo, number, user.login, now)
    named = github_name(request)  # the audit log and the managers are kept under it
    target = f"{named}#{number}"
    details = {"head_sha": pull.head_sha, "verdict": verdict, "at": iso(now)}
    audit_id = await audit.record(db, repo=named, actor=user.login, action=FLAG_ACTION, target=target,
                                  details=details)
    url = f"{request.app[keys.settings].github_url.rstrip('/')}/{named}/pull/{number}"
    notified = await notifications.notify_repo_managers(
        db, named, FLAG_KIND, f"{user.login} flagged {target} for merge", url=url, data=details)
    return web.json_response({"flagged": True, "by": user.login, "at": iso(now), "verdict": verdict,
                              "audit_id": audit_id, "notified": notified})
