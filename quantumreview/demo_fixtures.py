"""The demo's sample data: an issue, two commits of a pull request, two CI reports, and webhook payloads.

Payload envelopes (action, sender, ...) come from the shipped examples in quantumreview/testing/payloads; the
objects inside them (repository, issue, pull request, workflow run) are the fake GitHub's own JSON, so what the
handlers read in a delivery is exactly what they read back from the API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

APP_ID = 4242
INSTALLATION_ID = 7001
OWNER = "octo-org"
REPO = f"{OWNER}/bookshop"
ISSUE_NUMBER = 1
PULL_NUMBER = 2  # issues and pull requests share one numbering on GitHub
DEMO_LOGIN = "mona"
DEMO_USER_ID = 5001
FIRST_SHA = "1a" * 20
FIXED_SHA = "2b" * 20
FIRST_RUN_ID = 31001
FIXED_RUN_ID = 31002
TEST_FILE = "tests/discount.test.ts"
SOURCE_FILE = "src/discount.ts"

ISSUE_TITLE = "Discount codes at checkout"
ISSUE_BODY = """Customers should be able to apply a discount code when they check out.

## Acceptance criteria
- [ ] A valid discount code reduces the order total
- [ ] An expired discount code is rejected with a message
- [ ] Only one discount code can be applied per order
- [ ] The discount is shown on the receipt
"""
# The edit rewords the second criterion (it keeps T2) and adds a fifth (it gets T5).
EDITED_ISSUE_BODY = """Customers should be able to apply a discount code when they check out.

## Acceptance criteria
- [ ] A valid discount code reduces the order total
- [ ] An expired or unknown discount code is rejected with a message
- [ ] Only one discount code can be applied per order
- [ ] The discount is shown on the receipt
- [ ] Discount codes are not case-sensitive
"""
PULL_TITLE = "Apply discount codes at checkout"
PULL_BODY = "Adds discount codes to the checkout.\n\nCloses #1"

SOURCE_PATCH = """@@ -0,0 +1,6 @@
+export function applyDiscount(total: number, code: string): number {
+  const found = CODES[code.toUpperCase()];
+  if (!found || found.expired) throw new Error("This discount code is not valid");
+  return total - found.amount;
+}
+"""
# Tests carry their criterion's ID in their names ("T1:: ..."), which is how CI results map to criteria.
FIRST_TESTS = (
    ("T1", "a valid code reduces the total"),
    ("T2", "an expired or unknown code is rejected"),
    ("T4", "the receipt shows the discount"),
    ("T5", "codes are not case-sensitive"),
)
FIXED_TESTS = (*FIRST_TESTS[:2], ("T3", "a second code is refused"), *FIRST_TESTS[2:])


def test_patch(tests: Sequence[tuple[str, str]]) -> str:
    """A patch adding one Jest test per (test ID, title)."""
    lines = ['import { applyDiscount } from "../src/discount";', ""]
    for tid, title in tests:
        lines += [f'test("{tid}:: {title}", () => {{', "  expect(applyDiscount(100, \"SAVE10\")).toBe(90);", "});"]
    return f"@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{line}\n" for line in lines)


def pull_files(tests: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The pull request's changed files at a commit with these tests."""
    patch = test_patch(tests)
    return [
        {"filename": SOURCE_FILE, "status": "added", "patch": SOURCE_PATCH, "additions": 5, "deletions": 0},
        {"filename": TEST_FILE, "status": "added", "patch": patch, "additions": patch.count("\n+"), "deletions": 0},
    ]


def junit_report(tests: Sequence[tuple[str, str]], failing: Mapping[str, str]) -> bytes:
    """A jest-junit style report: one testcase per test, failing ones with their message."""
    cases = []
    for tid, title in tests:
        failure = f'<failure message="{failing[tid]}">{failing[tid]}</failure>' if tid in failing else ""
        cases.append(f'<testcase classname="discount" name="{tid}:: {title}" time="0.01">{failure}</testcase>')
    errors = len(failing)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="jest" tests="{len(tests)}" '
            f'failures="{errors}">\n<testsuite name="discount" tests="{len(tests)}" failures="{errors}">\n'
            + "\n".join(cases) + "\n</testsuite>\n</testsuites>\n").encode()


def health_report(findings: Sequence[Mapping[str, Any]]) -> bytes:
    """A code_health.json with these findings."""
    return json.dumps({"tool": "demo-linter", "findings": list(findings)}, indent=2).encode()


FIRST_FAILURES = {"T2": "expected an error for code EXPIRED2023, but the total was reduced to 90"}
FIRST_FINDINGS = (
    {"severity": "high", "rule": "no-unsafe-lookup", "path": SOURCE_FILE, "line": 2,
     "message": "CODES is indexed with user input without a hasOwnProperty check"},
    {"severity": "medium", "rule": "no-magic-numbers", "path": TEST_FILE, "line": 4, "message": "magic number 90"},
    {"severity": "low", "rule": "prefer-const", "path": SOURCE_FILE, "line": 4, "message": "use a named constant"},
)
FIXED_FINDINGS = (FIRST_FINDINGS[2],)


def report_artifacts(junit: bytes, health: bytes) -> dict[str, dict[str, bytes]]:
    """The CI contract: one artifact holding the JUnit report and code_health.json."""
    return {"autoqa-test-report": {"autoqa-test-report.xml": junit, "code_health.json": health}}


# -- webhook payloads -----------------------------------------------------------------------------------------


def shipped_payload(name: str) -> dict[str, Any]:
    """A shipped example payload ("issues.opened"), parsed; read without the pytest plugin (not a runtime need)."""
    path = resources.files("quantumreview.testing").joinpath("payloads", f"{name}.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _envelope(name: str, repository: Mapping[str, Any] | None, **objects: Any) -> dict[str, Any]:
    """The example payload `name` moved onto our repository and installation, with `objects` replaced."""
    data = shipped_payload(name)
    data.pop("organization", None)
    if repository is not None:
        data["repository"] = dict(repository)
    data["installation"] = {"id": INSTALLATION_ID, "node_id": f"MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{INSTALLATION_ID}"}
    data.update(objects)
    return data


def installation_created(installation: Mapping[str, Any], repositories: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """installation.created for the fake's installation, listing its repositories."""
    listed = [{k: r[k] for k in ("id", "node_id", "name", "full_name", "private") if k in r} for r in repositories]
    return _envelope("installation.created", None, installation=dict(installation), repositories=listed)


def issue_event(action: str, repository: Mapping[str, Any], issue: Mapping[str, Any],
                *, previous_body: str | None = None) -> dict[str, Any]:
    """issues.opened, or issues.edited with the body's previous text in `changes`."""
    data = _envelope(f"issues.{action}", repository, issue=dict(issue))
    if action == "edited":
        data["changes"] = {"body": {"from": previous_body or ""}}
    return data


def pull_request_event(action: str, repository: Mapping[str, Any], pull: Mapping[str, Any],
                       *, before: str | None = None) -> dict[str, Any]:
    """pull_request.opened, or pull_request.synchronize from `before` to the pull request's head."""
    data = _envelope(f"pull_request.{action}", repository, pull_request=dict(pull), number=pull["number"])
    if action == "synchronize":
        data.update(before=before, after=pull["head"]["sha"])
    return data


def workflow_run_completed(repository: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """workflow_run.completed for the fake's run."""
    data = _envelope("workflow_run.completed", repository, workflow_run=dict(run))
    data["workflow"] = {**data.get("workflow", {}), "name": "CI"}
    return data
