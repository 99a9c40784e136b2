"""`quantumreview restore`: a checked backup is staged, and put in place only where no server writes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import aiohttp
import pytest

from quantumreview import cli
from quantumreview.backup import backup
from quantumreview.restore import RestoreError, replaced_path, stage, staged_path, swap_in_staged
from quantumreview.serve_lock import serve_lock
from storage import migrations
from tests.test_backup import damage
from tests.test_crash import ROOT, deliver, free_port, start_server, wait_healthy

CRASHING_WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("INSERT INTO credentials (name, value, secret, updated_at) VALUES ('after-backup', x'01', 0, 1)")
conn.commit()
os._exit(0)
"""


def make_database(path: Path, names: list[str]) -> None:
    """An app database (every migration applied) holding one credential row per name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    migrations.migrate(path)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany("INSERT INTO credentials (name, value, secret, updated_at) VALUES (?, x'01', 0, 1)",
                             [(name,) for name in names])
    finally:
        conn.close()


def names_in(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT name FROM credentials ORDER BY name")]
    finally:
        conn.close()


def run_cli(argv: list[str], db: Path) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(argv, {"DATABASE_PATH": str(db)})
    return code, out.getvalue(), err.getvalue()


def test_with_no_server_the_backup_replaces_the_database_and_the_old_one_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "data" / "qr.db"
    make_database(db, ["kept-in-backup"])
    backup(db, tmp_path / "backup.db")
    # A later commit left in the -wal: its writer exits without closing, so nothing checkpoints it.
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(db)], check=True, timeout=30)
    assert Path(f"{db}-wal").stat().st_size > 0
    code, out, _ = run_cli(["restore", str(tmp_path / "backup.db")], db)
    assert code == 0 and "restored" in out
    assert names_in(db) == ["kept-in-backup"]
    assert not staged_path(db).exists() and not Path(f"{db}-wal").exists()
    [replaced] = db.parent.glob("qr.db.replaced-*")  # one file: its -wal was folded in first
    assert names_in(replaced) == ["after-backup", "kept-in-backup"]  # nothing of the replaced database is lost
    assert migrations.migrate(db) == []


@pytest.mark.parametrize("kind", ["missing", "not sqlite", "other app", "newer version", "damaged"])
def test_a_bad_backup_is_refused_and_the_database_is_left_as_it_was(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "data" / "qr.db"
    make_database(db, ["live"])
    bad = tmp_path / "bad.db"
    if kind == "not sqlite":
        bad.write_bytes(b"SQLite format 3\x00 but not really" * 200)
    elif kind == "other app":
        conn = sqlite3.connect(bad)
        conn.execute("CREATE TABLE notes (x)")
        conn.close()
    elif kind != "missing":
        backup(db, bad)
        conn = sqlite3.connect(bad)
        with conn:
            conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                         "VALUES ('quantumreview', 'm999_from_the_future', '2027-01-01')")
        conn.close()
        if kind == "damaged":
            damage(bad)
    before = db.read_bytes()
    code, _, err = run_cli(["restore", str(bad)], db)
    assert code == 1
    expected = {"missing": "no backup file", "not sqlite": "not a readable SQLite database",
                "other app": "not a QuantumReview database", "newer version": "m999_from_the_future",
                "damaged": "is damaged (integrity_check: On tree page"}[kind]
    assert err.startswith("quantumreview: restore failed:") and expected in err, err
    assert "Traceback" not in err
    assert db.read_bytes() == before and not staged_path(db).exists()
    assert not list(db.parent.glob(".*partial"))


def test_while_a_server_holds_the_database_the_backup_is_only_staged(tmp_path: Path) -> None:
    db = tmp_path / "data" / "qr.db"
    make_database(db, ["live"])
    make_database(tmp_path / "b" / "backup.db", ["from-backup"])
    with serve_lock(db, wait=0):
        code, out, _ = run_cli(["restore", str(tmp_path / "b" / "backup.db")], db)
        assert code == 0 and "staged" in out and "restart" in out
        assert names_in(db) == ["live"]  # the running server's file is not written
        assert names_in(staged_path(db)) == ["from-backup"]
    assert swap_in_staged(db) is not None
    assert names_in(db) == ["from-backup"] and not staged_path(db).exists()
    assert swap_in_staged(db) is None  # nothing staged: nothing happens


def test_a_swap_cut_short_completes_on_the_next_start(tmp_path: Path) -> None:
    """A crash between the swap's renames: the next start finishes it, and the old -wal stays with its file."""
    db = tmp_path / "qr.db"
    make_database(db, ["old"])
    make_database(tmp_path / "b.db", ["new"])
    stage(tmp_path / "b.db", db)
    # Cut short after the old -wal moved (first step), before its file did: the file lacks the -wal's commit.
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    with writer:
        writer.execute("INSERT INTO credentials (name, value, secret, updated_at) VALUES ('in-wal', x'01', 0, 1)")
    shutil.copyfile(db, tmp_path / "file-alone.db")
    shutil.copyfile(f"{db}-wal", f"{replaced_path(db)}-wal")
    writer.close()
    os.replace(tmp_path / "file-alone.db", db)
    Path(f"{db}-wal").unlink(missing_ok=True)
    swapped = swap_in_staged(db)
    assert swapped is not None and swapped.replaced == replaced_path_was(tmp_path)
    assert names_in(db) == ["new"] and names_in(swapped.replaced) == ["in-wal", "old"]
    # Cut short after the old file left: only the staged copy is there to put in place.
    stage(tmp_path / "b.db", db)
    os.replace(db, tmp_path / "elsewhere.db")
    swapped = swap_in_staged(db)
    assert swapped is not None and swapped.replaced is None and names_in(db) == ["new"]


