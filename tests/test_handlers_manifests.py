"""handlers.manifests: linked issues, diff analysis and the one check run and comment per pull request head."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from gidgethub import BadRequest, sansio

from handlers.manifests import router
from quantumreview import keys, pull_requests
from quantumreview.analysis.checklist import Item
from quantumreview.analysis.manifest import CriterionRef, Manifest
from quantumreview.analysis.pr_render import MARKER, MAX_CHECK_CHARS, Annotation
from quantumreview.analysis.verdict import compute_verdict
from quantumreview.app import create_app
from quantumreview.context import Context
from quantumreview.keyed_locks import KeyedLocks
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.signing import signed_delivery
from quantumreview.webhook import PATH
from storage import checklists as checklist_store
from storage import installations as installation_store
from storage import pulls as store
from storage.db import Database
from tests.conftest import WEBHOOK_SECRET, SettingsFactory

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
REPO = "Codertocat/Hello-World"  # the repository of the copied payloads
NUMBER = 2
SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
NEW_SHA = "b" * 40
TEST_PATCH = "@@ -0,0 +1,2 @@\n+def test_T1_login_succeeds():\n+    assert login('ok')\n"
SOURCE_PATCH = "@@ -1 +1,2 @@\n def login(pw):\n+    return pw == 'ok'\n"
FILES = [
    {"filename": "src/login.py", "patch": SOURCE_PATCH},
    {"filename": "tests/test_login.py", "patch": TEST_PATCH, "status": "added"},
]
CHECK_RUNS = "/repos/{owner}/{repo}/check-runs"


def payload(name: str, **changes: Any) -> dict[str, Any]:
    """A copied webhook payload, with top-level fields replaced."""
    data: dict[str, Any] = json.loads((FIXTURES / f"pull_request.{name}.json").read_text())
    return {**data, **changes}


@dataclasses.dataclass
class Env:
    """The fake GitHub, the database and a way to run this module's handlers as the job runner would."""

    fake: FakeGitHub
    db: Database
    settings: Settings
    github_app: Any
    notified: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    enqueued: list[tuple[str, dict[str, Any], str | None]] = dataclasses.field(default_factory=list)
    locks: KeyedLocks = dataclasses.field(default_factory=KeyedLocks)  # one per runner, shared by its jobs

    def context(self, event: sansio.Event) -> Context:
        """A handler context for installation 1."""

        async def notify(repo: str, kind: str, title: str, **_: Any) -> int:
            self.notified.append((repo, kind, title))
            return 1

        async def enqueue(event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
                          **_: Any) -> list[int]:
            self.enqueued.append((event, dict(data), ordering_key))
            return [len(self.enqueued)]

        return Context(event=event, db=self.db, settings=self.settings, gh=self.github_app.for_installation(1),
                       github=self.github_app, installation_id=1, delivery_id="d-1", job_id=1, attempt=1,
                       enqueue=enqueue, notify=notify, locks=self.locks)

    async def deliver(self, event_name: str, data: Mapping[str, Any]) -> int:
        """Run every handler of this module that matches the event; return how many ran."""
        event = sansio.Event(dict(data), event=event_name, delivery_id="d-1")
        callbacks = router.fetch(event)
        for callback in callbacks:
            await callback(event, self.context(event))
        return len(callbacks)

    def runs(self) -> list[dict[str, Any]]:
        """Check runs on the repository."""
        return self.fake.check_runs.get(REPO, [])

    def comments(self) -> list[dict[str, Any]]:
        """Comments on the pull request."""
        return self.fake.comments.get((REPO, NUMBER), [])


@pytest.fixture
async def env(fake_github: FakeGitHub, github_app: Any, db: Database, settings: Settings) -> Env:
    """Installation 1 on the repository; issue #7 has a two-criterion checklist."""
    fake_github.add_installation(1, account="Codertocat", repositories=[REPO])
    await add_checklist(db, REPO, 7, {"T1": "User can log in", "T2": "A wrong password shows an error"})
    return Env(fake_github, db, settings, github_app)


