"""`quantumreview demo`: the whole pipeline on the fake GitHub, its printed story, its state, its live API."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from quantumreview import demo_fixtures as data
from quantumreview import keys
from quantumreview.demo import DemoError, demo_environment, run_demo
from quantumreview.demo_story import STEPS, play_story
from storage import jobs as job_store
from storage.db import prepare_database


def section(text: str, step: int) -> str:
    """The printed text of one step, up to the next step line (or the end)."""
    start = text.index(f"[{step}/{STEPS}]")
    following = text.find(f"[{step + 1}/{STEPS}]", start)
    return text[start:following if following != -1 else len(text)]


async def test_demo_prints_a_failing_verdict_then_a_passing_one(tmp_path: Path) -> None:
    out = io.StringIO()
    assert await run_demo(serve=False, data_dir=tmp_path, out=out, port=None) == 0
    text = out.getvalue()
    assert [f"[{n}/{STEPS}]" in text for n in range(1, STEPS + 1)] == [True] * STEPS
    assert "Opening pull request #2 that links #1" in text
    first = section(text, 6)
    assert "on 1a1a1a1: FAILURE" in first and "1 failed, 1 missing of 5 criteria" in first
    assert re.search(r"`T2` \| [^\n]* \| ❌ failed", first) and re.search(r"`T3` \| [^\n]* \| ❔ missing", first)
    assert "Code health: **86.0**" in first and "EXPIRED2023" in first
    second = section(text, 8)
    assert "on 2b2b2b2: SUCCESS" in second and "All 5 criteria passed" in second
    assert "❌" not in second and "❔" not in second and "Code health: **99.0**" in second
    assert "`T5` | Discount codes are not case-sensitive" in section(text, 4)  # the edit added T5
    assert "demo failed" not in text and "Warning" not in text


async def test_demo_leaves_one_comment_per_thread_and_one_check_run_per_head(tmp_path: Path) -> None:
    async with demo_environment(tmp_path, None) as env:
        await play_story(env, io.StringIO())
        assert len(env.fake.comments[(data.REPO, data.ISSUE_NUMBER)]) == 1
        assert len(env.fake.comments[(data.REPO, data.PULL_NUMBER)]) == 1
        runs = [(r["head_sha"], r["conclusion"]) for r in env.fake.check_runs[data.REPO]]
        assert runs == [(data.FIRST_SHA, "failure"), (data.FIXED_SHA, "success")]
        assert env.fake.contract_violations == []
        assert {job.status for job in await job_store.list_jobs(env.app[keys.db])} == {"done"}
        pull = await env.get_json(f"/api/repos/{data.REPO}/prs/{data.PULL_NUMBER}")
        assert pull["head_sha"] == data.FIXED_SHA
        assert pull["verdict"] == {"conclusion": "success", "passed": 5, "failed": 0, "skipped": 0, "missing": 0}


async def test_each_run_starts_from_a_fresh_database(tmp_path: Path) -> None:
    (tmp_path / "quantumreview.db").write_bytes(b"left over from an older run, not even SQLite")
    out = io.StringIO()
    assert await run_demo(serve=False, data_dir=tmp_path, out=out, port=None) == 0
    assert "Checklist created for octo-org/bookshop#1" in out.getvalue()


async def test_a_data_dir_holding_the_servers_own_database_is_left_alone(tmp_path: Path) -> None:
    """`--data-dir data` named the server's database, and the demo deleted it (and its WAL) without a word."""
    database = tmp_path / "quantumreview.db"
    prepare_database(database)
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO deliveries (id, event, action, installation_id, received_at, body) "
                     "VALUES ('real-1', 'issues', 'opened', 123, 0, '{}')")
    before = database.read_bytes()
    out = io.StringIO()
    assert await run_demo(serve=False, data_dir=tmp_path, out=out, port=None) == 1
    assert "is not a demo database (it holds deliveries the demo did not make)" in out.getvalue()
    assert database.read_bytes() == before


async def test_a_second_run_in_the_same_data_dir_replaces_the_first_runs_database(tmp_path: Path) -> None:
    for _ in range(2):
        out = io.StringIO()
        assert await run_demo(serve=False, data_dir=tmp_path, out=out, port=None) == 0, out.getvalue()


@pytest.mark.parametrize(("port", "data_dir", "message"), [
    (-1, None, "--port -1 is not a port number"),  # bind() raised OverflowError
    (70000, None, "--port 70000 is not a port number"),
    (None, "a-file", "cannot use --data-dir"),  # mkdir raised FileExistsError
    (None, "a-file/sub", "cannot use --data-dir"),  # NotADirectoryError
])
async def test_bad_demo_arguments_are_one_line_errors(
        tmp_path: Path, port: int | None, data_dir: str | None, message: str) -> None:
    (tmp_path / "a-file").write_text("")
    out = io.StringIO()
    code = await run_demo(serve=False, data_dir=tmp_path / (data_dir or "demo"), out=out, port=port)
    assert code == 1 and message in out.getvalue()


async def test_a_stalled_queue_is_reported_with_the_waiting_handler(tmp_path: Path) -> None:
    async with demo_environment(tmp_path, None) as env:
        env.fake.add_installation(data.INSTALLATION_ID, account=data.OWNER, repositories=[data.REPO])
        issue = env.fake.add_issue(data.REPO, 1, title="x", body=data.ISSUE_BODY)
        env.fake.fail_next("GET", "/repos/{owner}/{repo}/issues/{issue_number}", status=502, times=100)
        await env.deliver("issues", data.issue_event("opened", env.fake.state.repos[data.REPO], issue))
        with pytest.raises(DemoError, match=r"did not drain within 1 s: .*checklists.*quantumreview jobs"):
            await env.wait_idle(timeout=1.0)


async def test_serving_keeps_the_api_up_behind_the_printed_login_url(tmp_path: Path) -> None:
    out = io.StringIO()
    task = asyncio.create_task(run_demo(serve=True, data_dir=tmp_path, out=out, port=None))
    try:
        for _ in range(1500):
            if "keeps running at" in out.getvalue() or task.done():
                break
            await asyncio.sleep(0.01)
        text = out.getvalue()
        login = re.search(r"(http://127\.0\.0\.1:\d+)/auth/github\?next=/api/me", text)
        assert login, text[-2000:]
        base = login.group(1)
        for path in ("/api/me", f"/api/repos/{data.REPO}/issues/1", f"/api/repos/{data.REPO}/prs/2",
                     "/api/notifications"):
            assert f"{base}{path}\n" in text
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(login.group(0)) as response:
                assert response.status == 200 and response.url.path == "/api/me"
                me = await response.json()
            async with browser.get(f"{base}/api/repos/{data.REPO}/issues/1") as response:
                assert response.status == 200
                issue = await response.json()
        assert me["login"] == data.DEMO_LOGIN and me["unread_notifications"] >= 6
        assert "Discount codes are not case-sensitive" in repr(issue)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
