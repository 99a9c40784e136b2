"""The docs' examples run: the plugin-author guide's handler and test pass as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "testing-plugins.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_plugin_guide_examples_are_short() -> None:
    handler, test = python_blocks(GUIDE.read_text())
    code_lines = lambda block: [ln for ln in block.splitlines() if ln.strip()]  # noqa: E731
    assert len(code_lines(handler)) + len(code_lines(test)) <= 30


def test_plugin_guide_handler_and_test_pass(tmp_path: Path) -> None:
    handler, test = python_blocks(GUIDE.read_text())
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "__init__.py").write_text("")
    (tmp_path / "handlers" / "thank_authors.py").write_text(handler)
    (tmp_path / "test_thank_authors.py").write_text(test)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
