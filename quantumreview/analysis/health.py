"""Read code_health.json findings (tolerant of common tool field names) into a 0–100 score."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from quantumreview.errors import PermanentError

Severity = Literal["critical", "high", "medium", "low", "info"]
Direction = Literal["up", "down", "same", "new"]

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
WEIGHTS: Mapping[Severity, int] = {"critical": 20, "high": 10, "medium": 3, "low": 1, "info": 0}
MAX_BYTES = 4 << 20
MAX_FINDINGS = 5000
TEXT_LIMIT = 2000
MAX_LINE = 10**9

SEVERITY_KEYS = ("severity", "level", "priority", "issue_severity")
RULE_KEYS = ("rule", "rule_id", "ruleId", "check_id", "code", "check")
PATH_KEYS = ("path", "file", "filename")
LINE_KEYS = ("line", "start_line", "line_number")
MESSAGE_KEYS = ("message", "msg", "description", "text")
_SEVERITY_WORDS: Mapping[str, Severity] = {
    **dict.fromkeys(("critical", "blocker", "fatal", "crit", "emergency"), "critical"),
    **dict.fromkeys(("high", "error", "err", "major", "severe", "important"), "high"),
    **dict.fromkeys(("medium", "moderate", "warning", "warn", "normal"), "medium"),
    **dict.fromkeys(("low", "minor", "trivial"), "low"),
    **dict.fromkeys(
        ("info", "information", "informational", "note", "none", "hint", "style", "convention", "refactor"),
        "info",
    ),
}
# Lone surrogates break UTF-8 encoding later (SQLite, JSON responses); control characters break logs.
_UNSAFE_TEXT = re.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class HealthUnreadable(PermanentError):
    """code_health.json is not usable: not JSON, too large or too deep, or no findings array."""

    code = "health_unreadable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"health report unreadable: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Finding:
    """One finding, with every field normalised and sanitised."""

    severity: Severity
    rule: str
    path: str
    line: int | None
    message: str


@dataclass(frozen=True)
class HealthReport:
    """Score, counts per severity over all findings, and the first MAX_FINDINGS findings."""

    score: int
    counts: Mapping[Severity, int]
    findings: tuple[Finding, ...]
    total: int
    ignored_entries: int = 0  # entries that were not JSON objects
    truncated: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "truncated", self.total > len(self.findings))


@dataclass(frozen=True)
class Trend:
    """Score change against the base branch; delta is None when there is no base score."""

    delta: int | None
    direction: Direction


def health_score(counts: Mapping[Severity, int]) -> int:
    """Score = 100 − (20·critical + 10·high + 3·medium + 1·low + 0·info), floored at 0."""
    penalty = sum(WEIGHTS[severity] * counts.get(severity, 0) for severity in SEVERITIES)
    return max(0, 100 - penalty)


def health_trend(score: int, base_score: int | None) -> Trend:
    """Compare a score with the base branch's score."""
    if base_score is None:
        return Trend(None, "new")
    delta = score - base_score
    return Trend(delta, "up" if delta > 0 else "down" if delta < 0 else "same")


def parse_health(data: bytes, *, max_findings: int = MAX_FINDINGS) -> HealthReport:
    """Parse code_health.json: a top-level list of findings or an object with a `findings` list.

    Missing or unknown severities count as "medium"; numeric severities are ambiguous across
    tools (ESLint 2 = error, PMD 1 = worst), so they count as "medium" too. Duplicate keys: last wins.
    """
    entries = _findings_array(_load_json(data))
    counts: dict[Severity, int] = dict.fromkeys(SEVERITIES, 0)
    findings: list[Finding] = []
    ignored = 0
    for entry in entries:
        if not isinstance(entry, dict):
            ignored += 1
            continue
        if len(findings) < max_findings:
            finding = _finding(entry)
            findings.append(finding)
            severity = finding.severity
        else:  # Why: past the kept ones only the count matters; a whole finding each made 4 MB take 12 s
            severity = _severity(_first(entry, SEVERITY_KEYS))
        counts[severity] += 1
    total = sum(counts.values())
    return HealthReport(health_score(counts), counts, tuple(findings), total, ignored)


def _load_json(data: bytes) -> Any:
    if len(data) > MAX_BYTES:
        raise HealthUnreadable(f"larger than {MAX_BYTES} bytes")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise HealthUnreadable("nested too deeply") from None
    except UnicodeDecodeError:
        raise HealthUnreadable("not UTF-8 text") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over 4300 digits
        raise HealthUnreadable(f"not valid JSON: {str(exc)[:200]}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _findings_array(document: Any) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and isinstance(document.get("findings"), list):
        return document["findings"]  # type: ignore[no-any-return]
    raise HealthUnreadable('expected a list of findings or an object with a "findings" list')


def _finding(entry: dict[str, Any]) -> Finding:
    location = entry.get("location")
    nested = location if isinstance(location, dict) else {}
    return Finding(
        severity=_severity(_first(entry, SEVERITY_KEYS)),
        rule=_text(_first(entry, RULE_KEYS)),
        path=_text(_first(entry, PATH_KEYS) or _first(nested, PATH_KEYS) or location),
        line=_line(_first(entry, LINE_KEYS) or _first(nested, LINE_KEYS)),
        message=_text(_first(entry, MESSAGE_KEYS)),
    )


def _first(entry: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = entry.get(key)
        if value is not None and value != "":
            return value
    return None


def _severity(value: Any) -> Severity:
    if isinstance(value, str):
        return _SEVERITY_WORDS.get(value.strip().lower(), "medium")
    return "medium"


def _text(value: Any) -> str:
    """Strings and numbers become sanitised text; objects, lists and booleans become ""."""
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        value = value["text"]  # SARIF-style {"text": "..."}
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    text = _UNSAFE_TEXT.sub("\ufffd", str(value) if not isinstance(value, str) else value)
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _line(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 10):
            return None
        value = int(value)
    if isinstance(value, int) and 1 <= value <= MAX_LINE:
        return value
    return None
