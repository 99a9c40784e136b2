"""Find the issues a pull request links: closing keywords first, the head branch name as a fallback.

GitHub's rules: https://docs.github.com/en/issues/tracking-your-work-with-issues/using-issues/linking-a-pull-request-to-an-issue
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Literal

MAX_LINKS = 50
MAX_NUMBER = 2**31 - 1
LinkSource = Literal["keyword", "branch"]

# One keyword links one reference; "Closes #1 and #2" links only #1, as on GitHub.
_CLOSING = re.compile(
    r"(?<![\w-])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?:[ \t]*:[ \t]*|[ \t]+)"
    r"(?:"
    r"(?:(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<name>[A-Za-z0-9._-]{1,100}))?#(?P<num>[0-9]{1,10})"
    r"|https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?/(?P<uowner>[A-Za-z0-9][A-Za-z0-9-]{0,38})"
    r"/(?P<uname>[A-Za-z0-9._-]{1,100})/issues/(?P<unum>[0-9]{1,10})"
    r")(?![\w-])",
    re.IGNORECASE,
)
_KEYWORD_HINT = re.compile(r"close|fix|resolve", re.IGNORECASE)
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_QUOTE = re.compile(r" {0,3}>")
# Lines that start a block (list item, ATX heading, thematic break) end a quote instead of continuing it lazily.
_QUOTE_END = re.compile(r" {0,3}(?:[-*+][ \t]|1[.)][ \t]|#{1,6}(?:[ \t]|$)|(?:[-*_][ \t]*){3,}$)")
_INLINE = re.compile(r"`+|<!--")
_BACKTICKS = re.compile(r"`+")
_NUMBERED_BRANCH = re.compile(r"(?P<num>[0-9]{1,10})(?:[-_].*)?")
_PREFIXED_BRANCH = re.compile(
    r"(?:issues?|gh|bug|bugfix|fix|feature|feat|ticket)[-_]?(?P<num>[0-9]{1,10})(?:[-_].*)?", re.IGNORECASE
)
# `7-0-stable`, `2024-05-01-notes` and `1.2` are versions or dates, not issue numbers.
_VERSION_LIKE = re.compile(r"[0-9]+[-_.][0-9]+(?:[-_.]|$)")
_RELEASE_PREFIXES = frozenset({"release", "releases", "version", "versions", "tags", "v"})


@dataclass(frozen=True, slots=True)
class IssueLink:
    """An issue the pull request refers to, and whether a closing keyword or the branch name said so."""

    repo: str
    number: int
    source: LinkSource


def find_linked_issues(title: str, body: str | None, head_ref: str, repo: str) -> tuple[IssueLink, ...]:
    """Return the linked issues in order, deduplicated; the branch name counts only when no keyword links."""
    links: list[IssueLink] = []
    seen: set[tuple[str, int]] = set()
    for text in (title, body):
        if not isinstance(text, str) or not _KEYWORD_HINT.search(text):
            continue
        for match in _CLOSING.finditer(visible_text(text)):
            link = _link_from(match, repo)
            key = (link.repo.lower(), link.number)
            if link.number and key not in seen:
                seen.add(key)
                links.append(link)
                if len(links) >= MAX_LINKS:
                    return tuple(links)
    if links:
        return tuple(links)
    number = branch_issue_number(head_ref) if isinstance(head_ref, str) else None
    return (IssueLink(repo, number, "branch"),) if number else ()


def branch_issue_number(head_ref: str) -> int | None:
    """Read an issue number from a branch name such as `42-login`, `feature/42-login` or `issue-42`."""
    segments = head_ref.removeprefix("refs/heads/").split("/")
    if len(segments) > 1 and segments[0].lower() in _RELEASE_PREFIXES:
        return None
    last = segments[-1]
    if _VERSION_LIKE.match(last):
        return None
    match = _NUMBERED_BRANCH.fullmatch(last) or _PREFIXED_BRANCH.fullmatch(last)
    if match is None:
        return None
    number = int(match.group("num"))
    return number if 0 < number <= MAX_NUMBER else None


def visible_text(text: str) -> str:
    """Blank out what GitHub would not read as prose: code blocks and spans, block quotes, HTML comments."""
    out: list[str] = []
    fence: str | None = None
    in_comment = in_quote = False
    for line in text.splitlines():
        if in_comment:
            end = line.find("-->")
            if end < 0:
                continue
            line, in_comment = line[end + 3 :], False
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        opened = _FENCE.match(line)
        # A backtick fence whose info string holds a backtick is inline code (```npm test``` ...), not a fence
        # that would hide the rest of the body.
        if opened and (opened.group(1)[0] == "~" or "`" not in line[opened.end() :]):
            fence, in_quote = opened.group(1), False
            continue
        if _QUOTE.match(line):
            in_quote = True
            continue
        if not line.strip() or (in_quote and _QUOTE_END.match(line)):
            in_quote = False
        elif in_quote:
            continue  # a lazy continuation line still belongs to the quote above it
        prose, in_comment = strip_inline(line)
        out.append(prose)
    return "\n".join(out)


def strip_inline(line: str) -> tuple[str, bool]:
    """Replace code spans and HTML comments in one line by a space; tell whether a comment stays open."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(line)] if "`" in line else []
    starts = [start for start, _ in runs]
    by_length: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(runs):
        by_length.setdefault(end - start, []).append(index)
    out: list[str] = []
    pos = 0
    while True:
        found = _INLINE.search(line, pos)
        if found is None:
            out.append(line[pos:])
            return "".join(out), False
        out.append(line[pos : found.start()])
        if found.group() == "<!--":
            end = line.find("-->", found.end())
            if end < 0:
                return "".join(out), True
            out.append(" ")
            pos = end + 3
            continue
        closer = _closing_run(runs, starts, by_length, found.start())
        if closer is None:
            out.append(found.group())
            pos = found.end()
        else:
            out.append(" ")
            pos = closer


def _closing_run(
    runs: list[tuple[int, int]], starts: list[int], by_length: dict[int, list[int]], start: int
) -> int | None:
    """Return the end of the next backtick run as long as the one at `start`, found by bisection (linear overall)."""
    index = bisect.bisect_left(starts, start)
    if index >= len(runs) or starts[index] != start:
        return None
    length = runs[index][1] - runs[index][0]
    same = by_length[length]
    later = bisect.bisect_right(same, index)
    return runs[same[later]][1] if later < len(same) else None


def _link_from(match: re.Match[str], repo: str) -> IssueLink:
    """Build the link for one keyword match; a reference to the PR's own repository uses its spelling."""
    owner = match.group("owner") or match.group("uowner")
    name = match.group("name") or match.group("uname")
    number = int(match.group("num") or match.group("unum"))
    target = f"{owner}/{name}" if owner and name else repo
    if target.lower() == repo.lower():
        target = repo
    return IssueLink(target, number if number <= MAX_NUMBER else 0, "keyword")
