"""Which repositories a dashboard user sees and may act on (OA-14, OA-15, OA-16), read from the fake GitHub."""

from __future__ import annotations

import asyncio
import time

import pytest

from quantumreview import access
from storage import installations, notifications, users
from tests import test_auth as shared
from tests.github_support import T0
from tests.test_auth import Dashboard, log_in, with_session

# The dashboard fixtures live with the auth tests; re-exported so pytest finds them here.
fake, database, make_dashboard, dash = shared.fake, shared.database, shared.make_dashboard, shared.dash
migrated_file = shared.migrated_file

MONA_SEES = ["octo-org/r1", "octo-org/r3", "octo-org/r5"]


async def get_json(dash: Dashboard, session: str, path: str) -> tuple[int, object]:
    response = await dash.client.get(path, headers=with_session(dash, session))
    return response.status, await response.json()


async def test_user_sees_exactly_the_repositories_they_reach_through_live_installations(dash: Dashboard) -> None:
    mona = await log_in(dash)
    status, repos = await get_json(dash, mona, "/api/repos")
    assert status == 200
    # r4: installed, but absent from mona's own list (OA-16); gone-org/g1: installation 9 is not ours.
    assert repos == MONA_SEES


async def test_a_second_user_sees_none_of_the_first_users_repositories(dash: Dashboard) -> None:
    await log_in(dash)
    bob = await log_in(dash, "bob")
    status, repos = await get_json(dash, bob, "/api/repos")
    assert status == 200 and repos == ["bob/b1"]


@pytest.mark.parametrize("path", ["/api/repos/bob/b1", "/api/repos/octo-org/r4", "/api/repos/gone-org/g1",
                                  "/api/repos/nobody/nothing"])
async def test_repositories_outside_the_users_set_answer_404_alike(dash: Dashboard, path: str) -> None:
    mona = await log_in(dash)
    status, body = await get_json(dash, mona, path)
    _, missing = await get_json(dash, mona, "/api/repos/nobody/nothing")
    assert status == 404
    assert body == missing  # same answer for someone else's repo and a repo that does not exist (OA-14)


async def test_acting_on_someone_elses_repository_is_404_not_403(dash: Dashboard) -> None:
    mona = await log_in(dash)
    response = await dash.client.post("/api/repos/bob/b1/regenerate",
                                      headers={**with_session(dash, mona), "Origin": "https://qr.example"})
    assert response.status == 404


async def test_repo_names_match_case_insensitively(dash: Dashboard) -> None:
    mona = await log_in(dash)
    status, body = await get_json(dash, mona, "/api/repos/Octo-Org/R1")
    assert status == 200 and body == {"repo": "octo-org/r1", "permission": "admin"}


@pytest.mark.parametrize(("repo", "permission", "regenerate"), [
    ("octo-org/r1", "admin", 200), ("octo-org/r3", "push", 200), ("octo-org/r5", "pull", 403)])
async def test_pull_is_enough_to_see_but_acting_needs_push(dash: Dashboard, repo: str, permission: str,
                                                          regenerate: int) -> None:
    """OA-15 decision: visible with any permission; regenerate/revalidate/flag need push or higher."""
    mona = await log_in(dash)
    status, body = await get_json(dash, mona, f"/api/repos/{repo}")
    assert status == 200 and body == {"repo": repo, "permission": permission}
    response = await dash.client.post(f"/api/repos/{repo}/regenerate",
                                      headers={**with_session(dash, mona), "Origin": "https://qr.example"})
    assert response.status == regenerate
    if regenerate == 403:
        assert (await response.json())["error"]["code"] == "forbidden"


async def test_managed_repositories_are_cached_then_read_again_after_the_ttl(dash: Dashboard) -> None:
    mona = await log_in(dash)
    await get_json(dash, mona, "/api/repos")
    await get_json(dash, mona, "/api/repos")
    assert len(dash.fake.calls("GET", "/user/installations")) == 1
    # Permission downgrade on GitHub: admin on r1 becomes pull; seen once the cache expires (OA-17).
    dash.fake.state.user_permissions["mona"]["octo-org/r1"] = {"admin": False, "push": False, "pull": True}
    dash.clock.advance(access.CACHE_TTL + 1)
    status, body = await get_json(dash, mona, "/api/repos/octo-org/r1")
    assert status == 200 and body == {"repo": "octo-org/r1", "permission": "pull"}
    assert len(dash.fake.calls("GET", "/user/installations")) == 2


