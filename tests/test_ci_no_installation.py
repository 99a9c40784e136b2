"""A workflow run delivered with no installation (a repository webhook, or `quantumreview receive` of its payload)
is skipped quietly, as every other handler does: the job ends done (not dead), and `receive` says skipped."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from gidgethub import sansio

from handlers.ci_results import router
from quantumreview import keys
from quantumreview.app import create_app
from quantumreview.plugins import HandlerRegistry
from quantumreview.receive import receive
from quantumreview.receive_codes import SKIPPED
from quantumreview.receive_outcome import NO_INSTALLATION
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.signing import signed_delivery
from quantumreview.webhook import PATH
from tests.conftest import WEBHOOK_SECRET, SettingsFactory

FIXTURE = Path(__file__).parent / "fixtures" / "webhooks" / "workflow_run.completed.3.json"


def without_installation() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    data.pop("installation", None)
    return data


async def test_receive_skips_a_workflow_run_naming_no_installation(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env({"DATABASE_PATH": str(tmp_path / "qr.db")})
    event = sansio.Event(without_installation(), event="workflow_run", delivery_id="local")
    out = io.StringIO()
    caplog.set_level(logging.INFO)
    code = await receive(settings, HandlerRegistry.from_routers([router]), event, out)
    assert out.getvalue().splitlines() == [
        f"handlers.ci_results:judge_workflow_run: skipped: ctx.installation_id is None, as {NO_INSTALLATION}, "
        "and it did nothing without it"]
    assert code == SKIPPED == 3
    assert any("names no installation" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


async def test_the_server_ends_the_job_of_a_workflow_run_naming_no_installation_done(
        make_settings: SettingsFactory, fake_github: FakeGitHub, aiohttp_client: Any) -> None:
    settings = make_settings(github_api_url=fake_github.api_url, github_url=fake_github.url)
    client = await aiohttp_client(create_app(settings, registry=HandlerRegistry.from_routers([router])))
    db = client.app[keys.db]
    headers, body = signed_delivery("workflow_run", without_installation(), WEBHOOK_SECRET)
    assert (await client.post(PATH, data=body, headers=headers)).status in (200, 202)
    for _ in range(250):
        if await db.fetchvalue("SELECT count(*) FROM jobs WHERE status NOT IN ('queued', 'running')"):
            break
        await asyncio.sleep(0.02)
    assert [tuple(row) for row in await db.fetchall("SELECT handler, status, last_error FROM jobs")] == [
        ("handlers.ci_results:judge_workflow_run", "done", None)]
