"""On Fly, refuse a database the next deploy would erase (RELIABILITY DB-14).

A Fly machine's root filesystem is rebuilt from the image at every deploy and restart; only a volume (fly.toml
mounts one at /data) keeps files. A DATABASE_PATH on the root filesystem, or under /data when the volume is not
mounted there, would start fine and lose every delivery, job and credential at the next deploy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def device_of(path: Path) -> int:
    """The filesystem (device number) holding `path`."""
    return os.stat(path).st_dev


def ephemeral_database(database_path: Path, fly_app_name: str | None, *,
                       device: Callable[[Path], int] | None = None) -> str | None:
    """Why `database_path` would be lost on this Fly machine, or None (off Fly, or on a volume)."""
    if fly_app_name is None or str(database_path) == ":memory:":
        return None
    device = device or device_of
    directory = database_path.absolute().parent
    while not directory.exists() and directory != directory.parent:  # the server creates missing directories
        directory = directory.parent
    if device(directory) != device(Path("/")):
        return None
    return (f"DATABASE_PATH {database_path} is on the machine's root filesystem, which Fly replaces at every "
            "deploy: the database would be lost. Put it on the volume (fly.toml mounts one at /data; "
            "DATABASE_PATH=/data/quantumreview.db) and check that the volume exists: fly volumes list")
