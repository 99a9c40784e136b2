"""Storage: PRAGMAs, transactions that never interleave, delivery dedupe and the job queue's SQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from quantumreview.intake import IntakeWriter, Prepared, prepare_one_by_one, split_new
from storage import jobs as store
from storage.db import WAL_BACKSTOP_PAGES, Database, DatabaseBusy, placeholders
from storage.deliveries import DeliveryRecord, get_delivery, insert_deliveries_now, known_ids_now


def record(delivery_id: str, body: bytes = b"{}") -> DeliveryRecord:
    return DeliveryRecord(delivery_id, "issues", "opened", 1, "o/r", 1.0, body)


def job(delivery_id: str | None, key: str, run_after: float = 0.0, handler: str = "m:f") -> store.NewJob:
    return store.NewJob(handler, key, run_after, 0.0, delivery_id=delivery_id, installation_id=1)


async def test_connection_pragmas_are_durable_and_patient(db: Database) -> None:
    values = await db.pragmas(["journal_mode", "synchronous", "busy_timeout", "foreign_keys", "wal_autocheckpoint"])
    assert values == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 5000, "foreign_keys": 1,
                      "wal_autocheckpoint": WAL_BACKSTOP_PAGES}


async def test_a_checkpoint_does_not_cut_the_wal_file_back_before_the_next_burst(db: Database) -> None:
    """Cutting the WAL file back at the first commit after a checkpoint took that commit 45 ms (the next burst's
    first deliveries waited for it): a WAL below the backstop's size is overwritten in place instead."""
    await db.execute("CREATE TABLE t (v BLOB)")
    chunk = os.urandom(4 * 1024 * 1024)
    for _ in range(18):  # 72 MiB: more than the 64 MiB the file used to be cut back to
        await db.run(lambda conn: conn.execute("INSERT INTO t VALUES (?)", (chunk,)))
    wal = db.path.with_name(db.path.name + "-wal")
    grown = wal.stat().st_size
    busy, frames, copied = await db.checkpoint()
    assert (busy, frames) == (0, copied) and grown > 70 * 1024 * 1024
    await db.execute("INSERT INTO t VALUES (x'00')")  # restarts the WAL from its start
    assert wal.stat().st_size == grown
    assert (await db.pragmas(["journal_size_limit"]))["journal_size_limit"] == WAL_BACKSTOP_PAGES * 4096


async def test_concurrent_transactions_never_tear_each_other(db: Database) -> None:
    await db.execute("CREATE TABLE t (v TEXT)")
    a_inside = asyncio.Event()

    async def a() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES ('a1')")
            a_inside.set()
            await asyncio.sleep(0.05)  # as if awaiting GitHub mid-transaction
            await conn.execute("INSERT INTO t VALUES ('a2')")

    async def b() -> None:
        await a_inside.wait()
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES ('b1')")
            raise RuntimeError("b fails")

    results = await asyncio.gather(a(), b(), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], RuntimeError)
    assert [row[0] for row in await db.fetchall("SELECT v FROM t ORDER BY v")] == ["a1", "a2"]


async def test_a_job_without_its_delivery_is_refused(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await db.run(lambda conn: store.insert_jobs_now(conn, [job("no-such-delivery", "k")]))
    assert await store.list_jobs(db) == []


async def test_delivery_round_trips_raw_bytes_and_known_ids_finds_it(db: Database) -> None:
    raw = '{"t":"é \\u00e9"}'.encode()
    await db.run(lambda conn: insert_deliveries_now(conn, [record("d1", raw)]))
    assert await db.run(lambda conn: known_ids_now(conn, ["d1", "d2"])) == {"d1"}
    stored = await get_delivery(db, "d1")
    assert stored is not None and stored.body == raw and stored.repository == "o/r"


Prepare = Callable[[sqlite3.Connection], Prepared]


def prepare_each(conn: sqlite3.Connection, items: list[Prepare]) -> list[Prepared | Exception]:
    """The writer's PrepareBatch here: each submitted item is a function that builds its own rows."""
    return prepare_one_by_one(conn, items, lambda conn, prepare: prepare(conn))


@asynccontextmanager
async def writing(db: Database, **options: Any) -> AsyncIterator[IntakeWriter[Prepare]]:
    """A started intake writer over `prepare_each`; stopped on exit."""
    writer = IntakeWriter(db, prepare_each, **options)
    writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


async def around_two_good_ones(writer: IntakeWriter[Prepare], middle: Prepare) -> list[Any]:
    """Submit `middle` between two good deliveries, all queued before the writer runs (so one batch)."""
    return await asyncio.gather(stored(writer, record("ok1"), [job("ok1", "k")]), writer.submit(middle),
                                stored(writer, record("ok2"), []), return_exceptions=True)


async def stored(writer: IntakeWriter[Prepare], delivery: DeliveryRecord, jobs: list[store.NewJob]) -> bool:
    """Submit rows already built; True if new."""
    new, _ = await writer.submit(lambda conn: (delivery, jobs))
    return new


def test_split_new_marks_stored_and_repeated_ids_as_duplicates() -> None:
    ready = [(n, record(i), []) for n, i in enumerate(("a", "b", "a", "c"))]
    assert split_new(ready, {"c"}) == {0, 1}  # the second "a" repeats the first, "c" is stored


async def test_a_delivery_refused_while_preparing_leaves_its_batch_stored(db: Database) -> None:
    """One bad body in a batch is refused alone; the others commit with it in the same transaction."""
    def refuse(conn: sqlite3.Connection) -> Prepared:
        raise ValueError("not for storing")

    async with writing(db) as writer:
        results = await around_two_good_ones(writer, refuse)
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], ValueError)
    assert writer.batches == 1
    assert sorted(row["id"] for row in await db.fetchall("SELECT id FROM deliveries")) == ["ok1", "ok2"]


