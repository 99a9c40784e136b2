"""Core review of the App credential mismatch check (quantumreview.credentials_mismatch)."""

from __future__ import annotations

import pytest

from quantumreview.credentials_mismatch import CredentialsCheck

STAGING, REAL = 2, 1


async def named() -> str:
    return f"App {STAGING} (quantumreview-staging)"


async def test_webhooks_from_another_app_keep_a_404_from_marking_deleted_though_the_credentials_reached_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """The staging App's credentials reached an installation of theirs this server had acted for (stored when it
    ran as staging): that 'proof' made every 404 of the real App's installations a deletion, though each webhook
    said it came from App 1."""
    check = CredentialsCheck(str(STAGING))
    check.asked(50)
    check.reached(50)  # a staging installation's job minted a token
    check.asked(7)
    check.note_webhook_app(REAL)
    looked_up: list[int] = []

    async def lookup(installation_id: int) -> bool | None:
        looked_up.append(installation_id)
        return False

    assert await check.deleted(7, lookup, named) is False
    assert check.problem is not None and "webhooks come from App 1" in check.problem
    assert looked_up == []  # the webhooks said it: nothing to guess from other installations
