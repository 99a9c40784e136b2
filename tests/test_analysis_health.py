"""code_health.json: tolerant field names, documented score, hostile JSON refused (RELIABILITY CH)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from quantumreview.analysis import health
from quantumreview.analysis.health import (
    MAX_BYTES,
    HealthUnreadable,
    Trend,
    health_score,
    health_trend,
    parse_health,
)
from quantumreview.errors import PermanentError


def dump(document: object) -> bytes:
    return json.dumps(document).encode()


def test_findings_object_gives_findings_counts_and_score() -> None:
    report = parse_health(
        dump(
            {
                "findings": [
                    {"severity": "high", "rule": "S101", "path": "app.py", "line": 12, "message": "assert used"},
                    {"severity": "low", "rule": "E501", "path": "app.py", "line": 3, "message": "line too long"},
                ]
            }
        )
    )

    assert [(f.severity, f.rule, f.path, f.line, f.message) for f in report.findings] == [
        ("high", "S101", "app.py", 12, "assert used"),
        ("low", "E501", "app.py", 3, "line too long"),
    ]
    assert report.counts == {"critical": 0, "high": 1, "medium": 0, "low": 1, "info": 0}
    assert report.score == 100 - 10 - 1
    assert report.total == 2 and not report.truncated


def test_top_level_list_is_accepted() -> None:
    report = parse_health(dump([{"severity": "critical", "rule": "R1"}]))

    assert report.total == 1 and report.findings[0].severity == "critical"
    assert report.score == 80


@pytest.mark.parametrize(
    "entry",
    [
        {"level": "error", "rule_id": "r", "file": "a.py", "start_line": 7, "msg": "m"},
        {"priority": "major", "check_id": "r", "filename": "a.py", "line": "7", "description": "m"},
        {"severity": "HIGH", "code": "r", "location": {"path": "a.py", "line": 7}, "message": {"text": "m"}},
        {"issue_severity": "High", "ruleId": "r", "location": {"file": "a.py", "start_line": 7.0}, "text": "m"},
    ],
    ids=["level/rule_id/file/start_line/msg", "priority/check_id/filename/str-line", "location-object", "sarif-ish"],
)
def test_common_tool_field_names_are_understood(entry: dict[str, object]) -> None:
    (finding,) = parse_health(dump([{**entry, "unknown_field": [1, 2, {"x": None}]}])).findings

    assert (finding.severity, finding.rule, finding.path, finding.line, finding.message) == (
        "high", "r", "a.py", 7, "m",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("blocker", "critical"), ("Fatal", "critical"), ("warning", "medium"), ("moderate", "medium"),
        ("minor", "low"), ("note", "info"), ("style", "info"), ("bogus", "medium"), (2, "medium"),
        (None, "medium"),
    ],
)
def test_severities_are_normalised(raw: object, expected: str) -> None:
    (finding,) = parse_health(dump([{"severity": raw}])).findings

    assert finding.severity == expected


def test_score_formula_is_weighted_and_floored_at_zero() -> None:
    assert health_score({"critical": 1, "high": 1, "medium": 1, "low": 1, "info": 50}) == 100 - 20 - 10 - 3 - 1
    assert health_score({"critical": 6}) == 0
    assert parse_health(dump([{"severity": "critical"}] * 50)).score == 0


def test_empty_findings_score_one_hundred() -> None:
    report = parse_health(b'{"findings": []}')

    assert report.score == 100 and report.total == 0 and report.findings == ()


def test_findings_kept_are_capped_but_all_are_counted() -> None:
    report = parse_health(dump([{"severity": "low", "rule": f"R{i}"} for i in range(6000)]))

    assert len(report.findings) == 5000 and report.total == 6000 and report.truncated
    assert report.counts["low"] == 6000
    assert report.score == 0


def test_findings_past_the_cap_are_only_counted_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 MB file of 1.4 million {} took 12 s when every entry became a whole Finding; now under 2 s."""
    built: list[object] = []
    real = health._finding
    monkeypatch.setattr(health, "_finding", lambda entry: built.append(entry) or real(entry))
    body = json.dumps([{"severity": "low"}] * 30 + [{"level": "error"}] * 20).encode()

    report = parse_health(body, max_findings=10)

    assert len(built) == 10 and len(report.findings) == 10
    assert report.total == 50 and report.counts["low"] == 30 and report.counts["high"] == 20


