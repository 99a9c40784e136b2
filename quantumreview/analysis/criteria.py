"""Extract acceptance criteria from a GitHub issue body.

The rules are those of the labelled corpus (tests/fixtures/issues/README.md): criteria come from
sections started by a matching heading or label line, else from task-list items. Every scan is a
single linear pass over the lines; regexes are anchored and free of nested quantifiers.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

MAX_CRITERIA = 100
MAX_DETAIL_LINES = 50

SECTION_TITLES = frozenset(
    {
        "acceptance criteria", "acceptance criterion", "acceptance", "ac", "acs", "definition of done", "dod",
        "success criteria", "done when", "done criteria", "done is",
        "criterios de aceptación", "criterios de aceptacion", "critérios de aceitação", "criterios de aceitacao",
        "critérios de aceite", "critères d'acceptation", "criteres d'acceptation", "akzeptanzkriterien",
        "abnahmekriterien", "acceptatiecriteria", "acceptatie criteria", "受け入れ基準", "受入基準", "受け入れ条件",
        "tiêu chí chấp nhận", "критерии приемки", "验收标准",
    }
)  # fmt: skip

_LIST_ITEM = re.compile(r"([ \t]*)([-*+]|[0-9]{1,9}[.)])([ \t]+|$)")
_ATX = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_STATE_TOKENS = ("``", "~~", "<!--", "-->")
_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})")
_BACKTICK_RUN = re.compile(r"`+")
_SCENARIO = re.compile(r"[*_]{0,3}(?:Scenario Outline|Scenario)[*_]{0,3}[ \t]*:[*_]{0,3}")
_STEP = re.compile(r"[*_]{0,3}(Given|When|Then|And|But)(?=[\s*_:,]|$)")
_AUTHOR_TID = re.compile(r"(?:\[T([0-9]{1,5})\]|\*{0,2}T([0-9]{1,5})\*{0,2}[ \t]*(?:::?|[.)\u2013\u2014-]))(?=\s|$)")
_EMPHASIS = ("***", "**", "__", "*", "_")
_NO_HEADING = (0, "", 1)
_ITEM_STARTS = frozenset("-*+0123456789")
# Label comparison drops `*` and ASCII symbols and reads `-`/`_` as spaces.
_ASCII_LABEL_NOISE = str.maketrans({"*": None, "-": " ", "_": " ", **{ch: None for ch in "$+<=>^`|~"}})
# A lone surrogate ("\ud800" in GitHub's JSON) cannot be encoded as UTF-8, so SQLite could not store it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Zero-width joiner, variation selectors and emoji tag characters are emoji glue, not text.
_IGNORED_CATEGORIES = frozenset({"Sm", "Sc", "Sk", "So", "Cf"})
_EMOJI_GLUE = frozenset({0x200D, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), *range(0xE0020, 0xE0080)})


@dataclass(frozen=True, slots=True)
class Criterion:
    """One acceptance criterion: its text, the lines under it, and an ID the author wrote."""

    text: str
    detail: str
    author_tid: str | None


@dataclass(frozen=True, slots=True)
class Extraction:
    """The criteria found in one issue body."""

    criteria: tuple[Criterion, ...]
    has_section: bool
    truncated: bool
    total_found: int


@dataclass(slots=True)
class _Draft:
    """A criterion being assembled while its section is read."""

    text: str
    detail: list[str]


class _Entry(NamedTuple):
    """One classified line of a section: item, scenario, step, para or break."""

    kind: str
    text: str
    keyword: str = ""


def extract_criteria(body: str | None, *, limit: int = MAX_CRITERIA) -> Extraction:
    """Return the acceptance criteria in an issue body, at most `limit` of them."""
    if limit < 0:
        raise ValueError(f"limit must be zero or more, got {limit}")
    if not isinstance(body, str) or not body:
        return Extraction(criteria=(), has_section=False, truncated=False, total_found=0)
    # A byte order mark opening the body (a file saved by Notepad, sent with `gh issue create --body-file`) is
    # skipped by GitHub's Markdown, so a heading on the first line is still a heading.
    lines = visible_lines(encodable(body.removeprefix("\ufeff")))
    stripped = [line.strip() for line in lines]
    sections = find_sections(lines, stripped)
    if sections:
        drafts = [draft for start, end in sections for draft in _section_drafts(lines[start:end], stripped[start:end])]
    else:
        drafts = _task_list_drafts(lines, stripped)
    drafts = [draft for draft in drafts if draft.text]
    kept = tuple(_criterion(draft) for draft in drafts[:limit])
    return Extraction(criteria=kept, has_section=bool(sections), truncated=len(drafts) > limit, total_found=len(drafts))


def encodable(text: str) -> str:
    """Return the text with each lone surrogate replaced by U+FFFD (encoding first is the fast check): text holding
    one can be neither stored in SQLite nor sent to GitHub as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def visible_lines(body: str) -> list[str]:
    """Split a body into lines, dropping fenced code blocks, their fences and HTML comments."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    raw = text.split("\n")
    kept: list[str] = []
    fence = ""
    in_comment = False
    copied = 0
    for i in _state_lines(text):
        if not fence and not in_comment:
            kept.extend(raw[copied:i])
        copied = i + 1
        line, fence, in_comment = _scan_line(raw[i], fence, in_comment)
        if line is not None:
            kept.append(line)
    if not fence and not in_comment:
        kept.extend(raw[copied:])
    return kept


def _state_lines(text: str) -> list[int]:
    """Return the numbers of the lines where fence or comment state can change, in order."""
    # str.find per token is several times faster than one regex alternation over the body.
    positions: list[int] = []
    for token in _STATE_TOKENS:
        at = text.find(token)
        while at >= 0:
            positions.append(at)
            at = text.find(token, at + len(token))
    positions.sort()
    numbers: list[int] = []
    line = 0
    previous = 0
    for position in positions:
        line += text.count("\n", previous, position)
        previous = position
        if not numbers or numbers[-1] != line:
            numbers.append(line)
    return numbers


def _scan_line(line: str, fence: str, in_comment: bool) -> tuple[str | None, str, bool]:
    """Return the visible part of a line (None if nothing) and the fence and comment state after it."""
    if fence:
        return None, ("" if _closes_fence(line, fence) else fence), in_comment
    if in_comment or "<!--" in line:
        uncommented, in_comment = _strip_comments(line, in_comment)
        if uncommented is None:
            return None, fence, in_comment
        line = uncommented
    match = _FENCE.match(line)
    # A backtick fence whose info string holds a backtick is inline code, not a fence.
    if match and (match.group(1)[0] == "~" or "`" not in line[match.end() :]):
        return None, match.group(1), in_comment
    return line, fence, in_comment


def find_sections(lines: list[str], stripped: list[str]) -> list[tuple[int, int]]:
    """Return [start, end) line ranges of the criteria sections, without their heading lines."""
    # Only blank, heading, underline and label-like lines can open or close a section.
    marks = [
        i
        for i, text in enumerate(stripped)
        if not text or text[0] == "#" or text[-1] in ":*" or (text[0] in "=-" and not text.strip(text[0]))
    ]
    sections: list[tuple[int, int]] = []
    start = -1
    level = 0  # heading level of the open section; 0 means a label section
    last_blank = -2
    previous = -2  # the last mark handled
    done = -1  # every line up to here is handled (a setext heading uses two)
    for i in marks:
        if i <= done:
            continue
        text = stripped[i]
        if not text:
            if start >= 0 and level == 0 and last_blank == i - 1:
                sections.append((start, i))
                start = -1
            last_blank = previous = i
            continue
        at = i
        heading_level, title, consumed = _NO_HEADING
        if text[0] in "=-" and previous != i - 1 and i - 1 > done and stripped[i - 1]:
            at = i - 1  # an underline whose text line was not a mark
            heading_level, title, consumed = heading_at(lines, stripped, at)
        if not heading_level:
            at = i
            heading_level, title, consumed = heading_at(lines, stripped, i)
        previous = i
        if heading_level:
            done = at + consumed - 1
            if start >= 0 and (level == 0 or heading_level <= level):
                sections.append((start, at))
                start = -1
            if start < 0 and is_section_title(title):
                start, level = at + consumed, heading_level
            continue
        label = label_text(text)
        if label is not None:
            if start >= 0 and level == 0:
                sections.append((start, i))
                start = -1
            if start < 0 and is_section_title(label):
                start, level = i + 1, 0
    if start >= 0:
        sections.append((start, len(lines)))
    return sections


def heading_at(lines: list[str], stripped: list[str], i: int) -> tuple[int, str, int]:
    """Return (level, text, lines used) of an ATX or setext heading at line i, or (0, "", 1)."""
    line = lines[i]
    if stripped[i][0] == "#" and "#" in line[:4]:
        match = _ATX.match(line)
        if match:
            return len(match.group(1)), _atx_text(line[match.end() :]), 1
    if i + 1 < len(lines):
        mark = stripped[i + 1]
        if mark and mark[0] in "=-" and not mark.strip(mark[0]) and not lines[i + 1].startswith("    "):
            if not _LIST_ITEM.match(line) and not is_thematic_break(stripped[i]):
                return (1 if mark[0] == "=" else 2), stripped[i], 2
    return 0, "", 1


def label_text(stripped: str) -> str | None:
    """Return the label of a bold-label or `Label:` line, or None for any other line."""
    if stripped.endswith(":"):
        # The corpus rules read any non-list line ending in ":" as a label, Gherkin steps included.
        return None if _LIST_ITEM.match(stripped) else stripped
    if stripped.startswith("**") and stripped.endswith("**") and len(stripped) >= 5 and "**" not in stripped[2:-2]:
        return stripped[2:-2]
    return None


def is_section_title(text: str) -> bool:
    """Tell whether a heading or label names an acceptance-criteria section."""
    return normalise_title(text) in SECTION_TITLES


def normalise_title(text: str) -> str:
    """Normalise heading/label text the way the corpus rules compare it."""
    if text.isascii():
        text = text.translate(_ASCII_LABEL_NOISE)
    else:
        text = unicodedata.normalize("NFC", text).translate(_ASCII_LABEL_NOISE)
        text = "".join(ch for ch in text if not _is_symbol(ch))
    text = " ".join(text.split())
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or unicodedata.category(text[start])[0] == "P"):
        start += 1
    while end > start and (text[end - 1].isspace() or unicodedata.category(text[end - 1])[0] == "P"):
        end -= 1
    return text[start:end].lower().replace("\u2019", "'")


def trim_emphasis(text: str) -> str:
    """Remove emphasis markers only where one span wraps the whole text."""
    text = text.strip()
    if not text or text[0] not in "*_":
        return text
    changed = True
    while changed:
        changed = False
        for mark in _EMPHASIS:
            size = len(mark)
            if len(text) > 2 * size and text.startswith(mark) and text.endswith(mark):
                inner = text[size:-size]
                if mark not in inner:
                    text, changed = inner.strip(), True
                    break
    return text


def is_thematic_break(stripped: str) -> bool:
    """Tell whether a stripped line is a thematic break such as `---` or `* * *`."""
    if not stripped or stripped[0] not in "-*_" or stripped.strip(stripped[0] + " \t"):
        return False
    compact = stripped.replace(" ", "").replace("\t", "")
    return len(compact) >= 3 and compact == stripped[0] * len(compact)


def _is_symbol(ch: str) -> bool:
    """Tell whether a character is a symbol, emoji glue or an invisible format character that labels ignore."""
    # Format characters (Cf: zero-width space, BOM, direction marks, soft hyphen) are invisible; pasted into a
    # heading they kept "Acceptance Criteria\u200b" from matching though it looks exactly right.
    return unicodedata.category(ch) in _IGNORED_CATEGORIES or ord(ch) in _EMOJI_GLUE


def _atx_text(rest: str) -> str:
    """Return an ATX heading's text without its optional closing hashes."""
    rest = rest.strip()
    without = rest.rstrip("#")
    if without != rest and (not without or without[-1] in " \t"):
        return without.strip()
    return rest


