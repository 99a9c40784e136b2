"""Build a handler Context for tests: real database, real GitHub client (against FakeGitHub), recorded side work."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gidgethub import sansio

from quantumreview.context import Context
from quantumreview.settings import Settings
from storage.db import Database


@dataclass
class Recorder:
    """What a handler asked for besides GitHub calls: notifications and enqueued work."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    enqueued: list[dict[str, Any]] = field(default_factory=list)

    async def notify(self, repo: str, kind: str, title: str, *, url: str | None = None,
                     data: Mapping[str, Any] | None = None, key: str | None = None) -> int:
        """Record a notification instead of writing rows for the repo's managers; one whose key was recorded
        already is not recorded again (0), as the server writes a key once per user."""
        if key is not None and any(n["key"] == key for n in self.notifications):
            return 0
        self.notifications.append({"repo": repo, "kind": kind, "title": title, "url": url, "data": dict(data or {}),
                                   "key": key})
        return 1

    async def enqueue(self, event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
                      installation_id: int | None = None, delay: float = 0.0) -> list[int]:
        """Record enqueued work instead of writing job rows."""
        self.enqueued.append({"event": event, "data": dict(data), "ordering_key": ordering_key,
                              "installation_id": installation_id, "delay": delay})
        return [len(self.enqueued)]


def make_context(event_name: str, payload: Mapping[str, Any], *, db: Database, github: Any = None,
                 installation_id: int | None = None, settings: Settings | None = None,
                 recorder: Recorder | None = None, attempt: int = 1) -> tuple[Context, Recorder]:
    """A Context for calling a handler directly; ctx.gh is github.for_installation(installation_id) when both exist."""
    recorder = recorder or Recorder()
    if installation_id is None:
        installation = payload.get("installation")
        raw_id = installation.get("id") if isinstance(installation, Mapping) else None
        # Why not any int: `true` is one to Python, and acted as installation 1 here while the server and
        # `receive` see no installation in such a payload.
        if isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 < raw_id < 2**63:
            installation_id = raw_id
    gh = github.for_installation(installation_id) if github is not None and installation_id is not None else None
    # Why a copy through JSON: each job parses its payload afresh, so a handler's edits to it never reach a
    # retry or the test's own dict; and a value no webhook could hold (a datetime, a set, NaN) is refused here.
    try:
        data = json.loads(json.dumps(payload, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"make_context: the payload must be JSON, as a webhook's is: {exc}") from None
    event = sansio.Event(data, event=event_name, delivery_id="test-delivery")
    ctx = Context(event=event, db=db, settings=settings or Settings(database_path=db.path), gh=gh, github=github,
                  installation_id=installation_id, delivery_id="test-delivery", job_id=1, attempt=attempt,
                  enqueue=recorder.enqueue, notify=recorder.notify)
    return ctx, recorder
