"""Repository routes: issues and comments, pull requests and files, check runs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from quantumreview.testing import fake_shapes as shapes
from quantumreview.testing.fake_http import (
    GitHubError,
    Route,
    found,
    int_param,
    json_body,
    paged_json,
    repo_name,
    state_of,
    token_of,
)
from quantumreview.testing.fake_state import APP_SLUG, FakeState, Token

CHECK_RUN_FIELDS = ("name", "details_url", "external_id", "status", "conclusion", "started_at", "completed_at",
                    "actions")


def author(state: FakeState, token: Token) -> dict[str, Any]:
    """Return who is acting: the app's bot for an installation token, else the user."""
    if token.login is not None:
        return state.account(token.login)
    return state.bot_user()


async def get_issue(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/issues/{issue_number}."""
    repo = repo_name(request)
    return web.json_response(found(state_of(request).issues.get((repo, int_param(request, "issue_number")))))


async def list_comments(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/issues/{issue_number}/comments (paginated, oldest first)."""
    repo = repo_name(request)
    number = int_param(request, "issue_number")
    found(state_of(request).issues.get((repo, number)))
    return paged_json(request, state_of(request).comments.get((repo, number), []))


async def create_comment(request: web.Request) -> web.Response:
    """POST /repos/{owner}/{repo}/issues/{issue_number}/comments."""
    state = state_of(request)
    repo = repo_name(request)
    number = int_param(request, "issue_number")
    found(state.issues.get((repo, number)))
    body = await json_body(request)
    comment = state.add_comment(repo, number, str(body.get("body", "")), author(state, token_of(request)))
    url = comment["url"]
    return web.json_response(comment, status=201, headers={"Location": url})


async def get_comment(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/issues/comments/{comment_id}."""
    repo = repo_name(request)
    return web.json_response(found(state_of(request).find_comment(repo, int_param(request, "comment_id"))))


async def update_comment(request: web.Request) -> web.Response:
    """PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}: replace the body."""
    state = state_of(request)
    repo = repo_name(request)
    comment = found(state.find_comment(repo, int_param(request, "comment_id")))
    body = await json_body(request)
    comment["body"] = str(body.get("body", comment["body"]))
    comment["updated_at"] = shapes.iso(state.clock())
    return web.json_response(comment)


async def list_pulls(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls (state filter, newest first, paginated)."""
    state = state_of(request)
    repo = repo_name(request)
    wanted = request.query.get("state", "open")
    pulls = [p for (name, _), p in state.pulls.items() if name == repo and wanted in ("all", p["state"])]
    return paged_json(request, sorted(pulls, key=lambda p: p["number"], reverse=True))


async def get_pull(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}."""
    repo = repo_name(request)
    return web.json_response(found(state_of(request).pulls.get((repo, int_param(request, "pull_number")))))


async def list_pull_files(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}/files (paginated, at most 3,000 files)."""
    state = state_of(request)
    repo = repo_name(request)
    number = int_param(request, "pull_number")
    found(state.pulls.get((repo, number)))
    return paged_json(request, state.pull_files.get((repo, number), []))


def apply_check_run_fields(state: FakeState, run: dict[str, Any], body: dict[str, Any]) -> None:
    """Copy the writable fields onto a check run; a conclusion completes it, annotations are appended.

    A completed run stays completed: GitHub answers 200 to a `status` of queued or in_progress but keeps the run's
    status and conclusion ("once a check run transitions ... to completed state, it's not possible to modify its
    status"), so the stale result stayed on the pull request.
    """
    reopening = run.get("status") == "completed" and body.get("status", "completed") != "completed"
    for key in CHECK_RUN_FIELDS:
        if key in body and not (reopening and key == "status"):
            run[key] = body[key]
    if body.get("status") == "completed" and not run.get("conclusion"):
        raise GitHubError(422, "Invalid request.\n\n\"conclusion\" is required when \"status\" is \"completed\".")
    if body.get("conclusion"):
        run["status"] = "completed"
        run["completed_at"] = run.get("completed_at") or shapes.iso(state.clock())
    output = body.get("output")
    if isinstance(output, dict):
        annotations = state.check_run_annotations.setdefault(run["id"], [])
        annotations.extend(output.get("annotations", []))
        run["output"] = {
            "title": output.get("title"), "summary": output.get("summary"), "text": output.get("text"),
            "annotations_count": len(annotations),
            "annotations_url": f"{run['url']}/annotations",
        }


async def create_check_run(request: web.Request) -> web.Response:
    """POST /repos/{owner}/{repo}/check-runs."""
    state = state_of(request)
    repo = repo_name(request)
    body = await json_body(request)
    run_id = state.next_id()
    url = f"{state.api_url}/repos/{repo}/check-runs/{run_id}"
    run: dict[str, Any] = {
        "id": run_id, "node_id": shapes.node_id("CR", run_id), "head_sha": body.get("head_sha"),
        "external_id": "", "url": url, "html_url": f"{state.web_url}/{repo}/runs/{run_id}",
        "details_url": None, "status": "queued", "conclusion": None,
        "started_at": shapes.iso(state.clock()), "completed_at": None,
        "output": {"title": None, "summary": None, "text": None, "annotations_count": 0,
                   "annotations_url": f"{url}/annotations"},
        "name": "", "check_suite": {"id": state.next_id()},
        "app": {"id": state.app_id, "slug": APP_SLUG, "name": "QuantumReview (test)"},
        "pull_requests": [{"number": n, "head": p["head"], "base": p["base"]}
                          for (name, n), p in state.pulls.items()
                          if name == repo and p["head"]["sha"] == body.get("head_sha")],
    }
    apply_check_run_fields(state, run, body)
    state.check_runs.setdefault(repo, []).append(run)
    return web.json_response(run, status=201)


async def get_check_run(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/check-runs/{check_run_id}."""
    repo = repo_name(request)
    return web.json_response(found(state_of(request).find_check_run(repo, int_param(request, "check_run_id"))))


async def update_check_run(request: web.Request) -> web.Response:
    """PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}."""
    state = state_of(request)
    repo = repo_name(request)
    run = found(state.find_check_run(repo, int_param(request, "check_run_id")))
    creator = (run.get("app") or {}).get("id")
    if creator is not None and creator != state.app_id:  # GitHub: only the App that created a run may change it
        raise GitHubError(403, f"Invalid app_id `{creator}` - check run can only be modified by the GitHub App that "
                               "created it.")
    apply_check_run_fields(state, run, await json_body(request))
    return web.json_response(run)


async def list_check_runs_for_ref(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/commits/{ref}/check-runs (check_name and status filters)."""
    state = state_of(request)
    repo = repo_name(request)
    ref = request.match_info["ref"]
    runs = [r for r in state.check_runs.get(repo, []) if r["head_sha"] == ref]
    if "check_name" in request.query:
        runs = [r for r in runs if r["name"] == request.query["check_name"]]
    if "status" in request.query:
        runs = [r for r in runs if r["status"] == request.query["status"]]
    return paged_json(request, runs, key="check_runs")


ROUTES = (
    Route("GET", "/repos/{owner}/{repo}/issues/{issue_number}", get_issue, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", list_comments, auth="token"),
    Route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", create_comment, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", get_comment, auth="token"),
    Route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", update_comment, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/pulls", list_pulls, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", get_pull, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", list_pull_files, auth="token"),
    Route("POST", "/repos/{owner}/{repo}/check-runs", create_check_run, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", get_check_run, auth="token"),
    Route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", update_check_run, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", list_check_runs_for_ref, auth="token"),
)
