"""Decide a pull request's verdict from its linked criteria and the test results CI reported per test ID."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from quantumreview.analysis.manifest import CriterionRef

Outcome = Literal["passed", "failed", "skipped", "missing"]
Conclusion = Literal["success", "failure", "neutral"]
# "error" is a failure; a status the reader never produces is treated as no result at all.
_OUTCOMES: dict[str, Outcome] = {"passed": "passed", "failed": "failed", "error": "failed", "skipped": "skipped"}


@dataclass(frozen=True, slots=True)
class CriterionResult:
    """One criterion and the outcome of the tests that carry its ID."""

    criterion: CriterionRef
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome per criterion, the counts, and the check-run conclusion."""

    results: tuple[CriterionResult, ...]
    passed: int
    failed: int
    skipped: int
    missing: int
    conclusion: Conclusion
    report_found: bool


def compute_verdict(criteria: Sequence[CriterionRef], results: Mapping[str, str] | None) -> Verdict:
    """Return the verdict: success only when every criterion passed, failure when any failed or has no result.

    Test IDs are numbered per issue, so when a pull request links two issues that both have T1, one test
    tagged T1 counts for both: the CI contract carries only the ID, not the issue.
    """
    statuses = results if isinstance(results, Mapping) else {}
    rows = tuple(CriterionResult(c, _outcome(statuses.get(c.tid))) for c in criteria)
    counts = {outcome: sum(row.outcome == outcome for row in rows) for outcome in ("passed", "failed", "skipped")}
    missing = len(rows) - sum(counts.values())
    return Verdict(
        results=rows,
        passed=counts["passed"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        missing=missing,
        conclusion=_conclusion(len(rows), counts["passed"], counts["failed"] + missing, found=results is not None),
        report_found=results is not None,
    )


def _outcome(status: object) -> Outcome:
    return _OUTCOMES.get(status, "missing") if isinstance(status, str) else "missing"


def _conclusion(total: int, passed: int, failing: int, *, found: bool) -> Conclusion:
    """No criteria or no report says nothing; a skipped criterion with nothing failing is neutral, too."""
    if not total or not found:
        return "neutral"
    if failing:
        return "failure"
    return "success" if passed == total else "neutral"
