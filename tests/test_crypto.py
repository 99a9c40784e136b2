"""Secrets at rest: encrypted with a key that is not in the database."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from quantumreview.crypto import KeyFileError, SecretBox, SecretBoxError


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


def test_key_file_appears_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    SecretBox.load_or_create(None, tmp_path / "data")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["secret.key"]
    assert len((tmp_path / "data" / "secret.key").read_text()) >= 60


def test_two_servers_starting_at_once_share_one_key(tmp_path: Path) -> None:
    # Why threads: both see no file, both create one; the loser must use the winner's key, not fail or replace it.
    import threading

    boxes: list[SecretBox] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        try:
            boxes.append(SecretBox.load_or_create(None, tmp_path))
        except BaseException as exc:  # recorded for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    token = boxes[0].encrypt("x")
    assert all(box.decrypt(token) == "x" for box in boxes)
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


def test_a_key_file_without_hard_links_is_still_created_exclusively(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def no_links(src: str, dst: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    first = SecretBox.load_or_create(None, tmp_path)
    assert SecretBox.load_or_create(None, tmp_path).decrypt(first.encrypt("x")) == "x"
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


@pytest.mark.parametrize("content", [b"", b"short-key\n"])
def test_a_damaged_key_file_is_a_clear_error_and_is_left_alone(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "secret.key").write_bytes(content)
    with pytest.raises(KeyFileError, match=r"secret\.key is damaged") as caught:
        SecretBox.load_or_create(None, tmp_path)
    assert "short-key" not in str(caught.value)
    assert (tmp_path / "secret.key").read_bytes() == content


def test_serve_with_a_damaged_key_file_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from quantumreview.cli import main

    with socket.socket() as sock:  # a free port, in case start-up got as far as listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "secret.key").write_text("x")
    code = main(["serve"], {"DATABASE_PATH": str(tmp_path / "qr.db"), "HOST": "127.0.0.1", "PORT": str(port)})
    err = capsys.readouterr().err
    assert code == 2
    assert "secret.key is damaged" in err
    assert "Traceback" not in err
