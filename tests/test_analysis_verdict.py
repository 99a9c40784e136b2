"""Verdicts: outcome per criterion, counts, and the conclusion rules."""

from __future__ import annotations

import pytest

from quantumreview.analysis.manifest import CriterionRef
from quantumreview.analysis.verdict import compute_verdict

T1 = CriterionRef("octo/app", 1, "T1", "Logs in")
T2 = CriterionRef("octo/app", 1, "T2", "Logs out")
OTHER_T1 = CriterionRef("octo/app", 2, "T1", "Exports a CSV")


def test_all_passed_is_success() -> None:
    verdict = compute_verdict([T1, T2], {"T1": "passed", "T2": "passed", "T9": "failed"})
    assert verdict.conclusion == "success"
    assert (verdict.passed, verdict.failed, verdict.skipped, verdict.missing) == (2, 0, 0, 0)


@pytest.mark.parametrize(("status", "outcome"), [("failed", "failed"), ("error", "failed"), ("skipped", "skipped")])
def test_each_status_maps_to_an_outcome(status: str, outcome: str) -> None:
    assert compute_verdict([T1], {"T1": status}).results[0].outcome == outcome


def test_a_failed_or_errored_criterion_is_failure() -> None:
    assert compute_verdict([T1, T2], {"T1": "passed", "T2": "error"}).conclusion == "failure"


def test_a_criterion_without_a_result_is_missing_and_fails() -> None:
    verdict = compute_verdict([T1, T2], {"T1": "passed"})
    assert [row.outcome for row in verdict.results] == ["passed", "missing"]
    assert verdict.missing == 1 and verdict.conclusion == "failure"


def test_skipped_with_nothing_failing_is_neutral() -> None:
    assert compute_verdict([T1, T2], {"T1": "passed", "T2": "skipped"}).conclusion == "neutral"


def test_no_criteria_or_no_report_is_neutral() -> None:
    assert compute_verdict([], {"T1": "passed"}).conclusion == "neutral"
    no_report = compute_verdict([T1], None)
    assert no_report.conclusion == "neutral" and not no_report.report_found and no_report.missing == 1


def test_an_empty_report_is_found_and_every_criterion_is_missing() -> None:
    verdict = compute_verdict([T1], {})
    assert verdict.report_found and verdict.conclusion == "failure"


def test_one_tid_counts_for_every_linked_issue_that_has_it() -> None:
    verdict = compute_verdict([T1, OTHER_T1], {"T1": "failed"})
    assert [row.outcome for row in verdict.results] == ["failed", "failed"] and verdict.failed == 2


def test_unknown_statuses_count_as_missing_not_passed() -> None:
    verdict = compute_verdict([T1, T2], {"T1": "xfail", "T2": None})  # type: ignore[dict-item]
    assert verdict.missing == 2 and verdict.conclusion == "failure"