def _closes_fence(line: str, fence: str) -> bool:
    """Tell whether a line closes the open fence (same character, at least as long, nothing after)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)


def _strip_comments(line: str, in_comment: bool) -> tuple[str | None, bool]:
    """Remove HTML comments from a line; None when nothing but comment and whitespace was there."""
    parts: list[str] = []
    pos = 0
    spans = _CodeSpans(line) if "`" in line else None
    while True:
        if in_comment:
            close = line.find("-->", pos)
            if close < 0:
                break
            pos, in_comment = close + 3, False
        else:
            opening = line.find("<!--", pos)
            if opening < 0:
                parts.append(line[pos:])
                break
            # A "<!--" inside a code span (`<!--` in a criterion) is text; read as a comment it hid the rest.
            span_end = spans.end_of_span_before(pos, opening) if spans is not None else None
            if span_end is not None:
                parts.append(line[pos:span_end])
                pos = span_end
                continue
            parts.append(line[pos:opening])
            pos, in_comment = opening + 4, True
    kept = "".join(parts)
    return (kept if kept.strip() else None), in_comment


class _CodeSpans:
    """The backtick runs of one line, paired into code spans left to right as CommonMark does."""

    def __init__(self, line: str) -> None:
        self.runs = [(m.start(), m.end()) for m in _BACKTICK_RUN.finditer(line)]
        self.starts = [start for start, _ in self.runs]
        self.by_length: dict[int, list[int]] = {}
        for index, (start, end) in enumerate(self.runs):
            self.by_length.setdefault(end - start, []).append(index)

    def end_of_span_before(self, pos: int, limit: int) -> int | None:
        """Return the end of the first code span opened in [pos, limit) that reaches past limit, else None."""
        index = bisect.bisect_left(self.starts, pos)
        while index < len(self.runs) and self.runs[index][0] < limit:
            start, end = self.runs[index]
            same = self.by_length[end - start]
            later = bisect.bisect_right(same, index)  # the closer: the next run of the same length
            if later == len(same):
                index += 1  # an unmatched run is literal backticks
                continue
            closer = same[later]
            if self.runs[closer][1] > limit:
                return self.runs[closer][1]
            index = closer + 1
        return None


def _indent(line: str) -> int:
    """Return the width of a line's leading whitespace, tabs counting to the next multiple of 4."""
    width = len(line) - len(line.lstrip(" \t"))
    return len(line[:width].expandtabs(4)) if "\t" in line[:width] else width