async def add_checklist(db: Database, repo: str, number: int, items: Mapping[str, str],
                        installation_id: int | None = 1) -> None:
    """Store a checklist as the checklist handlers would."""
    async with db.transaction() as conn:
        await checklist_store.save_checklist(
            conn, repo=repo, issue_number=number, installation_id=installation_id, title="Login", state="open",
            items=[Item(tid, text, "") for tid, text in items.items()], next_number=len(items) + 1,
            truncated=False, total_found=len(items), change={}, now=1.0)


def add_pull(env: Env, *, body: str = "Closes #7", head_ref: str = "changes", sha: str = SHA,
             files: list[dict[str, Any]] | None = None) -> None:
    """Put the payload's pull request on the fake GitHub."""
    env.fake.add_pull(REPO, NUMBER, title="Update the README", body=body, head_sha=sha, head_ref=head_ref,
                      files=FILES if files is None else files)


async def stored_manifest(env: Env, sha: str = SHA) -> tuple[Manifest, store.ManifestRow]:
    """The stored manifest of a head, parsed."""
    row = await store.get_manifest(env.db, REPO, NUMBER, sha)
    assert row is not None
    return Manifest.from_dict(row.manifest), row


async def test_opened_pull_gets_manifest_check_run_and_one_comment(env: Env) -> None:
    add_pull(env)
    assert await env.deliver("pull_request", payload("opened.2")) == 1
    [run] = env.runs()
    assert (run["name"], run["head_sha"], run["status"]) == ("QuantumReview", SHA, "in_progress")
    assert run["output"]["title"] == "1 of 2 criteria have tests in this PR"
    summary = run["output"]["summary"]
    assert "| `T1` | User can log in | Codertocat/Hello-World#7 | test_T1_login_succeeds |" in summary
    assert "`test_T2_a_wrong_password_shows_an_error` in `tests/test_login.py`" in summary
    [comment] = env.comments()
    assert comment["body"].startswith(MARKER) and "test_T1_login_succeeds" in comment["body"]
    manifest, row = await stored_manifest(env)
    assert row.check_run_id == run["id"]
    assert [(c.criterion.tid, len(c.tests)) for c in manifest.coverage] == [("T1", 1), ("T2", 0)]
    pull = await store.get_pull(env.db, REPO, NUMBER)
    assert pull is not None and pull.comment_id == comment["id"]
    assert pull.linked == [{"repo": REPO, "number": 7, "source": "keyword"}]
    assert [kind for _, kind, _ in env.notified] == ["manifest"]


async def test_same_delivery_twice_keeps_one_check_run_and_one_comment(env: Env) -> None:
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    await env.deliver("pull_request", payload("opened.2"))
    assert len(env.runs()) == 1
    assert len(env.comments()) == 1
    assert len(env.fake.calls("POST", CHECK_RUNS)) == 1
    assert len(env.fake.calls("PATCH", CHECK_RUNS + "/{check_run_id}")) == 1
    assert len(env.notified) == 1  # "manifest" once per new head SHA


async def test_retry_after_crash_between_creating_and_storing_check_run_finds_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_pull(env)
    real = store.set_check_run_id

    async def crash_once(*args: Any) -> None:
        monkeypatch.setattr(store, "set_check_run_id", real)
        raise RuntimeError("crash after POST")

    monkeypatch.setattr(store, "set_check_run_id", crash_once)
    with pytest.raises(RuntimeError):
        await env.deliver("pull_request", payload("opened.2"))
    assert len(env.runs()) == 1
    await env.deliver("pull_request", payload("opened.2"))
    [run] = env.runs()
    assert len(env.fake.calls("POST", CHECK_RUNS)) == 1
    assert len(env.fake.calls("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs")) == 2  # looked both times
    _, row = await stored_manifest(env)
    assert row.check_run_id == run["id"]
    assert len(env.comments()) == 1


