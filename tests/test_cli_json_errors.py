"""With LOG_FORMAT=json, the line saying why a command stops is JSON too, like every other line on stderr."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from quantumreview.cli import main

ROOT = Path(__file__).resolve().parent.parent


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of `stderr` parsed as JSON (a plain-text line fails the test, naming it)."""
    entries = []
    for line in stderr.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return entries


def test_serve_on_a_port_in_use_says_so_in_a_json_line(tmp_path: Path) -> None:
    """'quantumreview: cannot listen on …' was printed as plain text among the JSON log lines."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port),
               "DATABASE_PATH": str(tmp_path / "x.db"), "LOG_FORMAT": "json"}
        result = subprocess.run([sys.executable, "-m", "quantumreview", "serve"], env=env, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 2
    errors = [entry for entry in json_lines(result.stderr) if entry["level"] == "error"]
    assert [entry["message"] for entry in errors] == [
        f"cannot listen on 127.0.0.1:{port}: Address already in use (is another program using that port? "
        "set HOST and PORT)"]


def test_a_database_that_cannot_be_opened_is_a_json_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["jobs"], {"DATABASE_PATH": str(blocker / "qr.db"), "LOG_FORMAT": "json"})
    assert code == 2
    [entry] = json_lines(err.getvalue())
    assert entry["level"] == "error" and entry["message"].startswith(f"cannot open the database {blocker / 'qr.db'}")


def test_with_text_logs_the_error_line_is_unchanged(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["jobs"], {"DATABASE_PATH": str(blocker / "qr.db")}) == 2
    assert err.getvalue().startswith(f"quantumreview: cannot open the database {blocker / 'qr.db'}")
