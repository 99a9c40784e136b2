"""docs/testing-plugins.md's handler, tried with `quantumreview receive` as the guide says, before any App exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from quantumreview.receive_codes import SKIPPED
from quantumreview.testing.plugin import PAYLOAD_PACKAGE

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "testing-plugins.md"


def test_guide_handler_without_an_app_is_skipped_not_failed(tmp_path: Path) -> None:
    # Before, the example called ctx.gh.post without checking ctx.gh, against the guide's own advice: receive
    # without an App reported "failed: AttributeError: 'NoneType' object has no attribute 'post'" and exit 1.
    handler = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)[0]
    package = tmp_path / "guide_handlers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "thank_authors.py").write_text(handler)
    payload = Path(sys.modules[PAYLOAD_PACKAGE].__file__ or "").parent / "payloads" / "issues.opened.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "JWT_"))}
    env.update(PYTHONPATH=str(tmp_path), QUANTUMREVIEW_HANDLERS="guide_handlers",
               DATABASE_PATH=str(tmp_path / "data" / "qr.db"))
    result = subprocess.run([sys.executable, "-m", "quantumreview", "receive", "issues", str(payload)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert "guide_handlers.thank_authors:thank_author: skipped: ctx.gh is None" in result.stdout, result.stdout
    assert result.returncode == SKIPPED, result.stdout + result.stderr[-2000:]
    assert f"skipped: ctx.gh is None, …` and the command exits {SKIPPED}" in " ".join(GUIDE.read_text().split())
