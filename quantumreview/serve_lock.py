"""One server per database: `serve` holds an exclusive lock on `<DATABASE_PATH>.lock` while it runs.

Why: at start a server requeues the jobs a crash left `running`. A second server on the same file (started
twice by mistake, or restarted while the previous one still drains its jobs) would requeue jobs that are in
fact running, and they would run twice. The lock is flock(2): the kernel drops it when its holder exits, even
on SIGKILL, so a crashed server never blocks the next one. The CLI's other commands (replay, jobs, migrate,
backup) take no lock and may run beside a server; replay and receive warn when they write beside one on a SQLite
with the WAL-reset bug (storage/sqlite_gate.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; one server per database is up to the operator
    fcntl = None  # type: ignore[assignment]

POLL_SECONDS = 0.2


class LockUnavailable(Exception):
    """The lock file cannot be created, opened or written (a missing permission, a read-only or full volume)."""


class ServerRunning(Exception):
    """Another process holds the database's server lock; `holder` is its pid as it wrote it."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"another quantumreview server (pid {holder}) holds {path}")
        self.path = path
        self.holder = holder


def lock_path(database_path: Path) -> Path:
    """The lock file beside the database (never the database itself: closing a second descriptor of the
    database would drop SQLite's own POSIX locks)."""
    return database_path.with_name(database_path.name + ".lock")


@contextlib.contextmanager
def serve_lock(database_path: Path, *, wait: float, on_wait: Callable[[str], None] = lambda holder: None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Hold the server lock for the block; wait up to `wait` seconds for a previous holder to exit.

    `on_wait(holder pid)` is called once if the lock is taken when asked. Raises ServerRunning after `wait`.
    """
    if fcntl is None or str(database_path) == ":memory:":
        yield
        return
    path = lock_path(database_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LockUnavailable(f"cannot open the server lock {path}: {exc.strerror or exc}") from None
    try:
        deadline = clock() + wait
        waited = False
        while not _try_lock(fd, path):
            holder = _holder(fd)
            if clock() >= deadline:
                raise ServerRunning(path, holder)
            if not waited:
                on_wait(holder)
                waited = True
            sleep(POLL_SECONDS)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # the start's first write: a full or read-only volume shows here
            raise LockUnavailable(f"cannot write the server lock {path}: {exc.strerror or exc}") from None
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race the next server's open)


def holder_of(database_path: Path) -> str | None:
    """The pid of the server holding the database's lock now ("unknown" if unreadable), or None if none does."""
    if fcntl is None:
        return None
    try:
        fd = os.open(lock_path(database_path), os.O_RDONLY)
    except OSError:  # no lock file: no server has ever run here
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _try_lock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:  # a filesystem without locks (some network or FUSE mounts)
        raise LockUnavailable(f"cannot lock the server lock {path}: {exc.strerror or exc}") from None
    return True


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