async def test_a_failure_that_ended_the_transaction_fails_the_whole_batch_and_writes_nothing(db: Database) -> None:
    """SQLite rolls back by itself on some errors (disk full, I/O): later inserts must not autocommit alone."""
    def lose_the_transaction(conn: sqlite3.Connection) -> Prepared:
        conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    async with writing(db) as writer:
        results = await around_two_good_ones(writer, lose_the_transaction)
    assert all(isinstance(result, DatabaseBusy) for result in results)
    assert await db.fetchvalue("SELECT count(*) FROM deliveries") == 0
    assert await db.fetchvalue("SELECT count(*) FROM jobs") == 0


async def test_a_delivery_not_stored_by_its_deadline_is_refused_and_one_still_queued_is_never_written(
    db: Database,
) -> None:
    """A hung disk: the delivery being written and the one queued behind it get DatabaseBusy at their deadline."""
    release = threading.Event()

    def hang(conn: sqlite3.Connection) -> Prepared:
        release.wait(5)  # on the writer's thread, like an fsync that does not return
        return record("hung"), []

    async with writing(db, store_deadline=0.3, tick=0.05) as writer:
        try:
            first = asyncio.ensure_future(writer.submit(hang))
            await asyncio.sleep(0.05)  # the writer has taken `hang` and is stuck in it
            began = time.monotonic()
            second = asyncio.ensure_future(stored(writer, record("queued"), []))
            results = await asyncio.gather(first, second, return_exceptions=True)
            waited = time.monotonic() - began
        finally:
            release.set()
        assert await stored(writer, record("after"), []) is True  # the writer carries on
    assert all(isinstance(result, DatabaseBusy) for result in results)
    assert waited < 0.3 + 0.05 + 0.2
    # The stuck batch commits once the disk answers (GitHub's redelivery is then a duplicate); the queued
    # delivery was answered 503 before its batch began, so it is never written.
    assert sorted(row["id"] for row in await db.fetchall("SELECT id FROM deliveries")) == ["after", "hung"]


async def test_a_cancelled_submission_is_dropped_from_its_batch(db: Database) -> None:
    async with writing(db) as writer:
        cancelled = asyncio.ensure_future(stored(writer, record("gone"), []))
        kept = asyncio.ensure_future(stored(writer, record("kept"), []))
        await asyncio.sleep(0)  # both are queued; the writer has not run yet
        cancelled.cancel()
        assert await kept is True
    assert cancelled.cancelled()
    assert [row["id"] for row in await db.fetchall("SELECT id FROM deliveries")] == ["kept"]


