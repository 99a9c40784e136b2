"""FakeGitHub answers like GitHub, records what the client did, and fails on demand."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from gidgethub.aiohttp import GitHubAPI
from multidict import CIMultiDictProxy

from quantumreview.testing import FakeGitHub

REPO = "octo-org/repo"
TOKENS = "/app/installations/{installation_id}/access_tokens"
COMMENTS = "/repos/{owner}/{repo}/issues/{issue_number}/comments"


def app_jwt(pem: str, *, app_id: int = 1, now: float | None = None, lifetime: int = 540) -> str:
    """Return an App JWT like GitHub asks for (iat 60 s back)."""
    issued = int(time.time() if now is None else now) - 60
    return jwt.encode({"iat": issued, "exp": issued + 60 + lifetime, "iss": str(app_id)}, pem, algorithm="RS256")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def installed(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(7, repositories=[REPO])
    fake_github.add_issue(REPO, 1, title="Add login", body="- [ ] works")
    return fake_github


async def mint(session: aiohttp.ClientSession, fake: FakeGitHub, pem: str, installation_id: int = 7) -> str:
    async with session.post(f"{fake.api_url}/app/installations/{installation_id}/access_tokens",
                            headers={"Authorization": f"Bearer {app_jwt(pem)}"}) as response:
        assert response.status == 201
        token: str = (await response.json())["token"]
        return token


async def call(session: aiohttp.ClientSession, fake: FakeGitHub, method: str, path: str, token: str,
               **kwargs: Any) -> tuple[int, Any, CIMultiDictProxy[str]]:
    headers = {"Authorization": f"token {token}", **kwargs.pop("headers", {})}
    async with session.request(method, fake.api_url + path, headers=headers, **kwargs) as response:
        text = (await response.read()).decode("utf-8", "replace")
        body: Any = text
        if response.content_type == "application/json" and text:
            with contextlib.suppress(ValueError):
                body = json.loads(text)
        return response.status, body, response.headers


# -- tokens and auth ------------------------------------------------------------------------------------------


async def test_minting_returns_a_ghs_token_that_expires_after_token_ttl(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    installed.token_ttl = 120
    before = time.time()
    async with session.post(f"{installed.api_url}/app/installations/7/access_tokens",
                            headers={"Authorization": f"Bearer {app_jwt(rsa_private_key)}"}) as response:
        minted = await response.json()
    assert minted["token"].startswith("ghs_")
    expires = datetime.strptime(minted["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert before + 118 <= expires <= time.time() + 121
    [recorded] = installed.calls("POST", TOKENS)
    assert recorded.status == 201
    assert recorded.path == "/app/installations/7/access_tokens"
    claims = jwt.decode(recorded.headers["Authorization"].split()[1], options={"verify_signature": False})
    assert claims["iss"] == "1"


async def test_a_jwt_signed_with_another_key_is_refused(installed: FakeGitHub, session: aiohttp.ClientSession) -> None:
    from quantumreview.testing.plugin import rsa_private_key

    other = rsa_private_key.__wrapped__()  # type: ignore[attr-defined]
    status, body, _ = await call(session, installed, "POST", "/app/installations/7/access_tokens",
                                 "", headers={"Authorization": f"Bearer {app_jwt(other)}"})
    assert status == 401
    assert "JSON web token" in body["message"]


async def test_a_jwt_living_longer_than_ten_minutes_is_refused(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    token = app_jwt(rsa_private_key, lifetime=3600)
    status, body, _ = await call(session, installed, "GET", "/app", "", headers={"Authorization": f"Bearer {token}"})
    assert status == 401
    assert "exp" in body["message"]


async def test_requests_without_credentials_get_401(installed: FakeGitHub, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{installed.api_url}/repos/{REPO}/issues/1") as response:
        assert response.status == 401


async def test_expired_tokens_answer_401_until_a_new_one_is_minted(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    token = await mint(session, installed, rsa_private_key)
    installed.expire_tokens()
    status, body, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert (status, body["message"]) == (401, "Bad credentials")
    fresh = await mint(session, installed, rsa_private_key)
    assert (await call(session, installed, "GET", f"/repos/{REPO}/issues/1", fresh))[0] == 200


async def test_tokens_expire_on_the_fakes_clock(rsa_private_key: str, session: aiohttp.ClientSession) -> None:
    now = [time.time()]
    async with FakeGitHub(private_key_pem=rsa_private_key, clock=lambda: now[0]) as fake:
        fake.add_installation(7, repositories=[REPO])
        fake.add_issue(REPO, 1)
        token = await mint(session, fake, rsa_private_key)
        assert (await call(session, fake, "GET", f"/repos/{REPO}/issues/1", token))[0] == 200
        now[0] += 3601
        assert (await call(session, fake, "GET", f"/repos/{REPO}/issues/1", token))[0] == 401


async def test_uninstalled_app_gets_404_on_mint_and_401_with_old_tokens(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    token = await mint(session, installed, rsa_private_key)
    installed.remove_installation(7)
    status, _, _ = await call(session, installed, "POST", "/app/installations/7/access_tokens", "",
                              headers={"Authorization": f"Bearer {app_jwt(rsa_private_key)}"})
    assert status == 404
    assert (await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token))[0] == 401


async def test_suspended_installation_cannot_mint(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    installed.suspend_installation(7)
    status, body, _ = await call(session, installed, "POST", "/app/installations/7/access_tokens", "",
                                 headers={"Authorization": f"Bearer {app_jwt(rsa_private_key)}"})
    assert status == 403
    assert "suspended" in body["message"]


async def test_a_suspended_installations_token_is_refused_until_unsuspended(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.suspend_installation(7)
    status, body, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert (status, body["message"]) == (403, "This GitHub App installation is currently suspended.")
    installed.unsuspend_installation(7)
    assert (await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token))[0] == 200


async def test_a_token_cannot_read_a_repository_outside_its_installation(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    installed.add_installation(8, repositories=["other/elsewhere"])
    installed.add_issue("other/elsewhere", 1)
    token = await mint(session, installed, rsa_private_key)
    assert (await call(session, installed, "GET", "/repos/other/elsewhere/issues/1", token))[0] == 404


# -- issues, comments, pagination, ETags ----------------------------------------------------------------------


async def test_comments_are_created_as_the_bot_and_updated_in_place(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    token = await mint(session, installed, rsa_private_key)
    status, created, _ = await call(session, installed, "POST", f"/repos/{REPO}/issues/1/comments", token,
                                    json={"body": "first"})
    assert status == 201
    assert created["user"]["login"] == "quantumreview-test[bot]"
    assert created["html_url"].startswith(installed.url)
    status, updated, _ = await call(session, installed, "PATCH", f"/repos/{REPO}/issues/comments/{created['id']}",
                                    token, json={"body": "second"})
    assert (status, updated["id"]) == (200, created["id"])
    assert [c["body"] for c in installed.comments[(REPO, 1)]] == ["second"]
    assert len(installed.calls("POST", COMMENTS)) == 1


async def test_issue_has_the_fields_the_app_reads(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    token = await mint(session, installed, rsa_private_key)
    status, issue, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert status == 200
    assert (issue["number"], issue["title"], issue["body"]) == (1, "Add login", "- [ ] works")
    assert issue["user"]["login"] and issue["html_url"].endswith(f"/{REPO}/issues/1")


async def test_lists_paginate_with_link_headers_that_gidgethub_follows(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    for n in range(65):
        installed.state.add_comment(REPO, 1, f"c{n}", installed.state.bot_user())
    token = await mint(session, installed, rsa_private_key)
    status, page, headers = await call(session, installed, "GET", f"/repos/{REPO}/issues/1/comments", token)
    assert (status, len(page)) == (200, 30)
    assert 'rel="next"' in headers["Link"] and "page=3" in headers["Link"] and 'rel="last"' in headers["Link"]
    gh = GitHubAPI(session, "test", oauth_token=token, base_url=installed.api_url)
    bodies = [c["body"] async for c in gh.getiter(f"/repos/{REPO}/issues/1/comments")]
    assert bodies == [f"c{n}" for n in range(65)]
    _, capped, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1/comments?per_page=500", token)
    assert len(capped) == 65  # per_page is capped at 100


async def test_a_get_with_the_current_etag_answers_304(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    token = await mint(session, installed, rsa_private_key)
    _, _, headers = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    etag = headers["ETag"]
    status, _, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token,
                              headers={"If-None-Match": etag})
    assert status == 304
    installed.state.issues[(REPO, 1)]["title"] = "changed"
    status, issue, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token,
                                  headers={"If-None-Match": etag})
    assert (status, issue["title"]) == (200, "changed")


# -- pull requests and check runs -----------------------------------------------------------------------------


async def test_pull_request_and_its_files_are_served_like_github(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    files = [{"filename": f"src/f{n}.py", "patch": "@@ -1 +1 @@\n-a\n+b"} for n in range(3005)]
    installed.add_pull(REPO, 2, title="Fix", body="Closes #1", head_sha="a" * 40, files=files)
    token = await mint(session, installed, rsa_private_key)
    _, pull, _ = await call(session, installed, "GET", f"/repos/{REPO}/pulls/2", token)
    assert (pull["head"]["sha"], pull["head"]["ref"], pull["base"]["ref"]) == ("a" * 40, "feature", "main")
    _, listed, _ = await call(session, installed, "GET", f"/repos/{REPO}/pulls?state=open", token)
    assert [p["number"] for p in listed] == [2]
    gh = GitHubAPI(session, "test", oauth_token=token, base_url=installed.api_url)
    served = [f async for f in gh.getiter(f"/repos/{REPO}/pulls/2/files?per_page=100")]
    assert len(served) == 3000
    assert served[0]["patch"].startswith("@@") and served[0]["additions"] == 1


async def test_check_runs_are_created_completed_and_listed_by_ref(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    token = await mint(session, installed, rsa_private_key)
    status, run, _ = await call(session, installed, "POST", f"/repos/{REPO}/check-runs", token,
                                json={"name": "QuantumReview", "head_sha": "b" * 40, "status": "in_progress"})
    assert (status, run["status"]) == (201, "in_progress")
    annotation = {"path": "a.py", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "x"}
    status, done, _ = await call(session, installed, "PATCH", f"/repos/{REPO}/check-runs/{run['id']}", token,
                                 json={"conclusion": "failure",
                                       "output": {"title": "t", "summary": "s", "annotations": [annotation]}})
    assert (status, done["status"], done["conclusion"]) == (200, "completed", "failure")
    assert installed.check_run_annotations[run["id"]] == [annotation]
    _, listed, _ = await call(session, installed, "GET",
                              f"/repos/{REPO}/commits/{'b' * 40}/check-runs?check_name=QuantumReview", token)
    assert [r["id"] for r in listed["check_runs"]] == [run["id"]]
    assert installed.check_runs[REPO][0]["output"]["annotations_count"] == 1


async def test_a_completed_check_run_is_not_put_back_in_progress(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    """Like GitHub: the update is accepted, its output shown, but the run keeps its status and conclusion."""
    token = await mint(session, installed, rsa_private_key)
    _, run, _ = await call(session, installed, "POST", f"/repos/{REPO}/check-runs", token,
                           json={"name": "QuantumReview", "head_sha": "b" * 40, "conclusion": "neutral"})
    status, after, _ = await call(session, installed, "PATCH", f"/repos/{REPO}/check-runs/{run['id']}", token,
                                  json={"status": "in_progress", "output": {"title": "again", "summary": "s"}})
    assert (status, after["status"], after["conclusion"]) == (200, "completed", "neutral")
    assert after["output"]["title"] == "again"


# -- faults on demand -----------------------------------------------------------------------------------------

ISSUE = "/repos/{owner}/{repo}/issues/{issue_number}"


@pytest.fixture
async def token(installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> str:
    return await mint(session, installed, rsa_private_key)


async def test_fail_next_answers_500_times_then_serves_normally(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.fail_next("GET", ISSUE, status=500, times=2)
    statuses = [(await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token))[0] for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert [r.status for r in installed.calls("GET", ISSUE)] == [500, 500, 200]


async def test_502_has_an_html_body(installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.fail_next("GET", ISSUE, status=502)
    status, body, headers = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert status == 502
    assert headers["Content-Type"].startswith("text/html") and "<html>" in body


async def test_secondary_limit_sends_githubs_message_and_retry_after(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.secondary_limit("POST", COMMENTS, retry_after=30)
    installed.secondary_limit("POST", COMMENTS, retry_after=7, status=429)
    status, body, headers = await call(session, installed, "POST", f"/repos/{REPO}/issues/1/comments", token,
                                       json={"body": "x"})
    assert (status, headers["retry-after"]) == (403, "30")
    assert body["message"].startswith("You have exceeded a secondary rate limit")
    status, _, headers = await call(session, installed, "POST", f"/repos/{REPO}/issues/1/comments", token,
                                    json={"body": "x"})
    assert (status, headers["retry-after"]) == (429, "7")
    assert installed.comments[(REPO, 1)] == []


async def test_primary_rate_limit_sets_remaining_zero_and_the_reset_time(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.rate_limit("GET", ISSUE, reset_in=90)
    status, _, headers = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert (status, headers["x-ratelimit-remaining"]) == (403, "0")
    assert abs(int(headers["x-ratelimit-reset"]) - (time.time() + 90)) < 3
    assert abs(email.utils.parsedate_to_datetime(headers["Date"]).timestamp() - time.time()) < 3  # the fake's clock
    status, _, headers = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert status == 200 and headers["x-ratelimit-remaining"] != "0"


@pytest.mark.parametrize(("status", "message"), [(401, "Bad credentials"), (404, "Not Found")])
async def test_fail_next_gives_githubs_error_body_for_revoked_or_uninstalled(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str, status: int, message: str) -> None:
    installed.fail_next("GET", ISSUE, status=status)
    got, body, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert (got, body["message"]) == (status, message)


async def test_slow_fault_delays_a_normal_answer(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.fail_next("GET", ISSUE, kind="slow", delay=0.3)
    started = time.monotonic()
    status, _, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert status == 200
    assert time.monotonic() - started >= 0.3


async def test_reset_fault_drops_the_connection(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    # aiohttp itself retries an idempotent request once on a dropped connection, so drop two
    installed.fail_next("GET", ISSUE, kind="reset", times=2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert [r.status for r in installed.calls("GET", ISSUE)] == [499, 499]
    assert (await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token))[0] == 200


async def test_hang_fault_never_answers_so_the_client_timeout_fires(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.fail_next("GET", ISSUE, kind="hang")
    with pytest.raises(asyncio.TimeoutError):
        await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token,
                   timeout=aiohttp.ClientTimeout(total=0.3))


async def test_endless_fault_streams_a_body_until_the_client_hangs_up(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.fail_next("GET", ISSUE, kind="endless", status=200)
    url = f"{installed.api_url}/repos/{REPO}/issues/1"
    async with session.get(url, headers={"Authorization": f"token {token}"}) as response:
        assert response.status == 200 and response.content_length is None
        read = 0
        async for chunk in response.content.iter_chunked(65536):
            read += len(chunk)
            if read > 4 * 1024 * 1024:
                break
    assert read > 4 * 1024 * 1024
    assert (await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token))[0] == 200


async def test_fail_next_rejects_an_unknown_kind(fake_github: FakeGitHub) -> None:
    with pytest.raises(ValueError, match="kind"):
        fake_github.fail_next("GET", ISSUE, kind="explode")


async def test_fault_can_send_a_non_json_200(installed: FakeGitHub, session: aiohttp.ClientSession,
                                             token: str) -> None:
    installed.fail_next("GET", ISSUE, status=200, body=b'{"trunc')
    status, body, _ = await call(session, installed, "GET", f"/repos/{REPO}/issues/1", token)
    assert (status, body) == (200, '{"trunc')


# -- actions and the blob host --------------------------------------------------------------------------------

ZIP = "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/zip"


async def artifact_location(session: aiohttp.ClientSession, fake: FakeGitHub, token: str, artifact_id: int) -> str:
    status, _, headers = await call(session, fake, "GET", f"/repos/{REPO}/actions/artifacts/{artifact_id}/zip",
                                    token, allow_redirects=False)
    assert status == 302
    return str(headers["Location"])


async def test_a_repository_lists_one_ci_workflow_unless_told_otherwise(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    status, listed, _ = await call(session, installed, "GET", f"/repos/{REPO}/actions/workflows", token)
    assert status == 200 and listed["total_count"] == 1
    [workflow] = listed["workflows"]
    assert {"id", "node_id", "name", "path", "state", "url", "html_url", "badge_url", "created_at",
            "updated_at"} <= set(workflow)  # the fields GitHub's schema requires
    assert (workflow["id"], workflow["name"], workflow["state"]) == (1, "CI", "active")
    installed.set_workflows(REPO, ["Tests", "Lint"])
    _, listed, _ = await call(session, installed, "GET", f"/repos/{REPO}/actions/workflows?per_page=1", token)
    assert listed["total_count"] == 2 and [w["name"] for w in listed["workflows"]] == ["Tests"]
    installed.set_workflows(REPO, [])
    _, listed, _ = await call(session, installed, "GET", f"/repos/{REPO}/actions/workflows", token)
    assert listed == {"total_count": 0, "workflows": []}
    assert installed.contract_violations == []


async def test_workflow_runs_are_listed_by_head_sha_and_status_or_conclusion(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.add_workflow_run(REPO, 60, head_sha="c" * 40, conclusion="failure", started_at=1_800_000_000)
    installed.add_workflow_run(REPO, 61, head_sha="c" * 40, status="in_progress", name="Tests")
    installed.add_workflow_run(REPO, 62, head_sha="d" * 40)
    path = f"/repos/{REPO}/actions/runs?head_sha={'c' * 40}"
    _, listed, _ = await call(session, installed, "GET", path, token)
    assert [(r["id"], r["status"], r["conclusion"]) for r in listed["workflow_runs"]] == [
        (61, "in_progress", None), (60, "completed", "failure")]
    assert listed["workflow_runs"][1]["run_started_at"] == "2027-01-15T08:00:00Z"
    for status, ids in (("in_progress", [61]), ("completed", [60]), ("failure", [60]), ("success", [])):
        _, listed, _ = await call(session, installed, "GET", f"{path}&status={status}", token)
        assert [r["id"] for r in listed["workflow_runs"]] == ids, status


async def test_artifact_zip_redirects_to_a_blob_host_on_another_port(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.add_workflow_run(REPO, 55, head_sha="c" * 40, artifacts={"junit": {"report.xml": b"<testsuite/>"}})
    _, run, _ = await call(session, installed, "GET", f"/repos/{REPO}/actions/runs/55", token)
    assert (run["head_sha"], run["conclusion"]) == ("c" * 40, "success")
    _, listed, _ = await call(session, installed, "GET", f"/repos/{REPO}/actions/runs/55/artifacts", token)
    [artifact] = listed["artifacts"]
    location = await artifact_location(session, installed, token, artifact["id"])
    assert location.startswith(installed.blob_url) and installed.blob_url != installed.url
    async with session.get(location) as response:
        data = await response.read()
    assert zipfile.ZipFile(io.BytesIO(data)).read("report.xml") == b"<testsuite/>"
    assert artifact["size_in_bytes"] == len(data)
    assert len(installed.calls("GET", ZIP)) == 1


async def test_blob_host_refuses_any_request_carrying_authorization(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.add_workflow_run(REPO, 55, head_sha="c" * 40, artifacts={"junit": {"a.xml": b"x"}})
    location = await artifact_location(session, installed, token, installed.artifact_id(REPO, 55, "junit"))
    async with session.get(location, headers={"Authorization": f"token {token}"}) as response:
        assert response.status == 401
    [blob] = [r for r in installed.requests if r.host == "blob"]
    assert "Authorization" in blob.headers and blob.status == 401


async def test_following_the_redirect_with_aiohttp_drops_the_token_across_origins(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.add_workflow_run(REPO, 55, head_sha="c" * 40, artifacts={"junit": {"a.xml": b"x"}})
    artifact_id = installed.artifact_id(REPO, 55, "junit")
    status, _, _ = await call(session, installed, "GET", f"/repos/{REPO}/actions/artifacts/{artifact_id}/zip", token)
    assert status == 200
    [blob] = [r for r in installed.requests if r.host == "blob"]
    assert "Authorization" not in blob.headers


async def test_expired_artifact_answers_410(installed: FakeGitHub, session: aiohttp.ClientSession,
                                            token: str) -> None:
    installed.add_workflow_run(REPO, 56, head_sha="d" * 40, artifacts={"old": {"a": b"x"}}, expired=["old"],
                               declared_sizes={"old": 50_000_000})
    _, listed, _ = await call(session, installed, "GET", f"/repos/{REPO}/actions/runs/56/artifacts", token)
    assert listed["artifacts"][0]["expired"] is True
    assert listed["artifacts"][0]["size_in_bytes"] == 50_000_000
    status, _, _ = await call(session, installed, "GET",
                              f"/repos/{REPO}/actions/artifacts/{listed['artifacts'][0]['id']}/zip", token)
    assert status == 410


async def test_blob_host_can_stream_a_huge_body_without_content_length(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.add_workflow_run(REPO, 57, head_sha="e" * 40, artifacts={"big": {"a": b"x"}})
    artifact_id = installed.artifact_id(REPO, 57, "big")
    installed.script_blob(artifact_id, body_size=1 << 30, omit_content_length=True)
    location = await artifact_location(session, installed, token, artifact_id)
    read = 0
    async with session.get(location) as response:
        assert response.content_length is None
        async for chunk in response.content.iter_chunked(65536):
            read += len(chunk)
            if read >= 1 << 20:
                break
    await asyncio.sleep(0.05)
    assert 1 << 20 <= installed.blob_bytes_sent[artifact_id] < 1 << 28


async def test_blob_host_can_send_a_lying_content_length(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.add_workflow_run(REPO, 57, head_sha="e" * 40, artifacts={"big": {"a": b"x"}})
    artifact_id = installed.artifact_id(REPO, 57, "big")
    installed.script_blob(artifact_id, body_size=1 << 20, content_length=100)
    location = await artifact_location(session, installed, token, artifact_id)
    async with session.get(location) as response:
        assert response.content_length == 100
        assert len(await response.read()) == 100


async def test_blob_host_can_send_slowly_or_answer_an_html_error(
        installed: FakeGitHub, session: aiohttp.ClientSession, token: str) -> None:
    installed.add_workflow_run(REPO, 58, head_sha="f" * 40, artifacts={"slow": {"a": b"x"}, "html": {"b": b"y"}})
    slow, html = installed.artifact_id(REPO, 58, "slow"), installed.artifact_id(REPO, 58, "html")
    installed.script_blob(slow, chunk_size=1, chunk_delay=0.5)
    installed.script_blob(html, html_status=503)
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(await artifact_location(session, installed, token, slow),
                               timeout=aiohttp.ClientTimeout(total=0.4)) as response:
            await response.read()
    async with session.get(await artifact_location(session, installed, token, html)) as response:
        assert response.status == 503 and "<html>" in await response.text()


# -- the webhook delivery log -----------------------------------------------------------------------------------


async def test_hook_deliveries_page_by_cursor_and_redelivery_is_recorded(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    for n in range(5):
        installed.add_hook_delivery(f"guid-{n}", status="OK" if n % 2 else "failed to connect",
                                    delivered_at=1_700_000_000 + n)
    auth = {"Authorization": f"Bearer {app_jwt(rsa_private_key)}"}
    gh = GitHubAPI(session, "test", base_url=installed.api_url)
    guids = [d["guid"] async for d in gh.getiter("/app/hook/deliveries?per_page=2", extra_headers=auth)]
    assert guids == [f"guid-{n}" for n in (4, 3, 2, 1, 0)]
    failed = next(d for d in installed.state.hook_deliveries if d["guid"] == "guid-0")
    status, _, _ = await call(session, installed, "POST", f"/app/hook/deliveries/{failed['id']}/attempts", "",
                              headers=auth)
    assert status == 202
    assert len(installed.calls("POST", "/app/hook/deliveries/{delivery_id}/attempts")) == 1
    assert installed.state.hook_deliveries[-1]["redelivery"] is True


# -- OAuth and the manifest flow ------------------------------------------------------------------------------


async def oauth_code(session: aiohttp.ClientSession, fake: FakeGitHub, **extra: str) -> dict[str, list[str]]:
    params = {"client_id": fake.oauth_client_id, "redirect_uri": "http://127.0.0.1:1/cb", "state": "st", **extra}
    async with session.get(f"{fake.url}/login/oauth/authorize", params=params, allow_redirects=False) as response:
        assert response.status == 302
        return parse_qs(urlsplit(response.headers["Location"]).query)


async def exchange(session: aiohttp.ClientSession, fake: FakeGitHub, **fields: str) -> dict[str, Any]:
    form = {"client_id": fake.oauth_client_id, "client_secret": fake.oauth_client_secret, **fields}
    async with session.post(f"{fake.url}/login/oauth/access_token", data=form,
                            headers={"Accept": "application/json"}) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def test_oauth_web_flow_with_pkce_signs_the_user_in(
        installed: FakeGitHub, session: aiohttp.ClientSession) -> None:
    installed.add_user("mona", 42, installations={7: [REPO]}, permissions={REPO: {"admin": True}})
    installed.authorize_as("mona")
    verifier = "v" * 50
    from quantumreview.testing.fake_oauth import s256

    query = await oauth_code(session, installed, code_challenge=s256(verifier), code_challenge_method="S256")
    assert query["state"] == ["st"]
    assert (await exchange(session, installed, code=query["code"][0], code_verifier="w" * 50))["error"] == (
        "bad_verification_code")
    query = await oauth_code(session, installed, code_challenge=s256(verifier), code_challenge_method="S256")
    tokens = await exchange(session, installed, code=query["code"][0], code_verifier=verifier)
    assert tokens["access_token"].startswith("ghu_") and tokens["refresh_token"].startswith("ghr_")
    _, me, _ = await call(session, installed, "GET", "/user", tokens["access_token"])
    assert me["login"] == "mona"
    _, repos, _ = await call(session, installed, "GET", "/user/installations/7/repositories", tokens["access_token"])
    assert repos["repositories"][0]["full_name"] == REPO and repos["repositories"][0]["permissions"]["admin"]
    refreshed = await exchange(session, installed, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed["access_token"] != tokens["access_token"]
    assert (await exchange(session, installed, grant_type="refresh_token",
                           refresh_token=tokens["refresh_token"]))["error"] == "bad_refresh_token"


async def test_oauth_denied_redirects_with_access_denied(fake_github: FakeGitHub,
                                                         session: aiohttp.ClientSession) -> None:
    fake_github.authorize_as(None)
    query = await oauth_code(session, fake_github)
    assert query["error"] == ["access_denied"] and query["state"] == ["st"]


async def test_manifest_flow_returns_credentials_once(fake_github: FakeGitHub, session: aiohttp.ClientSession,
                                                      rsa_private_key: str) -> None:
    manifest = '{"name": "My QR", "url": "http://x", "redirect_url": "http://127.0.0.1:1/setup/callback"}'
    async with session.post(f"{fake_github.url}/settings/apps/new?state=abc", data={"manifest": manifest},
                            allow_redirects=False) as response:
        assert response.status == 302
        query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["state"] == ["abc"]
    path = f"{fake_github.api_url}/app-manifests/{query['code'][0]}/conversions"
    async with session.post(path) as response:
        created = await response.json()
        assert response.status == 201
    assert created["pem"] == rsa_private_key and created["slug"] == "my-qr" and created["webhook_secret"]
    async with session.post(path) as response:
        assert response.status == 404


def test_load_payload_reads_the_shipped_examples(load_payload: Any) -> None:
    assert load_payload("issues.opened")["action"] == "opened"
    with pytest.raises(LookupError, match=r"issues\.opened"):
        load_payload("no.such")


async def test_redelivery_posts_the_signed_payload_to_the_apps_webhook(
        installed: FakeGitHub, session: aiohttp.ClientSession, rsa_private_key: str,
        aiohttp_server: Any) -> None:
    from aiohttp import web

    from quantumreview.testing.signing import sign

    received: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202)

    receiver = web.Application()
    receiver.router.add_post("/webhooks/github", receive)
    server = await aiohttp_server(receiver)
    installed.send_webhooks_to(str(server.make_url("/webhooks/github")), "whsec")
    failed = installed.add_hook_delivery("guid-x", status="failed to connect", event="issues", action="opened",
                                         payload={"action": "opened"})
    status, _, _ = await call(session, installed, "POST", f"/app/hook/deliveries/{failed['id']}/attempts", "",
                              headers={"Authorization": f"Bearer {app_jwt(rsa_private_key)}"})
    assert status == 202
    [(headers, body)] = received
    assert json.loads(body) == {"action": "opened"}
    assert headers["X-GitHub-Delivery"] == "guid-x" and headers["X-GitHub-Event"] == "issues"
    assert headers["X-Hub-Signature-256"] == sign(body, "whsec")
    assert installed.state.hook_deliveries[-1]["status"] == "OK"
