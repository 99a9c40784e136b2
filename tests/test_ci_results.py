"""quantumreview.ci_results: a workflow run's artifacts → JUnit results and code health, on the fake GitHub."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from quantumreview import ci_results
from quantumreview.analysis import junit
from quantumreview.analysis.artifact_zip import ZipRejected
from quantumreview.analysis.health import parse_health
from quantumreview.analysis.manifest import CriterionRef
from quantumreview.analysis.pr_render import CheckOutput
from quantumreview.analysis.verdict import compute_verdict
from quantumreview.ci_results import (
    HEALTH_FILE,
    JUNIT_FILE,
    REPORT_ARTIFACT,
    changed_lines,
    collect_reports,
    finding_annotations,
    read_report_members,
    verdict_record,
)
from quantumreview.pull_requests import verdict_from_dict, with_problems
from quantumreview.testing.fake import FakeGitHub

REPO = "octo-org/octo-repo"
SHA = "c" * 40
INSTALLATION = 11
CAP = 10 * 1024 * 1024

JUNIT = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="suite" tests="3">
  <testcase classname="tests.test_signup" name="T1::test_email_is_validated"/>
  <testcase classname="autoqa:T2" name="test_password_rules"><failure message="expected 8 chars"/></testcase>
  <testcase classname="tests.test_signup" name="T3::test_captcha"><skipped/></testcase>
</testsuite>
"""
HEALTH = json.dumps({"findings": [{"path": "app/signup.py", "line": 3, "severity": "major", "message": "long"}]})


@pytest.fixture
def fake(fake_github: FakeGitHub) -> FakeGitHub:
    """The fake with one installation on the repository."""
    fake_github.add_installation(INSTALLATION, repositories=[REPO])
    return fake_github


async def _collect(github_app: Any, run_id: int) -> ci_results.RunReports:
    return await collect_reports(github_app, INSTALLATION, REPO, run_id, max_bytes=CAP)


async def test_report_artifact_gives_results_by_test_id_and_health(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 100, head_sha=SHA, artifacts={
        REPORT_ARTIFACT: {JUNIT_FILE: JUNIT, HEALTH_FILE: HEALTH.encode()}})
    reports = await _collect(github_app, 100)
    assert reports.results == {"T1": "passed", "T2": "failed", "T3": "skipped"}
    assert reports.junit is not None and [c.message for c in reports.junit.failing] == ["expected 8 chars"]
    assert reports.health is not None and reports.health.counts["high"] == 1 and reports.health.total == 1
    assert reports.notes == () and reports.matched


async def test_report_files_are_found_in_folders_of_another_artifact(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 101, head_sha=SHA, artifacts={
        "coverage": {"cov.xml": b"<coverage/>"},
        "results-linux": {f"out/reports/{JUNIT_FILE}": JUNIT, f"out\\{HEALTH_FILE}": HEALTH.encode()}})
    reports = await _collect(github_app, 101)
    assert reports.results is not None and reports.results["T2"] == "failed"
    assert reports.health is not None


async def test_expired_report_artifact_is_a_note_and_not_downloaded(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 102, head_sha=SHA, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: JUNIT}},
                          expired=[REPORT_ARTIFACT])
    reports = await _collect(github_app, 102)
    assert reports.results is None and reports.matched
    assert any("expired" in note for note in reports.notes)
    assert fake.calls("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}") == []


async def test_a_download_refused_for_a_missing_permission_is_a_note(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 110, head_sha=SHA, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: JUNIT}})
    fake.fail_next("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}", status=403,
                   body={"message": "Resource not accessible by integration"})
    reports = await _collect(github_app, 110)
    assert reports.results is None and reports.matched
    [note] = reports.notes
    assert "Resource not accessible by integration" in note and "Actions: read" in note


async def test_unreadable_junit_is_reported_not_raised(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 103, head_sha=SHA, artifacts={
        REPORT_ARTIFACT: {JUNIT_FILE: b"<testsuite><testcase name='T1::x'>", HEALTH_FILE: b'{"score": NaN}'}})
    reports = await _collect(github_app, 103)
    assert reports.results is None
    assert any("report unreadable" in note for note in reports.notes)
    assert any("health report unreadable" in note for note in reports.notes)


async def test_test_ids_past_the_cap_are_a_note(fake: FakeGitHub, github_app: Any) -> None:
    cases = "".join(f'<testcase name="T{n}::a"/>' for n in range(1, junit.MAX_TIDS + 2))
    fake.add_workflow_run(REPO, 111, head_sha=SHA, artifacts={
        REPORT_ARTIFACT: {JUNIT_FILE: f"<testsuite>{cases}</testsuite>".encode()}})
    reports = await _collect(github_app, 111)
    assert reports.results is not None and len(reports.results) == junit.MAX_TIDS
    assert reports.notes == (f"{REPORT_ARTIFACT}/{JUNIT_FILE}: more than {junit.MAX_TIDS} test IDs, or IDs longer "
                             f"than {junit.MAX_TID_LENGTH} characters; {junit.MAX_TIDS} at most were read, the others "
                             "ignored",)


async def test_html_error_page_instead_of_zip_is_a_note(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 104, head_sha=SHA, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: JUNIT}})
    fake.script_blob(fake.artifact_id(REPO, 104, REPORT_ARTIFACT), body_size=300)  # 300 zero bytes: no zip
    reports = await _collect(github_app, 104)
    assert reports.results is None and any("not a zip archive" in note for note in reports.notes)


