"""Installation and App clients against the fake over HTTP: headers, ETags, retries, rate limits, limits."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import gidgethub
import jwt
import pytest

from quantumreview.errors import InstallationGone, PermissionDenied, RateLimited, RetryLater
from quantumreview.github import GitHubApp, gone_when_missing
from quantumreview.github_client import getitem_or_none, origin_of
from quantumreview.github_policy import RetryPolicy, rate_limit_until
from quantumreview.testing.fake import FakeGitHub
from tests.github_support import T0, Clock, Sleeps

REPO = "octo-org/app"
ISSUE = "/repos/{owner}/{repo}/issues/{issue_number}"
COMMENTS = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
MINT = "/app/installations/{installation_id}/access_tokens"


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def fake(rsa_private_key: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(app_id=1, private_key_pem=rsa_private_key, clock=clock) as server:
        server.add_installation(7, repositories=[REPO])
        server.add_issue(REPO, 1, title="Login", body="- [ ] works")
        yield server
    assert server.contract_violations == []


def make_app(session: aiohttp.ClientSession, fake: FakeGitHub, key: str, clock: Clock, sleeps: Any,
             **options: Any) -> GitHubApp:
    return GitHubApp(session, app_id=1, private_key=key, api_url=fake.api_url, web_url=fake.url, clock=clock,
                     sleep=sleeps, rand=lambda: 0.5, **options)


@pytest.fixture
def app(session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock,
        sleeps: Sleeps) -> GitHubApp:
    return make_app(session, fake, rsa_private_key, clock, sleeps)


async def test_requests_carry_githubs_current_headers_and_the_installation_token(
        app: GitHubApp, fake: FakeGitHub) -> None:
    issue = await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert issue["title"] == "Login"
    (sent,) = fake.calls("GET", ISSUE)
    assert sent.path == f"/repos/{REPO}/issues/1"  # under the /api/v3 base, GitHub Enterprise style
    assert sent.headers["Accept"] == "application/vnd.github+json"
    assert sent.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert sent.headers["User-Agent"].startswith("quantumreview/")
    assert sent.headers["Authorization"].startswith("token ghs_")


async def test_as_app_authenticates_with_the_app_jwt(app: GitHubApp, fake: FakeGitHub) -> None:
    me = await app.as_app().getitem("/app")
    assert me["id"] == 1
    (sent,) = fake.calls("GET", "/app")
    scheme, _, token = sent.headers["Authorization"].partition(" ")
    assert scheme.lower() == "bearer"
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == "1"


async def test_second_get_revalidates_with_etag_and_uses_the_cached_body(app: GitHubApp, fake: FakeGitHub) -> None:
    gh = app.for_installation(7)
    first = await gh.getitem(f"/repos/{REPO}/issues/1")
    second = await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert second == first
    calls = fake.calls("GET", ISSUE)
    assert "If-None-Match" in calls[1].headers and calls[1].status == 304


async def test_list_follows_link_pages(app: GitHubApp, fake: FakeGitHub) -> None:
    for n in range(2, 251):
        fake.add_repository(7, f"octo-org/r{n}")
    repos = [r async for r in app.for_installation(7).getiter("/installation/repositories?per_page=100",
                                                              iterable_key="repositories")]
    assert len(repos) == 250 and len({r["full_name"] for r in repos}) == 250
    assert len(fake.calls("GET", "/installation/repositories")) == 3


async def test_a_next_link_to_another_host_is_not_followed_with_the_token(app: GitHubApp, fake: FakeGitHub) -> None:
    """The installation token went to whatever host a `Link: rel="next"` named."""
    elsewhere = f"{fake.blob_url}/api/v3/repos/{REPO}/issues/1/comments?page=2"  # another port: another origin
    fake.fail_next("GET", COMMENTS, status=200, body=[{"id": 1, "body": "first page"}],
                   headers={"Link": f'<{elsewhere.replace("//", "//user:s3cret@")}>; rel="next"'})
    with pytest.raises(RetryLater, match=r"not on the API host \(127\.0\.0\.1\)") as caught:
        [c async for c in app.for_installation(7).getiter(f"/repos/{REPO}/issues/1/comments")]
    assert "s3cret" not in str(caught.value)  # it becomes the job's last_error
    api_host = urlsplit(fake.api_url).netloc
    assert [r.path for r in fake.requests if r.headers.get("Host") != api_host] == []


def test_the_api_origin_check_reads_default_ports_and_case_like_a_browser() -> None:
    """GITHUB_API_URL=https://api.github.com:443 must still follow GitHub's links (no port in them)."""
    base = origin_of("https://api.github.com:443")
    assert origin_of("https://API.github.com/repositories/1/issues?page=2") == base
    for other in ("http://api.github.com/x", "https://api.github.com:8443/x", "https://evil.example/x",
                  "https://user:pw@api.github.com/x", "https://api.github.com:bad/x"):
        assert origin_of(other) != base, other


