"""Ctrl-C ends a command with one line and exit code 130, not a traceback, even inside a handler that ignores it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = textwrap.dedent(
    '''
    import asyncio, os
    from gidgethub import routing
    router = routing.Router()

    def started():
        open(os.environ["STARTED_MARKER"], "w").close()

    @router.register("issues", action="opened")
    async def hang(event, ctx):
        started()
        await asyncio.sleep(3600)

    @router.register("issues", action="reopened")
    async def swallow(event, ctx):
        started()
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass
    '''
)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("action", ["opened", "reopened"])
def test_ctrl_c_during_receive_is_one_line_and_exit_130(tmp_path: Path, action: str) -> None:
    """SIGINT during `receive` printed asyncio's KeyboardInterrupt traceback (and, with a handler ignoring its
    cancellation, the command never ended)."""
    pkg = tmp_path / "interrupt_handlers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "slow.py").write_text(HANDLERS)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"action": action, "issue": {"number": 1}}))
    marker = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "STARTED_MARKER": str(marker),
           "DATABASE_PATH": str(tmp_path / "data" / "qr.db"), "QUANTUMREVIEW_HANDLERS": "interrupt_handlers"}
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "LOG_FORMAT"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "quantumreview", "receive", "issues", str(payload)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "quantumreview: receive interrupted"
    assert proc.returncode == 130
