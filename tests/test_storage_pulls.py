"""storage.pulls: pull requests, manifests per head SHA, verdicts that never regress."""

from __future__ import annotations

from typing import Any

from storage import checklists, pulls
from storage.db import Database

REPO = "octo/app"
LINKS = [{"repo": REPO, "number": 7, "source": "keyword"}]


async def _pull(db: Database, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "repo": REPO, "number": 3, "installation_id": 1, "title": "Add login", "state": "open", "merged": False,
        "head_sha": "a" * 40, "head_ref": "7-login", "base_ref": "main", "linked": LINKS, "now": 1.0,
    }
    fields.update(overrides)
    async with db.transaction() as conn:
        await pulls.upsert_pull(conn, **fields)


async def _manifest(db: Database, sha: str = "a" * 40, manifest: dict[str, Any] | None = None) -> None:
    async with db.transaction() as conn:
        await pulls.save_manifest(conn, repo=REPO, pr_number=3, head_sha=sha, manifest=manifest or {"v": 1}, now=2.0)


async def _verdict(db: Database, run_id: int, attempt: int, conclusion: str = "success", *,
                   started: float | None = None) -> bool:
    async with db.transaction() as conn:
        return await pulls.save_verdict(conn, repo=REPO, pr_number=3, head_sha="a" * 40,
                                        verdict={"conclusion": conclusion}, conclusion=conclusion, run_id=run_id,
                                        run_attempt=attempt, now=3.0, started_at=started)


async def test_pull_round_trips_with_parsed_links(db: Database) -> None:
    await _pull(db)
    pull = await pulls.get_pull(db, REPO, 3)
    assert pull is not None
    assert (pull.head_sha, pull.head_ref, pull.linked, pull.merged) == ("a" * 40, "7-login", LINKS, False)
    assert await pulls.get_pull(db, REPO, 4) is None


async def test_refreshing_a_pull_keeps_its_comment_id(db: Database) -> None:
    await _pull(db)
    async with db.transaction() as conn:
        await pulls.set_pull_comment_id(conn, REPO, 3, 555)
    await _pull(db, head_sha="b" * 40, linked=[], now=5.0)
    pull = await pulls.get_pull(db, REPO, 3)
    assert pull is not None
    assert (pull.comment_id, pull.head_sha, pull.linked) == (555, "b" * 40, [])


async def test_closing_records_merged_only_for_a_known_pull(db: Database) -> None:
    async with db.transaction() as conn:
        assert not await pulls.set_pull_state(conn, REPO, 3, state="closed", merged=True, now=2.0)
    await _pull(db)
    async with db.transaction() as conn:
        assert await pulls.set_pull_state(conn, REPO, 3, state="closed", merged=True, now=2.0)
    pull = await pulls.get_pull(db, REPO, 3)
    assert pull is not None and (pull.state, pull.merged) == ("closed", True)


async def test_new_manifest_keeps_check_run_id_and_verdict(db: Database) -> None:
    await _manifest(db)
    async with db.transaction() as conn:
        await pulls.set_check_run_id(conn, REPO, 3, "a" * 40, 99)
    assert await _verdict(db, 10, 1)
    await _manifest(db, manifest={"v": 2})
    row = await pulls.get_manifest(db, REPO, 3, "a" * 40)
    assert row is not None
    assert (row.manifest, row.check_run_id, row.verdict, row.conclusion) == ({"v": 2}, 99, {"conclusion": "success"},
                                                                            "success")


async def test_manifests_are_kept_per_head_sha(db: Database) -> None:
    await _manifest(db, "a" * 40, {"v": "a"})
    await _manifest(db, "b" * 40, {"v": "b"})
    first, second = [await pulls.get_manifest(db, REPO, 3, sha) for sha in ("a" * 40, "b" * 40)]
    assert first is not None and second is not None
    assert (first.manifest, second.manifest) == ({"v": "a"}, {"v": "b"})


async def test_older_run_or_attempt_never_overwrites_a_newer_verdict(db: Database) -> None:
    await _manifest(db)
    assert await _verdict(db, 10, 2, "failure")
    assert not await _verdict(db, 10, 1, "success")
    assert not await _verdict(db, 9, 5, "success")
    row = await pulls.get_manifest(db, REPO, 3, "a" * 40)
    assert row is not None and (row.conclusion, row.run_id, row.run_attempt) == ("failure", 10, 2)
    assert await _verdict(db, 10, 2, "success")  # the same attempt processed again may rewrite
    assert await _verdict(db, 11, 1, "neutral")
    row = await pulls.get_manifest(db, REPO, 3, "a" * 40)
    assert row is not None and (row.conclusion, row.run_id) == ("neutral", 11)