async def test_a_next_link_back_to_a_page_already_read_ends_the_list(app: GitHubApp, fake: FakeGitHub) -> None:
    """A pagination loop re-read the same page until the job timed out, yielding its items again each time."""
    first = f"{fake.api_url}/repos/{REPO}/issues/1/comments?per_page=100"
    fake.fail_next("GET", COMMENTS, status=200, body=[{"id": 1, "body": "a"}],
                   headers={"Link": f'<{first}&page=2>; rel="next"'})
    fake.fail_next("GET", COMMENTS, status=200, body=[{"id": 2, "body": "b"}], times=5,
                   headers={"Link": f'<{first}>; rel="next"'})  # page 2 says page 1 comes next
    seen: list[Any] = []
    with pytest.raises(RetryLater, match="link back to a page already read"):
        async for comment in app.for_installation(7).getiter(f"/repos/{REPO}/issues/1/comments?per_page=100"):
            seen.append(comment["id"])
    assert len(fake.calls("GET", COMMENTS)) == 2 and seen == [1, 2]


@pytest.mark.parametrize("page", [{"message": "hi"}, {"total_count": 1}, "42"], ids=["object", "no-key", "number"])
async def test_a_page_that_is_not_a_list_is_retry_later_not_an_empty_list(
        app: GitHubApp, fake: FakeGitHub, page: Any) -> None:
    """RELIABILITY GH-17: gidgethub iterated an object's keys, so a PR's files read as none (and were skipped as
    not dicts): the manifest said "0 of N criteria have tests" and the job ended done."""
    from quantumreview.pull_requests import list_pull_files

    fake.add_pull(REPO, 2, head_sha="a" * 40, files=[{"filename": "tests/test_x.py", "patch": "+def test_T1():"}])
    fake.fail_next("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", status=200, body=page)
    with pytest.raises(RetryLater, match="answered a page that is not a list"):
        await list_pull_files(app.for_installation(7), REPO, 2)
    assert [f["filename"] for f in await list_pull_files(app.for_installation(7), REPO, 2)] == ["tests/test_x.py"]


async def test_getpage_gives_one_page_and_the_next_pages_url_and_refuses_what_is_not_a_list(
        app: GitHubApp, fake: FakeGitHub) -> None:
    url = f"/repos/{REPO}/issues/1/comments?per_page=100"
    following = f"{fake.api_url}{url}&page=2"
    fake.fail_next("GET", COMMENTS, status=200, body=[{"id": 1}], headers={"Link": f'<{following}>; rel="next"'})
    assert await app.for_installation(7).getpage(url) == ([{"id": 1}], following)
    fake.fail_next("GET", COMMENTS, status=200, body=[{"id": 2}])
    assert await app.for_installation(7).getpage(url) == ([{"id": 2}], None)
    fake.fail_next("GET", COMMENTS, status=200, body={"message": "hi"})
    with pytest.raises(RetryLater, match="answered a page that is not a list"):
        await app.for_installation(7).getpage(url)