async def test_two_jobs_publishing_one_pull_at_once_create_one_check_run_and_one_comment(env: Env) -> None:
    """A pull request's job and its CI run's job (other ordering keys) can publish together: both looked, found
    nothing and created, so the PR had two check runs and two bot comments."""
    add_pull(env)
    for route in (CHECK_RUNS, "/repos/{owner}/{repo}/issues/{issue_number}/comments"):
        env.fake.fail_next("POST", route, kind="slow", delay=0.1, times=2)  # both look before a creation lands
    await asyncio.gather(env.deliver("pull_request", payload("opened.2")),
                         env.deliver("pull_request", payload("opened.2")))
    assert len(env.fake.calls("POST", CHECK_RUNS)) == 1
    assert len(env.runs()) == 1
    assert len(env.comments()) == 1


async def test_failed_comment_post_is_retried_without_a_second_check_run(env: Env) -> None:
    add_pull(env)
    env.fake.fail_next("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", status=422)
    with pytest.raises(BadRequest):
        await env.deliver("pull_request", payload("opened.2"))
    await env.deliver("pull_request", payload("opened.2"))
    assert len(env.runs()) == 1
    assert len(env.comments()) == 1


async def test_pull_without_linked_issue_gets_neutral_check_and_no_comment(env: Env) -> None:
    add_pull(env, body="Just a README change", head_ref="readme-tweaks")
    await env.deliver("pull_request", payload("opened.2"))
    [run] = env.runs()
    assert (run["status"], run["conclusion"]) == ("completed", "neutral")
    assert run["output"]["title"] == "No linked issue"
    assert "Closes #12" in run["output"]["summary"]
    assert env.comments() == []
    assert env.fake.calls("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files") == []


async def test_branch_name_links_the_issue_when_no_keyword_does(env: Env) -> None:
    add_pull(env, body="Login form", head_ref="feature/7-login")
    await env.deliver("pull_request", payload("opened.2"))
    pull = await store.get_pull(env.db, REPO, NUMBER)
    assert pull is not None and pull.linked == [{"repo": REPO, "number": 7, "source": "branch"}]
    assert "branch name" in env.runs()[0]["output"]["summary"]


async def test_unreachable_and_checklist_less_links_are_reported_not_fatal(env: Env) -> None:
    env.fake.add_issue(REPO, 8, title="No criteria")
    await add_checklist(env.db, "other-org/secret", 3, {"T1": "Secret criterion"}, installation_id=99)
    add_pull(env, body="Closes #7\n\nFixes other-org/secret#3\n\nResolves #8\n\nCloses ghost-org/nowhere#1")
    await env.deliver("pull_request", payload("opened.2"))
    summary = env.runs()[0]["output"]["summary"]
    assert "other-org/secret#3: not visible to the app" in summary
    assert "ghost-org/nowhere#1: not visible to the app" in summary
    assert "Codertocat/Hello-World#8: no acceptance-criteria checklist" in summary
    assert "Secret criterion" not in summary
    manifest, row = await stored_manifest(env)
    assert [c.criterion.issue_number for c in manifest.coverage] == [7, 7]
    assert len(row.manifest["problems"]) == 3
    assert "not visible to the app" in env.comments()[0]["body"]


async def test_link_problems_make_room_in_a_full_comment_and_check_run(env: Env) -> None:
    """Problems were added after the text was fitted to GitHub's limit, so a full table was cut mid-row and lost
    the note saying how many criteria were left out."""
    await add_checklist(env.db, REPO, 7, {f"T{i}": f"Criterion {i} " + "word " * 57 for i in range(1, 400)})
    ghosts = "\n\n".join(f"Fixes ghost-org/repository-{i}#1" for i in range(20))
    add_pull(env, body="Closes #7\n\n" + ghosts)
    await env.deliver("pull_request", payload("opened.2"))
    summary, body = env.runs()[0]["output"]["summary"], env.comments()[0]["body"]
    for text in (summary, body):
        assert text.count("not visible to the app") == 20
        assert text.rstrip().endswith("characters.") and "more criteria are not shown" in text
    assert body.startswith(MARKER + "\n> ⚠️ ghost-org/repository-0#1")


