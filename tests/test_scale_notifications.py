"""Scale probe: a user's notification listing looks up only their own repositories' rows, however many repositories
the App was ever removed from elsewhere (removed rows are kept for good)."""

from __future__ import annotations

import time

from storage import notifications
from storage.db import Database
from tests.test_scale_gone import seed

USER = 7


async def test_listing_hides_removed_repositories_by_lookup_not_by_reading_every_removed_row(
        handler_db: Database) -> None:
    await seed(handler_db)  # 202 installations, 50 removed repositories each; 3 and 4 deleted
    now = time.time()
    # The user reaches: org1/r1 (removed), org1/R0 (removed as org1/r0, live again as org1/R0), org1/live,
    # org3/r1 (its installation deleted).
    reached = [("org1/r1", 1), ("org1/r0", 1), ("org1/live", 1), ("org3/r1", 3)]
    async with handler_db.transaction() as conn:
        await conn.execute("INSERT INTO users (id, login, created_at, updated_at) VALUES (?, 'u', 0, 0)", (USER,))
        await conn.executemany("INSERT INTO user_repositories (user_id, repo, installation_id, permission, "
                               "refreshed_at) VALUES (?, ?, ?, 'push', 0)", [(USER, r, i) for r, i in reached])
        await conn.executemany("INSERT INTO notifications (user_id, repo, kind, title, created_at) "
                               "VALUES (?, ?, 'k', ?, ?)", [(USER, r, r, now) for r, _ in reached])
    found, total = await notifications.list_notifications(handler_db, USER, unread_only=False, page=1, per_page=10)
    assert sorted(n.repo for n in found) == ["org1/live", "org1/r0"] and total == 2
    plan = await handler_db.fetchall(
        f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM notifications n WHERE {notifications.VISIBLE}",  # noqa: S608
        notifications.visible_params(USER))
    # Why the plan: a scan of the removed rows costs per request what all installations ever removed (10,000 here);
    # the answer above is the same either way.
    steps = [str(row[3]) for row in plan]
    assert not [s for s in steps if s.startswith("SCAN") and s.split()[1] in ("r", "l", "repositories")], steps
