"""One server per database: a second `serve` waits for the first to stop, never requeues its running jobs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import aiohttp
import pytest

from quantumreview import cli
from quantumreview.serve_lock import POLL_SECONDS, LockUnavailable, ServerRunning, lock_path, serve_lock
from tests.test_crash import PAYLOAD, free_port, start_server, wait_healthy

HOLDER_SCRIPT = """
import sys, time
from pathlib import Path
from quantumreview.serve_lock import serve_lock
with serve_lock(Path(sys.argv[1]), wait=0):
    print("held", flush=True)
    time.sleep(60)
"""


class FakeTime:
    """A clock that only moves when slept on, and runs `on_sleep` at each sleep."""

    def __init__(self, on_sleep: list[object] | None = None) -> None:
        self.now = 0.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        if self.on_sleep:
            action = self.on_sleep.pop(0)
            assert callable(action)
            action()


def test_a_second_holder_waits_as_told_then_gives_up_naming_the_first(tmp_path: Path) -> None:
    db = tmp_path / "data" / "qr.db"
    waited: list[str] = []
    fake = FakeTime()
    with serve_lock(db, wait=0), pytest.raises(ServerRunning) as caught:
        with serve_lock(db, wait=1.0, on_wait=waited.append, sleep=fake.sleep, clock=fake.clock):
            pytest.fail("the lock was taken twice")
    assert caught.value.holder == str(os.getpid()) and waited == [str(os.getpid())]
    assert 1.0 <= fake.now < 1.0 + POLL_SECONDS  # polled until the wait ran out, not once more
    assert lock_path(db).read_text().strip() == str(os.getpid())


def test_the_lock_is_free_once_its_holder_leaves(tmp_path: Path) -> None:
    db = tmp_path / "qr.db"
    with serve_lock(db, wait=0):
        pass
    waited: list[str] = []
    with serve_lock(db, wait=0, on_wait=waited.append):
        assert lock_path(db).read_text().strip() == str(os.getpid())
    assert waited == []


def test_a_waiting_server_goes_ahead_when_the_holder_stops(tmp_path: Path) -> None:
    db = tmp_path / "qr.db"
    with contextlib.ExitStack() as first:
        first.enter_context(serve_lock(db, wait=0))
        fake = FakeTime(on_sleep=[lambda: None, first.close])
        waited: list[str] = []
        with serve_lock(db, wait=30, on_wait=waited.append, sleep=fake.sleep, clock=fake.clock):
            assert fake.sleeps == 2 and waited == [str(os.getpid())]


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path) -> None:
    db = tmp_path / "qr.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, str(db)], env=env, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(ServerRunning) as caught:
            with serve_lock(db, wait=0):
                pass
        assert caught.value.holder == str(holder.pid)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with serve_lock(db, wait=5):
            assert lock_path(db).read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_an_unusable_lock_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(LockUnavailable, match="cannot open the server lock"):
        with serve_lock(blocker / "qr.db", wait=0):
            pass


def run_serve(env: dict[str, str]) -> tuple[int, str]:
    """cli.main(["serve"]) in-process, undoing what a start does to the collector (the next test sees none)."""
    import gc

    before = gc.get_threshold()
    err = io.StringIO()
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            code = cli.main(["serve"], env)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    return code, err.getvalue()


def test_serve_gives_up_with_exit_2_while_another_server_holds_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web

    started: list[object] = []
    monkeypatch.setattr(web, "run_app", lambda app, **kwargs: started.append(app))
    monkeypatch.setattr(cli, "HTTP_SHUTDOWN_TIMEOUT", 0.0)
    monkeypatch.setattr(cli, "LOCK_MARGIN", 0.3)
    db = tmp_path / "qr.db"
    with serve_lock(db, wait=0):
        code, err = run_serve({"DATABASE_PATH": str(db), "SHUTDOWN_GRACE": "0"})
    assert code == 2 and started == []
    assert f"another quantumreview server (pid {os.getpid()}) is still using {db}" in err
    assert "stop it first" in err and "Traceback" not in err
    code, err = run_serve({"DATABASE_PATH": str(db), "SHUTDOWN_GRACE": "0"})
    assert code == 0 and len(started) == 1, err


def test_serve_with_an_unusable_database_directory_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = run_serve({"DATABASE_PATH": str(blocker / "qr.db")})
    assert code == 2 and "cannot open the server lock" in err and "Traceback" not in err


def plant_running_job(db: Path) -> int:
    """A delivery and one job marked running, as the first server would have it mid-job."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("INSERT INTO deliveries (id, event, action, received_at, body) "
                         "VALUES ('planted', 'issues', 'opened', ?, ?)", (time.time(), PAYLOAD))
            cursor = conn.execute(
                "INSERT INTO jobs (delivery_id, handler, ordering_key, status, attempts, run_after, created_at, "
                "started_at) VALUES ('planted', 'tests.crash_handlers.effects:post_checklist', 'planted', "
                "'running', 1, 0, 0, 0)")
        return int(cursor.lastrowid or 0)
    finally:
        conn.close()


