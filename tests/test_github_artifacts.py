"""Artifact list and download against the fake's API and blob host (AR-01, -02, -03, -05, -06, -08)."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quantumreview.errors import ArtifactError, RetryLater
from quantumreview.github import GitHubApp
from quantumreview.testing.fake import FakeGitHub
from tests.github_support import no_sleep

REPO = "octo-org/app"
RUN = 555
ZIP_ROUTE = "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/zip"
BLOB_ROUTE = "/_blobs/{key}"
REPORT = b'<testsuite name="t"><testcase name="T1"/></testsuite>'


@pytest.fixture
async def fake(rsa_private_key: str) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key) as server:
        server.add_installation(7, repositories=[REPO])
        server.add_workflow_run(REPO, RUN, head_sha="a" * 40, artifacts={
            "junit": {"junit.xml": REPORT}, "old": {"x.xml": b"x"}, "huge": {"h.xml": b"h"}},
            expired=["old"], declared_sizes={"huge": 300 * 1024 * 1024})
        yield server
    assert server.contract_violations == []


def make_app(session: aiohttp.ClientSession, fake: FakeGitHub, key: str, **options: Any) -> GitHubApp:
    return GitHubApp(session, app_id=1, private_key=key, api_url=fake.api_url, web_url=fake.url, sleep=no_sleep,
                     **options)


@pytest.fixture
def app(session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str) -> GitHubApp:
    return make_app(session, fake, rsa_private_key)


async def artifact_named(app: GitHubApp, name: str) -> dict[str, Any]:
    return next(a for a in await app.list_artifacts(7, REPO, RUN) if a["name"] == name)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_list_artifacts_returns_every_page(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.add_workflow_run(REPO, 900, head_sha="b" * 40, artifacts={f"a{n}": {"f.txt": b"1"} for n in range(130)})
    listed = await app.list_artifacts(7, REPO, 900)
    assert sorted(a["name"] for a in listed) == sorted(f"a{n}" for n in range(130))
    assert len(fake.calls("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts")) == 2


async def test_download_writes_the_zip_and_sends_no_token_to_the_blob_host(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    path = await app.download_artifact(7, REPO, await artifact_named(app, "junit"), dest_dir=tmp_path)
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        assert archive.read("junit.xml") == REPORT
    assert leftovers(tmp_path) == [path.name]
    (api_call,) = fake.calls("GET", ZIP_ROUTE)
    assert api_call.headers["Authorization"].startswith("token ghs_")
    (blob_call,) = fake.calls("GET", BLOB_ROUTE)
    assert "Authorization" not in blob_call.headers and blob_call.status == 200


async def test_signed_blob_url_never_reaches_logs_or_errors(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    artifact = await artifact_named(app, "junit")
    fake.script_blob(artifact["id"], html_status=503)
    with pytest.raises(RetryLater) as caught:
        await app.download_artifact(7, REPO, artifact, dest_dir=tmp_path)
    fake.state.blob_scripts.pop(artifact["id"])
    await app.download_artifact(7, REPO, artifact, dest_dir=tmp_path)
    sig = fake.state.artifacts[artifact["id"]].blob_sig
    assert sig not in caplog.text and "sig=" not in caplog.text
    assert sig not in str(caught.value) and fake.blob_url not in str(caught.value)


async def test_artifact_over_the_cap_is_refused_without_any_request(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="too large"):
        await app.download_artifact(7, REPO, await artifact_named(app, "huge"), dest_dir=tmp_path)
    assert fake.calls("GET", ZIP_ROUTE) == [] and fake.calls("GET", BLOB_ROUTE) == []


async def test_expired_artifact_is_refused_without_any_request(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="expired"):
        await app.download_artifact(7, REPO, await artifact_named(app, "old"), dest_dir=tmp_path)
    assert fake.calls("GET", ZIP_ROUTE) == []


async def test_410_on_download_is_an_artifact_error_after_one_call(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    stale = {**await artifact_named(app, "old"), "expired": False}  # the list said live, GitHub says gone
    with pytest.raises(ArtifactError, match="410"):
        await app.download_artifact(7, REPO, stale, dest_dir=tmp_path)
    assert len(fake.calls("GET", ZIP_ROUTE)) == 1 and fake.calls("GET", BLOB_ROUTE) == []


async def test_missing_redirect_is_an_artifact_error(app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    fake.fail_next("GET", ZIP_ROUTE, status=200, body={"not": "a redirect"})
    with pytest.raises(ArtifactError, match="without a download redirect"):
        await app.download_artifact(7, REPO, await artifact_named(app, "junit"), dest_dir=tmp_path)
    assert fake.calls("GET", BLOB_ROUTE) == []


@pytest.mark.parametrize("script", [
    {"omit_content_length": True},  # chunked, no length at all
    {},  # an honest 64 MB Content-Length, while the artifact list declared a few hundred bytes
])
async def test_download_stops_at_the_cap_on_real_bytes(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path, script: dict[str, Any]) -> None:
    artifact = await artifact_named(app, "junit")
    body_size = 64 * 1024 * 1024
    fake.script_blob(artifact["id"], body_size=body_size, chunk_size=64 * 1024, **script)
    with pytest.raises(ArtifactError, match="cap"):
        await app.download_artifact(7, REPO, artifact, dest_dir=tmp_path, max_bytes=1024 * 1024)
    assert leftovers(tmp_path) == []
    assert fake.blob_bytes_sent[artifact["id"]] < body_size // 4  # aborted, not drained


async def test_body_past_a_short_content_length_is_not_read(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    artifact = await artifact_named(app, "junit")
    fake.script_blob(artifact["id"], body_size=4 * 1024 * 1024, content_length=1000)
    path = await app.download_artifact(7, REPO, artifact, dest_dir=tmp_path, max_bytes=1024 * 1024)
    assert path.stat().st_size == 1000  # a truncated zip, left to the zip reader to refuse


async def test_slow_blob_hits_the_total_deadline_and_is_retried_later(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, tmp_path: Path) -> None:
    app = make_app(session, fake, rsa_private_key, download_timeout=0.4)
    artifact = await artifact_named(app, "junit")
    fake.script_blob(artifact["id"], body_size=1000, chunk_size=1, chunk_delay=0.05)
    with pytest.raises(RetryLater, match="longer than"):
        await app.download_artifact(7, REPO, artifact, dest_dir=tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("status", "error"), [(503, RetryLater), (404, ArtifactError)])
async def test_blob_host_errors_are_classified(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path, status: int, error: type[Exception]) -> None:
    artifact = await artifact_named(app, "junit")
    fake.script_blob(artifact["id"], html_status=status)
    with pytest.raises(error, match=str(status)):
        await app.download_artifact(7, REPO, artifact, dest_dir=tmp_path)
    assert leftovers(tmp_path) == []