async def test_issue_in_another_repository_of_the_installation_counts(env: Env) -> None:
    env.fake.add_repository(1, "Codertocat/api")
    async with env.db.transaction() as conn:
        await installation_store.upsert_installation(conn, {"id": 1, "account": {"login": "Codertocat"}}, 1.0)
        await installation_store.add_repositories(conn, 1, [{"id": 5, "full_name": "Codertocat/api"}], 1.0)
    await add_checklist(env.db, "Codertocat/api", 4, {"T1": "API accepts tokens"}, installation_id=None)
    add_pull(env, body="Fixes Codertocat/api#4")
    await env.deliver("pull_request", payload("opened.2"))
    manifest, row = await stored_manifest(env)
    assert [(c.criterion.repo, c.criterion.tid) for c in manifest.coverage] == [("Codertocat/api", "T1")]
    assert row.manifest["problems"] == []


async def test_large_pull_is_read_page_by_page_within_bounds(env: Env) -> None:
    big_test = "@@ -0,0 +1,20501 @@\n" + ("+#" + "x" * 47 + "\n") * 20500
    big_test += "+def test_T2_wrong_password():\n"
    files: list[dict[str, Any]] = [{"filename": "tests/test_big.py", "patch": big_test, "status": "added"}]
    files += [{"filename": f"assets/logo{i}.png", "additions": 0, "deletions": 0} for i in range(500)]  # binary
    files += [{"filename": f"src/mod{i}.py", "status": "renamed", "previous_filename": f"src/old{i}.py"}
              for i in range(500)]  # renamed, too large for a patch
    files += [{"filename": f"src/gone{i}.py", "status": "removed", "patch": "@@ -1 +0,0 @@\n-x = 1\n"}
              for i in range(500)]
    files += [{"filename": f"src/app{i}.py", "patch": SOURCE_PATCH} for i in range(1500)]
    assert len(big_test) > 1_000_000 and len(files) == 3001
    add_pull(env, files=files)
    await env.deliver("pull_request", payload("opened.2"))
    pages = env.fake.calls("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files")
    assert len(pages) == 30 and all(p.query.get("per_page") == "100" for p in pages)
    manifest, _ = await stored_manifest(env)
    assert manifest.total_files == 3000
    assert (manifest.group("test").count, manifest.group("source").count) == (1, 2999)  # the 3,001st was not served
    assert [(c.criterion.tid, [t.line for t in c.tests]) for c in manifest.coverage] == [("T1", []), ("T2", [20501])]
    output = env.runs()[0]["output"]
    assert len(output["summary"]) <= MAX_CHECK_CHARS and len(output["text"]) <= MAX_CHECK_CHARS


async def test_pull_with_more_files_than_github_lists_says_so(env: Env) -> None:
    """GitHub lists at most 3,000 of a pull request's files; the check run said nothing of the ones past that."""
    files = [{"filename": f"src/app{i}.py", "additions": 1, "deletions": 0} for i in range(3000)]
    add_pull(env, files=files)
    env.fake.state.pulls[(REPO, NUMBER)]["changed_files"] = 4200
    await env.deliver("pull_request", payload("opened.2"))
    manifest, _ = await stored_manifest(env)
    assert (manifest.total_files, manifest.files_truncated) == (4200, True)
    assert "Only the first 3,000 of 4,200 files were analysed." in env.runs()[0]["output"]["text"]


def test_patch_clipped_at_a_line_end() -> None:
    assert pull_requests.clip_patch("+a\n+bbbb\n", 6) == "+a"
    assert pull_requests.clip_patch("+abcdef", 3) == ""
    assert pull_requests.clip_patch("+a\n", 10) == "+a\n"


async def test_edit_that_leaves_title_body_and_base_alone_does_nothing(env: Env) -> None:
    add_pull(env)
    edited = payload("opened.2", action="edited", changes={})
    assert await env.deliver("pull_request", edited) == 1
    assert env.fake.requests == []