def job_status(db: Path, job_id: int) -> tuple[str, int]:
    conn = sqlite3.connect(db)
    try:
        status, attempts = conn.execute("SELECT status, attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(status), int(attempts)
    finally:
        conn.close()


async def test_a_second_server_waits_for_the_first_and_only_then_resumes_its_running_job(
        tmp_path: Path, rsa_private_key: str) -> None:
    """Two restarts in quick succession: the second server neither requeues a job the first is running
    (it would run twice) nor loses it once the first is gone."""
    db = tmp_path / "crash.db"
    first_port, second_port = free_port(), free_port()
    first = start_server(tmp_path, first_port, rsa_private_key, "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await wait_healthy(session, f"http://127.0.0.1:{first_port}", first)
            job_id = plant_running_job(db)
            second = start_server(tmp_path, second_port, rsa_private_key, "second.log")
            async with asyncio.timeout(15):
                while b"waiting up to" not in (tmp_path / "second.log").read_bytes():
                    assert second.poll() is None, (tmp_path / "second.log").read_text()
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # it keeps waiting: nothing of the first server's is touched
            assert job_status(db, job_id) == ("running", 1) and second.poll() is None
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"http://127.0.0.1:{second_port}/health")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            await wait_healthy(session, f"http://127.0.0.1:{second_port}", second)
            async with asyncio.timeout(15):
                while job_status(db, job_id)[0] != "done":
                    await asyncio.sleep(0.05)
        assert job_status(db, job_id) == ("done", 2)
        conn = sqlite3.connect(db)
        try:
            runs = conn.execute("SELECT count(*) FROM crash_runs WHERE delivery_id = 'planted'").fetchone()[0]
        finally:
            conn.close()
        assert runs == 1  # run once, by the second server, after the first was gone
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_a_filesystem_without_locks_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from quantumreview import serve_lock as module

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(module.fcntl, "flock", no_locks)
    with pytest.raises(LockUnavailable, match=r"cannot lock the server lock .*qr\.db\.lock: No locks available"):
        with serve_lock(tmp_path / "qr.db", wait=0):
            pass


def test_a_full_disk_is_a_clear_error_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Writing the holder's pid is the first write of a start; on a full volume it raised out of serve.
    import errno

    from quantumreview import serve_lock as module

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module.os, "pwrite", full)
    code, err = run_serve({"DATABASE_PATH": str(tmp_path / "qr.db")})
    assert code == 2 and "Traceback" not in err
    assert err == f"quantumreview: cannot write the server lock {tmp_path / 'qr.db.lock'}: No space left on device\n"
    monkeypatch.undo()
    with serve_lock(tmp_path / "qr.db", wait=0):  # the failed start left the lock free
        pass
