"""SIGTERM and SIGINT with jobs in flight (JOB-07): the real server stops claiming, waits out SHUTDOWN_GRACE, exits 0,
and leaves the interrupted jobs queued for the next start, attempts not counted, the database intact; a handler
that swallows every cancellation is left behind after CANCEL_ALLOWANCE, and the process still exits."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from quantumreview.jobs_abandon import CANCEL_ALLOWANCE
from quantumreview.testing.signing import signed_delivery
from tests.conftest import WEBHOOK_SECRET
from tests.test_crash import ROOT, free_port, wait_healthy

GRACE = 1.0
IN_FLIGHT = 3


def start(tmp_path: Path, port: int, private_key: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port),
           "DATABASE_PATH": str(tmp_path / "qr.db"), "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key,
           "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "QUANTUMREVIEW_HANDLERS": "tests.slow_handlers",
           "LOG_LEVEL": "info", "SHUTDOWN_GRACE": str(GRACE), "GITHUB_API_URL": "http://127.0.0.1:9"}
    return subprocess.Popen([sys.executable, "-m", "quantumreview", "serve"], env=env, cwd=tmp_path,
                            stdout=(tmp_path / "server.log").open("wb"), stderr=subprocess.STDOUT)


async def post_issue(session: aiohttp.ClientSession, base: str, action: str, number: int) -> None:
    payload = {"action": action, "issue": {"number": number}, "repository": {"full_name": "o/r"}}
    headers, body = signed_delivery("issues", json.dumps(payload).encode(), WEBHOOK_SECRET)
    async with session.post(f"{base}/webhooks/github", data=body, headers=headers) as response:
        assert response.status == 202


async def wait_running(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes], count: int) -> None:
    """Until `count` jobs are claimed and hanging in their handlers."""
    deadline = time.monotonic() + 10
    while True:
        body = await wait_healthy(session, base, proc)
        if body["jobs"]["running"] == count or time.monotonic() > deadline:
            break
    assert body["jobs"]["running"] == count


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_with_jobs_running_requeues_them_and_exits_0(tmp_path: Path, rsa_private_key: str,
                                                                   sig: signal.Signals) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(tmp_path, port, rsa_private_key)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            for n in range(IN_FLIGHT):
                await post_issue(session, base, "opened", n)
            await wait_running(session, base, proc, IN_FLIGHT)
        began = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=GRACE + 20)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, (tmp_path / "server.log").read_text()
    assert GRACE <= took < GRACE + 10
    conn = sqlite3.connect(tmp_path / "qr.db")
    try:
        jobs = conn.execute("SELECT status, attempts, last_error FROM jobs").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert jobs == [("queued", 0, "interrupted by shutdown")] * IN_FLIGHT
    assert "requeued 3 job(s) interrupted by shutdown" in (tmp_path / "server.log").read_text()


async def test_sigterm_with_a_handler_swallowing_every_cancellation_exits_0_within_the_grace_and_allowance(
        tmp_path: Path, rsa_private_key: str) -> None:
    """The drain cancelled it again and again until it ended, which it never did: the server did not exit until
    the platform's SIGKILL (Fly's kill_timeout). It is left behind after CANCEL_ALLOWANCE, its job requeued."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(tmp_path, port, rsa_private_key)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            await post_issue(session, base, "reopened", 1)  # tests/slow_handlers/swallow.py
            await wait_running(session, base, proc, 1)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=GRACE + CANCEL_ALLOWANCE + 20)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "server.log").read_text()
    assert code == 0, log
    assert GRACE + CANCEL_ALLOWANCE <= took < GRACE + CANCEL_ALLOWANCE + 10
    conn = sqlite3.connect(tmp_path / "qr.db")
    try:
        jobs = conn.execute("SELECT handler, status, attempts, last_error FROM jobs").fetchall()
    finally:
        conn.close()
    assert jobs == [("tests.slow_handlers.swallow:swallow", "queued", 0, "interrupted by shutdown")]
    assert "handler=tests.slow_handlers.swallow:swallow ignored its cancellation" in log
    assert "closed 1 handler(s) left running after they ignored their cancellation" in log
