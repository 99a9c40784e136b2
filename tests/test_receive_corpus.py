"""`quantumreview receive` over every real webhook payload, with the project's handlers and no GitHub App: each
handler's line is ok, skipped (why) or failed (error), the exit code agrees, and nothing ends in a traceback.

The corpus is GitHub's example payloads (@octokit/webhooks-examples, ../shared/corpus/webhooks beside the checkout:
329 files named EVENT.ACTION.N.json, the event being the part before the first dot); WEBHOOK_CORPUS names another
copy. Without it
the test runs over the payloads kept in tests/fixtures/webhooks. In-process: the whole corpus takes about a second.
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import pytest

from quantumreview.plugins import load_handlers
from quantumreview.receive import load_event, receive
from quantumreview.receive_outcome import NO_APP, NO_INSTALLATION
from quantumreview.settings import Settings

# The brief's ../shared beside the checkout (not a fixed path: a CI machine may put it elsewhere).
SHARED = Path(os.environ.get("WEBHOOK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus" / "webhooks"))
CORPUS = SHARED if SHARED.is_dir() else Path(__file__).parent / "fixtures" / "webhooks"
PAYLOADS = sorted(CORPUS.glob("*.json"))
# What a handler may find missing without an App, and why: a client, or the payload's installation.
MISSING = (rf"ctx\.(gh|github) is None, as {re.escape(NO_APP)}|ctx\.installation_id is None, as "
           rf"{re.escape(NO_INSTALLATION)}")
LINE = re.compile(rf"ok|ok, without GitHub: ({MISSING})|skipped: ({MISSING}), and it did nothing without it|"
                  r"failed: [A-Za-z_][\w.]*: .+")
# Known payloads and what the project's handlers do with them without an App (what happened, checked by hand).
EXPECTED = {
    "issues.opened.1.json": ("handlers.checklists:build_checklist", "skipped"),  # it needs the issue from GitHub
    "issues.deleted.1.json": ("handlers.checklists:retire_checklist", "ok"),  # database only
    "installation.created.1.json": ("handlers.installations:record_installation", "ok, without GitHub"),
    "workflow_run.completed.1.json": ("handlers.ci_results:judge_workflow_run", "skipped"),  # names no installation
    # Its payload names no installation: the moved checklist is kept without one.
    "issues.transferred.1.json": ("handlers.checklists:move_checklist", "ok, without GitHub"),
}


def status_of(text: str) -> str:
    return "ok, without GitHub" if text.startswith("ok, without") else text.split(":")[0]


async def test_receive_tells_the_truth_over_every_corpus_payload(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if SHARED.is_dir():
        assert len(PAYLOADS) == 329
    settings = Settings.from_env({"DATABASE_PATH": str(tmp_path / "data" / "qr.db")})
    assert settings.app_id is None
    registry = load_handlers(settings.handlers_package)
    seen: dict[str, list[tuple[str, str]]] = {}
    caplog.set_level(logging.INFO)
    for path in PAYLOADS:
        event = load_event(path.name.split(".", 1)[0], path)
        names = registry.handlers_for(event)
        out = io.StringIO()
        code = await receive(settings, registry, event, out)
        lines = out.getvalue().splitlines()
        if not names:
            assert (code, len(lines)) == (0, 1) and lines[0].startswith("no handler matches "), path.name
            continue
        assert len(lines) == len(names), (path.name, lines)  # one line each: no GitHub call without an App
        outcomes = []
        for name, line in zip(names, lines, strict=True):
            assert line.startswith(f"{name}: "), (path.name, line)
            text = line.removeprefix(f"{name}: ")
            assert LINE.fullmatch(text), (path.name, line)
            assert "Traceback" not in text and "-----BEGIN" not in text
            outcomes.append((name, status_of(text)))
        statuses = {status for _, status in outcomes}
        assert code == (1 if "failed" in statuses else 3 if "skipped" in statuses else 0), (path.name, lines)
        seen[path.name] = outcomes
    assert not [r for r in caplog.records if r.exc_info], "a handler's failure was logged with a traceback"
    for name, expected in EXPECTED.items():
        if name in seen or SHARED.is_dir():
            assert expected in seen[name], (name, seen.get(name))
