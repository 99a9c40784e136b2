"""Render the pull request's check runs and comment as Markdown, always within GitHub's size limits.

Check-run output: https://docs.github.com/en/rest/checks/runs#create-a-check-run
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from quantumreview.analysis.checklist_comment import MAX_TEXT_CHARS, escape_cell
from quantumreview.analysis.criteria import encodable
from quantumreview.analysis.links import IssueLink
from quantumreview.analysis.manifest import Coverage, CriterionRef, Manifest
from quantumreview.analysis.paths import FILE_CLASSES
from quantumreview.analysis.verdict import Verdict

MARKER = "<!-- quantumreview:pr -->"
MAX_CHECK_CHARS = 65_535
MAX_COMMENT_CHARS = 65_536
MAX_ANNOTATIONS = 50
MAX_TITLE = 255
MAX_ANNOTATION_TEXT = 64 * 1024
MAX_MESSAGE = 2000
TESTS_PER_CELL = 3
UNCARRIED_SHOWN = 20
# Room kept below a limit for the note that says rows were left out.
_RESERVE = 300
_BACKTICKS = re.compile(r"`+")
# Names a fork chooses (tests, files, report keys) must not render as links or images in the bot's output:
# brackets (and the backslash that could undo their escape) are escaped, and a zero-width space after the
# colon of "://" or after "www" keeps GitHub from autolinking a bare URL.
_LINK_PUNCT = re.compile(r"([\\\[\]])")
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=\bwww)(?=\.)", re.IGNORECASE)
_OUTCOME_LABELS = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭️ skipped", "missing": "❔ missing"}
AnnotationLevel = Literal["notice", "warning", "failure"]


class FailingCaseLike(Protocol):
    """What the renderer reads from a failing testcase (analysis.junit.FailingCase fits)."""

    @property
    def tid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def message(self) -> str: ...


class HealthLike(Protocol):
    """A code-health summary: score, change since the base, and counts by kind."""

    @property
    def score(self) -> float | None: ...
    @property
    def delta(self) -> float | None: ...
    @property
    def counts(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class CheckOutput:
    """The `output` object of a check run."""

    title: str
    summary: str
    text: str

    def to_dict(self) -> dict[str, str]:
        """Return the object as GitHub's API takes it."""
        return {"title": self.title, "summary": self.summary, "text": self.text}