async def test_a_rider_runs_in_the_next_batch_after_its_inserts_and_fails_alone(db: Database) -> None:
    """The job runner's settle-and-claim rides on an intake batch: it sees the batch's rows, and its own
    failure rolls back only its own changes."""
    await db.execute("CREATE TABLE marks (v TEXT)")

    def count_deliveries(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO marks VALUES ('counted')")
        return int(conn.execute("SELECT count(*) FROM deliveries").fetchone()[0])

    def fail_after_writing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO marks VALUES ('rolled back')")
        raise sqlite3.IntegrityError("the rider's own failure")

    async with writing(db) as writer:
        # Queued together before the writer runs: one transaction for the delivery and both riders.
        results = await asyncio.gather(stored(writer, record("d1"), [job("d1", "k")]),
                                       writer.ride(count_deliveries), writer.ride(fail_after_writing),
                                       return_exceptions=True)
        alone = await writer.ride(count_deliveries)  # the intake is idle: the rider commits by itself
    assert results[0] is True and results[1] == 1 and isinstance(results[2], sqlite3.IntegrityError)
    assert writer.batches == 1 and alone == 1
    assert [row["v"] for row in await db.fetchall("SELECT v FROM marks")] == ["counted", "counted"]
    assert await db.fetchvalue("SELECT count(*) FROM jobs") == 1


async def test_a_batch_refused_by_a_full_disk_logs_why(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    # The operator sees 503s; the log line must say the disk is full, not only "OperationalError".
    pages = await db.run(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    await db.run(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
    async with writing(db) as writer:
        with pytest.raises(DatabaseBusy):
            await stored(writer, record("big", b"x" * 200_000), [])
    assert "intake batch of 1 not stored: OperationalError: database or disk is full" in caplog.text


async def test_riders_waiting_when_the_writer_stops_fail_busy(db: Database) -> None:
    writer = IntakeWriter(db, prepare_each)
    writer.start()
    ride = asyncio.ensure_future(writer.ride(lambda conn: 1))
    await writer.stop()  # before the writer task ever ran the ride
    with pytest.raises(DatabaseBusy):
        await ride
    with pytest.raises(DatabaseBusy):
        await writer.ride(lambda conn: 1)


async def seed(db: Database, jobs: list[store.NewJob]) -> None:
    def insert(conn: sqlite3.Connection) -> None:
        insert_deliveries_now(conn, [record(d) for d in sorted({j.delivery_id for j in jobs if j.delivery_id})])
        store.insert_jobs_now(conn, jobs)

    await db.run(insert)


async def claim(db: Database, now: float, limit: int) -> list[store.Job]:
    """Claim due jobs the way the runner does (a full scan, nothing to settle)."""
    return (await db.run(lambda conn: store.settle_and_claim(conn, [], now, limit))).jobs


async def test_claim_takes_the_first_due_job_of_each_key_only(db: Database) -> None:
    now = time.time()
    await seed(db, [job("d1", "k1"), job("d2", "k1"), job("d3", "k2"), job("d4", "k3", run_after=now + 60)])
    claimed = await claim(db, now, 10)
    assert [(j.id, j.attempts) for j in claimed] == [(1, 1), (3, 1)]
    assert await claim(db, now, 10) == []  # job 2 waits for job 1, still running


@pytest.mark.parametrize("probe_limit", [store.PROBE_LIMIT, 0], ids=["probe", "heads"])
@pytest.mark.parametrize("seed_value", range(5))
async def test_full_claim_takes_exactly_each_keys_first_unfinished_job_when_due(
        db: Database, seed_value: int, probe_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the rule itself, on random backlogs (keys with finished, running, retrying and queued jobs), by
    both ways of claiming: probing each due job, and walking the heads of the keys."""
    import random

    monkeypatch.setattr(store, "PROBE_LIMIT", probe_limit)

    rng, now = random.Random(seed_value), time.time()
    keys = [f"k{n}" for n in range(rng.randint(1, 12))]
    rows = [(rng.choice(keys), rng.choice(["queued"] * 4 + ["running", "done", "dead"]),
             now + rng.choice([-5, -5, -5, 60])) for _ in range(rng.randint(1, 300))]
    await seed(db, [job(None, key, run_after=run_after) for key, _, run_after in rows])
    async with db.transaction() as conn:
        for status in ("running", "done", "dead"):
            ids = [n for n, (_, s, _) in enumerate(rows, 1) if s == status]
            await conn.execute(f"UPDATE jobs SET status = ? WHERE id IN ({placeholders(ids)})",  # noqa: S608
                               (status, *ids))
    expected = []
    for key in keys:
        unfinished = [n for n, (k, s, _) in enumerate(rows, 1) if k == key and s in ("queued", "running")]
        if unfinished and rows[unfinished[0] - 1][1] == "queued" and rows[unfinished[0] - 1][2] <= now:
            expected.append(unfinished[0])
    limit = rng.randint(1, 8)
    assert [j.id for j in await claim(db, now, limit)] == sorted(expected)[:limit]


async def test_claims_seek_the_active_jobs_index_instead_of_scanning(db: Database) -> None:
    """Claims read only unfinished jobs (jobs_active) and the due queue (jobs_due), never the whole table."""
    plans = []
    narrow = f"{store.NEW_SINCE} UNION ALL {store.HEAD_OF_KEY}"
    for sql, params in ((store.HEADS_CLAIM_SQL, (0, 0, 8)), (store.PROBE_CLAIM_SQL, (0, 0, 0, 8)),
                        (store.NARROW_CLAIM_SQL.format(candidates=narrow), (0, 0, "k", 0, 8)),
                        (store.HEADS_SMALL_CLAIM_SQL, (0, 0, 1, 8)), (store.PROBE_SMALL_CLAIM_SQL, (0, 0, 0, 1, 8)),
                        (store.NARROW_SMALL_CLAIM_SQL.format(candidates=narrow), (0, 0, "k", 0, 1, 8))):
        rows = await db.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
        plans.append([row["detail"] for row in rows])
    for plan in plans:
        assert any("jobs_active" in step for step in plan), plan
        assert [step for step in plan if step.startswith("SCAN") and "jobs_active" not in step] == [], plan


async def test_claim_respects_the_limit(db: Database) -> None:
    await seed(db, [job(f"d{n}", f"k{n}") for n in range(5)])
    assert [j.id for j in await claim(db, time.time(), 2)] == [1, 2]


async def test_a_retrying_job_holds_back_later_jobs_of_its_key(db: Database) -> None:
    now = time.time()
    await seed(db, [job("d1", "k"), job("d2", "k")])
    [first] = await claim(db, now, 10)
    async with db.transaction() as conn:
        await store.schedule_retry(conn, first.id, now + 60, "E: x")
    assert await claim(db, now, 10) == []


async def test_recovery_requeues_running_jobs_and_buries_exhausted_ones(db: Database) -> None:
    now = time.time()
    await seed(db, [job("d1", "k1"), job("d2", "k2")])
    await claim(db, now, 10)
    async with db.transaction() as conn:
        await conn.execute("UPDATE jobs SET attempts = 3 WHERE id = 2")
        assert await store.recover_interrupted(conn, now, 3) == (1, 1)
    assert [(j.status, j.attempts) for j in await store.list_jobs(db)] == [("queued", 1), ("dead", 3)]


async def test_defer_does_not_count_the_interrupted_attempt(db: Database) -> None:
    now = time.time()
    await seed(db, [job("d1", "k1")])
    await claim(db, now, 10)
    async with db.transaction() as conn:
        await store.defer(conn, [1], now + 5, "shutdown")
    [state] = await store.list_jobs(db)
    assert (state.status, state.attempts, state.run_after) == ("queued", 0, now + 5)


async def test_status_counts_reports_queued_running_and_dead(db: Database) -> None:
    await seed(db, [job("d1", "k1"), job("d2", "k2"), job("d3", "k3")])
    await claim(db, time.time(), 1)
    async with db.transaction() as conn:
        await store.mark_final(conn, 2, "dead", time.time(), "E: x")
    assert await store.status_counts(db) == {"queued": 1, "running": 1, "dead": 1}


async def test_relaxed_transaction_commits_and_leaves_the_writer_on_full_sync(db: Database) -> None:
    await seed(db, [job("d1", "k1")])

    def work(conn: sqlite3.Connection) -> int:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL inside
        return store.settle_and_claim(conn, [], time.time(), 10).jobs[0].id

    assert await db.run(work, relaxed=True) == 1
    assert (await db.pragmas(["synchronous"]))["synchronous"] == 2
    assert [j.status for j in await store.list_jobs(db)] == ["running"]


async def test_failing_writer_work_rolls_back_and_restores_full_sync(db: Database) -> None:
    await seed(db, [job("d1", "k1")])

    def work(conn: sqlite3.Connection) -> None:
        store.settle_and_claim(conn, [], time.time(), 10)
        raise RuntimeError("after the claim")

    with pytest.raises(RuntimeError):
        await db.run(work, relaxed=True)
    assert [j.status for j in await store.list_jobs(db)] == ["queued"]
    assert (await db.pragmas(["synchronous"]))["synchronous"] == 2


async def test_settle_marks_done_and_frees_the_next_job_of_the_key_in_one_commit(db: Database) -> None:
    await seed(db, [job("d1", "k"), job("d2", "k")])
    first = await db.run(lambda conn: store.settle_and_claim(conn, [], time.time(), 10))
    assert [j.id for j in first.jobs] == [1] and first.last_id == 2
    second = await db.run(lambda conn: store.settle_and_claim(conn, [1], time.time(), 10, after_id=2, keys=["k"]))
    assert [j.id for j in second.jobs] == [2]
    assert [j.status for j in await store.list_jobs(db)] == ["done", "running"]


async def test_narrow_claim_looks_only_past_the_last_id_and_at_freed_keys(db: Database) -> None:
    await seed(db, [job("d1", "old"), job("d2", "freed"), job("d3", "new")])

    def narrow(conn: sqlite3.Connection) -> store.Claim:
        return store.settle_and_claim(conn, [], time.time(), 10, after_id=2, keys=["freed"])

    assert [j.id for j in (await db.run(narrow)).jobs] == [2, 3]
    full = await db.run(lambda conn: store.settle_and_claim(conn, [], time.time(), 10))
    assert [j.id for j in full.jobs] == [1]  # the periodic full scan still finds it


async def test_claim_reports_deleted_and_suspended_installations(db: Database) -> None:
    await seed(db, [job("d1", "k1")])
    await db.execute("INSERT INTO installations (id, account_login, suspended_at, created_at, updated_at) "
                     "VALUES (1, 'octo', 5.0, 0, 0)")
    claim = await db.run(lambda conn: store.settle_and_claim(conn, [], time.time(), 10))
    assert claim.blocked == {1: "suspended"}


async def test_a_claim_hands_each_job_its_deliverys_event_and_body(db: Database) -> None:
    def insert(conn: sqlite3.Connection) -> None:
        insert_deliveries_now(conn, [record("d1", b'{"n": 1}'), record("d2", b'{"n": 2}')])
        store.insert_jobs_now(conn, [job("d1", "a"), job("d1", "b", handler="m:g"), job("d2", "c"),
                                     job(None, "d")])

    await db.run(insert)
    claim = await db.run(lambda conn: store.settle_and_claim(conn, [], time.time(), 10))
    assert len(claim.jobs) == 4
    assert claim.deliveries == {"d1": ("issues", b'{"n": 1}'), "d2": ("issues", b'{"n": 2}')}


async def test_intake_wakes_the_runner_only_when_it_stored_jobs(db: Database) -> None:
    wakes: list[int] = []
    async with writing(db, on_commit=lambda: wakes.append(1)) as writer:
        assert await stored(writer, record("d1"), []) is True
        assert wakes == []
        assert await stored(writer, record("d2"), [job("d2", "k")]) is True
        assert await stored(writer, record("d2"), [job("d2", "k")]) is False
        assert wakes == [1]
    assert [j.delivery_id for j in await store.list_jobs(db)] == ["d2"]


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 4, 6])
async def test_a_write_cancelled_anywhere_in_its_transaction_leaves_the_writer_usable(db: Database,
                                                                                        yields: int) -> None:
    """Cancelled while BEGIN (or COMMIT) was on the writer's thread, the transaction used to stay open: every
    later write failed ("cannot start a transaction within a transaction") until a restart."""

    async def write(action: str) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO audit_log (repo, actor, action, at) VALUES ('o/r', 'me', ?, 0)", (action,))

    for n in range(30):
        task = asyncio.create_task(write(f"cancelled-{n}"))
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The next writes, through both paths, start their own transaction (they raised DatabaseBusy).
        await db.run(lambda conn: conn.execute("SELECT 1").fetchone(), relaxed=True)
        await write(f"after-{n}")
    # Why its own prefix: a write cancelled too late commits ('a10' matched the old pattern 'a10%' too).
    assert await db.fetchvalue("SELECT count(*) FROM audit_log WHERE action LIKE 'after-%'") == 30


async def test_close_closes_the_writer_even_when_closing_the_reader_fails(tmp_path: Any,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A connection left open keeps its worker thread, and the process then never exits (a serve stopped by
    # SIGTERM hung at interpreter exit).
    db = await Database.open(tmp_path / "x.db")
    writer, reader = db._writer, db._reader
    real_close = reader.close

    async def failing_close() -> None:
        await real_close()
        raise RuntimeError("Event loop is closed")

    monkeypatch.setattr(reader, "close", failing_close)
    with pytest.raises(RuntimeError):
        await db.close()
    writer._thread.join(timeout=5)  # its thread ends once closed
    assert not writer._thread.is_alive()
