"""make_context reads the installation of a payload as the server and `receive` do."""

from __future__ import annotations

from typing import Any

import pytest

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
