"""SIGTERM and SIGINT with jobs in flight (JOB-07): the real server stops claiming, waits out SHUTDOWN_GRACE, exits 0,
and leaves the interrupted jobs queued for the next start, attempts not counted, the database intact."""

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
                payload = {"action": "opened", "issue": {"number": n}, "repository": {"full_name": "o/r"}}
                headers, body = signed_delivery("issues", json.dumps(payload).encode(), WEBHOOK_SECRET)
                async with session.post(f"{base}/webhooks/github", data=body, headers=headers) as response:
                    assert response.status == 202
            deadline = time.monotonic() + 10
            while True:  # every job claimed and hanging in its handler
                body = await wait_healthy(session, base, proc)
                if body["jobs"]["running"] == IN_FLIGHT or time.monotonic() > deadline:
                    break
            assert body["jobs"]["running"] == IN_FLIGHT
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