@dataclass(frozen=True, slots=True)
class Annotation:
    """One check-run annotation; to_dict() clamps it to what GitHub accepts."""

    path: str
    start_line: int
    end_line: int
    annotation_level: AnnotationLevel
    message: str
    title: str | None = None
    raw_details: str | None = None
    start_column: int | None = None
    end_column: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the annotation object of the check-runs API, without the fields that are not set."""
        start = max(1, self.start_line)
        end = max(start, self.end_line)
        data: dict[str, Any] = {
            "path": self.path,
            "start_line": start,
            "end_line": end,
            "annotation_level": self.annotation_level,
            "message": _clip(self.message, MAX_ANNOTATION_TEXT) or "(no message)",
        }
        if self.title:
            data["title"] = _clip(self.title, MAX_TITLE)
        if self.raw_details:
            data["raw_details"] = _clip(self.raw_details, MAX_ANNOTATION_TEXT)
        # GitHub accepts columns only on a one-line annotation.
        if start == end and self.start_column is not None and self.end_column is not None:
            data["start_column"] = max(1, self.start_column)
            data["end_column"] = max(data["start_column"], self.end_column)
        return data


def batch_annotations(annotations: Sequence[Annotation], size: int = MAX_ANNOTATIONS) -> list[list[Annotation]]:
    """Split annotations into batches GitHub takes in one request (at most 50 each)."""
    if not 1 <= size <= MAX_ANNOTATIONS:
        raise ValueError(f"batch size must be between 1 and {MAX_ANNOTATIONS}, got {size}")
    return [list(annotations[start : start + size]) for start in range(0, len(annotations), size)]


def render_manifest_check(manifest: Manifest, links: Sequence[IssueLink], *, notes: Sequence[str] = ()) -> CheckOutput:
    """Render the manifest check: criteria of the linked issues, their tests in this PR, suggestions.

    `notes` are Markdown lines shown first and kept whole; rows are left out to make room for them.
    """
    total = len(manifest.coverage)
    covered = sum(bool(item.tests) for item in manifest.coverage)
    title = f"{covered} of {total} criteria have tests in this PR" if total else "No acceptance criteria found"
    head = [*_preface(notes), f"Linked issues: {_link_list(links)}", ""]
    bare = _issues_without_criteria(manifest, links)
    if bare:
        head += [f"No acceptance criteria in: {bare}. Add an `## Acceptance criteria` list to the issue.", ""]
    rows: list[str] = []
    if total:
        head += ["| ID | Criterion | Issue | Tests in this PR | Suggestion |", "| --- | --- | --- | --- | --- |"]
        rows = [_coverage_row(item) for item in manifest.coverage]
    tail = _unknown_note(manifest) + _uncarried_note(manifest)
    summary = _fit(head, rows, tail, MAX_CHECK_CHARS, "criteria")
    return CheckOutput(title, summary, _files_text(manifest))


def render_no_links_check() -> CheckOutput:
    """Render the neutral check shown when the pull request links no issue."""
    summary = "\n".join(
        [
            "This pull request is not linked to an issue, so there are no acceptance criteria to check.",
            "",
            "Link one in either way:",
            "",
            "- write a closing keyword in the pull request description, for example `Closes #12`;",
            "- or name the branch after the issue, for example `12-topic` or `feature/12-topic`.",
        ]
    )
    return CheckOutput("No linked issue", summary, "")


def render_verdict_check(
    verdict: Verdict, failing_cases: Sequence[FailingCaseLike], health: HealthLike | Mapping[str, Any] | None, *,
    notes: Sequence[str] = (),
) -> CheckOutput:
    """Render the verdict check: a row per criterion, failing tests with messages, the health score and trend.

    `notes` are Markdown lines shown first and kept whole; rows are left out to make room for them.
    """
    head = [*_preface(notes), _verdict_line(verdict), ""]
    health_line = _health_line(health)
    if health_line:
        head += [health_line, ""]
    rows: list[str] = []
    if verdict.results:
        head += ["| ID | Criterion | Issue | Result |", "| --- | --- | --- | --- |"]
        rows = [
            f"| {_tid(row.criterion.tid)} | {escape_cell(row.criterion.text) or '(empty)'} | "
            f"{_issue(row.criterion)} | {_OUTCOME_LABELS[row.outcome]} |"
            for row in verdict.results
        ]
    summary = _fit(head, rows, [], MAX_CHECK_CHARS, "criteria")
    blocks = [_failing_block(case) for case in failing_cases]
    text = _fit(["## Failing tests", ""] if blocks else [], blocks, [], MAX_CHECK_CHARS, "failing tests")
    return CheckOutput(_verdict_title(verdict), summary, text)


def render_pr_comment(
    manifest: Manifest,
    verdict: Verdict | None,
    *,
    links: Sequence[IssueLink] = (),
    health: HealthLike | Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Render the bot's pull request comment, marker first, under GitHub's comment limit.

    `notes` are Markdown lines shown after the marker and kept whole; rows are left out to make room for them.
    """
    head = [MARKER, *_preface(notes), "## 🧪 Acceptance criteria for this pull request", ""]
    if links:
        head += [f"Linked issues: {_link_list(links)}", ""]
    if verdict is not None:
        head += [_verdict_line(verdict), ""]
    health_line = _health_line(health)
    if health_line:
        head += [health_line, ""]
    results = verdict.results if verdict is not None else ()
    outcomes = {(r.criterion.repo, r.criterion.issue_number, r.criterion.tid): r.outcome for r in results}
    rows: list[str] = []
    if manifest.coverage:
        head += ["| ID | Criterion | Issue | Tests in this PR | Result |", "| --- | --- | --- | --- | --- |"]
        for item in manifest.coverage:
            c = item.criterion
            outcome = outcomes.get((c.repo, c.issue_number, c.tid))
            result = _OUTCOME_LABELS[outcome] if outcome else _suggestion_cell(item)
            cells = [_tid(c.tid), escape_cell(c.text) or "(empty)", _issue(c), _tests_cell(item), result]
            rows.append("| " + " | ".join(cells) + " |")
    else:
        head += ["No acceptance criteria found in the linked issues."]
    body = _fit(head, rows, _unknown_note(manifest) + _uncarried_note(manifest), MAX_COMMENT_CHARS, "criteria")
    return body if body.startswith(MARKER) else MARKER + "\n" + body