async def test_getitem_or_none_refuses_what_is_not_an_object(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.fail_next("GET", ISSUE, status=200, body=[{"number": 1}])
    with pytest.raises(RetryLater, match=r"issues/1 answered list, not an object"):
        await getitem_or_none(app.for_installation(7), f"/repos/{REPO}/issues/1")
    assert await getitem_or_none(app.for_installation(7), f"/repos/{REPO}/issues/404") is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_get_is_retried_after_server_errors_with_backoff(
        app: GitHubApp, fake: FakeGitHub, sleeps: Sleeps, status: int) -> None:
    fake.fail_next("GET", ISSUE, status=status, times=2)
    issue = await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert issue["number"] == 1
    assert len(fake.calls("GET", ISSUE)) == 3
    assert sleeps == [0.375, 0.75]  # base 0.5·2^(n−1), jitter 0.5 → 75 %


@pytest.mark.parametrize("status", [460, 499, 299])
async def test_a_status_http_does_not_define_is_retry_later_naming_the_request(
        app: GitHubApp, fake: FakeGitHub, status: int) -> None:
    """gidgethub's http.HTTPStatus(status) raised "ValueError: 499 is not a valid HTTPStatus" (the job's last
    error named neither GitHub nor the request)."""
    fake.fail_next("GET", ISSUE, status=status, body={"message": "?"})
    with pytest.raises(RetryLater, match=rf"GitHub GET /api/v3/repos/octo-org/app/issues/1 answered {status}, "):
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert len(fake.calls("GET", ISSUE)) == 1


async def test_get_gives_up_after_three_tries_as_retry_later(
        app: GitHubApp, fake: FakeGitHub, clock: Clock) -> None:
    fake.fail_next("GET", ISSUE, status=502, times=3)
    with pytest.raises(RetryLater) as caught:
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert len(fake.calls("GET", ISSUE)) == 3
    assert caught.value.at is not None and caught.value.at > clock.now


def test_backoff_grows_and_stays_within_jitter_bounds() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    assert [policy.backoff(n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert [policy.backoff(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


async def test_post_is_not_retried_after_a_server_error(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.fail_next("POST", COMMENTS, status=502)
    with pytest.raises(RetryLater):
        await app.for_installation(7).post(f"/repos/{REPO}/issues/1/comments", data={"body": "hi"})
    assert len(fake.calls("POST", COMMENTS)) == 1
    assert fake.comments.get((REPO, 1), []) == []


async def test_post_marked_idempotent_is_retried(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.fail_next("POST", COMMENTS, status=503)
    created = await app.for_installation(7).post(f"/repos/{REPO}/issues/1/comments", data={"body": "hi"},
                                                 idempotent=True)
    assert created["body"] == "hi"
    assert len(fake.calls("POST", COMMENTS)) == 2
    assert len(fake.comments[(REPO, 1)]) == 1


async def test_dropped_connections_are_retried_then_reported_as_retry_later(
        app: GitHubApp, fake: FakeGitHub, sleeps: Sleeps) -> None:
    fake.fail_next("GET", ISSUE, kind="reset", times=20)
    with pytest.raises(RetryLater, match="failed"):
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert len(sleeps) == 2  # three tries in all


async def test_hanging_server_trips_the_client_timeout_and_the_retry_succeeds(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock,
        sleeps: Sleeps) -> None:
    app = make_app(session, fake, rsa_private_key, clock, sleeps,
                   timeout=aiohttp.ClientTimeout(total=0.3, sock_connect=0.3, sock_read=0.3))
    fake.fail_next("GET", ISSUE, kind="hang")
    issue = await asyncio.wait_for(app.for_installation(7).getitem(f"/repos/{REPO}/issues/1"), 5)
    assert issue["number"] == 1 and len(sleeps) == 1


@pytest.mark.parametrize("status", [403, 429])
async def test_primary_rate_limit_blocks_the_installation_until_reset_without_requests(
        app: GitHubApp, fake: FakeGitHub, clock: Clock, status: int) -> None:
    gh = app.for_installation(7)
    await gh.getitem(f"/repos/{REPO}/issues/1")
    fake.rate_limit("GET", ISSUE, reset_in=60, status=status)
    with pytest.raises(RateLimited) as caught:
        await gh.getitem(f"/repos/{REPO}/issues/1")
    assert caught.value.at == int(T0 + 60)
    clock.now += 30
    with pytest.raises(RateLimited) as again:
        await app.for_installation(7).post(f"/repos/{REPO}/issues/1/comments", data={"body": "x"})
    assert again.value.at == int(T0 + 60)
    assert len(fake.calls("GET", ISSUE)) == 2 and fake.calls("POST", COMMENTS) == []
    other = await app.as_app().getitem("/app")  # the App itself is not blocked
    assert other["id"] == 1
    clock.now = T0 + 61
    assert (await gh.getitem(f"/repos/{REPO}/issues/1"))["number"] == 1


async def test_a_primary_limit_is_waited_out_on_githubs_clock_when_the_hosts_runs_ahead(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, sleeps: Sleeps) -> None:
    """The reset was compared with the host's clock: 30 s fast, a reset 20 s away on GitHub's clock looked past,
    so the request was sent twice more at once while limited, and the job was given up after a few tries."""
    fake.rate_limit("GET", ISSUE, reset_in=20, times=3)  # the fake's clock is GitHub's: T0
    app = make_app(session, fake, rsa_private_key, Clock(T0 + 30), sleeps)  # the host's is 30 s ahead
    with pytest.raises(RateLimited) as caught:
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert caught.value.at == T0 + 30 + 20
    assert len(fake.calls("GET", ISSUE)) == 1 and sleeps == []


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_limit_with_retry_after_is_honoured(
        app: GitHubApp, fake: FakeGitHub, clock: Clock, status: int) -> None:
    fake.secondary_limit("GET", ISSUE, retry_after=30, status=status)
    with pytest.raises(RateLimited) as caught:
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert caught.value.at == T0 + 30
    assert len(fake.calls("GET", ISSUE)) == 1


async def test_secondary_limit_without_retry_after_waits_a_minute(
        app: GitHubApp, fake: FakeGitHub, clock: Clock) -> None:
    fake.secondary_limit("GET", ISSUE, retry_after=None)
    with pytest.raises(RateLimited) as caught:
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert caught.value.at == T0 + 60


async def test_short_retry_after_is_slept_inline(app: GitHubApp, fake: FakeGitHub, sleeps: Sleeps) -> None:
    fake.secondary_limit("GET", ISSUE, retry_after=1)
    issue = await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert issue["number"] == 1 and sleeps == [1.0]


def test_rate_limit_rules_follow_githubs_order() -> None:
    assert rate_limit_until(403, {"retry-after": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "900"},
                            b"{}", 100.0) == 105.0
    assert rate_limit_until(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "900"}, b"{}", 100.0) == 900.0
    assert rate_limit_until(429, {}, b"{}", 100.0) == 160.0
    assert rate_limit_until(403, {"x-ratelimit-remaining": "12"}, b'{"message": "Forbidden"}', 100.0) is None
    assert rate_limit_until(404, {"retry-after": "5"}, b"{}", 100.0) is None


@pytest.mark.parametrize("headers", [
    {"retry-after": "nan"}, {"retry-after": "inf"}, {"retry-after": "1e12"},
    {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "99999999999"},
    {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "inf"},
])
def test_a_rate_limit_wait_is_finite_and_at_most_an_hour(headers: dict[str, str]) -> None:
    """A NaN wait left the job `running` for good (its retry time broke run_after's NOT NULL); an infinite or
    far-future one blocked the installation until the next restart and parked its jobs for ever."""
    until = rate_limit_until(429, headers, b"{}", T0)
    assert until is not None and T0 <= until <= T0 + 3600


def test_retry_after_may_be_an_http_date() -> None:
    assert rate_limit_until(429, {"retry-after": "Tue, 14 Nov 2023 22:46:40 GMT"}, b"{}", T0) == T0 + 2000
    assert rate_limit_until(429, {"retry-after": "Tue, 14 Nov 2023 22:46:40 -0000"}, b"{}", T0) == T0 + 2000


async def test_a_huge_retry_after_blocks_the_installation_for_an_hour_at_most(
        app: GitHubApp, fake: FakeGitHub, clock: Clock) -> None:
    fake.fail_next("GET", ISSUE, status=429, headers={"retry-after": "1e12"})
    with pytest.raises(RateLimited) as caught:
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert caught.value.at == T0 + 3600
    clock.now = T0 + 3601
    assert (await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1"))["number"] == 1


async def test_resource_not_accessible_is_permission_denied_and_not_retried(
        app: GitHubApp, fake: FakeGitHub) -> None:
    fake.fail_next("GET", ISSUE, status=403, body={"message": "Resource not accessible by integration",
                                                   "documentation_url": "https://docs.github.com/rest"})
    with pytest.raises(PermissionDenied, match="Resource not accessible"):
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert len(fake.calls("GET", ISSUE)) == 1


async def test_missing_resource_is_bad_request_unless_the_handler_says_gone(app: GitHubApp) -> None:
    gh = app.for_installation(7)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(f"/repos/{REPO}/issues/404")
    assert caught.value.status_code == 404
    with pytest.raises(InstallationGone), gone_when_missing("the issue"):
        await gh.getitem(f"/repos/{REPO}/issues/404")


async def test_no_more_than_max_in_flight_requests_run_at_once(
        fake: FakeGitHub, rsa_private_key: str, clock: Clock, sleeps: Sleeps) -> None:
    state = SimpleNamespace(now=0, peak=0)

    async def started(*_: object) -> None:
        state.now += 1
        state.peak = max(state.peak, state.now)

    async def ended(*_: object) -> None:
        state.now -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(ended)
    async with aiohttp.ClientSession(trace_configs=[trace]) as traced:
        app = make_app(traced, fake, rsa_private_key, clock, sleeps, max_in_flight=3)
        await app.installation_token(7)
        fake.fail_next("GET", ISSUE, kind="slow", delay=0.05, times=12)
        await asyncio.gather(*(app.for_installation(7).getitem(f"/repos/{REPO}/issues/1") for _ in range(12)))
    assert state.peak == 3


async def test_a_body_that_never_ends_is_cut_off_at_the_cap_not_read_until_the_timeout(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock,
        sleeps: Sleeps) -> None:
    """It was read whole until the 30 s timeout (gigabytes on loopback: the process died), on each of 3 tries."""
    app = make_app(session, fake, rsa_private_key, clock, sleeps, max_response_bytes=1 << 20,
                   timeout=aiohttp.ClientTimeout(total=3))
    fake.fail_next("GET", ISSUE, kind="endless", status=200)
    with pytest.raises(RetryLater, match=r"issues/1 answered 200 with a body over 1048576 bytes"):
        await asyncio.wait_for(app.for_installation(7).getitem(f"/repos/{REPO}/issues/1"), 10)
    assert len(fake.calls("GET", ISSUE)) == 1 and sleeps == []
    fake.fail_next("GET", ISSUE, status=200, body=b"[" + b"0," * (1 << 20) + b"0]")  # declared too long
    with pytest.raises(RetryLater, match="body over"):
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert (await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1"))["number"] == 1


async def test_session_with_default_credentials_is_refused(rsa_private_key: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "token leak"}) as leaky:
        with pytest.raises(ValueError, match="default credentials"):
            GitHubApp(leaky, app_id=1, private_key=rsa_private_key)


@pytest.mark.parametrize("status", [301, 307])
async def test_same_origin_redirect_is_followed_with_credentials(
        app: GitHubApp, fake: FakeGitHub, status: int) -> None:
    fake.fail_next("GET", ISSUE, status=status, headers={"Location": f"{fake.api_url}/repos/{REPO}/issues/1"})
    issue = await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert issue["number"] == 1
    first, second = fake.calls("GET", ISSUE)
    assert first.status == status and second.headers["Authorization"].startswith("token ghs_")


async def test_plugin_fixture_builds_a_working_client(github_app: GitHubApp, fake_github: FakeGitHub) -> None:
    assert (await github_app.as_app().getitem("/app"))["id"] == 1
    fake_github.add_installation(3, repositories=[REPO])
    repos = await github_app.for_installation(3).getitem("/installation/repositories")
    assert [r["full_name"] for r in repos["repositories"]] == [REPO]


async def test_a_2xx_with_cut_off_json_is_retry_later_and_not_cached(app: GitHubApp, fake: FakeGitHub) -> None:
    """RELIABILITY GH-17: a handler never gets garbage; the job is tried again later."""
    fake.fail_next("GET", ISSUE, status=200, body='{"number": 1, "title": "Lo', headers={"ETag": '"cut"'})
    client = app.for_installation(7)
    with pytest.raises(RetryLater, match=r"GitHub GET /repos/octo-org/app/issues/1 answered with a body that is "
                                         r"not JSON \(JSONDecodeError\)") as caught:
        await client.getitem(f"/repos/{REPO}/issues/1")
    assert caught.value.at is None  # the runner's backoff decides when
    issue = await client.getitem(f"/repos/{REPO}/issues/1")
    assert issue["title"] == "Login"
    assert "If-None-Match" not in fake.calls("GET", ISSUE)[-1].headers  # the garbage was never cached


@pytest.mark.parametrize(("headers", "body", "reason"), [
    ({"Content-Type": "text/html"}, "<html><body>Proxy login</body></html>", "answered 200 with a body"),
    ({"Content-Type": "application/json; charset=utf-8"}, b"\xff\xfe{}", r"\(UnicodeDecodeError\)"),
    ({"Content-Type": "application/json; charset=no-such-charset"}, "{}", r"\(LookupError\)"),
])
async def test_a_2xx_that_is_not_json_is_retry_later(app: GitHubApp, fake: FakeGitHub, headers: dict[str, str],
                                                     body: str | bytes, reason: str) -> None:
    fake.fail_next("GET", ISSUE, status=200, headers=headers, body=body)
    with pytest.raises(RetryLater, match=f"not JSON|{reason}") as caught:
        await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1")
    assert "not JSON" in str(caught.value) and caught.value.at is None


@pytest.mark.parametrize("headers", [{"Content-Type": "application/json", "ETag": '"empty"'}, {}])
async def test_an_empty_200_on_a_get_is_retry_later_and_not_cached(app: GitHubApp, fake: FakeGitHub,
                                                                   headers: dict[str, str]) -> None:
    """RELIABILITY GH-17: None would read as "gone" (getitem_or_none) and end the job done with nothing stored."""
    fake.fail_next("GET", ISSUE, status=200, headers=headers)
    client = app.for_installation(7)
    with pytest.raises(RetryLater, match=r"GET /repos/octo-org/app/issues/1 answered 200 with no JSON body"):
        await client.getitem(f"/repos/{REPO}/issues/1")
    assert (await client.getitem(f"/repos/{REPO}/issues/1"))["title"] == "Login"
    assert "If-None-Match" not in fake.calls("GET", ISSUE)[-1].headers  # the empty answer was never cached


async def test_an_empty_204_is_no_error(app: GitHubApp, fake: FakeGitHub) -> None:
    """No body is not a bad body: DELETE and PUT (and GET checks like "is it merged") answer 204."""
    fake.fail_next("GET", ISSUE, status=204)
    assert await app.for_installation(7).getitem(f"/repos/{REPO}/issues/1") is None
    fake.fail_next("DELETE", "/applications/{client_id}/token", status=204)
    assert await app.as_app().delete("/applications/abc/token", data={"access_token": "gho_x"}) is None


def clock_sleeper(clock: Clock, log: list[float]) -> Any:
    """A sleep that moves the shared clock (the fake's too), so request timestamps show the waits."""

    async def sleep(seconds: float) -> None:
        log.append(seconds)
        clock.advance(seconds)

    return sleep


async def test_an_installations_writes_go_out_at_least_a_second_apart(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock) -> None:
    """RELIABILITY GH-19: a burst of 20 comments leaves ≥ 1 s between writes, so ≤ 60 a minute (< 80)."""
    waits: list[float] = []
    app = make_app(session, fake, rsa_private_key, clock, clock_sleeper(clock, waits))
    client = app.for_installation(7)
    for n in range(20):
        await client.post(f"/repos/{REPO}/issues/1/comments", data={"body": f"comment {n}"})
        clock.advance(0.25)  # the handler's own work between two writes
    times = [call.at for call in fake.calls("POST", COMMENTS)]
    assert len(times) == 20 and len(fake.comments[(REPO, 1)]) == 20
    assert min(later - earlier for earlier, later in itertools.pairwise(times)) >= 1.0
    assert max(sum(1 for t in times if start <= t < start + 60) for start in times) <= 60
    assert waits == [0.75] * 19  # a write waits only for what is left of its second


async def test_reads_other_installations_and_the_app_are_not_held_back(
        session: aiohttp.ClientSession, fake: FakeGitHub, rsa_private_key: str, clock: Clock) -> None:
    fake.add_installation(8, repositories=["octo-org/other"])
    fake.add_issue("octo-org/other", 1, title="Other")
    waits: list[float] = []
    app = make_app(session, fake, rsa_private_key, clock, clock_sleeper(clock, waits))
    seven, eight = app.for_installation(7), app.for_installation(8)
    await seven.post(f"/repos/{REPO}/issues/1/comments", data={"body": "first"})
    await seven.getitem(f"/repos/{REPO}/issues/1")  # reads are not writes
    await eight.post("/repos/octo-org/other/issues/1/comments", data={"body": "other installation"})
    assert waits == []  # the token mints (the App's own POSTs) were not paced either
    await seven.post(f"/repos/{REPO}/issues/1/comments", data={"body": "second"})
    assert waits == [1.0]


async def test_write_interval_zero_turns_pacing_off(session: aiohttp.ClientSession, fake: FakeGitHub,
                                                    rsa_private_key: str, clock: Clock, sleeps: Sleeps) -> None:
    app = make_app(session, fake, rsa_private_key, clock, sleeps, write_interval=0.0)
    for n in range(3):
        await app.for_installation(7).post(f"/repos/{REPO}/issues/1/comments", data={"body": str(n)})
    assert sleeps == [] and len(fake.comments[(REPO, 1)]) == 3


async def test_github_write_interval_is_a_setting_the_app_client_uses(
        session: aiohttp.ClientSession, rsa_private_key: str) -> None:
    from quantumreview.app import build_github
    from quantumreview.credentials import AppCredentials
    from quantumreview.settings import Settings, SettingsError

    assert Settings.from_env({}).github_write_interval == 1.0
    settings = Settings.from_env({"GITHUB_WRITE_INTERVAL": "2.5"})
    credentials = AppCredentials(app_id=1, private_key=rsa_private_key, webhook_secret="x" * 16)
    pacer = build_github(session, settings, credentials).for_installation(7)._transport.pacer
    assert [pacer.reserve("k") for _ in range(2)] == [0.0, pytest.approx(2.5, abs=0.1)]
    with pytest.raises(SettingsError, match="GITHUB_WRITE_INTERVAL"):
        Settings.from_env({"GITHUB_WRITE_INTERVAL": "-1"})


async def test_a_201_with_no_body_names_the_request_and_what_is_missing(app: GitHubApp, fake: FakeGitHub) -> None:
    """It came back as None, and the handler failed later with "'NoneType' object is not subscriptable"."""
    fake.fail_next("POST", COMMENTS, status=201)
    with pytest.raises(RetryLater) as caught:
        await app.for_installation(7).post(f"/repos/{REPO}/issues/1/comments?access_token=s3cret", data={"body": "x"})
    assert str(caught.value) == (f"GitHub POST /repos/{REPO}/issues/1/comments answered 201 with no JSON body: the "
                                 "created resource is missing")


@pytest.mark.parametrize(("body", "detail"), [
    ({"documentation_url": "https://docs.github.com"}, ""),  # read as "not JSON (KeyError)" and retried
    ({"message": " ", "errors": []}, ""),
    (b"", ""),  # a bare "Unprocessable Entity"
    ("<html>422</html>", ""),
    ({"errors": [{"resource": "Issue", "field": "title", "code": "missing_field", "value": "s3cret"},
                 {"message": "s3cret echoed"}, "odd"]}, "; errors: Issue title missing_field"),  # "None for 'title'"
])
async def test_a_422_without_a_message_names_the_request_and_the_fields(
        app: GitHubApp, fake: FakeGitHub, body: Any, detail: str) -> None:
    fake.fail_next("POST", COMMENTS, status=422, body=body)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await app.for_installation(7).post(f"/repos/{REPO}/issues/1/comments?client_secret=s3cret",
                                           data={"body": "x"})
    assert caught.value.status_code == 422
    assert str(caught.value) == (f"GitHub POST /repos/{REPO}/issues/1/comments answered 422 (Unprocessable Entity) "
                                 f"without an error message{detail}")
    assert "s3cret" not in str(caught.value)


async def test_a_422_with_a_message_keeps_githubs_words(app: GitHubApp, fake: FakeGitHub) -> None:
    fake.fail_next("POST", COMMENTS, status=422, body={"message": "Validation Failed"})
    with pytest.raises(gidgethub.BadRequest, match=r"^Validation Failed$"):
        await app.for_installation(7).post(f"/repos/{REPO}/issues/1/comments", data={"body": "x"})