async def test_retargeting_the_base_branch_recomputes_the_diff(env: Env) -> None:
    """A new base changes the files of the pull request at the same head; the manifest kept the old diff's."""
    add_pull(env, files=[{"filename": "src/login.py", "patch": SOURCE_PATCH}])
    await env.deliver("pull_request", payload("opened.2"))
    assert env.runs()[0]["output"]["title"] == "0 of 2 criteria have tests in this PR"
    env.fake.state.pull_files[(REPO, NUMBER)] = [{"filename": f["filename"], "patch": f["patch"], "status": "added",
                                                   "additions": 1, "deletions": 0} for f in FILES]
    edited = payload("opened.2", action="edited", changes={"base": {"ref": {"from": "dev"}, "sha": {"from": "0" * 40}}})
    await env.deliver("pull_request", edited)
    manifest, _ = await stored_manifest(env)
    assert [(c.criterion.tid, bool(c.tests)) for c in manifest.coverage] == [("T1", True), ("T2", False)]
    assert env.runs()[0]["output"]["title"] == "1 of 2 criteria have tests in this PR"


async def test_edit_of_body_relinks_and_recomputes_same_head(env: Env) -> None:
    add_pull(env, body="Nothing linked", head_ref="readme")
    await env.deliver("pull_request", payload("opened.2"))
    assert env.runs()[0]["conclusion"] == "neutral"
    env.fake.state.pulls[(REPO, NUMBER)]["body"] = "Closes #7"
    await env.deliver("pull_request", payload("opened.2", action="edited", changes={"body": {"from": "x"}}))
    # Why a second run: GitHub keeps a completed run completed, so the neutral result would have stayed shown.
    neutral, run = env.runs()
    assert (neutral["status"], neutral["conclusion"]) == ("completed", "neutral")
    assert (run["head_sha"], run["status"], run["conclusion"]) == (SHA, "in_progress", None)
    assert run["output"]["title"] == "1 of 2 criteria have tests in this PR"
    assert len(env.comments()) == 1
    _, row = await stored_manifest(env)
    assert row.check_run_id == run["id"]
    await env.deliver("pull_request", payload("opened.2", action="edited", changes={"title": {"from": "x"}}))
    assert len(env.runs()) == 2  # the new run is the one updated from now on


async def test_relinking_after_a_verdict_queues_a_revalidation(env: Env) -> None:
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    verdict = compute_verdict([CriterionRef(REPO, 7, "T1", "User can log in")], {"T1": "passed"})
    async with env.db.transaction() as conn:
        await store.save_verdict(conn, repo=REPO, pr_number=NUMBER, head_sha=SHA, verdict=dataclasses.asdict(verdict),
                                 conclusion="success", run_id=1, run_attempt=1, now=2.0)
    await env.deliver("pull_request", payload("opened.2", action="edited", changes={"title": {"from": "x"}}))
    assert env.enqueued == []  # same links: the verdict still holds
    env.fake.state.pulls[(REPO, NUMBER)]["body"] = "Closes #7, closes #9"
    await env.deliver("pull_request", payload("opened.2", action="edited", changes={"body": {"from": "x"}}))
    assert env.enqueued == [(pull_requests.REVALIDATE_EVENT, {"repo": REPO, "pr_number": NUMBER}, f"{REPO}#{NUMBER}")]


async def test_new_head_gets_its_own_check_run_and_the_same_comment(env: Env) -> None:
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    env.fake.state.pulls[(REPO, NUMBER)]["head"]["sha"] = NEW_SHA
    await env.deliver("pull_request", payload("synchronize.1"))
    assert sorted(run["head_sha"] for run in env.runs()) == sorted([SHA, NEW_SHA])
    assert len(env.comments()) == 1
    pull = await store.get_pull(env.db, REPO, NUMBER)
    assert pull is not None and pull.head_sha == NEW_SHA
    assert await store.get_manifest(env.db, REPO, NUMBER, NEW_SHA) is not None