def _preface(notes: Sequence[str]) -> list[str]:
    """Notes and the blank line that ends their block, or nothing."""
    return [*notes, ""] if notes else []


def _verdict_title(verdict: Verdict) -> str:
    total = len(verdict.results)
    if not total:
        return "No acceptance criteria to check"
    if not verdict.report_found:
        return "No test report found"
    if verdict.conclusion == "success":
        return f"All {total} criteria passed"
    parts = [f"{n} {label}" for n, label in ((verdict.failed, "failed"), (verdict.missing, "missing")) if n]
    parts += [f"{verdict.skipped} skipped"] if verdict.skipped else []
    return f"{', '.join(parts)} of {total} criteria"


def _verdict_line(verdict: Verdict) -> str:
    if not verdict.report_found:
        return "No JUnit report was found for this commit, so no criterion could be checked."
    return (
        f"**{verdict.passed}** passed · **{verdict.failed}** failed · **{verdict.skipped}** skipped · "
        f"**{verdict.missing}** missing"
    )


def _health_line(health: HealthLike | Mapping[str, Any] | None) -> str:
    """Describe the health score and its trend; a malformed summary renders as nothing."""
    if health is None:
        return ""
    read = health.get if isinstance(health, Mapping) else lambda key: getattr(health, key, None)
    score, delta, counts = _number(read("score")), _number(read("delta")), read("counts")
    if score is None:
        return ""
    line = f"Code health: **{score:.1f}**"
    if delta is not None:
        arrow = "▲" if delta > 0 else "▼" if delta < 0 else "="
        line += f" ({arrow} {delta:+.1f})"
    if isinstance(counts, Mapping) and counts:
        shown = [
            f"{_literal(str(k), max_chars=40)}: {v}" for k, v in list(counts.items())[:10] if _number(v) is not None
        ]
        line += " — " + ", ".join(shown) if shown else ""
    return line


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _failing_block(case: FailingCaseLike) -> str:
    message = _clip(str(getattr(case, "message", "")), MAX_MESSAGE)
    fence = "`" * max(3, 1 + max((len(run) for run in _BACKTICKS.findall(message)), default=0))
    title = f"### {_tid(str(getattr(case, 'tid', '?')))} {_literal(str(getattr(case, 'name', '')))}"
    return "\n".join([title, "", fence, message or "(no message)", fence, ""])


def _coverage_row(item: Coverage) -> str:
    c = item.criterion
    suggestion = "" if item.tests else _suggestion_cell(item)
    return f"| {_tid(c.tid)} | {escape_cell(c.text) or '(empty)'} | {_issue(c)} | {_tests_cell(item)} | {suggestion} |"


def _tests_cell(item: Coverage) -> str:
    if not item.tests:
        return "none"
    names = [_literal(ref.name or ref.path, max_chars=80) for ref in item.tests[:TESTS_PER_CELL]]
    more = len(item.tests) - TESTS_PER_CELL
    return "<br>".join(names) + (f" (+{more} more)" if more > 0 else "")


def _suggestion_cell(item: Coverage) -> str:
    if item.suggestion is None:
        return ""
    return f"add {_code(item.suggestion.name)} in {_code(item.suggestion.path)}"


def _code(text: str) -> str:
    """Show text as a code span when that is safe, else as escaped text."""
    cell = escape_cell(text, max_chars=120)
    return f"`{cell}`" if "`" not in cell and "&" not in cell else _literal(text, max_chars=120)


