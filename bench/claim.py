"""The job runner's full claim against its backlog: what storage.jobs.settle_and_claim does (probe each due job
when few are due, else read the first unfinished job of every key in one pass over jobs_active) against the
probe-only query it replaced (below, with the index it used), measured in the same run.

Run: .venv/bin/python bench/claim.py
Backlogs: one busy key (every CI completion of an installation shares `installation:ID`), a few keys, as many keys
as jobs, and an outage (everything waiting out a backoff); 100,000 finished jobs sit beside each. Prints the best
of 7 claims (each rolled back) in ms, and the ratio old/new.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage import jobs as store  # noqa: E402
from storage import migrations  # noqa: E402
from storage.jobs import JOB_COLUMNS  # noqa: E402

# The claim before migration m008: for each due queued job, is there an earlier unfinished job of its key?
OLD_CLAIM_SQL = f"""
UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1
WHERE id IN (
    SELECT j.id FROM jobs j
    WHERE j.status = 'queued' AND j.run_after <= ?
      AND NOT EXISTS (
          SELECT 1 FROM jobs e
          WHERE e.ordering_key = j.ordering_key AND e.status IN ('queued', 'running') AND e.id < j.id
      )
    ORDER BY j.id LIMIT ?
)
RETURNING {JOB_COLUMNS}
"""  # noqa: S608 - constant text
FINISHED = 100_000
CASES = (("one busy key", 15_000, 1, 0), ("20 keys", 15_000, 20, 0), ("one job per key", 15_000, 15_000, 0),
         ("one busy key, small", 2_000, 1, 0), ("outage, all backing off", 15_000, 15_000, 600))


def backlog(path: Path, queued: int, keys: int, wait: float) -> sqlite3.Connection:
    """A database with FINISHED done jobs, a running head on every key, and `queued` jobs spread over `keys`."""
    migrations.migrate(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE INDEX jobs_ordering ON jobs(ordering_key, status, id)")  # what the old claim used
    insert = "INSERT INTO jobs (handler, ordering_key, status, run_after, created_at) VALUES ('m:f', ?, ?, ?, 0)"
    later = time.time() + wait if wait else 0.0
    conn.execute("BEGIN")
    conn.executemany(insert, ((f"done{n % 500}", "done", 0.0) for n in range(FINISHED)))
    conn.executemany(insert, ((f"key{n}", "running", 0.0) for n in range(min(keys, 50))))
    conn.executemany(insert, ((f"key{n % keys}", "queued", later) for n in range(queued)))
    conn.execute("COMMIT")
    return conn


def old_claim(conn: sqlite3.Connection, now: float) -> int:
    return len(conn.execute(OLD_CLAIM_SQL, (now, now, 8)).fetchall())


def new_claim(conn: sqlite3.Connection, now: float) -> int:
    """The runner's full claim, nothing to settle."""
    return len(store.settle_and_claim(conn, [], now, 8).jobs)


def best_ms(conn: sqlite3.Connection, claim: Callable[[sqlite3.Connection, float], int]) -> tuple[float, int]:
    best, claimed = float("inf"), 0
    for _ in range(7):
        conn.execute("BEGIN IMMEDIATE")
        began = time.perf_counter()
        claimed = claim(conn, time.time())
        best = min(best, time.perf_counter() - began)
        conn.execute("ROLLBACK")
    return best * 1000, claimed


def main() -> int:
    print(f"SQLite {sqlite3.sqlite_version}; {FINISHED} finished jobs beside each backlog; best of 7 claims of 8")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, queued, keys, wait) in enumerate(CASES):
            conn = backlog(Path(tmp) / f"case{n}.db", queued, keys, wait)
            try:
                old_ms, old_claimed = best_ms(conn, old_claim)
                new_ms, new_claimed = best_ms(conn, new_claim)
            finally:
                conn.close()
            same = "same jobs" if old_claimed == new_claimed else "DIFFERENT"
            failed += old_claimed != new_claimed
            print(f"{name:24s} {queued:6d} queued on {keys:6d} key(s): old {old_ms:8.2f} ms  new {new_ms:8.2f} ms  "
                  f"old/new {old_ms / new_ms:8.1f}x  ({new_claimed} claimed, {same})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
