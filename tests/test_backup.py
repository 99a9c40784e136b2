"""Online backup: a consistent, verified copy while another connection keeps committing (DB-11, DB-12)."""

from __future__ import annotations

import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantumreview import cli
from quantumreview.backup import BackupError, backup, integrity_problem
from storage import migrations
from storage.db import Database


def open_wal(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def make_ledger(path: Path) -> sqlite3.Connection:
    """A table of rows 1..n and a counter that every transaction updates together with its row."""
    conn = open_wal(path)
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    conn.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
    conn.execute("INSERT INTO counter VALUES (0)")
    return conn


def commit_row(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO rows (payload) VALUES (randomblob(512))")
    conn.execute("UPDATE counter SET n = n + 1")
    conn.execute("COMMIT")


def ledger_state(path: Path) -> tuple[int, int, list[int]]:
    """(counter, row count, ids) as stored in `path`."""
    with sqlite3.connect(path) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM rows ORDER BY id")]
        counter = conn.execute("SELECT n FROM counter").fetchone()[0]
    return counter, len(ids), ids


@pytest.fixture
def busy_writer(tmp_path: Path) -> Iterator[tuple[Path, threading.Event, list[int]]]:
    """A database that another thread keeps committing to until the test ends."""
    path = tmp_path / "live.db"
    conn = make_ledger(path)
    for _ in range(200):
        commit_row(conn)
    stop, committed = threading.Event(), [200]

    def write_forever() -> None:
        while not stop.is_set():
            commit_row(conn)
            committed[0] += 1

    thread = threading.Thread(target=write_forever, daemon=True)
    thread.start()
    try:
        yield path, stop, committed
    finally:
        stop.set()
        thread.join(timeout=10)
        conn.close()


def test_backup_during_concurrent_writes_is_a_consistent_prefix(
    busy_writer: tuple[Path, threading.Event, list[int]], tmp_path: Path
) -> None:
    path, stop, committed = busy_writer
    deadline = time.monotonic() + 10
    while committed[0] < 220 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert committed[0] >= 220, "the writer thread is not committing"
    results = []
    for i in range(5):
        result = backup(path, tmp_path / f"copy-{i}.db")
        with sqlite3.connect(result.path) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counter, count, ids = ledger_state(result.path)
        assert ids == list(range(1, count + 1))  # no gaps: a prefix of the commits
        assert counter == count  # the two tables come from the same snapshot
        results.append(count)
    stop.set()
    assert all(200 <= n <= committed[0] for n in results)
    assert results == sorted(results)


def test_copying_only_the_db_file_misses_commits_that_the_backup_keeps(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    conn = make_ledger(path)
    conn.execute("PRAGMA wal_autocheckpoint=0")  # as between two automatic checkpoints of a busy server
    for _ in range(50):
        commit_row(conn)
    try:
        naive = tmp_path / "naive.db"
        shutil.copyfile(path, naive)
        with sqlite3.connect(naive) as copy:
            try:
                naive_rows = copy.execute("SELECT count(*) FROM rows").fetchone()[0]
            except sqlite3.OperationalError:
                naive_rows = 0  # even the table's creation was still in the WAL
        result = backup(path, tmp_path / "good.db")
        assert naive_rows < 50
        assert ledger_state(result.path)[:2] == (50, 50)
    finally:
        conn.close()


def test_backup_is_one_self_contained_file(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    make_ledger(path).close()
    result = backup(path, tmp_path / "out" / "copy.db")
    assert result.path.is_file() and result.bytes == result.path.stat().st_size and result.pages > 0
    assert not Path(f"{result.path}-wal").exists()
    with sqlite3.connect(result.path) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not list(result.path.parent.glob(".*partial"))


async def test_restoring_a_backup_of_the_app_database_needs_no_migration(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "app.db")
    try:
        await db.execute("INSERT INTO credentials (name, value, secret, updated_at) VALUES ('slug', x'71', 0, 1)")
        result = backup(db.path, tmp_path / "backup.db")
    finally:
        await db.close()
    restored = tmp_path / "restored" / "quantumreview.db"
    restored.parent.mkdir()
    shutil.copyfile(result.path, restored)
    assert migrations.migrate(restored) == []
    reopened = await Database.open(restored)
    try:
        assert await reopened.fetchvalue("SELECT value FROM credentials WHERE name = 'slug'") == b"q"
    finally:
        await reopened.close()


def test_backup_refuses_a_missing_source_or_overwriting_itself(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no database"):
        backup(tmp_path / "absent.db", tmp_path / "copy.db")
    path = tmp_path / "live.db"
    make_ledger(path).close()
    with pytest.raises(BackupError, match="overwrite"):
        backup(path, path)


@pytest.mark.parametrize("name", ["live.db-wal", "live.db-shm", "live.db-journal", "live.db.lock", "live.db.restore"])
def test_backup_refuses_the_databases_own_files(tmp_path: Path, name: str) -> None:
    """`backup data/qr.db-wal` replaced the live WAL with the copy: the commits still in it were lost."""
    path = tmp_path / "live.db"
    conn = make_ledger(path)
    try:
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the commits below stay in the -wal
        for _ in range(5):
            commit_row(conn)
        own = tmp_path / name
        if not own.exists():
            own.write_bytes(b"")  # empty: a file that is not yet a database would otherwise be replaced
        before = own.read_bytes()
        with pytest.raises(BackupError, match="a file the database keeps beside it"):
            backup(path, own)
        assert own.read_bytes() == before
    finally:
        conn.close()
    assert ledger_state(path)[:2] == (5, 5)


def test_backup_replaces_an_earlier_backup_but_no_file_that_is_not_a_database(tmp_path: Path) -> None:
    """`backup data/secret.key` put the copy in place of the key that decrypts every stored secret."""
    path = tmp_path / "live.db"
    make_ledger(path).close()
    key = tmp_path / "secret.key"
    key.write_bytes(b"k" * 64)
    with pytest.raises(BackupError, match="is not an SQLite database, so it is not replaced"):
        backup(path, key)
    assert key.read_bytes() == b"k" * 64
    earlier = backup(path, tmp_path / "copy.db").path
    assert backup(path, earlier).path == earlier  # the usual nightly overwrite still works
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")  # a file made by mktemp, say
    assert backup(path, empty).bytes > 0


def damage(path: Path) -> None:
    """Add a table of fixed random blobs to the database at `path`, then overwrite the middle of one of its pages."""
    filler = random.Random(0)  # fixed: where the damage lands decides what SQLite says of it
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE filler (x)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(filler.randbytes(500),) for _ in range(40)])
    conn.close()
    raw = bytearray(path.read_bytes())
    raw[-4096 - 3000:-4096 - 1000] = b"\xff" * 2000
    path.write_bytes(bytes(raw))


def test_backing_up_a_damaged_database_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The backup API copies pages as they are; the copy's check finds the damage (SQLite ran out of memory
    collecting every problem of this file before the check was limited), and nothing is left behind."""
    db = tmp_path / "qr.db"
    migrations.migrate(db)
    damage(db)
    dest = tmp_path / "backups" / "copy.db"
    assert cli.main(["backup", str(dest)], {"DATABASE_PATH": str(db)}) == 1
    err = capsys.readouterr().err
    assert err.startswith("quantumreview: backup failed: the copy failed integrity_check, so the database itself "
                          "is damaged: On tree page") and err.count("\n") == 1, err
    assert not dest.exists() and not list(dest.parent.glob(".*partial"))


def test_a_check_that_runs_out_of_memory_reports_damage() -> None:
    class NoMemory:
        def execute(self, sql: str) -> object:
            raise MemoryError

    assert integrity_problem(NoMemory()) == "SQLite ran out of memory reading a damaged record"  # type: ignore[arg-type]


@pytest.mark.parametrize("directory", ["da#ta", "da?ta", "100%25"])
def test_a_database_path_with_uri_characters_is_backed_up_not_an_empty_file(tmp_path: Path, directory: str) -> None:
    """'#' or '?' in the path cut the read-only URI short: SQLite opened (and created) another, empty file, and the
    backup of that empty file 'succeeded'."""
    db = tmp_path / directory / "qr.db"
    db.parent.mkdir()
    make_ledger(db).close()
    result = backup(db, tmp_path / f"{directory}-copy.db")
    assert ledger_state(result.path)[:2] == ledger_state(db)[:2]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([directory, f"{directory}-copy.db"])
