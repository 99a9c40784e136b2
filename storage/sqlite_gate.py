"""Is the linked SQLite free of the WAL-reset bug? https://sqlite.org/wal.html#walresetbug

Every version from 3.7.0 to 3.51.2 can corrupt a WAL database when two connections write or checkpoint it at
the same time; 3.51.3 fixed it, and 3.50.7 and 3.44.6 carry the fix back. The server writes and checkpoints on
one connection only (storage.db), so it is safe on its own; the risk is a second writer beside it: Litestream,
the sqlite3 shell, or the CLI's write commands (replay, receive) while the server runs.
"""

from __future__ import annotations

import sqlite3

BUG_URL = "https://sqlite.org/wal.html#walresetbug"
FIXED_IN = (3, 51, 3)
BACKPORTS = ((3, 50, 7), (3, 44, 6))


def version_tuple(version: str) -> tuple[int, ...]:
    """(3, 40, 1) from "3.40.1"; a part that is not a number counts as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def wal_reset_safe(version: str) -> bool:
    """True if SQLite `version` has the fix (3.51.3 or later, or a backport release line at or past its fix)."""
    found = version_tuple(version)
    return found >= FIXED_IN or any(found[:2] == fix[:2] and found >= fix for fix in BACKPORTS)


def wal_reset_warning(version: str | None = None) -> str | None:
    """The warning to show when the linked SQLite (or `version`) has the bug; None when it is fixed."""
    version = sqlite3.sqlite_version if version is None else version
    if wal_reset_safe(version):
        return None
    return (f"SQLite {version} has the WAL-reset bug ({BUG_URL}): two connections writing to one database at "
            "once can corrupt it. The server writes and checkpoints on one connection, which is safe alone; do not "
            "run another writer against the database while the server runs "
            "(Litestream, the sqlite3 shell, replay or receive), or use Python linked with SQLite 3.51.3 or later "
            "(or 3.50.7 / 3.44.6).")
