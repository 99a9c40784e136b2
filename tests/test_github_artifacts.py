"""Artifact list and download against the fake's API and blob host (AR-01, -02, -03, -04, -05, -06, -08)."""

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


class Hops:
    """A plain HTTP server on 127.0.0.1 for redirect chains: /to?url=U answers 302 to U, /loop to itself,
    /zip the zip bytes; `hits` counts the requests it saw, by path."""

    def __init__(self, body: bytes = b"") -> None:
        self.body = body
        self.hits: dict[str, int] = {}
        self.url = ""

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        from aiohttp import web

        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        if request.path == "/to":
            return web.Response(status=302, headers={"Location": request.query["url"]})
        if request.path == "/loop":
            return web.Response(status=302, headers={"Location": "/loop"})
        return web.Response(body=self.body, content_type="application/zip")


@pytest.fixture
async def hops(aiohttp_server: Any) -> Hops:
    from aiohttp import web

    hops = Hops(zip_of({"junit.xml": REPORT}))
    app = web.Application()
    app.router.add_get("/{tail:.*}", hops.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    hops.url = str(server.make_url("")).rstrip("/")
    return hops


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def redirect_download_to(fake: FakeGitHub, location: str) -> None:
    fake.fail_next("GET", ZIP_ROUTE, status=302, headers={"Location": location})


async def test_a_blob_url_on_a_host_not_allowed_is_refused_before_any_request(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    """RELIABILITY AR-04: the redirect cannot point the server at an internal address."""
    redirect_download_to(fake, "https://169.254.169.254/latest/meta-data/?sig=secret-signature")
    with pytest.raises(ArtifactError, match=r"refused to download from '169\.254\.169\.254'.*ARTIFACT_HOSTS") as caught:
        await app.download_artifact(7, REPO, await artifact_named(app, "junit"), dest_dir=tmp_path)
    assert "secret-signature" not in str(caught.value)
    assert leftovers(tmp_path) == []


async def test_a_malformed_blob_url_is_refused_not_raised(app: GitHubApp, fake: FakeGitHub, tmp_path: Path) -> None:
    """urlsplit raises ValueError on a bracketed host that is no IP address: it escaped as a crashed job."""
    redirect_download_to(fake, "https://[productionresultssa11.blob.core.windows.net]/x.zip?sig=secret")
    with pytest.raises(ArtifactError, match="not an allowed artifact host") as caught:
        await app.download_artifact(7, REPO, await artifact_named(app, "junit"), dest_dir=tmp_path)
    assert "secret" not in str(caught.value) and leftovers(tmp_path) == []


async def test_a_blob_host_redirecting_elsewhere_is_refused_before_the_next_request(
        app: GitHubApp, fake: FakeGitHub, tmp_path: Path, hops: Hops) -> None:
    elsewhere = hops.url.replace("127.0.0.1", "localhost") + "/zip"  # the same server, under a name not allowed
    redirect_download_to(fake, f"{hops.url}/to?url={elsewhere}")
    with pytest.raises(ArtifactError, match="refused to download from 'localhost'"):
        await app.download_artifact(7, REPO, await artifact_named(app, "junit"), dest_dir=tmp_path)
    assert hops.hits == {"/to": 1}  # the /zip behind the refused host never saw a request


async def test_a_redirect_loop_stops_after_three_redirects(app: GitHubApp, fake: FakeGitHub, tmp_path: Path,
                                                           hops: Hops) -> None:
    redirect_download_to(fake, f"{hops.url}/loop")
    with pytest.raises(ArtifactError, match="more than 3 redirects"):
        await app.download_artifact(7, REPO, await artifact_named(app, "junit"), dest_dir=tmp_path)
    assert hops.hits == {"/loop": 4} and leftovers(tmp_path) == []


async def test_redirects_within_the_allowed_hosts_are_followed(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, tmp_path: Path, hops: Hops) -> None:
    """Three hops, the last to a host added with ARTIFACT_HOSTS (here `localhost`)."""
    app = make_app(session, fake, rsa_private_key, artifact_hosts=("*.blob.core.windows.net", "localhost"))
    last = hops.url.replace("127.0.0.1", "localhost") + "/zip"
    redirect_download_to(fake, f"{hops.url}/to?url={hops.url}/to?url={last}")
    path = await app.download_artifact(7, REPO, await artifact_named(app, "junit"), dest_dir=tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert archive.read("junit.xml") == REPORT
    assert hops.hits == {"/to": 2, "/zip": 1}


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://productionresultssa11.blob.core.windows.net/actions-results/x.zip?sig=1", True),
    ("https://pipelines.actions.githubusercontent.com/x/y", True),
    ("https://ghe.example.com/storage/x", True),  # the API's own host (GitHub Enterprise Server)
    ("http://productionresultssa11.blob.core.windows.net/x", False),  # plain http while the API is https
    ("https://blob.core.windows.net.evil.example/x", False),
    ("https://evilblob.core.windows.net/x", False),
    ("https://169.254.169.254/latest/meta-data", False),
    ("file:///etc/passwd", False),
    ("https:///no-host", False),
    ("https://[productionresultssa11.blob.core.windows.net]/x", False),  # urlsplit raises ValueError on these
    ("https://[::1/x", False),
])
def test_allowed_artifact_hosts(url: str, allowed: bool) -> None:
    from quantumreview.github_artifacts import host_allowed
    from quantumreview.settings import DEFAULT_ARTIFACT_HOSTS

    assert host_allowed(url, DEFAULT_ARTIFACT_HOSTS, "https://ghe.example.com/api/v3") is allowed


def test_artifact_hosts_setting_adds_hosts_and_refuses_garbage() -> None:
    from quantumreview.settings import DEFAULT_ARTIFACT_HOSTS, Settings, SettingsError

    assert Settings.from_env({}).artifact_hosts == DEFAULT_ARTIFACT_HOSTS
    extra = Settings.from_env({"ARTIFACT_HOSTS": " *.s3.amazonaws.com, MinIO.internal "}).artifact_hosts
    assert extra == (*DEFAULT_ARTIFACT_HOSTS, "*.s3.amazonaws.com", "minio.internal")
    with pytest.raises(SettingsError, match="ARTIFACT_HOSTS must be host names"):
        Settings.from_env({"ARTIFACT_HOSTS": "https://bucket.example/path"})
