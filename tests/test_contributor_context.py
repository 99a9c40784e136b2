"""make_context reads the installation of a payload as the server and `receive` do."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from quantumreview.errors import PermanentError
from quantumreview.github import NoInstallation
from quantumreview.testing.context import make_context
from storage.db import Database


@pytest.mark.parametrize("raw_id", [True, False, 0, -5, 2**63, "5", 5.0, None])
async def test_payload_without_a_usable_installation_id_gives_no_installation(
        handler_db: Database, github_app: Any, raw_id: Any) -> None:
    # `true` was installation 1 in a plugin's test (a client for another account's installation), where the
    # server and receive ran the handler without one.
    ctx, _ = make_context("issues", {"installation": {"id": raw_id}}, db=handler_db, github=github_app)
    assert (ctx.installation_id, ctx.gh) == (None, None)


async def test_payload_installation_id_gives_its_client(handler_db: Database, github_app: Any) -> None:
    ctx, _ = make_context("issues", {"installation": {"id": 5}}, db=handler_db, github=github_app)
    assert ctx.installation_id == 5
    assert ctx.gh is not None


async def test_handlers_edits_to_the_payload_stay_in_its_context(handler_db: Database) -> None:
    # Each job of the server parses its payload afresh; the test's dict was shared with the handler instead, so
    # a second run (a retry, an idempotency check) saw the first run's edits.
    payload = {"action": "labeled", "issue": {"number": 1, "labels": [{"name": "bug"}]}}
    first, _ = make_context("issues", payload, db=handler_db)
    first.payload["issue"]["labels"].append({"name": "added by the handler"})
    second, _ = make_context("issues", payload, db=handler_db)
    assert payload["issue"]["labels"] == [{"name": "bug"}]
    assert second.payload == payload


@pytest.mark.parametrize("value", [datetime.date(2026, 1, 1), {"a set"}, float("nan")])
async def test_payload_no_webhook_could_hold_is_refused(handler_db: Database, value: Any) -> None:
    with pytest.raises(TypeError, match=r"^make_context: the payload must be JSON, as a webhook's is: "):
        make_context("issues", {"action": "opened", "when": value}, db=handler_db)


async def test_installation_client_for_an_event_without_installation_is_a_clear_error(github_app: Any) -> None:
    # `ctx.github.for_installation(ctx.installation_id)` for a repository webhook or `ping` raised a bare
    # "int() argument must be a string ... not 'NoneType'", naming neither the cause nor the way out.
    with pytest.raises(NoInstallation, match=r"the event carries no installation .*ctx\.installation_id") as caught:
        github_app.for_installation(None)
    # A TypeError still (code catching the old error keeps working), and permanent: a retry cannot give it one.
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(("raw_id", "error"), [(True, TypeError), ("5", TypeError), (0, ValueError),
                                                 (-3, ValueError)])
async def test_installation_client_refuses_what_is_no_installation_id(
        github_app: Any, raw_id: Any, error: type[Exception]) -> None:
    # `True` was installation 1 (another account's installation) and "5" was converted silently.
    with pytest.raises(error, match="an installation id is a positive int"):
        github_app.for_installation(raw_id)