async def test_an_empty_report_artifact_is_a_note_not_a_failure(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 109, head_sha=SHA, artifacts={REPORT_ARTIFACT: {}})  # a zip with no entries
    reports = await _collect(github_app, 109)
    assert reports.results is None and reports.matched
    assert reports.notes == (f"no {JUNIT_FILE} in the {REPORT_ARTIFACT} artifact",)


async def test_run_without_report_artifacts_matches_nothing(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 105, head_sha=SHA, artifacts={"dist": {"app.whl": b"PK"}})
    reports = await _collect(github_app, 105)
    assert (reports.matched, reports.results, reports.artifact_count) == (False, None, 1)


async def test_downloads_leave_no_files_behind(fake: FakeGitHub, github_app: Any, monkeypatch: Any,
                                               tmp_path: Path) -> None:
    monkeypatch.setattr(ci_results.tempfile, "tempdir", str(tmp_path))
    fake.add_workflow_run(REPO, 106, head_sha=SHA, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: JUNIT}})
    await _collect(github_app, 106)
    assert list(tmp_path.iterdir()) == []


def _zip(tmp_path: Path, files: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> Path:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_zip_bomb_member_is_rejected_before_reading(tmp_path: Path) -> None:
    path = _zip(tmp_path, {JUNIT_FILE: b"\0" * (8 * 1024 * 1024)})
    with pytest.raises(ZipRejected, match="ratio"):
        read_report_members(path)


async def test_zip_bomb_artifact_is_a_note_not_a_failure(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 107, head_sha=SHA, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: b"\0" * (8 << 20)}})
    reports = await _collect(github_app, 107)
    assert reports.results is None and any("zip bomb" in note for note in reports.notes)


def test_a_bomb_spread_over_same_named_reports_is_rejected_unread(tmp_path: Path, monkeypatch: Any) -> None:
    """The audit's 296 KB zip of 255 x 1 MiB of zeros, all named autoqa-test-report.xml in their own
    folder: only the first would be kept, so only it is chosen, and its ratio alone refuses it."""
    one_mib = b"\0" * (1 << 20)
    with zipfile.ZipFile(tmp_path / "agg.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for i in range(255):
            archive.writestr(f"d{i}/{JUNIT_FILE}", one_mib)
    opened: list[object] = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(a))

    with pytest.raises(ZipRejected, match="over the 1 members to read"):
        read_report_members(tmp_path / "agg.zip")
    assert opened == []


def test_hostile_names_match_by_basename_and_first_duplicate_wins(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"../../{JUNIT_FILE}", b"first")
        archive.writestr(f"C:\\x\\{JUNIT_FILE}", b"second")
    path = tmp_path / "h.zip"
    path.write_bytes(buffer.getvalue())
    assert read_report_members(path) == {JUNIT_FILE: b"first"}
    assert [p.name for p in tmp_path.iterdir()] == ["h.zip"]  # nothing extracted


def test_changed_lines_are_the_added_lines_of_each_patch() -> None:
    patch = "@@ -1,3 +1,4 @@\n keep\n-old\n+new\n+newer\n keep\n@@ -20,1 +21,2 @@\n ctx\n+added"
    assert changed_lines([{"filename": "a.py", "patch": patch}, {"filename": "bin.png"}]) == {"a.py": {2, 3, 22}}


def test_findings_are_annotated_only_on_changed_lines() -> None:
    report = parse_health(json.dumps({"findings": [
        {"path": "a.py", "line": 3, "severity": "high", "message": "too complex"},
        {"path": "a.py", "line": 9, "severity": "high", "message": "old code"},
        {"path": "b.py", "line": 3, "severity": "low", "message": "unchanged file"}]}).encode())
    annotations = finding_annotations(report.findings, {"a.py": {2, 3}})
    assert [(a.path, a.start_line, a.message) for a in annotations] == [("a.py", 3, "too complex")]


def test_verdict_record_reads_back_as_the_same_verdict_with_notes() -> None:
    criteria = [CriterionRef(REPO, 4, "T1", "email"), CriterionRef(REPO, 4, "T2", "password")]
    verdict = compute_verdict(criteria, {"T1": "passed", "T2": "error"})
    record = verdict_record(verdict, notes=["artifact x expired"], health=None)
    assert verdict_from_dict(record) == verdict
    assert record["notes"] == ["artifact x expired"] and record["conclusion"] == "failure"


async def test_a_hostile_artifact_name_reaches_the_check_run_as_text(fake: FakeGitHub, github_app: Any) -> None:
    """A fork names the artifact; its rejection note shows in the check run summary and the comment."""
    name = '<img src=x onerror=alert(1)>[click](javascript:alert(1)) @octocat'
    fake.add_workflow_run(REPO, 108, head_sha=SHA, artifacts={name: {JUNIT_FILE: b"\0" * (8 << 20)}})

    reports = await _collect(github_app, 108)
    summary = with_problems(CheckOutput("t", "s", ""), list(reports.notes)).summary

    assert any(name in note for note in reports.notes)
    assert "&lt;img src=x onerror=alert(1)&gt;\\[click\\](javascript:alert(1)) @\u200boctocat" in summary
    assert "<img" not in summary and "](" not in summary.replace("\\]", "") and "@octocat" not in summary
