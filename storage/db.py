"""SQLite connections: one serialized writer and one reader, both in WAL mode."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence, Sized
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage import migrations

BUSY_TIMEOUT_MS = 5000
# Why: checkpoints copy the WAL into the database file; SQLite's default runs one inline in the commit that
# passes 1,000 pages (every ~250 deliveries), stalling every delivery in flight. The app checkpoints when writes
# pause (storage.checkpoints); this automatic one is only the backstop under sustained load: 32,768 pages
# (128 MiB at 4 KiB), about 8,000 deliveries in one burst.
WAL_BACKSTOP_PAGES = 32_768
# Why as large as the backstop: the first commit after a checkpoint restarts the WAL and cuts its file back to this
# size. Cutting it (freeing blocks, which the volume may discard) took that commit 45 ms, and every delivery of the
# next burst's first batches waited for it; below this size the file is overwritten in place. The WAL may reach
# this size anyway (docs/deploy.md: leave that much room).
WAL_SIZE_LIMIT = WAL_BACKSTOP_PAGES * 4096
# Below this much free space an open that failed is said to be on a full volume.
FULL_VOLUME_BYTES = 1024 * 1024
# Why: the intake promises a durable row before its 2xx; FULL fsyncs the WAL on every commit.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}",
    f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}",
)

Params = Sequence[Any] | dict[str, Any]
T = TypeVar("T")


def storable(text: str | None) -> str | None:
    """`text` with lone surrogates ('\\ud800' in GitHub's JSON) replaced: SQLite cannot encode them as UTF-8."""
    return None if text is None else text.encode("utf-8", "replace").decode("utf-8")


def placeholders(values: Sized) -> str:
    """`?, ?, …` for an `IN (…)` list of `values`; `NULL` when empty, so the list matches nothing."""
    return ", ".join("?" * len(values)) or "NULL"


class DatabaseBusy(Exception):
    """The database could not take a write in time (locked by another process, or the disk failed)."""


class DatabaseUnavailable(Exception):
    """The database file cannot be opened or migrated (not a database, unreadable, no such directory, disk full).

    Commands stop with this message (exit 2); the file is left as it was.
    """


def _unavailable(path: Path, exc: Exception) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"cannot open the database {path}: {exc}{_full_volume(path)}")


def _full_volume(path: Path) -> str:
    # Why: on a full volume SQLite says only 'disk I/O error' at open (it cannot grow the -shm file).
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return f" (its volume is full: {free} bytes free)" if free < FULL_VOLUME_BYTES else ""


def prepare_database(path: Path) -> list[str]:
    """Create the directory and apply pending migrations; the names applied. DatabaseUnavailable if it cannot."""
    try:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        return migrations.migrate(path)
    except (sqlite3.Error, OSError, migrations.NewerDatabase) as exc:
        raise _unavailable(path, exc) from exc


async def _open_connection(path: Path) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(str(path), isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise _unavailable(path, exc) from exc
    try:
        conn.row_factory = sqlite3.Row
        for pragma in PRAGMAS:
            await conn.execute(pragma)
    except BaseException as exc:
        await conn.close()
        if isinstance(exc, sqlite3.Error | OSError):
            raise _unavailable(path, exc) from exc
        raise
    return conn


def _read(conn: sqlite3.Connection, sql: str, params: Params, one: bool) -> Any:
    # Why a function on the reader's thread: aiosqlite's cursor API takes a hop each for execute, fetch and close;
    # the API's requests are mostly a few small reads, so those hops were most of their database time.
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchone() if one else cursor.fetchall()
    finally:
        cursor.close()


def _roll_back_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _run_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], relaxed: bool) -> T:
    # Why here: synchronous cannot change inside a transaction, and the writer lock makes NORMAL apply to ours only.
    if relaxed:
        conn.execute("PRAGMA synchronous=NORMAL")
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise DatabaseBusy(str(exc)) from exc
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result
    finally:
        if relaxed:
            conn.execute("PRAGMA synchronous=FULL")  # PRAGMAS: every other commit is FULL


