"""`quantumreview receive EVENT PAYLOAD.json`: run the matching handlers once, like `probot receive`.

Handlers run for real against GitHub (when an App is configured) and the local database; every GitHub call they
make is printed, so a contributor sees what a handler did without sending a webhook.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from gidgethub import sansio

from quantumreview.app import build_github
from quantumreview.crypto import SecretBox
from quantumreview.jobs import CANCEL_REPEAT, JobRunner
from quantumreview.jobs_abandon import CANCEL_ALLOWANCE, Releasable, cancel_until_done, outcome
from quantumreview.plugins import HandlerRegistry
from quantumreview.receive_codes import BAD_INPUT, OK
from quantumreview.receive_outcome import Outcome, WatchedContext, exit_code, judge, shown
from quantumreview.receive_recording import RecordingApp
from quantumreview.settings import Settings
from quantumreview.setup_flow import initial_credentials
from quantumreview.webhook import EVENT_NAME, MAX_BODY_BYTES, MAX_HEADER_CHARS
from storage.db import Database
from storage.notifications import notify_repo_managers


def load_event(event_name: str, payload_path: Path) -> sansio.Event:
    """Read a payload file into an Event; ValueError with a clear message if it is not a JSON object, or if
    `event_name` is no name the server would take in X-GitHub-Event."""
    if len(event_name) > MAX_HEADER_CHARS or not EVENT_NAME.fullmatch(event_name):
        # Why: an empty name or one holding a space, a newline or a terminal escape matched nothing, and was printed
        # raw in "no handler matches …"; the server's intake refuses such a header (400).
        raise ValueError(f"{ascii(event_name)[:MAX_HEADER_CHARS]} is not an event name: give X-GitHub-Event's, "
                         f"such as issues or pull_request (letters, digits, '_', '.' and '-', at most "
                         f"{MAX_HEADER_CHARS} characters)")
    try:
        # Why a cap: read_bytes() of a huge file (or /dev/zero) took all memory, then died with MemoryError.
        with payload_path.open("rb") as file:
            raw = file.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ValueError(f"larger than {MAX_BODY_BYTES} bytes, GitHub's cap on a webhook payload")
        data = json.loads(raw)
    except RecursionError:  # Why: "[[[[…" past json's depth limit is no ValueError; it was a traceback
        raise ValueError(f"cannot read {shown(str(payload_path))}: JSON nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {shown(str(payload_path))}: {shown(str(exc))}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{shown(str(payload_path))} does not hold a JSON object")
    action = data.get("action")
    if isinstance(action, str) and not action.isascii():
        try:
            action.encode()
        except UnicodeEncodeError:  # Why: printing it ("no handler matches issues.\ud800") was a traceback
            raise ValueError(f"{shown(str(payload_path))}: the action holds a lone surrogate, which is not UTF-8 "
                             "(the intake refuses such a delivery too)") from None
    return sansio.Event(data, event=event_name, delivery_id=f"receive-{uuid.uuid4()}")


async def run_within(start: Callable[[], Awaitable[None]], timeout: float) -> BaseException | None:
    """Run a handler as the job runner would, within JOB_TIMEOUT: None if it returned, else what it raised.

    Why: a handler that never ended (a hung request, a loop) held `receive` for ever, where the server would have
    ended its job at JOB_TIMEOUT; one ignoring its cancellation is closed at its next step, so the command exits.
    """
    call = Releasable(start)
    task = asyncio.create_task(outcome(call))
    try:
        await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run would wait at exit for a handler ignoring it
        await _end(task, call)
        raise
    if task.done():
        return task.result()
    await _end(task, call)
    return TimeoutError(f"the handler ran past JOB_TIMEOUT ({timeout:g} s)")


async def _end(task: asyncio.Task[BaseException | None], call: Releasable) -> None:
    """Cancel the handler's task; one still running after CANCEL_ALLOWANCE is closed at its next step."""
    ended, _ = await cancel_until_done(task, CANCEL_ALLOWANCE, CANCEL_REPEAT)
    if not ended:
        call.release()
        task.cancel()
        await asyncio.wait({task})


async def receive(settings: Settings, registry: HandlerRegistry, event: sansio.Event, out: TextIO) -> int:
    """Run every handler matching `event` once; print what each did (ok, skipped or failed: see receive_outcome)."""
    action = event.data.get("action")
    label = f"{event.event}.{shown(action)}" if isinstance(action, str) and action else event.event
    try:
        names = registry.handlers_for(event)
    except TypeError:  # Why: gidgethub looks a routed value up in a dict; a list or object raised a traceback
        print(f"quantumreview: {event.event}: a routed field (such as action) is a list or an object, not a "
              "string or number", file=sys.stderr)
        return BAD_INPUT
    if not names:
        print(f"no handler matches {label}{_event_hint(event.event, action)}", file=out)
        return OK
    db = await Database.open(settings.database_path)
    outcomes: list[Outcome] = []
    try:
        box = SecretBox.load_or_create(settings.jwt_secret, settings.database_path.parent,
                                       settings.jwt_secret_previous)
        credentials = await initial_credentials(settings, db, box)
        async with aiohttp.ClientSession() as session:
            github = None
            if credentials is not None:
                github = build_github(session, settings, credentials)
            runner = JobRunner(db, registry, settings)  # not started: enqueue() only writes job rows
            installation = event.data.get("installation")
            raw_id = installation.get("id") if isinstance(installation, dict) else None
            # Why not any int: `true` is one to Python, and acted as installation 1, another account's.
            installation_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) \
                and 0 < raw_id < 2**63 else None
            asked: list[str] = []  # jobs queued and notifications sent: a handler doing them did not skip

            async def enqueue(event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
                              installation_id: int | None = None, delay: float = 0.0) -> list[int]:
                asked.append(event)
                return await runner.enqueue(event, data, ordering_key=ordering_key,
                                            installation_id=installation_id, delay=delay)

            async def notify(repo: str, kind: str, title: str, **kwargs: Any) -> int:
                asked.append(kind)
                return int(await notify_repo_managers(db, repo, kind, title, **kwargs))

            for number, name in enumerate(names, start=1):
                handler = registry.get(name)
                assert handler is not None
                calls: list[str] = []
                gh, app = None, None
                if github is not None:
                    app = RecordingApp(github, calls)
                    gh = app.for_installation(installation_id) if installation_id is not None else None
                ctx = WatchedContext(event=event, db=db, settings=settings, gh=gh, github=app,
                                     installation_id=installation_id, delivery_id=event.delivery_id, job_id=-number,
                                     attempt=1, enqueue=enqueue, notify=notify)
                commits, asked_before = db.commits, len(asked)
                error = await run_within(functools.partial(handler, event, ctx), settings.job_timeout)
                acted = db.commits > commits or len(asked) > asked_before or bool(calls)
                result = judge(error, ctx.found_none, has_app=github is not None, acted=acted)
                outcomes.append(result)
                print(f"{name}: {result.line}", file=out)
                for call in calls:
                    print(f"  {shown(call)}", file=out)
    finally:
        await db.close()
    return exit_code(outcomes)


def _event_hint(event_name: str, action: object) -> str:
    """Why nothing matched, when the event name was given as EVENT.ACTION (the payload's action repeated)."""
    if isinstance(action, str) and action and event_name.endswith(f".{action}"):
        base = event_name[:-len(action) - 1]
        return (f" (the event name is X-GitHub-Event's, such as {base}: the action comes from the payload, so "
                f"`receive {base} PAYLOAD` runs the {shown(action)} handlers)")
    return ""
