"""Restore a backup without a second writer: stage it beside the database; the server swaps it in at start.

Why not copy it over the live database: the running server would go on writing into the restored file with what
it holds in memory (job ids it is running, claims, caches), and SQLite before 3.51.3 can corrupt a WAL database
written by two connections at once (the WAL-reset bug). So `restore` checks the backup and copies it to
`<database>.restore`; `serve` takes the server lock, then swaps the staged copy in before it opens the database.
When no server runs, `restore` takes the lock and swaps at once. The database it replaces is kept, renamed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from quantumreview.backup import SQLITE_HEADER, integrity_problem, read_only_uri
from storage.migrations import applied_migrations, unknown_migrations

BUSY_TIMEOUT_S = 5.0


class RestoreError(Exception):
    """The backup cannot be restored; the database and any earlier staged restore are left as they were."""


@dataclass(frozen=True)
class Swapped:
    """A staged restore that was put in place: the database it replaced was renamed to `replaced`."""

    replaced: Path | None


def staged_path(database_path: Path) -> Path:
    """Where `restore` leaves a checked backup for the next server start."""
    return database_path.with_name(database_path.name + ".restore")


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def check_backup(path: Path) -> None:
    """Refuse anything but an intact QuantumReview database this version can migrate."""
    if not path.is_file():
        raise RestoreError(f"no backup file at {path}")
    try:
        # Why read-only: the backup is the user's file; checking it must not change it (or make a -wal beside it).
        conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise RestoreError(f"cannot open {path}: {exc}") from exc
    try:
        if (problem := integrity_problem(conn)) is not None:
            raise RestoreError(f"{path} is damaged (integrity_check: {problem})")
        applied = applied_migrations(conn)
    except sqlite3.Error as exc:  # not a database at all, or unreadable
        raise RestoreError(f"{path} is not a readable SQLite database: {exc}") from exc
    finally:
        conn.close()
    if not applied:
        raise RestoreError(f"{path} is not a QuantumReview database (it has no QuantumReview migrations)")
    if unknown := unknown_migrations(applied):
        raise RestoreError(f"{path} was written by a newer QuantumReview (migrations this version does not know: "
                           f"{', '.join(unknown)}): restore it with that version")


def stage(backup: Path, database_path: Path) -> Path:
    """Check `backup` and copy it to the staging path (replacing an earlier staged one only once complete)."""
    check_backup(backup)
    target = staged_path(database_path)
    if backup.resolve() in {database_path.resolve(), target.resolve()}:
        raise RestoreError(f"{backup} is the database or its staged restore itself: give a backup file")
    partial = target.with_name(f".{target.name}.partial")
    try:
        database_path.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        _copy(backup, partial)
        os.replace(partial, target)
        _sync_dir(target.parent)
    except sqlite3.Error as exc:
        raise RestoreError(f"cannot copy {backup}: {exc}") from exc
    except OSError as exc:
        raise RestoreError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return target


def _copy(source: Path, target: Path) -> None:
    # Why the backup API, not a file copy: a backup left in WAL mode with a -wal beside it is copied whole.
    src = sqlite3.connect(read_only_uri(source), uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, nothing beside it to lose
        finally:
            dst.close()
    finally:
        src.close()


def replaced_path(database_path: Path) -> Path:
    """Where the swap keeps the database it replaces: named after the staged file's time, the same on a retry."""
    staged_at = datetime.fromtimestamp(staged_path(database_path).stat().st_mtime, UTC)
    return database_path.with_name(f"{database_path.name}.replaced-{staged_at:%Y%m%dT%H%M%S.%fZ}")


def swap_in_staged(database_path: Path) -> Swapped | None:
    """Put a staged restore in place of the database; None if nothing is staged. Only with the server lock held.

    Safe to run again after a crash at any step: the replaced database's name comes from the staged file's
    time, the old -wal leaves before the old database does, and nothing is ever written beside the restored
    file before the old -wal is gone (SQLite would replay a stale -wal into it).
    """
    staged = staged_path(database_path)
    if not staged.is_file():
        return None
    replaced = replaced_path(database_path)
    wal, shm = _sidecars(database_path)
    _checkpoint(database_path)
    try:
        if wal.exists():  # the checkpoint could not run: the old -wal goes with the old file, first
            os.replace(wal, _sidecars(replaced)[0])
        if database_path.exists():
            os.replace(database_path, replaced)
        shm.unlink(missing_ok=True)
        os.replace(staged, database_path)
        _sync_dir(database_path.parent)
    except OSError as exc:
        raise RestoreError(f"cannot put the staged restore {staged} in place of {database_path}: "
                           f"{exc.strerror or exc}") from exc
    return Swapped(replaced if replaced.exists() else None)


def _checkpoint(database_path: Path) -> None:
    # Why: folds the old -wal into the old file (the last connection to close deletes it), so what is kept is
    # one file; if the old database cannot be opened (that may be why it is restored), its files move as they are.
    try:
        with database_path.open("rb") as file:
            if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:  # SQLite would drop the -wal of a non-database
                return
    except OSError:
        return
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(database_path, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


def _sync_dir(directory: Path) -> None:
    # Why: a rename is durable only once its directory is synced; a power cut must not undo the swap halfway.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