async def test_managed_repositories_are_stored_so_background_handlers_can_notify_managers(dash: Dashboard) -> None:
    mona = await log_in(dash)
    await get_json(dash, mona, "/api/repos")
    stored = await users.list_user_repositories(dash.db, 42)
    assert [(r.repo, r.installation_id, r.permission) for r in stored] == [
        ("octo-org/r1", 7, "admin"), ("octo-org/r3", 7, "push"), ("octo-org/r5", 7, "pull")]
    assert await notifications.notify_repo_managers(dash.db, "octo-org/r3", "verdict", "PR #1 passed") == 1


async def test_a_repository_removed_on_github_disappears_from_the_stored_set(dash: Dashboard) -> None:
    mona = await log_in(dash)
    await get_json(dash, mona, "/api/repos")
    dash.fake.state.user_installations["mona"][7].remove("octo-org/r5")
    dash.clock.advance(access.CACHE_TTL + 1)
    status, repos = await get_json(dash, mona, "/api/repos")
    assert status == 200 and repos == ["octo-org/r1", "octo-org/r3"]
    assert [r.repo for r in await users.list_user_repositories(dash.db, 42)] == ["octo-org/r1", "octo-org/r3"]


# -- WH-24: an uninstall or a removed repository hides it at once, not when the access cache expires ----------

async def test_an_uninstalled_installations_repositories_disappear_at_once(dash: Dashboard) -> None:
    mona = await log_in(dash)
    assert (await get_json(dash, mona, "/api/repos"))[1] == MONA_SEES
    async with dash.db.transaction() as conn:
        await installations.mark_deleted(conn, 7, T0)
    status, repos = await get_json(dash, mona, "/api/repos")
    assert status == 200 and repos == []
    assert (await get_json(dash, mona, "/api/repos/octo-org/r1"))[0] == 404
    assert len(dash.fake.calls("GET", "/user/installations")) == 1  # the cache was still fresh: not a re-read


async def test_a_removed_repository_disappears_at_once_and_comes_back_when_added_again(dash: Dashboard) -> None:
    mona = await log_in(dash)
    repos = [{"id": 1, "full_name": "octo-org/r1"}, {"id": 3, "full_name": "Octo-Org/R3"}]
    async with dash.db.transaction() as conn:
        await installations.add_repositories(conn, 7, repos, T0)
        await installations.remove_repositories(conn, 7, repos[1:], T0)
    assert (await get_json(dash, mona, "/api/repos"))[1] == ["octo-org/r1", "octo-org/r5"]
    assert (await get_json(dash, mona, "/api/repos/octo-org/r3"))[0] == 404
    async with dash.db.transaction() as conn:
        await installations.add_repositories(conn, 7, repos[1:], T0)
    assert (await get_json(dash, mona, "/api/repos"))[1] == MONA_SEES
    assert len(dash.fake.calls("GET", "/user/installations")) == 1


@pytest.mark.parametrize("message", [
    "Resource protected by organization SAML enforcement. You must grant your OAuth token access to this "
    "organization.",
    "Resource not accessible by integration",
])
async def test_an_installation_github_refuses_for_this_user_hides_only_its_repositories(dash: Dashboard,
                                                                                       message: str) -> None:
    # OA-18: a SAML-protected org (or a token refused there) hides that installation's repositories, not all.
    # The refusal hits the first installation read (7, octo-org); installation 10 is still listed.
    dash.fake.add_installation(10, account="saml-org", repositories=["saml-org/s1"])
    dash.fake.state.user_installations["mona"][10] = ["saml-org/s1"]
    dash.fake.state.user_permissions["mona"]["saml-org/s1"] = {"admin": True}
    async with dash.db.transaction() as conn:
        await installations.upsert_installation(conn, {"id": 10, "account": {"login": "saml-org"}}, T0)
    dash.fake.fail_next("GET", "/user/installations/{installation_id}/repositories", status=403,
                        body={"message": message, "documentation_url": "https://docs.github.com/rest"})
    mona = await log_in(dash)
    status, repos = await get_json(dash, mona, "/api/repos")
    assert status == 200 and repos == ["saml-org/s1"]
    assert [call.path.split("/")[-2] for call in
            dash.fake.calls("GET", "/user/installations/{installation_id}/repositories")] == ["7", "10"]