async def test_a_late_verdict_for_an_earlier_head_leaves_the_comment_on_the_current_head(env: Env) -> None:
    """CI for a commit the pull request has moved past (a slow or cancelled run) finished after the push: its
    verdict replaced the comment's current head with the old commit's results."""
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    env.fake.state.pulls[(REPO, NUMBER)]["head"]["sha"] = NEW_SHA
    await env.deliver("pull_request", payload("synchronize.1"))
    before = env.comments()[0]["body"]
    verdict = compute_verdict([CriterionRef(REPO, 7, "T1", "User can log in")], {"T1": "failed"})
    async with env.db.transaction() as conn:
        await store.save_verdict(conn, repo=REPO, pr_number=NUMBER, head_sha=SHA, verdict=dataclasses.asdict(verdict),
                                 conclusion="failure", run_id=1, run_attempt=1, now=2.0)
    event = sansio.Event({}, event="workflow_run", delivery_id="d-2")
    await pull_requests.publish_pr_status(env.context(event), REPO, NUMBER, SHA)
    old_run = next(run for run in env.runs() if run["head_sha"] == SHA)
    assert (old_run["status"], old_run["conclusion"]) == ("completed", "failure")  # the old commit's own check
    [comment] = env.comments()
    assert comment["body"] == before and "❌ failed" not in comment["body"]


async def test_a_manifest_refresh_racing_a_verdict_does_not_put_the_check_back_in_progress(env: Env) -> None:
    """The pull request's job and its CI run's job publish at once: the refresh read the head before the verdict
    was stored and its slower update landed last, so the completed check run went back to in progress and the
    comment lost the verdict."""
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    env.fake.fail_next("PATCH", CHECK_RUNS + "/{check_run_id}", kind="slow", delay=0.5)
    refresh = asyncio.create_task(
        env.deliver("pull_request", payload("opened.2", action="edited", changes={"title": {"from": "x"}})))
    while not env.fake.calls("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files")[1:]:
        await asyncio.sleep(0.01)  # the refresh has read the diff; its check-run update follows
    await asyncio.sleep(0.1)
    verdict = compute_verdict([CriterionRef(REPO, 7, "T1", "User can log in")], {"T1": "failed"})
    async with env.db.transaction() as conn:
        await store.save_verdict(conn, repo=REPO, pr_number=NUMBER, head_sha=SHA, verdict=dataclasses.asdict(verdict),
                                 conclusion="failure", run_id=1, run_attempt=1, now=2.0)
    event = sansio.Event({}, event="workflow_run", delivery_id="d-2")
    await pull_requests.publish_pr_status(env.context(event), REPO, NUMBER, SHA)
    await refresh
    [run] = env.runs()
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert "❌ failed" in env.comments()[0]["body"]


async def test_reopened_pull_is_recomputed(env: Env) -> None:
    add_pull(env)
    await env.deliver("pull_request", payload("reopened.1"))
    assert len(env.runs()) == 1


async def test_closed_records_merge_without_github_calls(env: Env) -> None:
    """A merge is final on GitHub: an unmerged `closed` handled after it is an earlier close delivered late."""
    closed = payload("closed.2")
    merged = copy.deepcopy(closed)
    merged["pull_request"]["merged"] = True
    await env.deliver("pull_request", closed)
    pull = await store.get_pull(env.db, REPO, NUMBER)
    assert pull is not None and (pull.state, pull.merged, pull.head_sha) == ("closed", False, SHA)
    await env.deliver("pull_request", merged)
    pull = await store.get_pull(env.db, REPO, NUMBER)
    assert pull is not None and (pull.state, pull.merged) == ("closed", True)
    await env.deliver("pull_request", closed)
    pull = await store.get_pull(env.db, REPO, NUMBER)
    assert pull is not None and (pull.state, pull.merged) == ("closed", True)
    assert env.fake.requests == []


