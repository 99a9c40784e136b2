"""Problems and CI notes in the check run summary and the PR comment render as plain text (RELIABILITY AR-13/18)."""

from __future__ import annotations

import markdown_it
import pytest

from quantumreview.analysis.artifact_zip import ZipRejected, read_members
from quantumreview.analysis.pr_render import CheckOutput
from quantumreview.pull_requests import note_text, problem_lines, with_problems
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
