"""`quantumreview receive` ends a handler at JOB_TIMEOUT, as the server's job runner does, instead of hanging."""

from __future__ import annotations

import io
import json
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from quantumreview import receive as receive_module
from quantumreview.cli import main

HANDLERS = textwrap.dedent(
    '''
    import asyncio
    from gidgethub import routing
    router = routing.Router()

    @router.register("issues", action="opened")
    async def hang(event, ctx):
        await asyncio.sleep(3600)

    @router.register("issues", action="reopened")
    async def swallow(event, ctx):
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass
    '''
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    pkg = tmp_path / "receive_timeout_handlers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "slow.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(receive_module, "CANCEL_ALLOWANCE", 0.2, raising=False)
    return {"DATABASE_PATH": str(tmp_path / "data" / "qr.db"), "QUANTUMREVIEW_HANDLERS": "receive_timeout_handlers",
            "JOB_TIMEOUT": "1"}


@pytest.mark.timeout(10, method="thread")  # without the bound `receive` never returned, even once interrupted
@pytest.mark.parametrize(("action", "handler"), [("opened", "hang"), ("reopened", "swallow")])
def test_receive_ends_a_handler_that_runs_past_job_timeout(env: dict[str, str], tmp_path: Path, action: str,
                                                           handler: str) -> None:
    """A handler that never ended held `receive` for ever (the server ends its job at JOB_TIMEOUT)."""
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"action": action, "issue": {"number": 1}}))
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["receive", "issues", str(payload)], env)
    assert time.monotonic() - started < 5
    assert code == 1
    assert (f"receive_timeout_handlers.slow:{handler}: failed: TimeoutError: the handler ran past JOB_TIMEOUT (1 s)"
            in out.getvalue())


def test_receive_help_names_its_exit_codes() -> None:
    """A script telling a skipped handler (exit 3) from a failed one (1) had to read the source to learn the codes."""
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as ended:
        main(["receive", "--help"], {})
    assert ended.value.code == 0
    text = " ".join(out.getvalue().split())
    assert "1 a handler failed" in text
    assert "3 none failed, but a handler skipped" in text
