"""SIGKILL the real server mid-burst, restart it: every acknowledged delivery's jobs complete, nothing is torn."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quantumreview.testing.signing import signed_delivery
from tests.conftest import WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = (Path(__file__).parent / "fixtures" / "webhooks" / "issues.opened.json").read_bytes()
BURST = 400
KILL_AFTER_ACKS = 120
HANDLERS = ("notify_managers", "post_checklist")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(tmp_path: Path, port: int, private_key: str, log_name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port),
        "DATABASE_PATH": str(tmp_path / "crash.db"), "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "QUANTUMREVIEW_HANDLERS": "tests.crash_handlers",
        "LOG_LEVEL": "warning", "SHUTDOWN_GRACE": "2", "JOB_CONCURRENCY": "8",
    }
    log = (tmp_path / log_name).open("wb")
    return subprocess.Popen([sys.executable, "-m", "quantumreview", "serve"], env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            assert proc.poll() is None, "server exited during start-up"
            try:
                async with session.get(f"{base}/health") as response:
                    if response.status == 200:
                        body: dict[str, Any] = await response.json()
                        return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def deliver(session: aiohttp.ClientSession, base: str, delivery_id: str) -> int | None:
    headers, body = signed_delivery("issues", PAYLOAD, WEBHOOK_SECRET, delivery_id=delivery_id)
    try:
        async with session.post(f"{base}/webhooks/github", data=body, headers=headers) as response:
            return response.status
    except (TimeoutError, aiohttp.ClientError):
        return None


async def burst_then_kill(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes],
                          kill_after: int = KILL_AFTER_ACKS, graceful_first: bool = False) -> set[str]:
    """Send BURST deliveries, 32 at a time; SIGKILL the server once `kill_after` have a 2xx (with
    `graceful_first`, SIGTERM then SIGKILL 0.1 s later: killed inside its shutdown grace, JOB-08)."""
    acked: set[str] = set()
    queue = [f"crash-{n:04d}" for n in range(BURST)]

    async def worker() -> None:
        while queue:
            delivery_id = queue.pop(0)
            status = await deliver(session, base, delivery_id)
            if status is not None and 200 <= status < 300:
                acked.add(delivery_id)
                if len(acked) == kill_after:
                    if graceful_first:
                        proc.send_signal(signal.SIGTERM)
                        asyncio.get_running_loop().call_later(0.1, proc.send_signal, signal.SIGKILL)
                    else:
                        proc.send_signal(signal.SIGKILL)

    await asyncio.gather(*(worker() for _ in range(32)))
    proc.wait(timeout=10)
    return acked


async def wait_jobs_settled(session: aiohttp.ClientSession, base: str) -> None:
    async with asyncio.timeout(30):
        while True:
            async with session.get(f"{base}/health") as response:
                jobs = (await response.json())["jobs"]
            if jobs["queued"] == 0 and jobs["running"] == 0:
                return
            await asyncio.sleep(0.1)


# Why several kill points: early (the first batches and the runner's first claims), mid-burst, late (most jobs
# running or done); and one killed inside the shutdown grace that SIGTERM starts.
@pytest.mark.parametrize(("kill_after", "graceful_first"), [(20, False), (KILL_AFTER_ACKS, False), (300, False),
                                                            (KILL_AFTER_ACKS, True)],
                         ids=["early", "mid", "late", "during-grace"])
async def test_sigkill_mid_burst_loses_no_acknowledged_delivery(tmp_path: Path, rsa_private_key: str,
                                                                kill_after: int, graceful_first: bool) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = start_server(tmp_path, port, rsa_private_key, "first.log")
    connector = aiohttp.TCPConnector(limit=32, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        try:
            await wait_healthy(session, base, first)
            acked = await burst_then_kill(session, base, first, kill_after, graceful_first)
        finally:
            if first.poll() is None:
                first.kill()
        # Killed, or (during-grace) already exited cleanly within the 0.1 s: the invariants below hold either way.
        assert first.returncode == -signal.SIGKILL or (graceful_first and first.returncode == 0)
        assert kill_after <= len(acked) < BURST

        second = start_server(tmp_path, port, rsa_private_key, "second.log")
        try:
            await wait_healthy(session, base, second)
            await wait_jobs_settled(session, base)
            redelivered = [await deliver(session, base, d) for d in sorted(acked)[:5]]
            assert redelivered == [200] * 5
            await wait_jobs_settled(session, base)
        finally:
            second.send_signal(signal.SIGTERM)
            began = time.monotonic()
            second.wait(timeout=15)
        assert second.returncode == 0 and time.monotonic() - began < 5

    conn = sqlite3.connect(tmp_path / "crash.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in conn.execute("SELECT id FROM deliveries")}
        assert acked <= stored
        jobs = conn.execute("SELECT delivery_id, handler, status FROM jobs").fetchall()
        assert {d for d, _, _ in jobs} == stored  # no job without its delivery, no delivery without its jobs
        assert len(jobs) == 2 * len(stored)
        assert {status for _, _, status in jobs} == {"done"}
        assert len(stored) < BURST  # the kill came mid-burst: some deliveries were never stored
        effects = conn.execute("SELECT delivery_id, handler, count(*) FROM crash_effects GROUP BY 1, 2").fetchall()
        assert {(d, h) for d, h, _ in effects} == {(d, h) for d in stored for h in HANDLERS}
        assert {n for _, _, n in effects} == {1}
        runs = conn.execute("SELECT count(*) FROM crash_runs").fetchone()[0]
        print(f"acked={len(acked)} stored={len(stored)} jobs={len(jobs)} runs={runs}")
    finally:
        conn.close()
