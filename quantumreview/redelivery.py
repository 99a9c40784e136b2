"""Missed deliveries: ask GitHub to send again every delivery it marks failed that never reached us.

GitHub does not retry failed deliveries by itself; it keeps them for 3 days at GET /app/hook/deliveries.
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from storage import redeliveries as store
from storage.db import Database

WINDOW_SECONDS = 3 * 24 * 3600
SWEEP_EVENT = "quantumreview.sweep_deliveries"
SWEEP_INTERVAL = 600.0
MAX_PER_SWEEP = 200  # Why: each attempt is a POST; stay well under the secondary rate limits.

log = logging.getLogger("quantumreview.redelivery")


@dataclass(frozen=True)
class Redelivery:
    """One GUID to redeliver, and the id of the attempt GitHub should send again."""

    guid: str
    delivery_id: int


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def select_redeliveries(
    deliveries: Iterable[Mapping[str, Any]], known_guids: set[str], *, now: float, window: float = WINDOW_SECONDS
) -> list[Redelivery]:
    """GUIDs with no successful attempt, unknown here, inside the window: one entry each, newest attempt first."""
    attempts: dict[str, list[Mapping[str, Any]]] = {}
    for delivery in deliveries:
        guid = delivery.get("guid")
        if isinstance(guid, str) and isinstance(delivery.get("id"), int):
            attempts.setdefault(guid, []).append(delivery)
    chosen: list[Redelivery] = []
    for guid, tries in attempts.items():
        if guid in known_guids:
            continue
        if any(t.get("status") == "OK" or 200 <= int(t.get("status_code") or 0) < 300 for t in tries):
            continue
        newest = max(tries, key=lambda t: _timestamp(t.get("delivered_at")) or 0.0)
        delivered = _timestamp(newest.get("delivered_at"))
        if delivered is None or now - delivered > window:
            continue
        chosen.append(Redelivery(guid=guid, delivery_id=int(newest["id"])))
    return chosen


async def sweep(app_api: Any, db: Database, *, now: float) -> list[Redelivery]:
    """List recent deliveries with the App JWT client, then request each missed one exactly once."""
    recent: list[Mapping[str, Any]] = []
    async for delivery in app_api.getiter("/app/hook/deliveries?per_page=100"):
        stamp = _timestamp(delivery.get("delivered_at"))
        if stamp is not None and now - stamp > WINDOW_SECONDS:
            break  # newest first: everything after this is outside the window
        recent.append(delivery)
    guids = {d["guid"] for d in recent if isinstance(d.get("guid"), str)}
    known = await store.known_guids(db, guids)
    chosen = select_redeliveries(recent, known, now=now)[:MAX_PER_SWEEP]
    for item in chosen:
        # Record first: a crash after the POST must not ask twice; GitHub keeps the failure listed anyway.
        if not await store.claim(db, item.guid, item.delivery_id, now):
            continue
        await app_api.post(f"/app/hook/deliveries/{item.delivery_id}/attempts", data={})
        log.info("requested redelivery of %s", item.guid)
    return chosen
