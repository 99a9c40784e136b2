"""The checklist comment: layout, statuses, tagging help, escaping and GitHub's size limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quantumreview.analysis.checklist import reconcile
from quantumreview.analysis.checklist_comment import (
    MARKER,
    MAX_COMMENT_CHARS,
    ChecklistLine,
    parse_marker,
    render_checklist_comment,
)
from quantumreview.analysis.criteria import extract_criteria
from quantumreview.analysis.test_ids import classname_tid, name_tid


def render(items: list[ChecklistLine], **overrides: Any) -> str:
    """Render with the defaults of an untruncated checklist."""
    options: dict[str, Any] = {"truncated": False, "total_found": len(items), "limit": 100}
    options.update(overrides)
    return render_checklist_comment(items, **options)


def table_rows(body: str) -> list[str]:
    """Return the data rows of the checklist table."""
    lines = body.splitlines()
    start = lines.index("| --- | --- | --- |") + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


def cells(row: str) -> list[str]:
    """Split a table row on unescaped pipes, as GitHub does."""
    parts, current, index = [], "", 0
    while index < len(row):
        if row[index] == "\\" and row[index + 1 : index + 2] == "|":
            current += "\\|"
            index += 2
            continue
        if row[index] == "|":
            parts.append(current.strip())
            current = ""
        else:
            current += row[index]
        index += 1
    return parts[1:]


def test_marker_is_the_first_line_and_parse_marker_finds_it() -> None:
    body = render([ChecklistLine("T1", "Login works", "pending")])
    assert body.splitlines()[0] == MARKER
    assert parse_marker(body) is True
    assert parse_marker("  \n" + body) is True


@pytest.mark.parametrize("body", ["", "Thanks!", f"> {MARKER}\nquoted", "<!-- other:bot -->"])
def test_parse_marker_rejects_other_comments(body: str) -> None:
    assert parse_marker(body) is False


def test_each_status_gets_its_emoji_row_in_order() -> None:
    statuses = ["pending", "passed", "failed", "skipped", "missing"]
    items = [ChecklistLine(f"T{i + 1}", f"criterion {i + 1}", status) for i, status in enumerate(statuses)]  # type: ignore[arg-type]
    rows = [cells(row) for row in table_rows(render(items))]
    assert rows == [
        ["`T1`", "criterion 1", "⏳ pending"],
        ["`T2`", "criterion 2", "✅ passed"],
        ["`T3`", "criterion 3", "❌ failed"],
        ["`T4`", "criterion 4", "⏭️ skipped"],
        ["`T5`", "criterion 5", "❔ missing"],
    ]


def test_unknown_status_is_shown_as_unknown_not_an_error() -> None:
    rows = table_rows(render([ChecklistLine("T1", "x", "exploded")]))  # type: ignore[arg-type]
    assert cells(rows[0])[2] == "⚪ unknown"


def test_tagging_help_uses_the_first_id_in_both_forms_and_examples() -> None:
    body = render([ChecklistLine("T4", "Login works", "pending"), ChecklistLine("T9", "Logout", "pending")])
    help_text = body[body.index("### How to tag tests") :]
    assert "`T4::test_name`" in help_text
    assert 'classname="autoqa:T4"' in help_text
    assert 'record_xml_attribute("classname", "autoqa:T4")' in help_text
    assert "test('T4::login works'" in help_text
    assert "def test_T4_login_works():" in help_text and "`test_T4_name`" in help_text
    assert "T9" not in help_text


def test_every_name_the_tagging_help_shows_carries_its_id_by_the_readers_rule() -> None:
    # The help is what authors copy: each example must be a name the JUnit reader (and so the manifest) reads.
    help_text = render([ChecklistLine("T4", "Login works", "pending")])
    assert name_tid("test_T4_login_works") == name_tid("T4::login works") == "T4"
    assert classname_tid("autoqa:T4") == "T4"
    for example in ("def test_T4_login_works():", "test('T4::login works'", '"classname", "autoqa:T4"'):
        assert example in help_text


def test_truncation_note_says_how_many_are_shown() -> None:
    items = [ChecklistLine(f"T{i}", f"item {i}", "pending") for i in range(1, 101)]
    body = render(items, truncated=True, total_found=5000, limit=100)
    assert "showing the first 100 of 5000 criteria" in body
    assert "showing the first" not in render(items)


def test_pipes_and_newlines_cannot_break_the_table() -> None:
    text = "a | b \\| c\nsecond line\r\n| --- |"
    rows = table_rows(render([ChecklistLine("T1", text, "passed"), ChecklistLine("T2", "next", "failed")]))
    assert len(rows) == 2
    assert [len(cells(row)) for row in rows] == [3, 3]
    assert cells(rows[1]) == ["`T2`", "next", "❌ failed"]


def test_criterion_text_cannot_inject_a_marker_or_html() -> None:
    text = f"{MARKER} <!-- hidden --> <img src=x onerror=alert(1)> --> end"
    body = render([ChecklistLine("T1", text, "pending")])
    assert body.count(MARKER) == 1
    assert body.count("<!--") == 1
    assert "<img" not in body
    assert "&lt;img src=x" in body


@pytest.mark.parametrize(("text", "cell"), [
    ("Render `<br>` as a line break", "Render `<br>` as a line break"),
    ("`a && b` and `x | y` for <b>", "`a && b` and `x \\| y` for &lt;b&gt;"),
    ("``a`<i>`b`` then `@octocat`, not @octocat", "``a`<i>`b`` then `@octocat`, not @\u200boctocat"),
    ("`unclosed <b>", "`unclosed &lt;b&gt;"),
    ("```<b>`` uneven", "```&lt;b&gt;`` uneven"),
], ids=["tag", "ampersand-and-pipe", "double-backticks", "unclosed", "uneven"])
def test_code_spans_in_criteria_show_as_written(text: str, cell: str) -> None:
    """GitHub shows a code span's text as written: escaped there, `<br>` showed as `&lt;br&gt;` and `a && b` as
    `a &amp;&amp; b`, not what the issue said. Outside code spans, HTML and mentions are still defused."""
    (row,) = table_rows(render([ChecklistLine("T1", text, "pending")]))
    assert cells(row) == ["`T1`", cell, "⏳ pending"]


def test_an_escaped_backtick_opens_no_code_span_for_html_to_hide_in() -> None:
    # GitHub reads a backtick after a backslash as text: taken for a span's opener, the `<!--` after it would go raw and
    # hide the rest of the comment. Two backslashes are one, and the backtick opens a span.
    body = render([ChecklistLine("T1", "a \\`<!--` b", "pending"), ChecklistLine("T2", "c \\\\`<b>` d", "passed")])
    assert body.count("<!--") == 1
    assert [cells(row)[1] for row in table_rows(body)] == ["a \\`&lt;!--` b", "c \\\\`<b>` d"]


def test_mentions_in_criteria_do_not_ping_people() -> None:
    body = render([ChecklistLine("T1", "Ask @octocat and @github/team", "pending")])
    assert "@octocat" not in body
    assert "@\u200boctocat" in body


def test_malformed_id_is_escaped_and_not_used_in_examples() -> None:
    body = render([ChecklistLine("<b>|", "x", "pending"), ChecklistLine("T3", "y", "pending")])
    assert "<b>" not in body
    assert "autoqa:T3" in body


def test_long_criterion_text_is_shortened_with_an_ellipsis() -> None:
    rows = table_rows(render([ChecklistLine("T1", "word " * 500, "pending")]))
    text = cells(rows[0])[1]
    assert text.endswith("…")
    assert len(text) <= 300


@pytest.mark.parametrize("text", ["x" * 400, "😀" * 400, "|" * 400, "<" * 400])
def test_thousands_of_items_stay_under_githubs_limit(text: str) -> None:
    items = [ChecklistLine(f"T{i}", text, "failed") for i in range(1, 5001)]
    body = render(items, truncated=True, total_found=9000, limit=5000)
    assert len(body.encode("utf-16-le")) // 2 < MAX_COMMENT_CHARS
    assert "more criteria are not shown" in body
    assert "### How to tag tests" in body
    assert 0 < len(table_rows(body)) < 5000


def test_no_criteria_explains_how_to_add_them() -> None:
    body = render([])
    assert parse_marker(body)
    assert "No acceptance criteria found" in body
    assert "| ID |" not in body


def test_control_characters_are_dropped_from_criterion_text() -> None:
    rows = table_rows(render([ChecklistLine("T1", "a\x00b\x1bc\x7fd", "pending")]))
    assert cells(rows[0])[1] == "abcd"


def test_issue_body_to_comment_end_to_end() -> None:
    body = (Path(__file__).parent / "fixtures" / "issues" / "jordyqd-dashboard-46.md").read_text(encoding="utf-8")
    extraction = extract_criteria(body)
    checklist = reconcile([], {}, 1, extraction.criteria)
    comment = render_checklist_comment(
        [ChecklistLine(item.tid, item.text, "pending") for item in checklist.items],
        truncated=extraction.truncated,
        total_found=extraction.total_found,
        limit=100,
    )
    rows = [cells(row) for row in table_rows(comment)]
    assert [row[0] for row in rows] == ["`T1`", "`T2`", "`T3`", "`T4`", "`T5`"]
    assert rows[1][1] == "Response includes `{data: [...], meta: {page, per_page, total, total_pages}}`"
    assert parse_marker(comment)


def test_lone_surrogates_render_as_replacement_characters_instead_of_raising() -> None:
    # A lone surrogate ("\ud800" in JSON) made the UTF-16 size count raise UnicodeEncodeError: no comment at all.
    body = render([ChecklistLine("T1", "emoji \ud83d cut", "pending"), ChecklistLine("T\udfff", "ok", "passed")])
    body.encode("utf-8")
    assert [cells(row)[:2] for row in table_rows(body)] == [["`T1`", "emoji \ufffd cut"], ["T\ufffd", "ok"]]


def test_tagging_help_names_the_report_artifact_and_file_the_ci_handler_reads() -> None:
    """The help said only "CI must upload a JUnit XML report": from the comment alone no one could set up CI."""
    from quantumreview.ci_results import JUNIT_FILE, REPORT_ARTIFACT

    body = render([ChecklistLine("T1", "Login works", "pending")])
    assert f"`{JUNIT_FILE}`" in body
    assert f"artifact named `{REPORT_ARTIFACT}`" in body