def _literal(text: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Escape a name a fork chooses as table-cell text that shows as written: no link, image or autolink."""
    return escape_cell(_AUTOLINK.sub("\u200b", _LINK_PUNCT.sub(r"\\\1", text)), max_chars=max_chars)


def _tid(tid: str) -> str:
    return _code(tid) if len(tid) <= 20 else escape_cell(tid, max_chars=20)


def _issue(criterion: CriterionRef) -> str:
    return escape_cell(f"{criterion.repo}#{criterion.issue_number}", max_chars=120)


def _link_list(links: Sequence[IssueLink]) -> str:
    if not links:
        return "none"
    how = {"keyword": "closing keyword", "branch": "branch name"}
    shown = [f"{escape_cell(f'{link.repo}#{link.number}', max_chars=120)} ({how[link.source]})" for link in links[:20]]
    return ", ".join(shown) + (f" and {len(links) - 20} more" if len(links) > 20 else "")


def _issues_without_criteria(manifest: Manifest, links: Sequence[IssueLink]) -> str:
    having = {(c.criterion.repo.lower(), c.criterion.issue_number) for c in manifest.coverage}
    bare = [link for link in links if (link.repo.lower(), link.number) not in having]
    return ", ".join(escape_cell(f"{link.repo}#{link.number}", max_chars=120) for link in bare[:20])


def _uncarried_note(manifest: Manifest) -> list[str]:
    """Tests naming an ID in a form the JUnit report will not carry cover nothing: say which, and how to write them."""
    if not manifest.uncarried:
        return []
    lines = ["", "> ⚠️ These tests name a test ID in a form the JUnit report will not carry, so they cover nothing:"]
    for ref in manifest.uncarried[:UNCARRIED_SHOWN]:
        lines.append(f"> - {_literal(ref.name or ref.path, max_chars=80)} in {_code(ref.path)} "
                     f"{escape_cell(ref.advice, max_chars=400)}")
    more = len(manifest.uncarried) - UNCARRIED_SHOWN
    return lines + ([f"> - and {more} more"] if more > 0 else [])


def _unknown_note(manifest: Manifest) -> list[str]:
    if not manifest.unknown_ids:
        return []
    ids = ", ".join(_tid(tid) for tid in manifest.unknown_ids[:50])
    more = f" and {len(manifest.unknown_ids) - 50} more" if len(manifest.unknown_ids) > 50 else ""
    return ["", f"> ⚠️ Tests carry IDs that no linked issue has: {ids}{more}. Check the ID or link the issue."]


def _files_text(manifest: Manifest) -> str:
    head = ["## Changed files", "", "| Class | Files | + | − |", "| --- | --- | --- | --- |"]
    for kind in FILE_CLASSES:
        group = manifest.group(kind)
        head.append(f"| {kind} | {group.count} | {group.additions} | {group.deletions} |")
    if manifest.files_truncated:
        analysed = sum(group.count for group in manifest.files)
        head += ["", f"> Only the first {analysed:,} of {manifest.total_files:,} files were analysed."]
    rows = [f"- {kind}: {_literal(path)}" for kind in FILE_CLASSES for path in manifest.group(kind).paths]
    return _fit([*head, ""], rows, [], MAX_CHECK_CHARS, "file names")


def _fit(head: list[str], rows: list[str], tail: list[str], limit: int, what: str) -> str:
    """Join head, as many rows as fit, a note for the rest, and tail; clip the whole as a last resort."""
    budget = limit - _RESERVE - _size("\n".join(head + tail))
    kept: list[str] = []
    for row in rows:
        budget -= _size(row) + 1
        if budget < 0:
            break
        kept.append(row)
    note = []
    if len(kept) < len(rows):
        note = [
            "",
            f"> {len(rows) - len(kept)} more {what} are not shown: GitHub limits this text to {limit:,} characters.",
        ]
    return _clip("\n".join(head + kept + note + tail) + "\n", limit)


def _clip(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-16 code units, ending with an ellipsis when cut; lone surrogates become
    U+FFFD, since text holding one cannot be sent to GitHub as UTF-8."""
    text = encodable(text)
    if _size(text) <= limit:
        return text
    cut = text[: limit - 1]
    while _size(cut) > limit - 1:
        cut = cut[: len(cut) - max(1, (_size(cut) - limit + 1) // 2)]
    return cut + "…"


def _size(text: str) -> int:
    """Count characters as GitHub's limit is safest read: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2  # a lone surrogate is one unit, not an error
