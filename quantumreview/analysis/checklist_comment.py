"""Render the bot's checklist comment: test IDs, criteria, statuses and how to tag tests."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MARKER = "<!-- quantumreview:checklist -->"
MAX_COMMENT_CHARS = 65_536
MAX_TEXT_CHARS = 300
# Room kept below GitHub's limit for the note that says rows were left out.
_RESERVE = 400

Status = Literal["pending", "passed", "failed", "skipped", "missing"]
STATUS_LABELS: dict[str, str] = {
    "pending": "⏳ pending",
    "passed": "✅ passed",
    "failed": "❌ failed",
    "skipped": "⏭️ skipped",
    "missing": "❔ missing",
}
_UNKNOWN_STATUS = "⚪ unknown"
_TID = re.compile(r"T[1-9][0-9]{0,8}")
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_BACKTICK_RUN = re.compile(r"`+")
# GitHub rejects or mangles NUL and other control characters in comment bodies; a lone surrogate ("\ud800" in
# JSON) cannot be encoded as UTF-8 at all, so it becomes U+FFFD.
_CELL_CHARS: dict[int, str | None] = {
    **dict.fromkeys([*range(0x20), 0x7F]),
    **dict.fromkeys(range(0xD800, 0xE000), "\ufffd"),
}


@dataclass(frozen=True, slots=True)
class ChecklistLine:
    """One row of the checklist: a test ID, its criterion and the latest verdict."""

    tid: str
    text: str
    status: Status


def render_checklist_comment(items: Sequence[ChecklistLine], *, truncated: bool, total_found: int, limit: int) -> str:
    """Return the Markdown body of the checklist comment, always under GitHub's size limit."""
    head = [MARKER, "## 🧪 Acceptance checklist", ""]
    if not items:
        head += [
            "No acceptance criteria found. Add an `## Acceptance criteria` heading (or an `Acceptance criteria:` "
            "line) followed by a list, and each item gets a test ID here.",
        ]
        return "\n".join(head) + "\n"
    head += ["| ID | Criterion | Status |", "| --- | --- | --- |"]
    tail = _truncation_note(truncated, total_found, limit) + _tagging_help(_first_tid(items))
    budget = MAX_COMMENT_CHARS - _RESERVE - _size("\n".join(head + tail))
    rows: list[str] = []
    for line in items:
        row = _row(line)
        budget -= _size(row) + 1
        if budget < 0:
            break
        rows.append(row)
    if len(rows) < len(items):
        tail = [
            "",
            f"> {len(items) - len(rows)} more criteria are not shown: GitHub limits a comment to "
            f"{MAX_COMMENT_CHARS:,} characters.",
            *tail,
        ]
    return "\n".join(head + rows + tail) + "\n"


def parse_marker(body: str) -> bool:
    """Tell whether a comment body is this app's checklist comment."""
    return isinstance(body, str) and body.lstrip().startswith(MARKER)


def escape_cell(text: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Make text safe inside a table cell: one line, no pipes, no HTML, no mentions, bounded length."""
    text = " ".join(text.split()).translate(_CELL_CHARS)
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    # Why code spans apart: GitHub shows their text as written, so `<br>` escaped there showed as `&lt;br&gt;`.
    parts: list[str] = []
    shown = 0
    for start, end in code_spans(text):
        parts += [_escape_text(text[shown:start]), text[start:end].replace("|", "\\|")]
        shown = end
    parts.append(_escape_text(text[shown:]))
    return "".join(parts)


def code_spans(text: str) -> list[tuple[int, int]]:
    """Return the [start, end) of each code span in one line of Markdown, paired as CommonMark does: a backtick run
    opens one closed by the next run of the same length; a run never closed is text, and so is a run's first
    backtick after an odd number of backslashes (escaped)."""
    runs = [(m.start(), m.end()) for m in _BACKTICK_RUN.finditer(text)]
    by_length: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(runs):
        by_length.setdefault(end - start, []).append(index)
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(runs):
        start, end = runs[index]
        index += 1
        slash = start
        while slash > (spans[-1][1] if spans else 0) and text[slash - 1] == "\\":
            slash -= 1
        start += (start - slash) % 2
        same = by_length.get(end - start, [])
        later = bisect.bisect_left(same, index)
        if start < end and later < len(same):
            spans.append((start, runs[same[later]][1]))
            index = same[later] + 1
    return spans


def _escape_text(text: str) -> str:
    """Escape text outside code spans: no HTML, no pipes, no mentions."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    # A zero-width space after @ keeps the comment from pinging people named in the issue.
    return _MENTION.sub("@\u200b", text)


def _row(line: ChecklistLine) -> str:
    """Render one table row."""
    tid = f"`{line.tid}`" if _TID.fullmatch(line.tid) else escape_cell(line.tid, max_chars=20)
    status = STATUS_LABELS.get(line.status, _UNKNOWN_STATUS)
    return f"| {tid} | {escape_cell(line.text) or '(empty)'} | {status} |"


def _first_tid(items: Sequence[ChecklistLine]) -> str:
    """Return the first well-formed test ID, for the examples."""
    return next((line.tid for line in items if _TID.fullmatch(line.tid)), "T1")


def _truncation_note(truncated: bool, total_found: int, limit: int) -> list[str]:
    """Say that the issue has more criteria than the checklist keeps."""
    if not truncated:
        return []
    return ["", f"> ⚠️ The issue has too many criteria: showing the first {limit} of {total_found} criteria."]


def _tagging_help(tid: str) -> list[str]:
    """Explain, with examples using the first ID, how a test is linked to a criterion."""
    return [
        "",
        "### How to tag tests",
        "",
        f"Put the ID in the test name as `{tid}::test_name` or `test_{tid}_name`, or set the JUnit classname to "
        f'`classname="autoqa:{tid}"`. CI must upload the JUnit XML report as `autoqa-test-report.xml` in an '
        "artifact named `autoqa-test-report` (the README shows the workflow step).",
        "",
        "<details><summary>pytest</summary>",
        "",
        "```python",
        f"def test_{tid}_login_works():",
        "    ...",
        "",
        "# or, keeping the name:",
        "def test_login_works(record_xml_attribute):",
        f'    record_xml_attribute("classname", "autoqa:{tid}")',
        "    ...",
        "```",
        "",
        "</details>",
        "",
        "<details><summary>Jest (with jest-junit)</summary>",
        "",
        "```js",
        f"test('{tid}::login works', () => {{",
        "  // ...",
        "});",
        "```",
        "",
        "</details>",
    ]


def _size(text: str) -> int:
    """Count characters the way the limit is safest to read: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2  # a lone surrogate is one unit, not an error
