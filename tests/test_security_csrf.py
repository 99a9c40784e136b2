"""Cross-site refusal for requests from opaque origins: `Origin: null` is never vouched for by the Referer."""

from __future__ import annotations

import pytest

from tests import test_auth as shared
from tests.test_auth import DASHBOARD, PUBLIC, Dashboard, log_in, with_session

# The dashboard fixtures live with the auth tests; re-exported so pytest finds them here.
fake, database, make_dashboard, dash = shared.fake, shared.database, shared.make_dashboard, shared.dash
migrated_file = shared.migrated_file

REGENERATE = "/api/repos/octo-org/r1/regenerate"


@pytest.mark.parametrize("referer", [f"{PUBLIC}/repos/octo-org/r1", f"{DASHBOARD}/octo-org/r1"])
async def test_a_signed_in_post_from_an_opaque_origin_is_refused_whatever_its_referer(
        dash: Dashboard, referer: str) -> None:
    """What a sandboxed frame on the dashboard, or a dashboard form sent to a URL answering 307, makes the browser
    send: Origin null, and the dashboard's page as the Referer."""
    mona = await log_in(dash)
    response = await dash.client.post(REGENERATE, json={},
                                      headers={**with_session(dash, mona), "Origin": "null", "Referer": referer})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "csrf"


async def test_the_same_post_from_the_dashboard_passes(dash: Dashboard) -> None:
    mona = await log_in(dash)
    sent = {"Origin": DASHBOARD}, {"Referer": f"{PUBLIC}/repos/octo-org/r1"}  # no Origin: the Referer decides
    for headers in sent:
        response = await dash.client.post(REGENERATE, json={}, headers={**with_session(dash, mona), **headers})
        assert response.status == 200, headers
        assert await response.json() == {"regenerated": "octo-org/r1"}


async def test_logout_from_an_opaque_origin_is_refused_and_the_session_lives_on(dash: Dashboard) -> None:
    mona = await log_in(dash)
    response = await dash.client.post("/auth/logout", headers={**with_session(dash, mona), "Origin": "null",
                                                               "Referer": f"{PUBLIC}/"})
    assert response.status == 403
    assert (await dash.client.get("/api/me", headers=with_session(dash, mona))).status == 200