def _list_marker(line: str, stripped: str) -> tuple[int, int] | None:
    """Return (content column, offset where the item's text starts) of a list item line, or None."""
    if stripped[0] not in _ITEM_STARTS:
        return None
    match = _LIST_ITEM.match(line)
    if match is None or is_thematic_break(stripped):
        return None
    indent, marker, gap = match.group(1, 2, 3)
    if "\t" in indent or "\t" in gap:
        indent = indent.expandtabs(4)
        gap = (indent + marker + gap).expandtabs(4)[len(indent) + len(marker) :]
    # CommonMark: a gap of more than four spaces means the content starts one column after the marker.
    return len(indent) + len(marker) + (len(gap) if 1 <= len(gap) <= 4 else 1), match.end()


def _item_text(line: str, offset: int) -> tuple[str, bool]:
    """Return a list item's text without task box and wrapping emphasis, and whether it had a box."""
    rest = line[offset:]
    # A task box is `[ ]`, `[x]` or `[X]` followed by whitespace or the end of the line.
    has_box = rest[:1] == "[" and rest[2:3] == "]" and rest[1:2] in (" ", "x", "X") and rest[3:4] in ("", " ", "\t")
    return trim_emphasis(rest[3:] if has_box else rest), has_box


def _section_entries(lines: list[str], stripped: list[str]) -> Iterator[tuple[_Entry, list[str]]]:
    """Classify a section's lines, yielding each entry with the detail lines attached to it."""
    item_column = -1  # content column of the open top-level list item, -1 when none
    entry: _Entry | None = None
    detail: list[str] = []
    after_blank = False
    i = 0
    while i < len(lines):
        line, text = lines[i], stripped[i]
        if not text:
            after_blank = True
            i += 1
            continue
        following = stripped[i + 1] if i + 1 < len(lines) else ""
        if text[0] == "#" or (following[:1] in ("=", "-") and not following.strip(following[0])):
            heading_level, _, consumed = heading_at(lines, stripped, i)
        else:
            heading_level, consumed = 0, 1
        if heading_level or (text[0] in "-*_" and is_thematic_break(text)):
            item_column = -1
            if entry is not None:
                yield entry, detail
            entry, detail = _Entry("break", ""), []
            i += consumed
            after_blank = False
            continue
        i += 1
        marker = _list_marker(line, text) if text[0] in _ITEM_STARTS else None
        if item_column >= 0 and (
            _indent(line) >= item_column or (not after_blank and marker is None and not _is_gherkin(text))
        ):
            if len(detail) < MAX_DETAIL_LINES:
                detail.append(text)
            after_blank = False
            continue
        after_blank = False
        if entry is not None:
            yield entry, detail
        entry, detail = _classify(line, text, marker), []
        item_column = marker[0] if marker else -1
    if entry is not None:
        yield entry, detail


