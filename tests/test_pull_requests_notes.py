"""Problems and CI notes in the check run summary and the PR comment render as plain text (RELIABILITY AR-13/18);
the check run's annotations are sent once."""

from __future__ import annotations

import asyncio

import aiohttp
import markdown_it
import pytest

from quantumreview.analysis.artifact_zip import ZipRejected, read_members
from quantumreview.analysis.pr_render import Annotation, CheckOutput
from quantumreview.errors import RetryLater
from quantumreview.github import GitHubApp
from quantumreview.pull_requests import note_text, problem_lines, upsert_check_run, with_problems
from quantumreview.testing.context import make_context
from quantumreview.testing.fake import FakeGitHub
from storage.db import Database
from tests.test_analysis_artifact_zip import RawEntry, build_raw_zip

HOSTILE = ('<img src=x onerror=alert(1)><a href="javascript:alert(1)">Click: all criteria passed</a> '
           "[click](javascript:alert(1)) ![i](https://evil.example/i.png) **bold** `code` @octocat "
           "see https://evil.example and www.evil.example \\| end")


def rendered_html(markdown: str) -> str:
    """CommonMark's reading of the Markdown (markdown-it-py: a test dependency)."""
    return str(markdown_it.MarkdownIt("commonmark").render(markdown))


def test_html_links_images_emphasis_and_mentions_in_a_note_are_text() -> None:
    text = note_text(HOSTILE)

    assert "<" not in text and ">" not in text  # no tag of any kind reaches GitHub's renderer
    assert "](" not in text.replace("\\](", "")  # every link or image bracket is escaped
    assert "@octocat" not in text and "@\u200boctocat" in text  # no notification
    assert "https://" not in text and "www.evil" not in text  # no bare-URL autolink
    html = rendered_html(text)
    for tag in ("<img", "<a ", "<strong", "<code", "<em"):
        assert tag not in html
    assert "Click: all criteria passed" in html and "[click](javascript:alert(1))" in html


def test_a_note_cannot_break_out_of_its_quoted_line() -> None:
    lines = problem_lines(["first\n\n# Heading\n| a | b |", "second"]).splitlines()

    assert lines == ["> ⚠️ first # Heading \\| a \\| b \\|", "> ⚠️ second"]


def test_long_notes_are_cut_before_escaping() -> None:
    """The cut is on the note's own text, so it never splits an entity or an escape."""
    text = note_text("<" * 500)

    assert text == "&lt;" * 199 + "…"


def test_plain_link_problems_read_as_before() -> None:
    assert note_text("other-org/secret#3: not visible to the app") == "other-org/secret#3: not visible to the app"


def test_a_hostile_member_name_in_a_rejection_renders_as_text_in_the_check_run() -> None:
    """From the zip through ZipRejected's reason and the note ci_results builds to the summary."""
    bomb = build_raw_zip([RawEntry(HOSTILE.encode(), b"\0" * 100, 1 << 30, 0)])
    with pytest.raises(ZipRejected) as caught:
        read_members(bomb, wanted=lambda _: False)
    assert "<img" in caught.value.reason  # the reason itself is raw: escaping is the renderer's job

    summary = with_problems(CheckOutput("t", "summary", ""), [f"artifact x: {caught.value.reason}"]).summary

    assert "<img" not in summary and "<a " not in summary and "@octocat" not in summary
    assert "&lt;img src=x onerror=alert(1)&gt;" in summary
    assert "<img" not in rendered_html(summary) and "<a " not in rendered_html(summary)


async def test_the_same_annotations_published_again_are_not_added_to_the_check_run_twice(
        fake_github: FakeGitHub, github_app: GitHubApp, handler_db: Database) -> None:
    """GitHub appends every update's annotations: a job's retry, a dashboard revalidation or a CI re-run with the
    same failures added each failure annotation to the one check run again (3 publishes: 3 copies)."""
    repo, sha = "octo-org/app", "a" * 40
    fake_github.add_installation(7, repositories=[repo])
    ctx, _ = make_context("workflow_run", {"installation": {"id": 7}}, db=handler_db, github=github_app)
    notes = [Annotation("tests/test_x.py", n, n, "failure", f"T{n} failed", title=f"T{n}") for n in range(1, 61)]
    output, fields = CheckOutput("60 failed", "summary", ""), {"status": "completed", "conclusion": "failure"}

    run_id = await upsert_check_run(ctx, repo, 2, sha, None, fields, output, notes)  # created: 50, then 10
    assert await upsert_check_run(ctx, repo, 2, sha, run_id, fields, output, notes) == run_id  # by stored id
    assert await upsert_check_run(ctx, repo, 2, sha, None, fields, output, notes) == run_id  # found by name

    assert len(fake_github.check_runs[repo]) == 1
    assert len(fake_github.check_run_annotations[run_id]) == 60
    assert fake_github.check_runs[repo][0]["output"]["title"] == "60 failed"  # the updates themselves went out
    finding = Annotation("src/x.py", 3, 3, "warning", "new finding")
    await upsert_check_run(ctx, repo, 2, sha, run_id, fields, output, [*notes, finding])  # another set is sent
    assert fake_github.check_run_annotations[run_id][-1]["message"] == "new finding"


