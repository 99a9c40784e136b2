"""Schema: append-only named migrations (sqlite-utils Migrations), applied before the app opens the database.

Never edit a migration that has shipped; add m00N_... below the last one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

MIGRATIONS = Migrations("quantumreview")


@MIGRATIONS()
def m001_intake_and_jobs(db: sqlite_utils.Database) -> None:
    """Deliveries as received, and the durable job queue that handlers run from."""
    db.executescript(
        """
        CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,               -- X-GitHub-Delivery
            event TEXT NOT NULL,
            action TEXT,
            installation_id INTEGER,
            repository TEXT,                   -- owner/name, when the payload has one
            received_at REAL NOT NULL,
            body BLOB NOT NULL                 -- the raw signed bytes
        );
        CREATE INDEX deliveries_received ON deliveries(received_at);

        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            delivery_id TEXT REFERENCES deliveries(id) ON DELETE CASCADE,
            handler TEXT NOT NULL,             -- module:function, or a job kind for enqueued work
            payload TEXT,                      -- JSON arguments for enqueued work (no delivery)
            ordering_key TEXT NOT NULL,        -- jobs with the same key run one at a time, in id order
            installation_id INTEGER,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'dead', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            run_after REAL NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            last_error TEXT,
            UNIQUE (delivery_id, handler)
        );
        CREATE INDEX jobs_due ON jobs(status, run_after);
        CREATE INDEX jobs_ordering ON jobs(ordering_key, status, id);
        """
    )


@MIGRATIONS()
def m002_installations(db: sqlite_utils.Database) -> None:
    """Installations of the App and the repositories each can reach."""
    db.executescript(
        """
        CREATE TABLE installations (
            id INTEGER PRIMARY KEY,
            account_login TEXT NOT NULL,
            account_type TEXT,
            repository_selection TEXT,
            permissions TEXT,                  -- JSON
            suspended_at REAL,
            deleted_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE repositories (
            id INTEGER PRIMARY KEY,            -- GitHub repository id
            installation_id INTEGER NOT NULL REFERENCES installations(id) ON DELETE CASCADE,
            full_name TEXT NOT NULL,
            private INTEGER NOT NULL DEFAULT 0,
            removed_at REAL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX repositories_name ON repositories(full_name);
        CREATE INDEX repositories_installation ON repositories(installation_id);
        CREATE TABLE redeliveries (
            guid TEXT PRIMARY KEY,             -- a delivery GUID we asked GitHub to send again, once
            github_delivery_id INTEGER NOT NULL,
            requested_at REAL NOT NULL
        );
        """
    )


@MIGRATIONS()
def m003_checklists(db: sqlite_utils.Database) -> None:
    """Checklists built from issues' acceptance criteria, their items and history."""
    db.executescript(
        """
        CREATE TABLE checklists (
            id INTEGER PRIMARY KEY,
            repo TEXT NOT NULL,
            issue_number INTEGER NOT NULL,
            installation_id INTEGER,
            title TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'open',
            body_hash TEXT,
            comment_id INTEGER,
            next_number INTEGER NOT NULL DEFAULT 1,
            truncated INTEGER NOT NULL DEFAULT 0,
            total_found INTEGER NOT NULL DEFAULT 0,
            retired_at REAL,                   -- issue deleted or transferred
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (repo, issue_number)
        );
        CREATE TABLE checklist_items (
            checklist_id INTEGER NOT NULL REFERENCES checklists(id) ON DELETE CASCADE,
            tid TEXT NOT NULL,
            text TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            position INTEGER,                  -- NULL once retired
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'passed', 'failed', 'skipped', 'missing')),
            retired_at REAL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (checklist_id, tid)
        );
        CREATE TABLE checklist_history (
            id INTEGER PRIMARY KEY,
            checklist_id INTEGER NOT NULL REFERENCES checklists(id) ON DELETE CASCADE,
            at REAL NOT NULL,
            change TEXT NOT NULL               -- JSON: added/removed/reworded ids, status changes
        );
        """
    )


@MIGRATIONS()
def m004_pulls_and_runs(db: sqlite_utils.Database) -> None:
    """Pull requests, their manifests per head SHA, CI runs and code-health scores."""
    db.executescript(
        """
        CREATE TABLE pull_requests (
            repo TEXT NOT NULL,
            number INTEGER NOT NULL,
            installation_id INTEGER,
            title TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'open',
            merged INTEGER NOT NULL DEFAULT 0,
            head_sha TEXT,
            head_ref TEXT,
            base_ref TEXT,
            comment_id INTEGER,
            linked TEXT NOT NULL DEFAULT '[]', -- JSON list of {repo, number, source}
            flagged_by TEXT,
            flagged_at REAL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (repo, number)
        );
        CREATE TABLE manifests (
            repo TEXT NOT NULL,
            pr_number INTEGER NOT NULL,
            head_sha TEXT NOT NULL,
            manifest TEXT NOT NULL,            -- JSON
            check_run_id INTEGER,
            verdict TEXT,                      -- JSON, once CI results arrived
            conclusion TEXT,
            run_id INTEGER,
            run_attempt INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (repo, pr_number, head_sha)
        );
        CREATE TABLE ci_runs (
            repo TEXT NOT NULL,
            run_id INTEGER NOT NULL,
            run_attempt INTEGER NOT NULL,
            head_sha TEXT NOT NULL,
            head_branch TEXT,
            conclusion TEXT,
            results TEXT,                      -- JSON by TID
            report_error TEXT,
            health TEXT,                       -- JSON
            processed_at REAL NOT NULL,
            PRIMARY KEY (repo, run_id)
        );
        CREATE TABLE health_scores (
            id INTEGER PRIMARY KEY,
            repo TEXT NOT NULL,
            head_sha TEXT NOT NULL,
            branch TEXT,
            score INTEGER NOT NULL,
            counts TEXT NOT NULL,              -- JSON per severity
            at REAL NOT NULL
        );
        CREATE INDEX health_scores_repo ON health_scores(repo, branch, at);
        """
    )


@MIGRATIONS()
def m005_users(db: sqlite_utils.Database) -> None:
    """Dashboard users, notifications, the audit log and App credentials from the setup flow."""
    db.executescript(
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,            -- GitHub user id
            login TEXT NOT NULL,
            name TEXT,
            email TEXT,
            avatar_url TEXT,
            token_enc BLOB,                    -- encrypted at rest
            refresh_enc BLOB,
            token_expires_at REAL,
            refresh_expires_at REAL,
            session_version INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            repo TEXT,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            url TEXT,
            data TEXT,                         -- JSON
            created_at REAL NOT NULL,
            read_at REAL
        );
        CREATE INDEX notifications_user ON notifications(user_id, read_at, id);
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            repo TEXT,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            details TEXT,                      -- JSON
            at REAL NOT NULL
        );
        CREATE INDEX audit_repo ON audit_log(repo, id);
        CREATE TABLE credentials (
            name TEXT PRIMARY KEY,             -- e.g. app_id, private_key (values encrypted when secret)
            value BLOB NOT NULL,
            secret INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        );
        """
    )


@MIGRATIONS()
def m006_user_repositories(db: sqlite_utils.Database) -> None:
    """Which repositories each dashboard user can reach through the App, as last read from GitHub."""
    db.executescript(
        """
        CREATE TABLE user_repositories (
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            repo TEXT NOT NULL,                -- owner/name
            installation_id INTEGER NOT NULL,
            permission TEXT NOT NULL,          -- admin | maintain | push | triage | pull
            refreshed_at REAL NOT NULL,
            PRIMARY KEY (user_id, repo)
        );
        CREATE INDEX user_repositories_repo ON user_repositories(repo);
        """
    )


@MIGRATIONS()
def m007_pr_links_and_nocase_indexes(db: sqlite_utils.Database) -> None:
    """An index of which pull requests link which issues; NOCASE indexes for repo names compared that way."""
    db.executescript(
        """
        CREATE TABLE pr_links (
            issue_repo TEXT NOT NULL COLLATE NOCASE,
            issue_number INTEGER NOT NULL,
            pr_repo TEXT NOT NULL,
            pr_number INTEGER NOT NULL,
            PRIMARY KEY (issue_repo, issue_number, pr_repo, pr_number)
        );
        CREATE INDEX pr_links_pr ON pr_links(pr_repo, pr_number);
        INSERT OR IGNORE INTO pr_links (issue_repo, issue_number, pr_repo, pr_number)
            SELECT json_extract(j.value, '$.repo'), json_extract(j.value, '$.number'), p.repo, p.number
            FROM pull_requests p, json_each(p.linked) j
            WHERE json_valid(p.linked) AND json_type(j.value, '$.number') = 'integer'
              AND json_type(j.value, '$.repo') = 'text';
        CREATE INDEX audit_repo_nocase ON audit_log(repo COLLATE NOCASE, id);
        CREATE INDEX user_repositories_repo_nocase ON user_repositories(repo COLLATE NOCASE);
        """
    )


@MIGRATIONS()
def m008_active_jobs_index(db: sqlite_utils.Database) -> None:
    """An index of unfinished jobs only, by key: claims seek from key to key instead of scanning the backlog.

    It replaces jobs_ordering(ordering_key, status, id), which also held every finished job and moved an entry at
    each status change; this one is written when a job is queued and when it ends, not when it starts.
    """
    db.executescript(
        """
        CREATE INDEX jobs_active ON jobs(ordering_key, id) WHERE status IN ('queued', 'running');
        DROP INDEX IF EXISTS jobs_ordering;
        """
    )


@MIGRATIONS()
def m009_access_filter_indexes(db: sqlite_utils.Database) -> None:
    """Indexes for the per-request access filters: the few removed repositories (a partial index), a repository's
    live row by name whatever its case, and a user's repositories by name whatever its case (notifications)."""
    db.executescript(
        """
        CREATE INDEX repositories_removed ON repositories(installation_id) WHERE removed_at IS NOT NULL;
        CREATE INDEX repositories_name_nocase ON repositories(full_name COLLATE NOCASE, installation_id);
        CREATE INDEX user_repositories_user_repo_nocase ON user_repositories(user_id, repo COLLATE NOCASE);
        """
    )


@MIGRATIONS()
def m010_run_start_times_and_ci_presence(db: sqlite_utils.Database) -> None:
    """When each stored run attempt started, so a commit's latest result is the attempt that ran last (a re-run of
    an older run included), not the highest run id; and whether a head's repository had any Actions workflow.

    Rows stored before have no start time (NULL) and keep the old order, by run id, among themselves.
    """
    db.executescript(
        """
        ALTER TABLE ci_runs ADD COLUMN run_started_at REAL;      -- the attempt's run_started_at, Unix time
        ALTER TABLE manifests ADD COLUMN run_started_at REAL;    -- that of the run whose verdict is stored
        -- 'none': no Actions workflow when the head's check was first published (concluded neutral);
        -- 'some' or 'unknown' (not readable): left in progress for CI; NULL: not asked yet
        ALTER TABLE manifests ADD COLUMN ci_workflows TEXT;
        """
    )


@MIGRATIONS()
def m011_runs_by_commit_index(db: sqlite_utils.Database) -> None:
    """A commit's stored runs by (repo, head_sha): every CI result, revalidation and pull request page looks them
    up so, and without it each lookup read all of the repository's runs (27 ms at 50,000 runs, 0.05 ms with it)."""
    db.executescript("CREATE INDEX ci_runs_head ON ci_runs(repo, head_sha);")


@MIGRATIONS()
def m012_redelivery_sweep_state(db: sqlite_utils.Database) -> None:
    """How many times each delivery's redelivery was asked for, and where the sweep's pass over GitHub's 3-day
    delivery log goes on, so successive sweeps of a busy App cover the whole log (rows of an interim format that
    kept both under '#' keys in redeliveries are dropped: the sweep then starts a new pass)."""
    db.executescript(
        """
        ALTER TABLE redeliveries ADD COLUMN times_asked INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE redelivery_pass (
            id INTEGER PRIMARY KEY CHECK (id = 1),   -- one pass at a time
            cursor TEXT NOT NULL,                    -- GitHub's cursor of the page read next
            top INTEGER NOT NULL,                    -- delivered_at of the newest attempt read before it
            saved_at REAL NOT NULL
        );
        DELETE FROM redeliveries WHERE guid GLOB '*#*';
        """
    )


@MIGRATIONS()
def m013_redelivery_retries(db: sqlite_utils.Database) -> None:
    """Redelivery requests that failed on the way (a 5xx, a timeout, a dropped connection), kept so the next sweep
    asks again at once instead of when a later pass over GitHub's log reaches the delivery's page (hours later on
    a busy App, or never within its 3 days). A row goes when the request goes through or is given up."""
    db.executescript(
        """
        CREATE TABLE redelivery_retries (
            guid TEXT PRIMARY KEY,
            github_delivery_id INTEGER NOT NULL,     -- the attempt to ask GitHub to send again
            delivered_at REAL NOT NULL,              -- that attempt's time: GitHub keeps it 3 days
            redeliveries INTEGER NOT NULL,           -- how many redeliveries of the GUID were asked before
            tries INTEGER NOT NULL,                  -- failed requests so far
            first_failed_at REAL NOT NULL
        );
        """
    )


@MIGRATIONS()
def m014_webhook_app(db: sqlite_utils.Database) -> None:
    """The App id GitHub put on this server's signed webhooks, last seen: the proof that the App credentials are
    its installations' App (or are not) outlives a restart, so a token mint's 404 after a restart with no
    delivery yet is judged as before it (RELIABILITY GH-11)."""
    db.executescript(
        """
        CREATE TABLE webhook_app (
            id INTEGER PRIMARY KEY CHECK (id = 1),   -- one row: the latest App id seen
            app_id INTEGER NOT NULL,
            seen_at REAL NOT NULL
        );
        """
    )


@MIGRATIONS()
def m015_notification_keys(db: sqlite_utils.Database) -> None:
    """Notifications once per fact across reruns: a job killed after it notified but before it was done ran again
    and notified again, and one killed after storing a change but before notifying found nothing changed and told
    nobody. A notification may carry the key of the fact it tells (written once per user, however often it is
    sent), and a fact decided with the state it is about waits in notification_outbox, written in the same
    transaction, until it is sent. Rows written before (no key) and unkeyed notifications are as before: NULLs
    are distinct in a UNIQUE index."""
    db.executescript(
        """
        ALTER TABLE notifications ADD COLUMN dedupe_key TEXT;
        CREATE UNIQUE INDEX notifications_user_key ON notifications(user_id, dedupe_key);
        CREATE TABLE notification_outbox (
            key TEXT PRIMARY KEY,              -- the notification's dedupe_key
            subject TEXT NOT NULL,             -- what it is about (owner/name#number): the job that sends it
            repo TEXT NOT NULL,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            url TEXT,
            data TEXT,                         -- JSON
            created_at REAL NOT NULL
        );
        CREATE INDEX notification_outbox_subject ON notification_outbox(subject);
        """
    )


@MIGRATIONS()
def m016_followups_owed(db: sqlite_utils.Database) -> None:
    """Follow-up jobs owed by a stored change: a job killed after storing a changed checklist (or a manifest whose
    links changed) but before queueing the revalidation of the pull requests it affects lost that revalidation (the
    rerun found nothing changed). The debt is written in the change's transaction and cleared once queued."""
    db.executescript(
        """
        CREATE TABLE followups_owed (
            subject TEXT NOT NULL,             -- what it is about (owner/name#number): the job that queues it
            kind TEXT NOT NULL,                -- which follow-up
            created_at REAL NOT NULL,
            PRIMARY KEY (subject, kind)
        );
        """
    )


MIGRATIONS_TABLE = "_sqlite_migrations"  # where sqlite-utils records the migrations applied


class NewerDatabase(Exception):
    """The database holds migrations this version does not know: a newer QuantumReview wrote it."""


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations recorded in the database at `conn` (none if it has no migrations table)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)).fetchone() \
            is None:
        return []
    rows = conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ?",  # noqa: S608 - constant
                        (MIGRATIONS.name,)).fetchall()
    return [str(row[0]) for row in rows]


def unknown_migrations(applied: list[str]) -> list[str]:
    """Those of `applied` that this version does not have."""
    # Why pending() on an empty database: it lists every migration this version has, by name.
    known = {migration.name for migration in MIGRATIONS.pending(sqlite_utils.Database(memory=True))}
    return [name for name in applied if name not in known]


def migrate(path: Path | str) -> list[str]:
    """Apply pending migrations to the file at `path`; return the names applied. NewerDatabase if a newer version
    wrote it: its schema may hold what this version would misread or overwrite, so nothing is applied or opened."""
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if unknown := unknown_migrations(applied_migrations(conn)):
            raise NewerDatabase(f"it was written by a newer QuantumReview (migrations this version does not know: "
                                f"{', '.join(unknown)}): run that version, or restore a backup made by this one")
        db = sqlite_utils.Database(conn)
        pending = [m.name for m in MIGRATIONS.pending(db)]
        MIGRATIONS.apply(db)
        return pending
    finally:
        conn.close()
