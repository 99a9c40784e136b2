"""Give acceptance criteria stable test IDs (T1, T2, ...) across edits of the issue body.

An ID names one criterion for good: tests are tagged with it, so it follows the criterion through
rewording and reordering, is retired when the criterion goes, and is never handed to another one.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from quantumreview.analysis.criteria import Criterion

REWORD_THRESHOLD = 0.6
MAX_EXACT_SCORES = 5
# ratio() is quadratic in the texts' length (a pair of 4,000-character lines took seconds, of 60,000 hours, with
# the server's event loop blocked), so a longer text is compared by its start and end; few criteria are longer.
REWORD_CHARS = 120
_TID = re.compile(r"T([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class Item:
    """One checklist entry: a criterion and the test ID it carries."""

    tid: str
    text: str
    detail: str


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The checklist after an edit, with what changed."""

    items: tuple[Item, ...]
    retired: Mapping[str, str]
    next_number: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    reworded: tuple[str, ...]


def reconcile(
    previous: Sequence[Item], retired: Mapping[str, str], next_number: int, criteria: Sequence[Criterion]
) -> Reconciliation:
    """Match the criteria of an edited body to the previous checklist and assign test IDs."""
    assigned: list[str | None] = [None] * len(criteria)
    claimed: set[str] = set()
    _assign_author_ids(criteria, assigned, claimed)
    unclaimed_previous = [item for item in previous if item.tid not in claimed]
    _assign_exact(criteria, assigned, claimed, [(item.tid, item.text) for item in unclaimed_previous])
    _assign_exact(criteria, assigned, claimed, [(tid, text) for tid, text in retired.items() if tid not in claimed])
    _assign_reworded(criteria, assigned, claimed, [item for item in unclaimed_previous if item.tid not in claimed])
    start = _first_free_number(next_number, [item.tid for item in previous], retired)
    number = _assign_new_numbers(assigned, claimed, retired, start)
    items = tuple(
        Item(tid=str(tid), text=criterion.text, detail=criterion.detail)
        for tid, criterion in zip(assigned, criteria, strict=True)
    )
    return _summarise(previous, retired, items, number)


def tid_number(tid: str) -> int | None:
    """Return the number of a well-formed test ID such as "T12", else None."""
    match = _TID.fullmatch(tid)
    return int(match.group(1)) if match else None


def normalise_text(text: str) -> str:
    """Fold a criterion's text so that case, width and spacing edits do not count."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _assign_author_ids(criteria: Sequence[Criterion], assigned: list[str | None], claimed: set[str]) -> None:
    """Keep IDs the author wrote; a repeated one goes to its first use only."""
    for index, criterion in enumerate(criteria):
        tid = criterion.author_tid
        if tid is not None and tid_number(tid) is not None and tid not in claimed:
            assigned[index] = tid
            claimed.add(tid)


def _assign_exact(
    criteria: Sequence[Criterion], assigned: list[str | None], claimed: set[str], candidates: Iterable[tuple[str, str]]
) -> None:
    """Give each unassigned criterion the ID of an unclaimed candidate with the same normalised text."""
    by_text: dict[str, list[str]] = {}
    for tid, text in candidates:
        by_text.setdefault(normalise_text(text), []).append(tid)
    for index, criterion in enumerate(criteria):
        if assigned[index] is not None:
            continue
        tids = by_text.get(normalise_text(criterion.text))
        while tids:
            tid = tids.pop(0)
            if tid not in claimed:
                assigned[index] = tid
                claimed.add(tid)
                break


def _assign_reworded(
    criteria: Sequence[Criterion], assigned: list[str | None], claimed: set[str], candidates: Sequence[Item]
) -> None:
    """Match lightly edited criteria to left-over previous items, best similarity first."""
    open_indexes = [index for index, tid in enumerate(assigned) if tid is None]
    if not open_indexes or not candidates:
        return
    candidate_texts = [_reword_key(item.text) for item in candidates]
    pairs: list[tuple[float, int, int]] = []
    matcher = difflib.SequenceMatcher(autojunk=False)
    for index in open_indexes:
        matcher.set_seq2(_reword_key(criteria[index].text))
        bounds: list[tuple[float, int]] = []
        for position, text in enumerate(candidate_texts):
            matcher.set_seq1(text)
            if matcher.real_quick_ratio() >= REWORD_THRESHOLD:
                bound = matcher.quick_ratio()
                if bound >= REWORD_THRESHOLD:
                    bounds.append((bound, position))
        # ratio() is quadratic, so only the candidates with the best upper bounds get the exact score.
        bounds.sort(key=lambda scored: -scored[0])
        for _, position in bounds[:MAX_EXACT_SCORES]:
            matcher.set_seq1(candidate_texts[position])
            ratio = matcher.ratio()
            if ratio >= REWORD_THRESHOLD:
                pairs.append((-ratio, index, position))
    pairs.sort()
    for _, index, position in pairs:
        tid = candidates[position].tid
        if assigned[index] is None and tid not in claimed:
            assigned[index] = tid
            claimed.add(tid)


def _reword_key(text: str) -> str:
    """Return the normalised text, or its first and last REWORD_CHARS / 2 characters when it is longer."""
    text = normalise_text(text)
    half = REWORD_CHARS // 2
    return text if len(text) <= REWORD_CHARS else text[:half] + text[-half:]


def _assign_new_numbers(assigned: list[str | None], claimed: set[str], retired: Mapping[str, str], number: int) -> int:
    """Number the criteria still without an ID, never reusing one; return the next free number."""
    for index, tid in enumerate(assigned):
        if tid is not None:
            # Numbering moves past an ID as it is met, so an author's T7 is followed by T8.
            number = max(number, (tid_number(tid) or 0) + 1)
            continue
        while f"T{number}" in retired or f"T{number}" in claimed:
            number += 1
        assigned[index] = f"T{number}"
        claimed.add(f"T{number}")
        number += 1
    return _first_free_number(number, claimed)


def _first_free_number(next_number: int, *tid_groups: Iterable[str]) -> int:
    """Return the lowest number that is at least next_number and above every ID in the groups."""
    used = [tid_number(tid) for group in tid_groups for tid in group]
    return max([next_number, 1, *(number + 1 for number in used if number is not None)])


def _summarise(
    previous: Sequence[Item], retired: Mapping[str, str], items: tuple[Item, ...], next_number: int
) -> Reconciliation:
    """Work out added, removed and reworded IDs and the new retired mapping."""
    current = {item.tid: item for item in items}
    before = {item.tid: item for item in previous}
    still_retired = {tid: text for tid, text in retired.items() if tid not in current}
    removed = tuple(tid for tid in before if tid not in current)
    for tid in removed:
        still_retired[tid] = before[tid].text
    return Reconciliation(
        items=items,
        retired=still_retired,
        next_number=next_number,
        added=tuple(item.tid for item in items if item.tid not in before),
        removed=removed,
        reworded=tuple(item.tid for item in items if item.tid in before and before[item.tid].text != item.text),
    )
