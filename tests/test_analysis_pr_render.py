"""Check-run and comment rendering: tables, escaping, GitHub's size limits, annotations."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from quantumreview.analysis.links import IssueLink
from quantumreview.analysis.manifest import CriterionRef, Manifest, build_manifest
from quantumreview.analysis.pr_render import (
    MARKER,
    MAX_CHECK_CHARS,
    MAX_COMMENT_CHARS,
    Annotation,
    batch_annotations,
    render_manifest_check,
    render_no_links_check,
    render_pr_comment,
    render_verdict_check,
)
from quantumreview.analysis.verdict import compute_verdict

REPO = "octo/app"
LINK = IssueLink(REPO, 1, "keyword")


def utf16(text: str) -> int:
    """Count UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def manifest_for(criteria: list[CriterionRef], test_lines: list[str] | None = None) -> Manifest:
    """Build a manifest with one source file and one test file adding the given lines."""
    lines = test_lines or []
    patch = f"@@ -0,0 +1,{len(lines)} @@\n" + "\n".join("+" + line for line in lines)
    files = [{"filename": "src/auth.py", "status": "modified"}, {"filename": "tests/test_x.py", "patch": patch}]
    return build_manifest(files, criteria)


@dataclass(frozen=True)
class FailingCase:
    """A failing testcase shaped like analysis.junit.FailingCase."""

    tid: str
    status: str
    name: str
    classname: str
    message: str


@dataclass(frozen=True)
class Health:
    """A health summary shaped like the Protocol."""

    score: float | None
    delta: float | None
    counts: dict[str, int]


def test_manifest_check_has_a_row_per_criterion_with_tests_or_a_suggestion() -> None:
    criteria = [CriterionRef(REPO, 1, "T1", "Logs in"), CriterionRef(REPO, 1, "T2", "Logs out")]
    output = render_manifest_check(manifest_for(criteria, ["def test_T1_login(): pass"]), [LINK])
    assert output.title == "1 of 2 criteria have tests in this PR"
    assert "| `T1` | Logs in | octo/app#1 | test_T1_login |  |" in output.summary
    assert "| `T2` | Logs out | octo/app#1 | none | add `test_T2_logs_out` in `tests/test_auth.py` |" in output.summary
    assert "octo/app#1 (closing keyword)" in output.summary
    assert "| source | 1 |" in output.text


def test_manifest_check_names_linked_issues_without_criteria_and_unknown_ids() -> None:
    manifest = manifest_for([CriterionRef(REPO, 1, "T1", "x")], ["def test_T7_x(): pass"])
    output = render_manifest_check(manifest, [LINK, IssueLink("other/lib", 5, "keyword")])
    assert "No acceptance criteria in: other/lib#5" in output.summary
    assert "no linked issue has: `T7`" in output.summary


def test_table_cells_are_escaped() -> None:
    text = "a | b <script>alert(1)</script> @octocat\nsecond line"
    summary = render_manifest_check(manifest_for([CriterionRef(REPO, 1, "T1", text)]), [LINK]).summary
    row = next(line for line in summary.splitlines() if line.startswith("| `T1`"))
    assert "a \\| b &lt;script&gt;" in row and "<script>" not in row and "@\u200boctocat" in row


def test_no_links_check_explains_both_ways_to_link() -> None:
    output = render_no_links_check()
    assert "Closes #12" in output.summary and "12-topic" in output.summary and output.title


def test_verdict_check_shows_results_failures_and_health_trend() -> None:
    criteria = [CriterionRef(REPO, 1, "T1", "Logs in"), CriterionRef(REPO, 1, "T2", "Logs out")]
    verdict = compute_verdict(criteria, {"T1": "passed", "T2": "failed"})
    failing = [FailingCase("T2", "failed", "T2::logs_out", "c", "AssertionError: ```boom```")]
    output = render_verdict_check(verdict, failing, Health(81.25, -2.0, {"errors": 3}))
    assert output.title == "1 failed of 2 criteria"
    assert "| `T2` | Logs out | octo/app#1 | ❌ failed |" in output.summary
    assert "Code health: **81.2** (▼ -2.0) — errors: 3" in output.summary
    assert "````\nAssertionError: ```boom```\n````" in output.text