async def test_revalidate_job_fetches_the_pull_and_recomputes(env: Env) -> None:
    add_pull(env)
    ran = await env.deliver(pull_requests.REVALIDATE_EVENT, {"repo": REPO, "pr_number": NUMBER})
    assert ran == 1
    assert len(env.runs()) == 1
    assert len(env.fake.calls("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")) == 1


async def test_pull_gone_from_github_is_left_alone(env: Env) -> None:
    await env.deliver(pull_requests.REVALIDATE_EVENT, {"repo": REPO, "pr_number": 404})
    assert env.runs() == [] and await store.get_pull(env.db, REPO, 404) is None


@dataclasses.dataclass(frozen=True)
class Failing:
    """A failing testcase as the CI results reader gives it."""

    tid: str
    name: str
    message: str


async def test_verdict_completes_the_check_run_with_annotations_in_batches(env: Env) -> None:
    tests = "".join(f"+def test_T{i}_case():\n+    assert False\n" for i in range(1, 61))
    add_pull(env, files=[{"filename": "tests/test_many.py", "patch": f"@@ -0,0 +1,120 @@\n{tests}"}])
    await env.deliver("pull_request", payload("opened.2"))
    criteria = [CriterionRef(REPO, 7, "T1", "User can log in"), CriterionRef(REPO, 7, "T2", "Wrong password")]
    verdict = compute_verdict(criteria, {"T1": "failed", "T2": "passed"})
    async with env.db.transaction() as conn:
        assert await store.save_verdict(conn, repo=REPO, pr_number=NUMBER, head_sha=SHA,
                                        verdict=dataclasses.asdict(verdict), conclusion=verdict.conclusion,
                                        run_id=1, run_attempt=1, now=2.0)
    failing = [Failing(f"T{i}", f"T{i}::test_case", "assert False") for i in range(1, 61)]
    event = sansio.Event({}, event="workflow_run", delivery_id="d-2")
    finding = Annotation("src/login.py", 2, 2, "warning", "complex")
    await pull_requests.publish_pr_status(env.context(event), REPO, NUMBER, SHA, failing=failing,
                                          health={"score": 91.0, "delta": -1.0, "counts": {}}, annotations=[finding])
    [run] = env.runs()
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    annotations = env.fake.check_run_annotations[run["id"]]
    assert len(annotations) == 61 and annotations[0]["start_line"] == 1
    assert annotations[-1]["annotation_level"] == "warning"
    patches = env.fake.calls("PATCH", CHECK_RUNS + "/{check_run_id}")
    assert [len(p.json["output"]["annotations"]) for p in patches] == [50, 11]
    [comment] = env.comments()
    assert "❌ failed" in comment["body"] and "Code health: **91.0**" in comment["body"]


async def test_manifest_refresh_republishes_stored_failures_without_new_annotations(env: Env) -> None:
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    verdict = compute_verdict([CriterionRef(REPO, 7, "T1", "User can log in")], {"T1": "failed"})
    stored = {**dataclasses.asdict(verdict), "health": {"score": 77.0},
              "failing": [{"tid": "T1", "name": "T1::test_login", "message": "expected 200"}]}
    async with env.db.transaction() as conn:
        await store.save_verdict(conn, repo=REPO, pr_number=NUMBER, head_sha=SHA, verdict=stored,
                                 conclusion="failure", run_id=1, run_attempt=1, now=2.0)
    await env.deliver("pull_request", payload("opened.2", action="edited", changes={"title": {"from": "x"}}))
    [run] = env.runs()
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert "expected 200" in run["output"]["text"] and "77.0" in run["output"]["summary"]
    assert env.fake.check_run_annotations.get(run["id"], []) == []


def test_malformed_stored_verdict_reads_as_none() -> None:
    assert pull_requests.verdict_from_dict({"results": "nope"}) is None
    verdict = compute_verdict([CriterionRef(REPO, 7, "T1", "x")], {"T1": "passed"})
    assert pull_requests.verdict_from_dict(dataclasses.asdict(verdict)) == verdict


