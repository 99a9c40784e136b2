"""Secrets at rest: encrypted with a key that is not in the database."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from quantumreview.crypto import SecretBox, SecretBoxError


def test_round_trip_and_ciphertext_hides_plaintext(tmp_path: Path) -> None:
    box = SecretBox.load_or_create(None, tmp_path)
    token = box.encrypt("ghu_usertoken1234567890")
    assert b"ghu_" not in token
    assert box.decrypt(token) == "ghu_usertoken1234567890"


def test_key_file_is_created_once_with_owner_only_mode(tmp_path: Path) -> None:
    first = SecretBox.load_or_create(None, tmp_path)
    second = SecretBox.load_or_create(None, tmp_path)
    assert second.decrypt(first.encrypt("x")) == "x"
    mode = stat.S_IMODE((tmp_path / "secret.key").stat().st_mode)
    assert mode == 0o600


def test_other_key_cannot_decrypt(tmp_path: Path) -> None:
    token = SecretBox.load_or_create("a" * 40, tmp_path).encrypt("secret")
    with pytest.raises(SecretBoxError):
        SecretBox.load_or_create("b" * 40, tmp_path).decrypt(token)


def test_session_key_differs_from_encryption_and_secret() -> None:
    box = SecretBox(b"m" * 40)
    assert box.session_key != b"m" * 40
    assert len(box.session_key) == 32
    assert "m" * 10 not in repr(box)