def _is_gherkin(stripped: str) -> bool:
    """Tell whether a line is a Gherkin step or scenario line."""
    return bool(_STEP.match(stripped) or _SCENARIO.match(stripped))


def _classify(line: str, stripped: str, marker: tuple[int, int] | None) -> _Entry:
    """Classify one section line that belongs to no list item."""
    if marker is not None:
        return _Entry("item", _item_text(line, marker[1])[0])
    scenario = _SCENARIO.match(stripped)
    if scenario:
        title = trim_emphasis(stripped[scenario.end() :])
        return _Entry("scenario", title or stripped)
    step = _STEP.match(stripped)
    if step:
        return _Entry("step", trim_emphasis(stripped), step.group(1))
    label = label_text(stripped)
    if label is not None and is_section_title(label):
        return _Entry("break", "")
    return _Entry("para", trim_emphasis(stripped))


def _section_drafts(lines: list[str], stripped: list[str]) -> list[_Draft]:
    """Apply rules 2-4 to one section's lines."""
    entries = list(_section_entries(lines, stripped))
    kinds = {entry.kind for entry, _ in entries}
    prose_only = kinds.isdisjoint({"item", "scenario", "step"})
    starts_with_given = "scenario" not in kinds
    drafts: list[_Draft] = []
    gherkin: _Draft | None = None  # the scenario or Given criterion collecting step lines
    for entry, detail in entries:
        if entry.kind == "item":
            drafts.append(_Draft(entry.text, detail))
            gherkin = None
        elif entry.kind == "scenario" or (entry.kind == "step" and entry.keyword == "Given" and starts_with_given):
            gherkin = _Draft(entry.text, detail)
            drafts.append(gherkin)
        elif entry.kind == "para" and prose_only:
            drafts.append(_Draft(entry.text, detail))
        elif entry.kind in ("step", "para") and gherkin is not None:
            if len(gherkin.detail) < MAX_DETAIL_LINES:
                gherkin.detail.append(entry.text)
        elif entry.kind == "break":
            gherkin = None
    return drafts


def _task_list_drafts(lines: list[str], stripped: list[str]) -> list[_Draft]:
    """Apply rule 5: every task-list item in the body, at any indentation, is a criterion."""
    drafts: list[_Draft] = []
    column = -1
    for line, text in zip(lines, stripped, strict=True):
        marker = _list_marker(line, text) if "[" in text else None
        item_text, has_box = _item_text(line, marker[1]) if marker else ("", False)
        if marker is not None and has_box:
            column = marker[0]
            drafts.append(_Draft(item_text, []))
        elif column >= 0 and text and _indent(line) >= column:
            if len(drafts[-1].detail) < MAX_DETAIL_LINES:
                drafts[-1].detail.append(text)
        elif text:
            column = -1
    return drafts


def _criterion(draft: _Draft) -> Criterion:
    """Freeze a draft, reading an author-written test ID such as `T7:` from its start."""
    match = _AUTHOR_TID.match(draft.text)
    number = int(match.group(1) or match.group(2)) if match else 0
    return Criterion(text=draft.text, detail="\n".join(draft.detail), author_tid=f"T{number}" if number else None)