async def test_a_batch_whose_reply_was_lost_is_not_sent_again(
        fake_github: FakeGitHub, rsa_private_key: str, handler_db: Database) -> None:
    """The second batch's PATCH landed but its reply did not come back in time: it was repeated at once (10
    annotations twice), and a retried job sent every batch again. Now the job is retried, and its run finds
    from the run's external_id that both batches are on it."""
    repo, sha = "octo-org/app", "b" * 40
    fake_github.add_installation(7, repositories=[repo])
    notes = [Annotation("tests/test_x.py", n, n, "failure", f"T{n} failed") for n in range(1, 61)]
    output, fields = CheckOutput("60 failed", "summary", ""), {"status": "completed", "conclusion": "failure"}
    async with aiohttp.ClientSession() as session:
        github = GitHubApp(session, app_id=1, private_key=rsa_private_key, api_url=fake_github.api_url,
                           web_url=fake_github.url, write_interval=0.0, timeout=aiohttp.ClientTimeout(total=0.5))
        ctx, _ = make_context("workflow_run", {"installation": {"id": 7}}, db=handler_db, github=github)
        fake_github.fail_next("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", kind="slow", delay=1.0)
        with pytest.raises(RetryLater, match=r"failed: .*Timeout"):
            await upsert_check_run(ctx, repo, 2, sha, None, fields, output, notes)  # 50 created, 10 lost reply
        [run] = fake_github.check_runs[repo]
        await asyncio.sleep(1.0)  # the fake applies the slow PATCH meanwhile
        assert len(fake_github.check_run_annotations[run["id"]]) == 60
        assert await upsert_check_run(ctx, repo, 2, sha, run["id"], fields, output, notes) == run["id"]
        await github.aclose()
    assert len(fake_github.check_run_annotations[run["id"]]) == 60
    assert fake_github.calls("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")[-1].json[
        "output"]["annotations"] == []


async def test_a_check_run_github_failed_still_leaves_the_notice_to_the_retry(
        fake_github: FakeGitHub, github_app: GitHubApp, handler_db: Database) -> None:
    """The manifest was stored before the check run went out, so the retry after GitHub's 502 found it known and
    the managers never heard that the pull request had a manifest."""
    from handlers import manifests
    from quantumreview.analysis.checklist import Item
    from storage import checklists as checklist_store

    repo, sha = "octo-org/app", "c" * 40
    fake_github.add_installation(7, repositories=[repo])
    fake_github.add_pull(repo, 2, title="Login", body="Closes #7", head_sha=sha,
                         files=[{"filename": "tests/test_login.py", "patch": "@@ -0,0 +1 @@\n+def test_T1_login():"}])
    async with handler_db.transaction() as conn:
        await checklist_store.save_checklist(
            conn, repo=repo, issue_number=7, installation_id=7, title="Login", state="open",
            items=[Item("T1", "User can log in", "")], next_number=2, truncated=False, total_found=1, change={},
            now=1.0)
    fake_github.fail_next("POST", "/repos/{owner}/{repo}/check-runs", status=502)
    data = {"action": "opened", "pull_request": {"number": 2}, "repository": {"full_name": repo},
            "installation": {"id": 7}}
    ctx, first = make_context("pull_request", data, db=handler_db, github=github_app)
    with pytest.raises(RetryLater, match="answered 502"):
        await manifests.build_manifest(ctx.event, ctx)
    ctx, retry = make_context("pull_request", data, db=handler_db, github=github_app, attempt=2)
    await manifests.build_manifest(ctx.event, ctx)
    assert len(fake_github.check_runs[repo]) == 1
    assert [n["title"] for n in first.notifications + retry.notifications] == [
        f"{repo}#2: 1 of 1 criteria have tests at ccccccc"]


@pytest.mark.parametrize("with_annotations", [False, True])
async def test_a_stored_run_of_the_app_under_an_earlier_id_is_replaced_by_one_of_its_own(
        fake_github: FakeGitHub, github_app: GitHubApp, handler_db: Database, with_annotations: bool) -> None:
    """After the App was registered again (/setup), the stored check run ids were the old App's: GitHub answers
    403 "Invalid app_id ... can only be modified by the GitHub App that created it", and every publish for
    those heads failed until its job was dead."""
    repo, sha = "octo-org/app", "d" * 40
    fake_github.add_installation(7, repositories=[repo])
    old = fake_github.add_check_run(repo, head_sha=sha, name="QuantumReview", app_id=999)
    ctx, _ = make_context("workflow_run", {"installation": {"id": 7}}, db=handler_db, github=github_app)
    notes = [Annotation("tests/test_x.py", 1, 1, "failure", "T1 failed")] if with_annotations else []
    output, fields = CheckOutput("1 failed", "summary", ""), {"status": "completed", "conclusion": "failure"}

    run_id = await upsert_check_run(ctx, repo, 2, sha, old["id"], fields, output, notes)

    ours = [r for r in fake_github.check_runs[repo] if r["id"] == run_id]
    assert run_id != old["id"] and ours[0]["app"]["id"] == 1 and ours[0]["output"]["title"] == "1 failed"
    assert len(fake_github.check_run_annotations.get(run_id, [])) == len(notes)
