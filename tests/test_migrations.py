"""Migrations are all-or-nothing (RELIABILITY DB-13): a SIGKILL mid-migration leaves the old schema, never a mix."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from storage.migrations import MIGRATIONS, migrate

ROOT = Path(__file__).resolve().parent.parent
# Our migrations' shape (several DDL statements in one executescript), killed between two of them.
KILLED_MIGRATION = """
import os, signal, sqlite3, sys
import sqlite_utils
from sqlite_utils import Migrations

sys.path.insert(0, sys.argv[2])
from storage.migrations import migrate

migrate(sys.argv[1])
LATER = Migrations("quantumreview")

@LATER()
def m900_half_done(db):
    db.executescript("CREATE TABLE first_half (x); ALTER TABLE deliveries ADD COLUMN extra TEXT;")
    os.kill(os.getpid(), signal.SIGKILL)
    db.executescript("CREATE TABLE second_half (y);")

conn = sqlite3.connect(sys.argv[1])
conn.execute("PRAGMA journal_mode=WAL")
LATER.apply(sqlite_utils.Database(conn))
"""


def schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
    finally:
        conn.close()


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def test_a_migration_killed_midway_leaves_the_old_schema_and_stays_pending(tmp_path: Path) -> None:
    db = tmp_path / "qr.db"
    migrate(db)
    before, deliveries_before = schema(db), columns(db, "deliveries")
    db.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    result = subprocess.run([sys.executable, "-c", KILLED_MIGRATION, str(db), str(ROOT)], capture_output=True,
                            timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert schema(db) == before  # no first_half, nothing of the killed migration
    assert columns(db, "deliveries") == deliveries_before
    conn = sqlite3.connect(db)
    try:
        recorded = {row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert "m900_half_done" not in recorded
    assert recorded == {migration.name for migration in MIGRATIONS.pending(_empty(tmp_path))}
    assert migrate(db) == []  # the app's own migrations are all there; the next start is a no-op


def _empty(tmp_path: Path) -> sqlite_utils.Database:
    """A fresh database, so every one of the app's migrations counts as pending on it."""
    return sqlite_utils.Database(sqlite3.connect(tmp_path / "empty.db"))


def test_runs_and_verdicts_stored_before_start_times_were_kept_read_as_unknown(tmp_path: Path) -> None:
    """m010 adds the start-time and CI-presence columns; rows already there read NULL (the old order applies)."""
    db = tmp_path / "qr.db"
    conn = sqlite3.connect(db)
    try:
        MIGRATIONS.apply(sqlite_utils.Database(conn), stop_before="m010_run_start_times_and_ci_presence")
        conn.execute("INSERT INTO ci_runs (repo, run_id, run_attempt, head_sha, processed_at) "
                     "VALUES ('o/r', 7, 1, 'abc', 1.0)")
        conn.execute("INSERT INTO manifests (repo, pr_number, head_sha, manifest, run_id, created_at, updated_at) "
                     "VALUES ('o/r', 3, 'abc', '{}', 7, 1.0, 1.0)")
        conn.commit()
    finally:
        conn.close()
    assert migrate(db)[0] == "m010_run_start_times_and_ci_presence"  # then any later ones
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT run_id, run_started_at FROM ci_runs").fetchall() == [(7, None)]
        assert conn.execute("SELECT run_id, run_started_at, ci_workflows FROM manifests").fetchall() == [
            (7, None, None)]
    finally:
        conn.close()


def test_failed_redelivery_requests_get_their_own_table_and_what_the_sweep_kept_stays(tmp_path: Path) -> None:
    """m013 adds redelivery_retries (empty); the GUIDs asked for and the pass under way are kept as they were."""
    db = tmp_path / "qr.db"
    conn = sqlite3.connect(db)
    try:
        MIGRATIONS.apply(sqlite_utils.Database(conn), stop_before="m013_redelivery_retries")
        conn.execute("INSERT INTO redeliveries (guid, github_delivery_id, requested_at, times_asked) "
                     "VALUES ('g', 7, 1.0, 2)")
        conn.execute("INSERT INTO redelivery_pass (id, cursor, top, saved_at) VALUES (1, 'v1_abc', 5, 1.0)")
        conn.commit()
    finally:
        conn.close()
    assert migrate(db)[0] == "m013_redelivery_retries"  # then any later ones
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT guid, github_delivery_id, times_asked FROM redeliveries").fetchall() == [
            ("g", 7, 2)]
        assert conn.execute("SELECT cursor, top FROM redelivery_pass").fetchall() == [("v1_abc", 5)]
        assert conn.execute("SELECT count(*) FROM redelivery_retries").fetchone() == (0,)
    finally:
        conn.close()


def test_the_webhook_app_id_gets_a_one_row_table_and_queued_jobs_stay(tmp_path: Path) -> None:
    """m014 adds webhook_app (empty, one row at most); what was queued before is kept as it was."""
    db = tmp_path / "qr.db"
    conn = sqlite3.connect(db)
    try:
        MIGRATIONS.apply(sqlite_utils.Database(conn), stop_before="m014_webhook_app")
        conn.execute("INSERT INTO jobs (handler, ordering_key, run_after, created_at) VALUES ('h', 'k', 1.0, 1.0)")
        conn.commit()
    finally:
        conn.close()
    assert migrate(db)[0] == "m014_webhook_app"  # then any later ones
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT handler, status FROM jobs").fetchall() == [("h", "queued")]
        assert conn.execute("SELECT count(*) FROM webhook_app").fetchone() == (0,)
        conn.execute("INSERT INTO webhook_app (id, app_id, seen_at) VALUES (1, 5, 1.0)")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO webhook_app (id, app_id, seen_at) VALUES (2, 6, 1.0)")
    finally:
        conn.close()


def test_notifications_get_a_key_unique_per_user_and_an_outbox_and_old_rows_stay(tmp_path: Path) -> None:
    """m015 adds notifications.dedupe_key (NULL for rows written before, which may repeat) with a unique index per
    user, and the empty notification_outbox."""
    db = tmp_path / "qr.db"
    conn = sqlite3.connect(db)
    try:
        MIGRATIONS.apply(sqlite_utils.Database(conn), stop_before="m015_notification_keys")
        conn.execute("INSERT INTO users (id, login, created_at, updated_at) VALUES (1, 'mona', 1.0, 1.0)")
        for _ in range(2):
            conn.execute("INSERT INTO notifications (user_id, repo, kind, title, created_at) "
                         "VALUES (1, 'o/r', 'verdict', 'same', 1.0)")
        conn.commit()
    finally:
        conn.close()
    assert migrate(db)[0] == "m015_notification_keys"  # then any later ones
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT title, dedupe_key FROM notifications").fetchall() == [("same", None)] * 2
        insert = ("INSERT INTO notifications (user_id, repo, kind, title, created_at, dedupe_key) "
                  "VALUES (?, 'o/r', 'verdict', 'keyed', 1.0, 'k')")
        conn.execute("INSERT INTO users (id, login, created_at, updated_at) VALUES (2, 'bob', 1.0, 1.0)")
        conn.execute(insert, (1,))
        conn.execute(insert, (2,))  # another user may hold the same key
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, (1,))
        assert conn.execute("SELECT count(*) FROM notification_outbox").fetchone() == (0,)
    finally:
        conn.close()