class Database:
    """The app's SQLite file: writes go through one lock so transactions never interleave."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        # Why: coroutines sharing an aiosqlite connection share its transaction; one lock keeps them apart.
        self._write_lock = asyncio.Lock()
        # Set, and counted, after every committed write; storage.checkpoints waits on them.
        self.wrote = asyncio.Event()
        self.commits = 0
        self.checkpoints = 0

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Apply pending migrations, then open the writer and reader connections."""
        path = Path(path)
        prepare_database(path)
        writer = await _open_connection(path)
        try:
            reader = await _open_connection(path)
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        """Close both connections (the writer last, so WAL checkpoints on close), the writer even if closing the
        reader failed: a connection left open keeps its thread, and the process then never exits."""
        try:
            await self._reader.close()
        finally:
            await self._writer.close()

    async def _acquire_writer(self, timeout: float | None) -> None:
        """Take the writer lock, or raise DatabaseBusy after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._write_lock.acquire()
        except TimeoutError as exc:
            raise DatabaseBusy("timed out waiting for the database writer") from exc

    @asynccontextmanager
    async def transaction(self, *, timeout: float | None = None) -> AsyncIterator[aiosqlite.Connection]:
        """Run a write transaction (BEGIN IMMEDIATE … COMMIT) under the writer lock; roll back on error."""
        await self._acquire_writer(timeout)
        ended = False
        try:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                ended = True
                raise DatabaseBusy(str(exc)) from exc
            try:
                yield self._writer
            except BaseException:
                await self._end_open_transaction()
                ended = True
                raise
            try:
                await self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._end_open_transaction()
                ended = True
                raise DatabaseBusy(str(exc)) from exc
            ended = True
            self.wrote.set()
            self.commits += 1
        finally:
            try:
                if not ended:
                    # Why: cancelled while BEGIN, COMMIT or a rollback was on the writer's thread. Those still run
                    # there; a BEGIN left open made every later write fail until a restart.
                    await asyncio.shield(self._end_open_transaction())
            finally:
                self._write_lock.release()

    async def _end_open_transaction(self) -> None:
        """Roll back the writer's transaction if one is open (SQLite may already have ended it, on SQLITE_FULL)."""
        await self._writer._execute(_roll_back_if_open, self._writer._conn)  # type: ignore[no-untyped-call]

    async def run(self, work: Callable[[sqlite3.Connection], T], *, timeout: float | None = None,
                  relaxed: bool = False) -> T:
        """Run `work` in one transaction on the writer's thread: BEGIN, the work and COMMIT in one hop.

        `relaxed` commits with synchronous=NORMAL (no fsync). Only for job-state transitions: WAL keeps the file
        consistent, a power loss can only drop the last few transitions (those jobs run again, idempotently), and
        the next FULL commit of the intake syncs them anyway.
        """
        await self._acquire_writer(timeout)
        try:
            # Why aiosqlite's _execute: it is the one way to run a whole transaction in a single thread hop.
            result: T = await self._writer._execute(  # type: ignore[no-untyped-call]
                _run_transaction, self._writer._conn, work, relaxed)
            self.wrote.set()
            self.commits += 1
            return result
        finally:
            self._write_lock.release()

    async def checkpoint(self) -> tuple[int, int, int]:
        """Copy committed WAL frames into the database file (PASSIVE: readers are never blocked).

        On the writer connection, under the writer lock: a second connection that writes or checkpoints
        is what the WAL-reset bug of SQLite < 3.51.3 needs (RELIABILITY §0). Returns SQLite's
        (busy, frames in the WAL, frames checkpointed).
        """
        await self._acquire_writer(None)
        try:
            rows = await self._writer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            self._write_lock.release()
        self.checkpoints += 1
        busy, log, done = next(iter(rows))
        return int(busy), int(log), int(done)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement in its own transaction; return the last row id."""
        async with self.transaction() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.lastrowid or 0

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Read committed rows (one hop to the reader's thread)."""
        rows: list[sqlite3.Row] = await self._reader._execute(  # type: ignore[no-untyped-call]
            _read, self._reader._conn, sql, params, False)
        return rows

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """Read one committed row, or None (one hop to the reader's thread)."""
        row: sqlite3.Row | None = await self._reader._execute(  # type: ignore[no-untyped-call]
            _read, self._reader._conn, sql, params, True)
        return row

    async def fetchvalue(self, sql: str, params: Params = ()) -> Any:
        """Read the first column of the first row, or None."""
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def pragmas(self, names: Iterable[str]) -> dict[str, Any]:
        """Read back PRAGMA values through the writer connection (the one that commits)."""
        values: dict[str, Any] = {}
        for name in names:
            async with self._writer.execute(f"PRAGMA {name}") as cursor:
                row = await cursor.fetchone()
                values[name] = None if row is None else row[0]
        return values
