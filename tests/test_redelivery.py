"""Missed deliveries: only failed, unknown GUIDs inside 3 days are redelivered, each exactly once (WH-28, JOB-13)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from quantumreview import keys
from quantumreview.app import create_app
from quantumreview.redelivery import WINDOW_SECONDS, Redelivery, select_redeliveries, sweep
from quantumreview.testing.fake import FakeGitHub
from storage.db import Database
from tests.conftest import WEBHOOK_SECRET


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def test_select_skips_ok_known_and_old_guids() -> None:
    now = 1_800_000_000.0
    deliveries = [
        {"id": 1, "guid": "failed-once", "status": "Invalid HTTP Response: 503", "status_code": 503,
         "delivered_at": iso(now - 60)},
        {"id": 2, "guid": "failed-then-ok", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 120)},
        {"id": 3, "guid": "failed-then-ok", "status": "OK", "status_code": 200, "delivered_at": iso(now - 100)},
        {"id": 4, "guid": "too-old", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - WINDOW_SECONDS - 60)},
        {"id": 5, "guid": "known-here", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 60)},
        {"id": 6, "guid": "failed-twice", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 300)},
        {"id": 7, "guid": "failed-twice", "status": "failed to connect", "status_code": 0,
         "delivered_at": iso(now - 30)},
    ]
    chosen = select_redeliveries(deliveries, {"known-here"}, now=now)
    assert sorted(chosen, key=lambda r: r.guid) == [Redelivery("failed-once", 1), Redelivery("failed-twice", 7)]


async def test_sweep_redelivers_each_failed_guid_exactly_once(fake_github: FakeGitHub, github_app: Any,
                                                              handler_db: Database) -> None:
    now = time.time()
    for guid in ("a", "b", "c"):
        fake_github.add_hook_delivery(guid, status="failed to connect", delivered_at=now - 600)
    fake_github.add_hook_delivery("ok", status="OK", delivered_at=now - 600)
    fake_github.add_hook_delivery("old", status="failed to connect", delivered_at=now - WINDOW_SECONDS - 600)
    await handler_db.execute(
        "INSERT INTO deliveries (id, event, received_at, body) VALUES ('c', 'issues', 0, x'7b7d')"
    )
    first = await sweep(github_app.as_app(), handler_db, now=now)
    second = await sweep(github_app.as_app(), handler_db, now=now)
    assert sorted(r.guid for r in first) == ["a", "b"]
    assert second == []
    attempts = fake_github.calls("POST", "/app/hook/deliveries/{delivery_id}/attempts")
    assert len(attempts) == 2


async def test_sweep_pages_through_the_delivery_log(fake_github: FakeGitHub, github_app: Any,
                                                    handler_db: Database) -> None:
    now = time.time()
    for i in range(130):
        fake_github.add_hook_delivery(f"g{i}", status="failed to connect", delivered_at=now - 60 - i)
    chosen = await sweep(github_app.as_app(), handler_db, now=now)
    assert len(chosen) == 130
    assert len(fake_github.calls("GET", "/app/hook/deliveries")) == 2


async def test_app_start_recovers_deliveries_missed_while_down(fake_github: FakeGitHub, make_settings: Any,
                                                               aiohttp_server: Any, load_payload: Any) -> None:
    """WH-28: three deliveries failed while the app was down; at start the sweep brings each back once."""
    now = time.time()
    payload = load_payload("issues.opened")
    for guid in ("d1", "d2", "d3"):
        fake_github.add_hook_delivery(guid, status="failed to connect", event="issues", action="opened",
                                      delivered_at=now - 120, payload=payload)
    settings = make_settings(github_api_url=fake_github.api_url, github_url=fake_github.url)
    app = create_app(settings)  # the real handlers package: the sweep is handlers/redeliveries.py
    server = await aiohttp_server(app)
    fake_github.send_webhooks_to(str(server.make_url("/webhooks/github")), WEBHOOK_SECRET)
    stored: list[Any] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(stored) < 3:
        await asyncio.sleep(0.05)
        stored = await app[keys.db].fetchall("SELECT id FROM deliveries ORDER BY id")
    assert [row[0] for row in stored] == ["d1", "d2", "d3"]
    assert len(fake_github.calls("POST", "/app/hook/deliveries/{delivery_id}/attempts")) == 3