def replaced_path_was(directory: Path) -> Path:
    [path] = directory.glob("qr.db.replaced-*[0-9]Z")
    return path


def test_a_stale_wal_beside_an_unreadable_database_never_reaches_the_restored_file(tmp_path: Path) -> None:
    db = tmp_path / "qr.db"
    db.write_bytes(b"garbage, which is why it is being restored" * 100)
    Path(f"{db}-wal").write_bytes(b"a stale wal" * 100)
    Path(f"{db}-shm").write_bytes(b"\x00" * 32768)
    make_database(tmp_path / "b.db", ["new"])
    stage(tmp_path / "b.db", db)
    swapped = swap_in_staged(db)
    assert swapped is not None and swapped.replaced is not None
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert Path(f"{swapped.replaced}-wal").read_bytes() == b"a stale wal" * 100  # kept with its file
    assert names_in(db) == ["new"]


def test_staging_refuses_the_database_itself(tmp_path: Path) -> None:
    db = tmp_path / "qr.db"
    make_database(db, ["live"])
    with pytest.raises(RestoreError, match="database or its staged restore"):
        stage(db, db)


async def test_restore_beside_a_running_server_takes_effect_at_its_restart(
        tmp_path: Path, rsa_private_key: str) -> None:
    db = tmp_path / "crash.db"  # where tests.test_crash.start_server keeps its database
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port, rsa_private_key, "first.log")
    restarted: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await wait_healthy(session, base, server)
            assert await deliver(session, base, "before-backup") == 202
            done = subprocess.run([sys.executable, "-m", "quantumreview", "backup", str(tmp_path / "saved.db")],
                                  env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_PATH": str(db)},
                                  capture_output=True, timeout=30)
            assert done.returncode == 0, done.stderr
            assert await deliver(session, base, "after-backup") == 202
            done = subprocess.run([sys.executable, "-m", "quantumreview", "restore", str(tmp_path / "saved.db")],
                                  env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_PATH": str(db)},
                                  capture_output=True, timeout=30)
            assert done.returncode == 0 and b"staged" in done.stdout, done.stderr
            assert await deliver(session, base, "while-staged") == 202  # the server still runs as before
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=20) == 0
            restarted = start_server(tmp_path, port, rsa_private_key, "second.log")
            await wait_healthy(session, base, restarted)
            for _ in range(50):  # the restored database answers; the deliveries after the backup are gone
                if (tmp_path / "second.log").read_bytes().count(b"restored") == 1:
                    break
                await asyncio.sleep(0.1)
        conn = sqlite3.connect(db)
        try:
            ids = {row[0] for row in conn.execute("SELECT id FROM deliveries")}
        finally:
            conn.close()
        assert ids == {"before-backup"}
        assert b"restored" in (tmp_path / "second.log").read_bytes()
        [replaced] = tmp_path.glob("crash.db.replaced-*")
        conn = sqlite3.connect(replaced)
        try:
            kept = {row[0] for row in conn.execute("SELECT id FROM deliveries")}
        finally:
            conn.close()
        assert kept == {"before-backup", "after-backup", "while-staged"}
    finally:
        for proc in (server, restarted):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