def test_non_object_entries_are_ignored_and_counted_apart() -> None:
    report = parse_health(dump([1, "x", None, [], {"severity": "low"}]))

    assert report.total == 1 and report.ignored_entries == 4


def test_hundred_thousand_deep_nesting_is_unreadable_not_recursion_error() -> None:
    with pytest.raises(HealthUnreadable, match="nested too deeply"):
        parse_health(b"[" * 100_000 + b"]" * 100_000)


def test_five_thousand_digit_integer_is_unreadable() -> None:
    with pytest.raises(HealthUnreadable, match="not valid JSON"):
        parse_health(b'[{"line": ' + b"9" * 5000 + b"}]")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(constant: bytes) -> None:
    with pytest.raises(HealthUnreadable, match="not valid JSON"):
        parse_health(b'[{"line": ' + constant + b"}]")


def test_number_too_big_for_a_float_gives_no_line() -> None:
    (finding,) = parse_health(b'[{"line": 1e400}]').findings

    assert finding.line is None


@pytest.mark.parametrize("line", [-5, 0, 10**12, "12a", True, [3], {"n": 1}, 2.5, "٣"])
def test_unusable_line_numbers_become_none(line: object) -> None:
    (finding,) = parse_health(dump([{"line": line}])).findings

    assert finding.line is None


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], True, None])
def test_wrong_types_for_text_fields_become_empty(value: object) -> None:
    (finding,) = parse_health(dump([{"rule": value, "path": value, "message": value}])).findings

    assert (finding.rule, finding.path, finding.message) == ("", "", "")


def test_numeric_rule_codes_become_text() -> None:
    (finding,) = parse_health(dump([{"code": 501}])).findings

    assert finding.rule == "501"


def test_lone_surrogates_are_replaced_so_sqlite_accepts_the_text() -> None:
    raw = b'[{"message": "bad \\ud800 text", "path": "src/\\udfff.py", "rule": "x\\u0000y"}]'

    (finding,) = parse_health(raw).findings

    assert finding.message == "bad \ufffd text" and finding.path == "src/\ufffd.py" and finding.rule == "x\ufffdy"
    with sqlite3.connect(":memory:") as db:
        db.execute("create table f (message text, path text)")
        db.execute("insert into f values (?, ?)", (finding.message, finding.path))


def test_long_messages_are_truncated() -> None:
    (finding,) = parse_health(dump([{"message": "x" * 100_000}])).findings

    assert len(finding.message) == 2000 and finding.message.endswith("…")


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"\xff\xfe\x00garbage", b'"just a string"', b"42", b'{"findings": {"a": 1}}', b'{"other": []}'],
    ids=["empty", "truncated", "binary", "string", "number", "findings-not-list", "no-findings"],
)
def test_unusable_documents_are_unreadable_with_a_reason(body: bytes) -> None:
    with pytest.raises(HealthUnreadable) as caught:
        parse_health(body)

    assert str(caught.value).startswith("health report unreadable: ")
    assert isinstance(caught.value, PermanentError) and caught.value.code == "health_unreadable"


def test_oversize_document_is_refused_without_parsing() -> None:
    with pytest.raises(HealthUnreadable, match="larger than"):
        parse_health(b"[" + b" " * MAX_BYTES + b"]")


def test_utf8_bom_is_accepted() -> None:
    assert parse_health(b"\xef\xbb\xbf[]").total == 0


def test_duplicate_keys_take_the_last_value() -> None:
    (finding,) = parse_health(b'[{"severity": "low", "severity": "critical"}]').findings

    assert finding.severity == "critical"


@pytest.mark.parametrize(
    ("score", "base", "expected"),
    [
        (90, 80, Trend(10, "up")),
        (70, 80, Trend(-10, "down")),
        (80, 80, Trend(0, "same")),
        (80, None, Trend(None, "new")),
    ],
)
def test_trend_against_the_base_score(score: int, base: int | None, expected: Trend) -> None:
    assert health_trend(score, base) == expected
