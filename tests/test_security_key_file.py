"""secret.key stays owner-only: a key put back by hand with the umask's 0644 is made 0600 at start."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from quantumreview.crypto import SecretBox

KEY = "k" * 48


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_a_key_file_others_may_read_is_made_owner_only_and_still_used(
        tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(KEY)  # as `cat > secret.key`, cp or sftp leave it
    key_file.chmod(mode)
    sealed = SecretBox(KEY.encode()).encrypt("ghu_token")
    caplog.set_level(logging.WARNING)
    box = SecretBox.load_or_create(None, tmp_path)
    assert mode_of(key_file) == 0o600
    assert box.decrypt(sealed) == "ghu_token"  # the same key, not a new one
    assert f"{oct(mode)[2:].zfill(4)}" in caplog.text and KEY not in caplog.text


def test_an_owner_only_key_file_is_left_as_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(KEY)
    key_file.chmod(0o400)
    caplog.set_level(logging.WARNING)
    SecretBox.load_or_create(None, tmp_path)
    assert mode_of(key_file) == 0o400 and caplog.text == ""


def test_a_key_file_whose_mode_cannot_change_is_used_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)

    def read_only_mount(_path: object, _mode: int) -> None:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(os, "chmod", read_only_mount)
    caplog.set_level(logging.WARNING)
    box = SecretBox.load_or_create(None, tmp_path)
    assert box.decrypt(SecretBox(KEY.encode()).encrypt("x")) == "x"
    assert "cannot be changed (Read-only file system)" in caplog.text and KEY not in caplog.text
