"""RELIABILITY DB-14: on Fly, a database outside the volume is refused at start, not lost at the next deploy."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from quantumreview import cli, volume_check
from quantumreview.volume_check import ephemeral_database


def devices(mounts: dict[str, int], checked: list[Path]) -> Callable[[Path], int]:
    """A device lookup: the longest mount prefix's device, else the root's (1); records what it was asked."""

    def device(path: Path) -> int:
        checked.append(path)
        hits = [prefix for prefix in mounts if str(path) == prefix or str(path).startswith(prefix + "/")]
        return mounts[max(hits, key=len)] if hits else 1

    return device


def test_off_fly_nothing_is_checked() -> None:
    checked: list[Path] = []
    assert ephemeral_database(Path("/tmp/x.db"), None, device=devices({}, checked)) is None
    assert checked == []


def test_on_fly_a_database_on_the_root_filesystem_is_refused_with_the_fix() -> None:
    checked: list[Path] = []
    reason = ephemeral_database(Path("/data/quantumreview.db"), "my-app",
                                device=devices({}, checked))
    assert reason is not None and "DATABASE_PATH /data/quantumreview.db is on the machine's root filesystem" in reason
    assert "fly volumes list" in reason


def test_on_fly_a_database_on_the_volume_passes(tmp_path: Path) -> None:
    volume = tmp_path / "data"
    volume.mkdir()
    checked: list[Path] = []
    assert ephemeral_database(volume / "quantumreview.db", "my-app",
                              device=devices({str(volume): 2}, checked)) is None
    assert checked == [volume, Path("/")]
    # The same path with no volume mounted there: a plain directory on the root filesystem.
    assert ephemeral_database(volume / "quantumreview.db", "my-app",
                              device=devices({}, checked)) is not None


def test_a_directory_still_to_be_made_is_judged_by_where_it_will_be(tmp_path: Path) -> None:
    checked: list[Path] = []
    target = tmp_path / "not" / "yet" / "there.db"
    assert ephemeral_database(target, "my-app", device=devices({str(tmp_path): 2}, checked)) is None
    assert checked[0] == tmp_path  # the nearest directory that exists


def test_the_real_filesystems_are_compared(tmp_path: Path) -> None:
    on_root = os.stat(tmp_path).st_dev == os.stat("/").st_dev
    assert (ephemeral_database(tmp_path / "x.db", "my-app") is not None) is on_root
    assert ephemeral_database(Path(":memory:"), "my-app") is None


def test_serve_on_fly_outside_the_volume_exits_2_before_starting(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web

    started: list[object] = []
    monkeypatch.setattr(web, "run_app", lambda app, **kwargs: started.append(app))
    monkeypatch.setattr(volume_check, "device_of", lambda path: 1)  # everything on one (root) filesystem
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = cli.main(["serve"], {"FLY_APP_NAME": "my-app", "DATABASE_PATH": str(tmp_path / "qr.db")})
    assert code == 2 and started == []
    assert "is on the machine's root filesystem" in err.getvalue() and "Traceback" not in err.getvalue()
    assert not (tmp_path / "qr.db").exists() and not (tmp_path / "qr.db.lock").exists()
