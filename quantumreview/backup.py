"""A consistent copy of the live database with SQLite's online backup API, safe while the server writes.

Why not `cp`: in WAL mode recent commits live in the -wal file; copying only the .db (or copying both while a
checkpoint runs) loses them or yields a corrupt file. https://www.sqlite.org/backup.html
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

BUSY_TIMEOUT_MS = 5000
SQLITE_HEADER = b"SQLite format 3\x00"
# Files the server keeps beside the database: its WAL, shared memory, rollback journal, server lock, staged restore.
OWN_SUFFIXES = ("-wal", "-shm", "-journal", ".lock", ".restore")


class BackupError(Exception):
    """The backup could not be written or did not verify; the destination is left untouched."""


@dataclass(frozen=True)
class BackupResult:
    """What was written: where, how big, and how long it took."""

    path: Path
    bytes: int
    pages: int
    seconds: float


def read_only_uri(path: Path) -> str:
    """An SQLite URI opening `path` read-only. Why as_uri: it escapes '#', '?' and '%', which would otherwise cut
    the path short (and open, or create, another file)."""
    return f"{path.resolve().as_uri()}?mode=ro"


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """None if `conn`'s database passes PRAGMA integrity_check, else what SQLite found (its first few problems)."""
    try:
        # Why (3): SQLite collects every problem otherwise; on a badly damaged file that ran out of memory.
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check(3)")]
    except MemoryError:  # SQLITE_NOMEM: a damaged record that claims a huge size
        return "SQLite ran out of memory reading a damaged record"
    if rows == ["ok"]:
        return None
    lines = [line for row in rows for line in row.splitlines() if not line.startswith("*** in database")]
    return "; ".join(lines) or "no result"


def _copy(source: Path, target: Path) -> int:
    src = sqlite3.connect(read_only_uri(source), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(target)
        try:
            # Why pages=-1: one step copies a single snapshot; stepping would restart on every concurrent write.
            src.backup(dst, pages=-1)
            # Why DELETE: the copy is one self-contained file, with no -wal beside it to lose.
            dst.execute("PRAGMA journal_mode=DELETE")
            if (problem := integrity_problem(dst)) is not None:
                raise BackupError(f"the copy failed integrity_check, so the database itself is damaged: {problem}")
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
        finally:
            dst.close()
    finally:
        src.close()
    return pages


def _not_replaceable(db_path: Path, dest: Path) -> str | None:
    """Why a destination must not be replaced, if it must not: one of the database's own files, or a file that is
    no SQLite database. Why: `backup data/qr.db-wal` put the copy in place of the live WAL (the commits in it were
    lost), and `backup data/secret.key` the key that decrypts every stored secret; an earlier backup may be replaced.
    """
    target = dest.resolve()
    own = {base.with_name(base.name + suffix) for base in (db_path.absolute(), db_path.resolve())
           for suffix in OWN_SUFFIXES}
    if target in own:
        return f"{dest} is a file the database keeps beside it, not a backup: give another path"
    try:
        with target.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except (FileNotFoundError, NotADirectoryError):  # nothing to replace (a bad directory fails at the write)
        return None
    except OSError as exc:
        return f"cannot write {dest}: the file there cannot be read to check it ({exc.strerror or exc})"
    if header and header != SQLITE_HEADER:
        return f"{dest} exists and is not an SQLite database, so it is not replaced: remove it or give another path"
    return None


def backup(db_path: Path, dest: Path) -> BackupResult:
    """Write a verified, self-contained copy of `db_path` to `dest` (replaced atomically)."""
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path}")
    if dest.resolve() == db_path.resolve():
        raise BackupError("the backup must not overwrite the database itself")
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory: give the path of the file to write")
    if (problem := _not_replaceable(db_path, dest)) is not None:
        raise BackupError(problem)
    partial = dest.with_name(f".{dest.name}.partial")
    started = time.monotonic()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        pages = _copy(db_path, partial)
        os.replace(partial, dest)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {db_path} failed: {exc}") from exc
    except OSError as exc:  # the destination's directory cannot be made or written
        raise BackupError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return BackupResult(path=dest, bytes=dest.stat().st_size, pages=pages, seconds=time.monotonic() - started)