async def test_user_installations_and_repositories_are_read_across_every_page(dash: Dashboard) -> None:
    # OA-19: 120 installations and 150 repositories in one of them: several pages each, nothing dropped.
    names = [f"big-org/r{n:03d}" for n in range(150)]
    dash.fake.add_installation(11, account="big-org", repositories=names)
    dash.fake.state.user_installations["mona"][11] = list(names)
    for n in range(12, 131):
        dash.fake.add_installation(n, account=f"org{n}", repositories=[f"org{n}/only"])
        dash.fake.state.user_installations["mona"][n] = [f"org{n}/only"]
        dash.fake.state.user_permissions["mona"][f"org{n}/only"] = {"push": True}
    async with dash.db.transaction() as conn:
        for n in range(10, 131):
            await installations.upsert_installation(conn, {"id": n, "account": {"login": f"org{n}"}}, T0)
    mona = await log_in(dash)
    status, repos = await get_json(dash, mona, "/api/repos")
    assert status == 200 and isinstance(repos, list)
    assert len(repos) == len(MONA_SEES) + 150 + 119
    assert {*names, "org130/only", "org12/only"} <= set(repos)
    assert len(dash.fake.calls("GET", "/user/installations")) >= 2  # 122 installations: two pages of 100


async def test_github_failure_while_listing_is_a_502_json_error(dash: Dashboard) -> None:
    mona = await log_in(dash)
    dash.fake.fail_next("GET", "/user/installations", status=404)
    status, body = await get_json(dash, mona, "/api/repos")
    assert status == 502
    assert isinstance(body, dict) and body["error"]["code"] == "github_unavailable"


@pytest.mark.parametrize("route", ["/user/installations", "/user/installations/{installation_id}/repositories"])
@pytest.mark.parametrize("body", [b'{"installations": 5, "repositories": 5}', b"[1, 2, 3]",
                                  b'{"installations": [1, "x", null], "repositories": [1, "x", null]}',
                                  b'{"total_count": 1}'])
async def test_a_malformed_github_list_is_a_502_and_is_not_cached(dash: Dashboard, route: str, body: bytes) -> None:
    mona = await log_in(dash)
    dash.fake.fail_next("GET", route, status=200, body=body)
    status, answer = await get_json(dash, mona, "/api/repos")
    assert status == 502
    assert isinstance(answer, dict) and answer["error"]["code"] == "github_unavailable"
    assert await get_json(dash, mona, "/api/repos") == (200, MONA_SEES)  # read again, not an empty set cached


async def test_requests_waiting_on_a_failed_github_read_share_its_failure(dash: Dashboard) -> None:
    # Every try answers 502 after 0.2 s; one read is the client's first try and its retries.
    mona = await log_in(dash)
    dash.fake.fail_next("GET", "/user/installations", status=502, delay=0.2, times=100)
    first = await dash.client.get("/api/repos", headers=with_session(dash, mona))
    one_read = len(dash.fake.calls("GET", "/user/installations"))
    assert first.status == 502 and one_read >= 1
    answers = await asyncio.gather(*(get_json(dash, mona, "/api/repos") for _ in range(4)))
    assert [status for status, _ in answers] == [502] * 4
    # Before: each waiter read GitHub again once the lock was free, so the 4th answered after 4 reads' time.
    assert len(dash.fake.calls("GET", "/user/installations")) == 2 * one_read
    dash.fake.state.faults.clear()
    assert await get_json(dash, mona, "/api/repos") == (200, MONA_SEES)  # nothing cached: read again


@pytest.mark.parametrize(("installation_id", "expected"), [(7, MONA_SEES), (8, None), (9, None), (12345, None)])
async def test_installation_access_is_404_unless_the_user_reaches_a_repository_in_it(
        dash: Dashboard, installation_id: int, expected: list[str] | None) -> None:
    mona = await log_in(dash)
    status, body = await get_json(dash, mona, f"/api/installations/{installation_id}")
    if expected is None:
        assert status == 404 and isinstance(body, dict) and body["error"]["code"] == "not_found"
    else:
        assert status == 200 and body == expected


@pytest.mark.parametrize(("permissions", "expected"), [
    ({"admin": True, "push": True, "pull": True}, "admin"), ({"maintain": True, "pull": True}, "maintain"),
    ({"push": True, "pull": True}, "push"), ({"triage": True, "pull": True}, "triage"), ({"pull": True}, "pull"),
    ({"pull": False}, None), ({}, None), (None, None), ({"admin": "true"}, None)])
def test_highest_permission_is_the_strongest_marked_true(permissions: dict[str, object] | None,
                                                         expected: str | None) -> None:
    assert access.highest_permission(permissions) == expected


def test_require_push_passes_push_maintain_admin_and_refuses_triage_and_pull() -> None:
    for permission in ("admin", "maintain", "push"):
        access.require_push(access.RepoAccess("o/r", 1, permission))
    for permission in ("triage", "pull"):
        with pytest.raises(access.web.HTTPForbidden):
            access.require_push(access.RepoAccess("o/r", 1, permission))


