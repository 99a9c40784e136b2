"""Start-up failures: resources already started are closed, and `serve` stops with one line and exit code 2."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from quantumreview.credentials import AppCredentials
from quantumreview.crypto import SecretBox
from quantumreview.setup_flow import StoredCredentialsError, load_stored_credentials, store_credentials
from quantumreview.startup import Resources
from storage.db import Database
from tests.test_crash import wait_healthy

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "jwt-secret-for-start-up-tests-0123456789"


def recording(name: str, log: list[str], *, fail: bool = False) -> object:
    async def context(app: web.Application) -> AsyncIterator[None]:
        if fail:
            raise RuntimeError(f"{name} cannot start")
        log.append(f"start {name}")
        yield
        log.append(f"close {name}")

    return context


async def test_resources_start_in_order_and_close_in_reverse() -> None:
    log: list[str] = []
    resources = Resources((recording("a", log), recording("b", log)))  # type: ignore[arg-type]
    async with resources(web.Application()):
        assert log == ["start a", "start b"]
    assert log == ["start a", "start b", "close b", "close a"]


async def test_a_resource_failing_to_start_closes_those_already_started() -> None:
    log: list[str] = []
    resources = Resources((recording("a", log), recording("b", log), recording("c", log, fail=True),
                           recording("d", log)))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="c cannot start"):
        async with resources(web.Application()):
            pass
    assert log == ["start a", "start b", "close b", "close a"]


async def test_every_started_resource_is_closed_even_if_one_fails_to_close() -> None:
    log: list[str] = []

    async def bad_close(app: web.Application) -> AsyncIterator[None]:
        yield
        raise OSError("close failed")

    resources = Resources((recording("a", log), bad_close, recording("b", log)))  # type: ignore[arg-type]
    with pytest.raises(OSError, match="close failed"):
        async with resources(web.Application()):
            pass
    assert log == ["start a", "start b", "close b", "close a"]


@pytest.mark.parametrize("secret", ["short", "fifteen-bytes!!"])
async def test_a_stored_webhook_secret_under_16_bytes_is_refused(db: Database, rsa_private_key: str,
                                                                  secret: str) -> None:
    box = SecretBox(b"k" * 32)
    await store_credentials(db, box, AppCredentials(app_id=7, private_key=rsa_private_key, webhook_secret=secret))
    with pytest.raises(StoredCredentialsError, match="under 16 bytes") as caught:
        await load_stored_credentials(db, box)
    assert secret not in str(caught.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`quantumreview serve`, expected to stop at start-up (a server that starts anyway fails the test at 60 s)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(free_port()),
           "DATABASE_PATH": str(tmp_path / "data" / "q.db"), "JWT_SECRET": JWT_SECRET, **extra}
    return subprocess.run([sys.executable, "-m", "quantumreview", "serve"], env=env, capture_output=True, text=True,
                          timeout=60)


async def store_with_key(path: Path, jwt_secret: str, rsa_private_key: str, webhook_secret: str) -> None:
    db = await Database.open(path)
    try:
        box = SecretBox.load_or_create(jwt_secret, path.parent, None)
        await store_credentials(db, box, AppCredentials(app_id=7, private_key=rsa_private_key,
                                                        webhook_secret=webhook_secret))
    finally:
        await db.close()


@pytest.mark.parametrize(("jwt_secret", "webhook_secret", "message"), [
    ("another-jwt-secret-0123456789abcdefghij", "a-good-webhook-secret-0123", "cannot be decrypted"),
    (JWT_SECRET, "short", "not usable"),
])
async def test_serve_with_unusable_stored_credentials_exits_2_at_once(
        tmp_path: Path, rsa_private_key: str, jwt_secret: str, webhook_secret: str, message: str) -> None:
    """The database was open when the credentials were read: it is closed again, so the process exits (it hung)."""
    path = tmp_path / "data" / "q.db"
    await store_with_key(path, jwt_secret, rsa_private_key, webhook_secret)
    began = time.monotonic()
    result = await asyncio.to_thread(serve, tmp_path)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - began < 30
    assert message in result.stderr and "Traceback" not in result.stderr
    assert webhook_secret not in result.stderr and JWT_SECRET not in result.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM credentials").fetchone()[0] > 0  # nothing was removed


def test_serve_on_a_file_that_is_not_a_database_exits_2_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "data" / "q.db"
    path.parent.mkdir()
    garbage = bytes(range(256)) * 400
    path.write_bytes(garbage)
    result = serve(tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"cannot open the database {path}: file is not a database" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == garbage


async def test_with_log_format_json_every_line_the_server_writes_is_json(tmp_path: Path) -> None:
    """Setup mode, the listening line, a refused delivery, the shutdown: all JSON lines (aiohttp's banner was not)."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port),
           "DATABASE_PATH": str(tmp_path / "data" / "q.db"), "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    log_path = tmp_path / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "quantumreview", "serve"], env=env, cwd=tmp_path,
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, f"http://127.0.0.1:{port}", proc)
            async with session.post(f"http://127.0.0.1:{port}/webhooks/github", data=b"{}") as response:
                assert response.status in (400, 503)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    messages = [record["message"] for record in records]
    assert f"listening on http://127.0.0.1:{port}" in messages
    assert any("/setup" in message for message in messages)
    assert len(records) >= 3
