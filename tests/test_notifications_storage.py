"""Notifications go to every user who manages the repository; each user lists and marks only their own."""

from __future__ import annotations

from storage import audit, notifications, users
from storage.db import Database
from storage.users import StoredTokens, User, UserRepository

T0 = 1_700_000_000.0


async def add_user(db: Database, user_id: int, login: str, repos: list[str]) -> None:
    await users.save_user(db, User(id=user_id, login=login), StoredTokens(token_enc=b"x"), now=T0)
    await users.set_user_repositories(db, user_id, [UserRepository(r, 7, "admin") for r in repos], now=T0)


async def test_one_row_per_user_who_manages_the_repository(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a", "octo/b"])
    await add_user(db, 2, "bob", ["octo/a"])
    await add_user(db, 3, "eve", ["other/c"])
    written = await notifications.notify_repo_managers(db, "octo/a", "verdict", "PR #4 passed",
                                                       url="https://x/pr/4", data={"pr": 4}, now=T0)
    assert written == 2
    for user_id in (1, 2):
        [note], total = await notifications.list_notifications(db, user_id, unread_only=False, page=1,
                                                               per_page=10)
        assert total == 1
        assert (note.repo, note.kind, note.title, note.url, note.data, note.read) == (
            "octo/a", "verdict", "PR #4 passed", "https://x/pr/4", {"pr": 4}, False)
    assert await notifications.list_notifications(db, 3, unread_only=False, page=1, per_page=10) == ([], 0)


async def test_repository_names_match_case_insensitively(db: Database) -> None:
    await add_user(db, 1, "mona", ["Octo/A"])
    assert await notifications.notify_repo_managers(db, "octo/a", "installed", "Installed") == 1


async def test_a_repository_nobody_manages_writes_nothing(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    assert await notifications.notify_repo_managers(db, "octo/zzz", "installed", "Installed") == 0
    assert await notifications.unread_count(db, 1) == 0


async def test_list_pages_newest_first_with_a_total_and_an_unread_filter(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    for n in range(5):
        await notifications.notify_repo_managers(db, "octo/a", "k", f"n{n}", now=T0 + n)
    first, total = await notifications.list_notifications(db, 1, unread_only=False, page=1, per_page=2)
    third, _ = await notifications.list_notifications(db, 1, unread_only=False, page=3, per_page=2)
    assert total == 5 and [n.title for n in first] == ["n4", "n3"] and [n.title for n in third] == ["n0"]
    assert await notifications.mark_read(db, 1, first[0].id, now=T0 + 10)
    unread, unread_total = await notifications.list_notifications(db, 1, unread_only=True, page=1, per_page=10)
    assert unread_total == 4 and first[0].id not in [n.id for n in unread]
    assert await notifications.unread_count(db, 1) == 4


async def test_a_user_cannot_mark_someone_elses_notification_read(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    await add_user(db, 2, "bob", ["other/b"])
    await notifications.notify_repo_managers(db, "octo/a", "k", "for mona")
    [note], _ = await notifications.list_notifications(db, 1, unread_only=False, page=1, per_page=10)
    assert await notifications.mark_read(db, 2, note.id) is False
    assert await notifications.mark_read(db, 2, 999_999) is False
    assert await notifications.unread_count(db, 1) == 1


async def test_a_notification_about_a_repository_no_longer_managed_cannot_be_marked_read(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a", "octo/b"])
    await notifications.notify_repo_managers(db, "octo/b", "k", "about b", now=T0)
    await notifications.notify_repo_managers(db, "octo/a", "k", "about a", now=T0)
    [_about_a, about_b], _ = await notifications.list_notifications(db, 1, unread_only=False, page=1, per_page=10)
    await users.set_user_repositories(db, 1, [UserRepository("octo/a", 7, "admin")], now=T0)  # lost octo/b
    assert await notifications.mark_read(db, 1, about_b.id, now=T0) is False
    assert await notifications.mark_all_read(db, 1, now=T0) == 1
    await users.set_user_repositories(db, 1, [UserRepository(r, 7, "admin") for r in ("octo/a", "octo/b")], now=T0)
    unread, _ = await notifications.list_notifications(db, 1, unread_only=True, page=1, per_page=10)
    assert [n.title for n in unread] == ["about b"]  # untouched while hidden
    assert await notifications.mark_read(db, 1, about_b.id, now=T0)


async def test_marking_read_twice_keeps_the_first_time(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    await notifications.notify_repo_managers(db, "octo/a", "k", "t")
    [note], _ = await notifications.list_notifications(db, 1, unread_only=False, page=1, per_page=10)
    assert await notifications.mark_read(db, 1, note.id, now=T0)
    assert await notifications.mark_read(db, 1, note.id, now=T0 + 99)
    [again], _ = await notifications.list_notifications(db, 1, unread_only=False, page=1, per_page=10)
    assert again.read_at == T0


async def test_mark_all_read_touches_only_the_users_own(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    await add_user(db, 2, "bob", ["octo/a"])
    for n in range(3):
        await notifications.notify_repo_managers(db, "octo/a", "k", f"n{n}")
    assert await notifications.mark_all_read(db, 1) == 3
    assert (await notifications.unread_count(db, 1), await notifications.unread_count(db, 2)) == (0, 3)


async def test_per_page_is_capped_and_bad_pages_read_the_first(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    for n in range(notifications.MAX_PER_PAGE + 5):
        await notifications.notify_repo_managers(db, "octo/a", "k", f"n{n}")
    page, total = await notifications.list_notifications(db, 1, unread_only=False, page=0, per_page=10_000)
    assert len(page) == notifications.MAX_PER_PAGE and total == notifications.MAX_PER_PAGE + 5


async def test_revoked_users_stop_receiving_notifications(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    await add_user(db, 2, "bob", ["octo/a"])
    await users.revoke_user(db, 1)
    assert await notifications.notify_repo_managers(db, "octo/a", "k", "t") == 1
    assert await users.repo_managers(db, "octo/a") == [2]


async def test_audit_entries_are_recorded_and_listed_per_repository(db: Database) -> None:
    first = await audit.record(db, repo="octo/a", actor="mona", action="regenerate", target="issue#3",
                               details={"reason": "edited"}, now=T0)
    await audit.record(db, repo="octo/b", actor="bob", action="flag", target="pr#1", details=None, now=T0 + 1)
    second = await audit.record(db, repo="octo/a", actor="mona", action="revalidate", target="pr#9",
                                details={}, now=T0 + 2)
    entries, total = await audit.list_for_repo(db, "Octo/A", page=1, per_page=10)
    assert total == 2 and [e.id for e in entries] == [second, first]
    assert (entries[1].actor, entries[1].action, entries[1].target, entries[1].details) == (
        "mona", "regenerate", "issue#3", {"reason": "edited"})
    page2, _ = await audit.list_for_repo(db, "octo/a", page=2, per_page=1)
    assert [e.id for e in page2] == [first]


async def test_a_user_reads_only_notifications_about_repositories_they_can_still_see(db: Database) -> None:
    # OA-17: the row was written while mona managed octo/b; reading her access from GitHub has dropped it since.
    await add_user(db, 1, "mona", ["octo/a", "octo/b"])
    await notifications.notify_repo_managers(db, "octo/a", "k", "about a", now=T0)
    await notifications.notify_repo_managers(db, "octo/b", "k", "about b", now=T0 + 1)
    await db.execute("INSERT INTO notifications (user_id, repo, kind, title, created_at) "
                     "VALUES (1, NULL, 'k', 'about no repository', ?)", (T0 + 2,))
    assert await notifications.unread_count(db, 1) == 3
    await users.set_user_repositories(db, 1, [UserRepository("Octo/A", 7, "admin")], now=T0 + 3)
    found, total = await notifications.list_notifications(db, 1, unread_only=False, page=1, per_page=10)
    assert (total, [n.title for n in found]) == (2, ["about no repository", "about a"])
    assert await notifications.unread_count(db, 1) == 2


async def test_a_keyed_notification_is_written_once_per_user_however_often_it_is_sent(db: Database) -> None:
    """A job run again after a crash sends the same fact again: each user has it once, a later manager gets it."""
    await add_user(db, 1, "mona", ["octo/a"])
    await add_user(db, 2, "bob", ["octo/a"])
    key = "installed:42:octo/a"
    assert await notifications.notify_repo_managers(db, "octo/a", "installed", "Installed", key=key) == 2
    assert await notifications.notify_repo_managers(db, "octo/a", "installed", "Installed", key=key) == 0
    await add_user(db, 3, "eve", ["octo/a"])
    assert await notifications.notify_repo_managers(db, "octo/a", "installed", "Installed", key=key) == 1
    assert await notifications.notify_repo_managers(db, "octo/a", "installed", "Installed", key="other") == 3
    for user_id in (1, 2, 3):
        _, total = await notifications.list_notifications(db, user_id, unread_only=False, page=1, per_page=10)
        assert total == 2


async def test_notifications_without_a_key_are_all_written(db: Database) -> None:
    await add_user(db, 1, "mona", ["octo/a"])
    for _ in range(2):
        assert await notifications.notify_repo_managers(db, "octo/a", "k", "same") == 1
    assert await notifications.unread_count(db, 1) == 2


async def test_a_staged_notification_is_kept_only_with_its_transaction_and_until_sent(db: Database) -> None:
    """Staged with the change it tells of: gone with a rolled-back change, kept across a crash, dropped once sent."""
    class Boom(Exception):
        pass

    try:
        async with db.transaction() as conn:
            await notifications.stage(conn, subject="octo/a#4", repo="octo/a", kind="verdict", title="lost")
            raise Boom
    except Boom:
        pass
    assert await notifications.staged(db, "octo/a#4") == []
    async with db.transaction() as conn:
        first = await notifications.stage(conn, subject="octo/a#4", repo="octo/a", kind="verdict", title="A",
                                          data={"pr": 4}, now=T0)
        second = await notifications.stage(conn, subject="octo/a#4", repo="octo/a", kind="verdict", title="B",
                                           now=T0 + 1)
        await notifications.stage(conn, subject="octo/a#5", repo="octo/a", kind="verdict", title="other", now=T0)
    assert first != second  # the same fact told twice (A, B, A again) is two notifications
    pending = await notifications.staged(db, "octo/a#4")
    assert [(n.key, n.title, n.data) for n in pending] == [(first, "A", {"pr": 4}), (second, "B", {})]
    await notifications.unstage(db, first)
    assert [n.title for n in await notifications.staged(db, "octo/a#4")] == ["B"]