# -- a slow or rate-limiting GitHub: a dashboard request answers within the deadline, 503 with Retry-After -------

DEADLINE = 0.05  # GitHub's answer comes after SLOW seconds: well past it
SLOW = 0.5


async def get_with_headers(dash: Dashboard, session: str, path: str) -> tuple[int, object, dict[str, str]]:
    response = await dash.client.get(path, headers=with_session(dash, session))
    return response.status, await response.json(), dict(response.headers)


async def test_a_slow_github_is_a_quick_503_with_retry_after_then_answers_at_once_until_then(dash: Dashboard) -> None:
    dash.client.app[access.ACCESS].deadline = DEADLINE
    mona = await log_in(dash)
    dash.fake.fail_next("GET", "/user/installations", kind="slow", delay=SLOW)
    started = time.perf_counter()
    status, body, headers = await get_with_headers(dash, mona, "/api/repos")
    # Before: the request waited for GitHub however long it took (about 60 s with the client's retries).
    assert time.perf_counter() - started < SLOW
    assert status == 503 and isinstance(body, dict) and body["error"]["code"] == "github_timeout"
    assert headers["Retry-After"] == str(access.SLOW_RETRY_AFTER)
    # Within Retry-After the user's requests do not wait on GitHub again: 503 at once, Retry-After counting down.
    dash.clock.advance(10)
    status, body, headers = await get_with_headers(dash, mona, "/api/repos")
    assert status == 503 and headers["Retry-After"] == str(access.SLOW_RETRY_AFTER - 10)
    assert len(dash.fake.calls("GET", "/user/installations")) == 1
    dash.clock.advance(access.SLOW_RETRY_AFTER)
    assert await get_json(dash, mona, "/api/repos") == (200, MONA_SEES)  # GitHub asked again, now quick


async def test_a_slow_github_is_answered_from_the_users_recent_last_list(dash: Dashboard) -> None:
    dash.client.app[access.ACCESS].deadline = DEADLINE
    mona = await log_in(dash)
    assert await get_json(dash, mona, "/api/repos") == (200, MONA_SEES)
    dash.clock.advance(access.CACHE_TTL + 1)  # the cached list has expired, but is recent
    dash.fake.fail_next("GET", "/user/installations", kind="slow", delay=SLOW)
    started = time.perf_counter()
    assert await get_json(dash, mona, "/api/repos") == (200, MONA_SEES)
    assert time.perf_counter() - started < SLOW
    assert len(dash.fake.calls("GET", "/user/installations")) == 2


async def test_a_last_list_older_than_the_stale_limit_is_not_used(dash: Dashboard) -> None:
    dash.client.app[access.ACCESS].deadline = DEADLINE
    mona = await log_in(dash)
    assert await get_json(dash, mona, "/api/repos") == (200, MONA_SEES)
    dash.clock.advance(access.STALE_MAX_AGE + 1)
    dash.fake.fail_next("GET", "/user/installations", kind="slow", delay=SLOW)
    status, body = await get_json(dash, mona, "/api/repos")
    assert status == 503 and isinstance(body, dict) and body["error"]["code"] == "github_timeout"


@pytest.mark.parametrize("status", [429, 403])
async def test_a_primary_rate_limit_is_a_503_with_retry_after_from_the_reset(dash: Dashboard, status: int) -> None:
    mona = await log_in(dash)
    dash.fake.rate_limit("GET", "/user/installations", reset_in=120, status=status)
    answer, body, headers = await get_with_headers(dash, mona, "/api/repos")
    # Before: 502 github_unavailable, no Retry-After, as if GitHub were broken.
    assert answer == 503 and isinstance(body, dict) and body["error"]["code"] == "github_rate_limited"
    assert headers["Retry-After"] == "120"
    dash.clock.advance(20)  # asked again meanwhile: answered without a request to GitHub
    answer, _body, headers = await get_with_headers(dash, mona, "/api/repos")
    assert (answer, headers["Retry-After"]) == (503, "100")
    assert len(dash.fake.calls("GET", "/user/installations")) == 1


async def test_a_secondary_rate_limit_is_a_503_with_githubs_retry_after(dash: Dashboard) -> None:
    mona = await log_in(dash)
    dash.fake.secondary_limit("GET", "/user/installations", retry_after=45, status=429)
    answer, body, headers = await get_with_headers(dash, mona, "/api/repos")
    assert answer == 503 and isinstance(body, dict) and body["error"]["code"] == "github_rate_limited"
    assert headers["Retry-After"] == "45"
