"""The issue's checklist comment shows the verdict's statuses even when GitHub refused its edit once (a rate limit):
the statuses were stored before the edit, so the job's retry found nothing changed and left the comment pending."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantumreview import demo_fixtures as data
from quantumreview.testing.fake import FakeGitHub
from tests.test_fault_sweep_pipeline import run_pipeline

COMMENT = "/repos/{owner}/{repo}/issues/comments/{comment_id}"


def refuse_the_checklist_edit(fake: FakeGitHub, event: str) -> None:
    """At the verdict: the pull request comment's edit goes through, the checklist comment's meets a limit."""
    if event == "workflow_run":
        fake.fail_next("PATCH", COMMENT, kind="slow", delay=0.0)  # served as usual
        fake.secondary_limit("PATCH", COMMENT, retry_after=60)


async def test_a_checklist_edit_refused_once_is_made_by_the_jobs_retry(
        tmp_path: Path, rsa_private_key: str, aiohttp_client: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = await run_pipeline(tmp_path, rsa_private_key, aiohttp_client, monkeypatch,
                                 fault=refuse_the_checklist_edit)
    assert outcome.faults_left == 0  # the edit was refused once, and the verdict's job retried
    assert [status for _, status, _ in outcome.jobs] == ["done"] * len(outcome.jobs)
    [(_, body)] = outcome.comments[data.ISSUE_NUMBER]
    assert "⏳ pending" not in body
    assert "| `T2` | An expired discount code is rejected with a message | ❌ failed |" in body
    assert "| `T3` | Only one discount code can be applied per order | ❔ missing |" in body