async def test_app_runs_a_delivered_pull_request_once_per_delivery_id(
    make_settings: SettingsFactory, fake_github: FakeGitHub, aiohttp_client: Any
) -> None:
    fake_github.add_installation(1, account="Codertocat", repositories=[REPO])
    fake_github.add_pull(REPO, NUMBER, title="Update", body="Closes #7", head_sha=SHA, files=FILES)
    settings = make_settings(github_api_url=fake_github.api_url, github_url=fake_github.url)
    app = create_app(settings, registry=HandlerRegistry.from_routers([router]))
    client = await aiohttp_client(app)
    db = client.app[keys.db]
    await add_checklist(db, REPO, 7, {"T1": "User can log in"})
    headers, body = signed_delivery("pull_request", payload("opened.2"), WEBHOOK_SECRET)
    other, other_body = signed_delivery("pull_request", payload("synchronize.1"), WEBHOOK_SECRET)
    for h, b in ((headers, body), (headers, body), (other, other_body)):
        assert (await client.post(PATH, data=b, headers=h)).status in (200, 202)
    for _ in range(200):
        if await db.fetchvalue("SELECT count(*) FROM jobs WHERE status = 'done'") == 2:
            break
        await asyncio.sleep(0.02)
    assert await db.fetchvalue("SELECT count(*) FROM jobs") == 2
    assert len(fake_github.check_runs[REPO]) == 1
    assert len(fake_github.comments[(REPO, NUMBER)]) == 1


async def _renamed_from(env: Env, old: str) -> dict[str, Any]:
    """The repository stored (with pull request #2, commented) under `old`, since renamed on GitHub to REPO;
    the repository object events now carry."""
    repo_id = env.fake.state.repos[REPO]["id"]
    comment = env.fake.add_comment(REPO, NUMBER, MARKER + "\nmanifest", login="quantumreview[bot]")
    async with env.db.transaction() as conn:
        await installation_store.upsert_installation(conn, {"id": 1, "account": {"login": "Codertocat"}}, 1.0)
        await installation_store.add_repositories(conn, 1, [{"id": repo_id, "full_name": old}], 1.0)
        await store.upsert_pull(conn, repo=old, number=NUMBER, installation_id=1, title="t", state="open",
                                merged=False, head_sha=SHA, head_ref="x", base_ref="main",
                                linked=[{"repo": old, "number": 7, "source": "keyword"}], now=1.0)
        await store.set_pull_comment_id(conn, old, NUMBER, comment["id"])
    return {**payload("synchronize.1")["repository"], "id": repo_id, "full_name": REPO}


@pytest.mark.parametrize("action", ["synchronize.1", "closed.2"])
async def test_an_event_of_a_renamed_repository_moves_its_stored_pull_request(env: Env, action: str) -> None:
    """No webhook told the App of a rename: an event carrying the new name stored the pull request a second time,
    and the row under the old name stayed open, revalidated (under that name) whenever its issue changed."""
    old = "Codertocat/Old-Name"
    repository = await _renamed_from(env, old)
    add_pull(env)
    await env.deliver("pull_request", {**payload(action), "repository": repository})
    pull = await store.get_pull(env.db, REPO, NUMBER)
    assert pull is not None and await store.get_pull(env.db, old, NUMBER) is None
    assert [pull.comment_id] == [c["id"] for c in env.comments()]
    assert await installation_store.active_repositories(env.db, 1) == [REPO]


async def test_publishing_for_a_repository_the_installation_no_longer_has_ends_quietly(env: Env) -> None:
    """The repository left the installation (or was deleted) with its pull request still stored: GitHub answers 404
    to its check runs and comments, and that BadRequest was retried until the job died."""
    add_pull(env)
    await env.deliver("pull_request", payload("opened.2"))
    env.fake.state.installation_repos[1].remove(REPO)
    event = sansio.Event({}, event="workflow_run", delivery_id="d-2")
    await pull_requests.publish_pr_status(env.context(event), REPO, NUMBER, SHA)  # returns: nothing to retry
    assert len(env.runs()) == 1
