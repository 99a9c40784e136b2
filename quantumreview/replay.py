"""Operator tools over the job table: replay a stored delivery, summarise the queue."""

from __future__ import annotations

import json
import time
from typing import TextIO

from gidgethub import sansio

from quantumreview.delivery_fields import ordering_key_of
from quantumreview.plugins import load_handlers
from quantumreview.settings import Settings
from storage import deliveries as delivery_store
from storage import jobs as job_store
from storage.db import Database, DatabaseBusy


async def replay(settings: Settings, delivery_id: str, out: TextIO) -> int:
    """Queue the jobs of every handler that matches the stored delivery now; 1 if it is unknown."""
    db = await Database.open(settings.database_path)
    try:
        record = await delivery_store.get_delivery(db, delivery_id)
        if record is None:
            print(f"no stored delivery {delivery_id}", file=out)
            return 1
        try:
            data = json.loads(record.body)
        except (ValueError, RecursionError):
            # Why: the intake stores a body nested deeper than json.loads reads (SQLite allows 2,000 levels),
            # and its jobs fail saying why; replaying it was a RecursionError traceback.
            print(f"cannot replay delivery {delivery_id}: its body is not JSON Python can read "
                  "(nested too deeply)", file=out)
            return 1
        registry = load_handlers(settings.handlers_package)
        names = registry.handlers_for(sansio.Event(data, event=record.event, delivery_id=delivery_id))
        now = time.time()
        key = ordering_key_of(data, f"delivery:{delivery_id}")
        jobs = [job_store.NewJob(handler=name, ordering_key=key, run_after=now, created_at=now,
                                 delivery_id=delivery_id, installation_id=record.installation_id) for name in names]
        try:
            async with db.transaction() as conn:
                # Why check again: retention may have deleted the delivery since it was read, and the jobs'
                # foreign key then failed the insert with an IntegrityError traceback.
                if not await conn.execute_fetchall("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)):
                    print(f"no stored delivery {delivery_id} (deleted just now)", file=out)
                    return 1
                queued, running = await job_store.requeue_delivery(conn, delivery_id, jobs)
        except DatabaseBusy as exc:  # Why: another writer held the database past the busy timeout: a traceback
            print(f"cannot queue the jobs of delivery {delivery_id}: the database is busy ({exc}); try again",
                  file=out)
            return 1
        print(f"queued {len(queued)} job(s) for delivery {delivery_id} ({record.event}"
              f"{'.' + record.action if record.action else ''}): "
              f"{', '.join(queued) or ('no handler matches' if not names else 'none')}", file=out)
        if running:
            print(f"not queued, still running: {', '.join(running)} (replay it again once it has finished)", file=out)
        return 0
    finally:
        await db.close()


async def summarise_jobs(settings: Settings, out: TextIO) -> int:
    """Print counts by status and the most recent dead or failed jobs with their last error."""
    db = await Database.open(settings.database_path)
    try:
        counts = await job_store.status_counts(db)
        print("jobs: " + ", ".join(f"{status} {n}" for status, n in counts.items()), file=out)
        failures = await job_store.failed_jobs(db)
        for job in failures:
            print(f"  #{job.id} {job.status} after {job.attempts} attempt(s) {job.handler}"
                  f" (delivery {job.delivery_id or '-'}): {job.last_error or ''}", file=out)
        return 0
    finally:
        await db.close()