@pytest.mark.parametrize(
    ("results", "title"),
    [({"T1": "passed"}, "All 1 criteria passed"), (None, "No test report found"), ({}, "1 missing of 1 criteria")],
)
def test_verdict_titles(results: dict[str, str] | None, title: str) -> None:
    verdict = compute_verdict([CriterionRef(REPO, 1, "T1", "x")], results)
    assert render_verdict_check(verdict, [], None).title == title


def test_health_as_a_mapping_and_malformed_health_is_ignored() -> None:
    verdict = compute_verdict([], None)
    assert "Code health: **90.0** (▲ +1.0)" in render_verdict_check(verdict, [], {"score": 90, "delta": 1}).summary
    assert "Code health" not in render_verdict_check(verdict, [], {"score": "high"}).summary
    assert "Code health" not in render_verdict_check(verdict, [], {"score": float("nan")}).summary


def test_comment_starts_with_the_marker_and_shows_results_or_suggestions() -> None:
    criteria = [CriterionRef(REPO, 1, "T1", "Logs in"), CriterionRef(REPO, 1, "T2", "Logs out")]
    manifest = manifest_for(criteria, ["def test_T1_login(): pass"])
    before = render_pr_comment(manifest, None, links=[LINK])
    after = render_pr_comment(manifest, compute_verdict(criteria, {"T1": "passed"}))
    assert before.startswith(MARKER + "\n") and after.startswith(MARKER + "\n")
    assert "add `test_T2_logs_out`" in before
    assert "| `T1` | Logs in | octo/app#1 | test_T1_login | ✅ passed |" in after
    assert "❔ missing" in after


def test_huge_inputs_stay_under_githubs_limits_with_a_note() -> None:
    criteria = [CriterionRef(REPO, 1, f"T{n}", "😀 long criterion " * 30) for n in range(1, 501)]
    manifest = manifest_for(criteria)
    verdict = compute_verdict(criteria, {})
    failing = [FailingCase(f"T{n}", "failed", "t" * 300, "c", "x" * 1024) for n in range(1000)]
    check = render_manifest_check(manifest, [LINK])
    verdict_check = render_verdict_check(verdict, failing, None)
    comment = render_pr_comment(manifest, verdict)
    for text in (check.summary, check.text, verdict_check.summary, verdict_check.text):
        assert utf16(text) <= MAX_CHECK_CHARS
    assert utf16(comment) <= MAX_COMMENT_CHARS and comment.startswith(MARKER)
    assert "more criteria are not shown" in check.summary and "more criteria are not shown" in comment
    assert "more failing tests are not shown" in verdict_check.text


def test_annotation_matches_githubs_object_and_is_clamped() -> None:
    full = Annotation("tests/test_x.py", 3, 3, "failure", "m" * 70_000, "t" * 300, start_column=2, end_column=5)
    data = full.to_dict()
    assert set(data) == {"path", "start_line", "end_line", "annotation_level", "message", "title", "start_column",
                         "end_column"}  # fmt: skip
    assert len(data["message"]) == 64 * 1024 and len(data["title"]) == 255
    multi = Annotation("a.py", 0, -5, "notice", "", start_column=1, end_column=2).to_dict()
    assert (multi["start_line"], multi["end_line"], multi["message"]) == (1, 1, "(no message)")
    spanning = Annotation("a.py", 2, 4, "warning", "m", start_column=1, end_column=2).to_dict()
    assert "start_column" not in spanning and "title" not in spanning


def test_annotations_are_batched_by_fifty() -> None:
    notes = [Annotation("a.py", n, n, "notice", "m") for n in range(1, 121)]
    batches = batch_annotations(notes)
    assert [len(batch) for batch in batches] == [50, 50, 20]
    assert [a for batch in batches for a in batch] == notes
    assert batch_annotations([]) == []
    with pytest.raises(ValueError, match="between 1 and 50"):
        batch_annotations(notes, size=51)