async def test_the_verdict_of_the_attempt_that_started_last_wins_whatever_its_run_id(db: Database) -> None:
    """Re-running run 10 after run 11 was judged: attempt 2 of run 10 is the newest result, and it was refused."""
    await _manifest(db)
    assert await _verdict(db, 10, 1, "failure", started=1000.0)
    assert await _verdict(db, 11, 1, "failure", started=1300.0)
    assert await _verdict(db, 10, 2, "success", started=2000.0)
    assert not await _verdict(db, 12, 1, "failure", started=1500.0)  # started before the re-run: older
    assert not await _verdict(db, 10, 1, "failure", started=1000.0)  # an older attempt of the same run
    assert await _verdict(db, 13, 1, "failure", started=2000.0)  # started in the same second: run id decides
    row = await pulls.get_manifest(db, REPO, 3, "a" * 40)
    assert row is not None and (row.run_id, row.run_attempt, row.run_started_at) == (13, 1, 2000.0)


async def test_a_verdict_without_a_start_time_keeps_the_run_id_order_and_ranks_below(db: Database) -> None:
    """Verdicts stored before start times were kept compare by run id; one with a start time wins over them, and a
    report-less run (stored as run 0, no start time) never wins over a run's."""
    await _manifest(db)
    assert await _verdict(db, 20, 1, "failure")
    assert not await _verdict(db, 19, 1, "success")
    assert await _verdict(db, 19, 2, "success", started=100.0)
    assert not await _verdict(db, 21, 1, "failure")  # no start time: below one that has it
    assert not await _verdict(db, 0, 0, "neutral")


async def test_verdict_without_a_manifest_writes_nothing(db: Database) -> None:
    assert not await _verdict(db, 1, 1)


async def test_open_pulls_for_sha_lists_open_pulls_at_that_head(db: Database) -> None:
    await _pull(db, number=3)
    await _pull(db, number=4)
    await _pull(db, number=5, head_sha="c" * 40)
    await _pull(db, number=6, state="closed")
    assert await pulls.open_pulls_for_sha(db, REPO, "a" * 40) == [3, 4]
    assert await pulls.open_pulls_for_sha(db, "octo/other", "a" * 40) == []


async def test_lone_surrogate_in_a_title_is_stored(db: Database) -> None:
    await _pull(db, title="bad \ud800 title")
    pull = await pulls.get_pull(db, REPO, 3)
    assert pull is not None and pull.title.startswith("bad ")


async def test_lone_surrogate_in_an_issue_title_is_stored_with_its_checklist(db: Database) -> None:
    """An issue titled with a lone surrogate ('\\ud800' in GitHub's JSON) made every save of its checklist raise
    UnicodeEncodeError, so the issue never got one."""
    async with db.transaction() as conn:
        await checklists.save_checklist(
            conn, repo=REPO, issue_number=9, installation_id=1, title="bad \ud800 title", state="open", items=[],
            next_number=1, truncated=False, total_found=0, change={}, now=1.0)
    checklist = await checklists.get_checklist(db, REPO, 9)
    assert checklist is not None and checklist.title == "bad ? title"


async def test_a_checklist_is_found_whatever_the_case_of_the_repository_name(db: Database) -> None:
    """A pull request linking `codertocat/HELLO-world#4` was told the issue had no checklist: names matched
    exactly, though GitHub's ignore case."""
    async with db.transaction() as conn:
        await checklists.save_checklist(conn, repo="Codertocat/Hello-World", issue_number=4, installation_id=1,
                                        title="t", state="open", items=[], next_number=1, truncated=False,
                                        total_found=0, change={}, now=1.0)
    found = await checklists.get_checklist(db, "codertocat/HELLO-world", 4)
    assert found is not None and found.repo == "Codertocat/Hello-World"
    assert await checklists.get_checklist(db, "codertocat/HELLO-world", 5) is None
    assert await checklists.get_checklist(db, "codertocat/other", 4) is None


async def test_a_rename_keeps_the_newer_rows_and_a_rename_in_case_only_keeps_its_links(db: Database) -> None:
    """A pull request stored under a repository's new name before the rename was noticed is newer than the one
    under the old name; the old one, left open, was revalidated under the old name whenever its issue changed."""
    await _pull(db, repo="octo/old", linked=[{"repo": "octo/old", "number": 7, "source": "keyword"}])
    await _pull(db, repo="octo/new", linked=[{"repo": "octo/new", "number": 8, "source": "keyword"}], now=2.0)
    await _pull(db, repo="octo/old", number=4, linked=[{"repo": "octo/old", "number": 7, "source": "keyword"}])
    async with db.transaction() as conn:
        await pulls.rename_repository(conn, "octo/old", "octo/new")
    pull = await pulls.get_pull(db, "octo/new", 3)
    assert pull is not None and pull.linked == [{"repo": "octo/new", "number": 8, "source": "keyword"}]
    assert await pulls.open_pulls_linking(db, "octo/new", 7) == [("octo/new", 4, 1)]
    assert await pulls.open_pulls_linking(db, "octo/new", 8) == [("octo/new", 3, 1)]
    async with db.transaction() as conn:
        await pulls.rename_repository(conn, "octo/new", "Octo/New")
    assert await pulls.open_pulls_linking(db, "octo/new", 7) == [("Octo/New", 4, 1)]
    assert await db.fetchvalue("SELECT count(*) FROM pull_requests WHERE repo != 'Octo/New'") == 0
