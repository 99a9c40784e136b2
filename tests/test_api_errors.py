"""Bad query and path values answer 400 with the one error shape, never 500; page bounds are enforced."""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any, cast

import aiohttp
import pytest

from quantumreview import access, keys
from quantumreview.api.errors import Page, iso, parse_int, parse_page
from quantumreview.errors import RateLimited
from tests.test_api_support import ORIGIN, REPO, Api, check_against_openapi

pytest_plugins = ["tests.test_api_support"]

BAD_QUERIES = [
    ("/api/repos", {"page": "0"}, "page must be between 1"),
    ("/api/repos", {"page": "x"}, "page must be an integer"),
    ("/api/repos", {"per_page": "101"}, "per_page must be between 1 and 100"),
    ("/api/repos", {"per_page": "-1"}, "per_page must be between 1 and 100"),
    ("/api/repos", {"page": "1" * 40}, "page must be an integer"),
    (f"/api/repos/{REPO}/issues", {"state": "merged"}, "state must be one of open, closed, all"),
    (f"/api/repos/{REPO}/audit", {"per_page": "1.5"}, "per_page must be an integer"),
    ("/api/notifications", {"unread": "maybe"}, "unread must be true or false"),
    ("/api/notifications", {"page": "٣"}, "page must be an integer"),
    (f"/api/repos/{REPO}/issues", {"state": ""}, "state must be one of open, closed, all"),
]

REPEATED = [("/api/repos", "per_page=5&per_page=500", "per_page must be given once, got it 2 times"),
            ("/api/repos", "page=1&page=1", "page must be given once"),
            (f"/api/repos/{REPO}/audit", "page=2&per_page=3&page=x", "page must be given once"),
            (f"/api/repos/{REPO}/issues", "state=open&state=closed", "state must be given once"),
            ("/api/notifications", "unread=true&unread=false", "unread must be given once")]


@pytest.mark.parametrize(("path", "query", "message"), REPEATED)
async def test_a_query_parameter_given_twice_is_400_not_silently_the_first(maintainer: Api, path: str, query: str,
                                                                          message: str) -> None:
    # Why raw: Api.get sends a dict, which cannot repeat a key.
    headers = {"Cookie": maintainer.cookie, "Origin": ORIGIN}
    async with maintainer.client.get(f"{path}?{query}", headers=headers) as response:
        body = await response.json()
        check_against_openapi("GET", path, response.status, body)
    assert (response.status, body["error"]["code"]) == (400, "bad_request")
    assert body["error"]["message"].startswith(message)


@pytest.mark.parametrize(("path", "query", "message"), BAD_QUERIES)
async def test_bad_query_value_is_400_with_a_clear_message(maintainer: Api, path: str, query: dict[str, str],
                                                           message: str) -> None:
    status, body = await maintainer.get(path, **query)
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert body["error"]["message"].startswith(message)


@pytest.mark.parametrize("path", [f"/api/repos/{REPO}/issues/abc", f"/api/repos/{REPO}/prs/0", "/api/jobs/-3",
                                  f"/api/repos/{REPO}/issues/99999999999999999999999"])
async def test_bad_path_number_is_400(maintainer: Api, path: str) -> None:
    status, body = await maintainer.get(path)
    assert (status, body["error"]["code"]) == (400, "bad_request")


async def test_bad_number_on_a_post_is_400(maintainer: Api) -> None:
    status, _body = await maintainer.post("/api/notifications/x/read")
    assert status == 400


def test_page_defaults_and_offset() -> None:
    assert parse_page({}) == Page(1, 30)
    assert parse_page({"page": "3", "per_page": "100"}).offset == 200


def test_parse_int_accepts_surrounding_spaces_and_rejects_signs() -> None:
    assert parse_int(" 7 ", "n") == 7
    with pytest.raises(Exception, match="Bad Request"):
        parse_int("+7", "n")


def test_iso_formats_utc_with_z() -> None:
    assert (iso(0.0), iso(None)) == ("1970-01-01T00:00:00Z", None)


