"""Actions routes: workflow runs, their artifacts, and the blob host that serves artifact zips."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web

from quantumreview.testing.fake_http import GitHubError, Route, found, int_param, paged_json, repo_name, state_of
from quantumreview.testing.fake_state import Artifact, BlobScript, FakeState

BLOB_ERROR_HTML = "<html><body><h1>{status}</h1><p>The blob service is unavailable.</p></body></html>"


async def get_workflow_run(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/actions/runs/{run_id}."""
    repo = repo_name(request)
    return web.json_response(found(state_of(request).workflow_runs.get((repo, int_param(request, "run_id")))))


async def list_workflow_runs(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/actions/runs (head_sha and status filters; newest first; {total_count,
    workflow_runs}). As GitHub's, `status` matches a run's status or its conclusion."""
    repo = repo_name(request)
    head_sha, status = request.query.get("head_sha"), request.query.get("status")
    runs = [run for (name, _), run in state_of(request).workflow_runs.items()
            if name == repo and (head_sha is None or run.get("head_sha") == head_sha)
            and (status is None or status in (run.get("status"), run.get("conclusion")))]
    runs.sort(key=lambda run: int(run["id"]), reverse=True)
    return paged_json(request, runs, key="workflow_runs")


async def list_repo_workflows(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/actions/workflows (paginated, {total_count, workflows})."""
    return paged_json(request, state_of(request).repo_workflows(repo_name(request)), key="workflows")


async def list_run_artifacts(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts (paginated, {total_count, artifacts})."""
    state = state_of(request)
    repo = repo_name(request)
    run_id = int_param(request, "run_id")
    found(state.workflow_runs.get((repo, run_id)))
    items = [state.artifacts[a].json for a in state.run_artifacts.get((repo, run_id), [])]
    return paged_json(request, items, key="artifacts")


def artifact_in(state: FakeState, repo: str, artifact_id: int) -> Artifact:
    """Return the artifact when it belongs to repo, else answer 404."""
    for (name, _), ids in state.run_artifacts.items():
        if name == repo and artifact_id in ids:
            return state.artifacts[artifact_id]
    raise GitHubError(404, "Not Found")


async def download_artifact(request: web.Request) -> web.Response:
    """GET .../actions/artifacts/{artifact_id}/zip: 302 to a signed blob URL on the other port, 410 if expired."""
    state = state_of(request)
    repo = repo_name(request)
    if request.match_info["archive_format"] != "zip":
        raise GitHubError(404, "Not Found")
    artifact = artifact_in(state, repo, int_param(request, "artifact_id"))
    if artifact.json["expired"]:
        raise GitHubError(410, "Artifact has expired")
    location = f"{state.blob_url}/_blobs/{artifact.blob_key}?sig={artifact.blob_sig}&sv=2020-10-02"
    return web.Response(status=302, headers={"Location": location})


async def serve_blob(request: web.Request) -> web.StreamResponse:
    """GET /_blobs/{key}: the zip bytes; 401 for any request carrying Authorization, like Azure blob storage."""
    state = state_of(request)
    if "Authorization" in request.headers:
        return web.Response(status=401, content_type="application/xml",
                            text="<Error><Code>InvalidAuthenticationInfo</Code></Error>")
    key = request.match_info["key"]
    artifact_id, artifact = next(((i, a) for i, a in state.artifacts.items() if a.blob_key == key), (0, None))
    if artifact is None or not hmac.compare_digest(request.query.get("sig", ""), artifact.blob_sig):
        return web.Response(status=403, content_type="application/xml",
                            text="<Error><Code>AuthenticationFailed</Code></Error>")
    script = state.blob_scripts.get(artifact_id, BlobScript())
    if script.html_status is not None:
        return web.Response(status=script.html_status, content_type="text/html",
                            text=BLOB_ERROR_HTML.format(status=script.html_status))
    return await stream_blob(request, state, artifact_id, artifact.data, script)



async def stream_blob(request: web.Request, state: FakeState, artifact_id: int, data: bytes,
                      script: BlobScript) -> web.StreamResponse:
    """Write the body in chunks, counting bytes sent, pausing between chunks, stopping if the client leaves."""
    total = len(data) if script.body_size is None else script.body_size
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/zip"})
    if script.content_length is not None:
        response.headers["Content-Length"] = str(script.content_length)
    elif not script.omit_content_length:
        response.content_length = total
    else:
        response.enable_chunked_encoding()
    state.blob_bytes_sent[artifact_id] = 0
    await response.prepare(request)
    sent = 0
    chunk_size = max(1, script.chunk_size)
    filler = b"\0" * chunk_size
    try:
        while sent < total:
            size = min(chunk_size, total - sent)
            chunk = data[sent:sent + size] if script.body_size is None else filler[:size]
            await response.write(chunk)
            sent += size
            state.blob_bytes_sent[artifact_id] = sent
            if script.chunk_delay:
                await asyncio.sleep(script.chunk_delay)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client hung up: exactly what a capped download does
    return response


ROUTES = (
    Route("GET", "/repos/{owner}/{repo}/actions/workflows", list_repo_workflows, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/actions/runs", list_workflow_runs, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", get_workflow_run, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", list_run_artifacts, auth="token"),
    Route("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}", download_artifact,
          auth="token"),
    Route("GET", "/_blobs/{key}", serve_blob, host="blob"),
)