def test_lone_surrogates_in_test_names_and_messages_render_instead_of_raising() -> None:
    # Test names come from the stored manifest (JSON keeps "\ud800" escapes) and messages from CI: a lone
    # surrogate made the UTF-16 size count raise UnicodeEncodeError, so neither the check nor the comment was sent.
    criteria = [CriterionRef(REPO, 1, "T1", "Logs in \udc00")]
    manifest = manifest_for(criteria, ["it('T1::logs in \ud800', () => {})"])
    verdict = compute_verdict(criteria, {"T1": "failed"})
    failing = [FailingCase("T1", "failed", "T1 logs in \ud800", "", "boom \udfff")]
    comment = render_pr_comment(manifest, verdict, links=[LINK])
    check = render_verdict_check(verdict, failing, None)
    note = Annotation("tests/test_x.py", 1, 1, "failure", "boom \udfff", title="T1 \ud800").to_dict()
    for text in (comment, render_manifest_check(manifest, [LINK]).summary, check.summary, check.text, *note.values()):
        str(text).encode("utf-8")
    assert "T1::logs in \ufffd" in comment and "boom \ufffd" in check.text and note["message"] == "boom \ufffd"


def test_names_a_fork_chooses_cannot_render_links_or_images() -> None:
    # Test names, failing test names and file paths come from the pull request (a fork's): they rendered as
    # links and images in the bot's comment and checks ("[Claim your reward](https://...)"), with its authority.
    name = "T1::[Claim reward](https://evil.example) ![ok](https://evil.example/badge.png) www.evil.example"
    criteria = [CriterionRef(REPO, 1, "T1", "Logs in"), CriterionRef(REPO, 1, "T2", "Logs out")]
    files = [
        {"filename": "src/[docs](https://evil.example)`.py", "status": "modified"},
        {"filename": "tests/x.test.js", "patch": f"@@ -0,0 +1,1 @@\n+it('{name}', () => {{}})"},
    ]
    manifest = build_manifest(files, criteria)
    verdict = compute_verdict(criteria, {"T1": "failed"})
    comment = render_pr_comment(manifest, None, links=[LINK])
    check = render_manifest_check(manifest, [LINK])
    health = {"score": 1, "counts": {"[x](https://evil.example)": 1}}
    failed = render_verdict_check(verdict, [FailingCase("T1", "failed", name, "", "boom")], health)
    for text in (comment, check.summary, check.text, failed.text, failed.summary):
        assert "](" not in text.replace("\\](", "") and "https://evil" not in text and "www.evil" not in text
    assert "T1::\\[Claim reward\\](https:\u200b//evil.example) !\\[ok\\]" in comment


def test_tests_naming_an_id_the_report_will_not_carry_are_listed_with_how_to_write_them() -> None:
    # A tag or a display name never reaches the JUnit report, so the test covers nothing: the check and the comment
    # say so, rather than leaving the criterion "missing" later without a reason.
    criteria = [CriterionRef(REPO, 1, "T1", "Logs in")]
    manifest = manifest_for(criteria, ["@pytest.mark.tid('T1')", "def test_login(): pass"])
    assert manifest.uncarried, "the manifest lists the mark as uncarried"
    check = render_manifest_check(manifest, [LINK]).summary
    comment = render_pr_comment(manifest, None, links=[LINK])
    for text in (check, comment):
        assert "name a test ID in a form the JUnit report will not carry" in text
        assert "`tests/test_x.py`" in text and manifest.uncarried[0].advice[:20] in text
    plain = render_manifest_check(manifest_for(criteria, ["def test_T1_login(): pass"]), [LINK]).summary
    assert "will not carry" not in plain


def test_the_uncarried_list_is_capped() -> None:
    criteria = [CriterionRef(REPO, 1, "T1", "Logs in")]
    lines = [line for n in range(25) for line in ("@pytest.mark.tid('T1')", f"def test_login_{n}(): pass")]
    summary = render_manifest_check(manifest_for(criteria, lines), [LINK]).summary
    assert summary.count("in `tests/test_x.py`") == 20 and "and 5 more" in summary