class GitHubDown:
    """A GitHub App client whose user-token reads fail as when GitHub cannot be reached."""

    async def get_user_installations(self, token: str) -> list[Any]:
        raise aiohttp.ClientConnectionError("connection refused")

    async def aclose(self) -> None:
        """Nothing to close (the app closes its client at shutdown)."""


@pytest.mark.parametrize("path", ["/api/me", "/api/repos", f"/api/repos/{REPO}", f"/api/repos/{REPO}/issues",
                                  f"/api/repos/{REPO}/issues/1", f"/api/repos/{REPO}/prs/1", f"/api/repos/{REPO}/audit",
                                  f"/api/repos/{REPO}/install", "/api/jobs/1", "/api/notifications"])
async def test_github_failing_to_list_the_users_repositories_is_a_documented_502(maintainer: Api, path: str) -> None:
    # Every route reads the user's repositories (cached a few minutes); when GitHub fails that read the answer is
    # 502 github_unavailable, which a client generated from the OpenAPI document must know (Api.get checks it).
    app = maintainer.client.app
    app[access.ACCESS].forget(1)
    with warnings.catch_warnings():  # aiohttp warns on a started app's state; the swap is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        app[keys.github] = cast(Any, GitHubDown())
    status, body = await maintainer.get(path)
    assert (status, body["error"]["code"]) == (502, "github_unavailable")


class GitHubHung:
    """A GitHub App client whose user-token reads never answer."""

    async def get_user_installations(self, token: str) -> list[Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Nothing to close."""


class GitHubRateLimited:
    """A GitHub App client whose user-token reads are rate-limited for 90 s more."""

    async def get_user_installations(self, token: str) -> list[Any]:
        raise RateLimited("GitHub rate limit (429) on GET /user/installations", at=time.time() + 90)

    async def aclose(self) -> None:
        """Nothing to close."""


@pytest.mark.parametrize(("github", "code", "retry_after"), [(GitHubHung, "github_timeout", {"30"}),
                                                             (GitHubRateLimited, "github_rate_limited", {"90", "89"})])
@pytest.mark.parametrize("path", ["/api/me", "/api/repos", f"/api/repos/{REPO}", f"/api/repos/{REPO}/issues/1",
                                  "/api/jobs/1", "/api/notifications"])
async def test_github_too_slow_or_rate_limited_is_a_documented_503_with_retry_after(
        maintainer: Api, path: str, github: type, code: str, retry_after: set[str]) -> None:
    app = maintainer.client.app
    app[access.ACCESS].forget(1)
    app[access.ACCESS].deadline = 0.01
    with warnings.catch_warnings():  # aiohttp warns on a started app's state; the swap is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        app[keys.github] = cast(Any, github())
    async with maintainer.client.get(path, headers={"Cookie": maintainer.cookie, "Origin": ORIGIN}) as response:
        body = await response.json()
        check_against_openapi("GET", path, response.status, body)
    assert (response.status, body["error"]["code"]) == (503, code)
    assert response.headers["Retry-After"] in retry_after


@pytest.mark.parametrize("path", [f"/api/repos/{REPO}/issues/1/regenerate", f"/api/repos/{REPO}/prs/1/revalidate",
                                  f"/api/repos/{REPO}/prs/1/flag_for_merge", "/api/notifications/1/read"])
async def test_a_state_change_with_a_body_that_is_not_json_is_a_documented_415(maintainer: Api, path: str) -> None:
    # Why refused (web_security): text/plain and forms are what a cross-site page can POST without a preflight.
    headers = {"Cookie": maintainer.cookie, "Origin": ORIGIN, "Content-Type": "text/plain"}
    async with maintainer.client.post(path, data=b"{}", headers=headers) as response:
        body = await response.json()
        check_against_openapi("POST", path, response.status, body)
    assert (response.status, body["error"]["code"]) == (415, "unsupported_media_type")
