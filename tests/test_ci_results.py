"""quantumreview.ci_results: a workflow run's artifacts → JUnit results and code health, on the fake GitHub."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from quantumreview import ci_results
from quantumreview.analysis.artifact_zip import ZipRejected
from quantumreview.ci_results import (
    HEALTH_FILE,
    JUNIT_FILE,
    REPORT_ARTIFACT,
    HealthUnreadable,
    collect_reports,
    parse_health,
    read_report_members,
)
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
    assert reports.health is not None and reports.health.counts == {"major": 1}
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


async def test_unreadable_junit_is_reported_not_raised(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 103, head_sha=SHA, artifacts={
        REPORT_ARTIFACT: {JUNIT_FILE: b"<testsuite><testcase name='T1::x'>", HEALTH_FILE: b"[1, 2]"}})
    reports = await _collect(github_app, 103)
    assert reports.results is None
    assert any("report unreadable" in note for note in reports.notes)
    assert any("code health unreadable" in note for note in reports.notes)


async def test_html_error_page_instead_of_zip_is_a_note(fake: FakeGitHub, github_app: Any) -> None:
    fake.add_workflow_run(REPO, 104, head_sha=SHA, artifacts={REPORT_ARTIFACT: {JUNIT_FILE: JUNIT}})
    fake.script_blob(fake.artifact_id(REPO, 104, REPORT_ARTIFACT), body_size=300)  # 300 zero bytes: no zip
    reports = await _collect(github_app, 104)
    assert reports.results is None and any("not a zip archive" in note for note in reports.notes)


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


def test_hostile_names_match_by_basename_and_first_duplicate_wins(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"../../{JUNIT_FILE}", b"first")
        archive.writestr(f"C:\\x\\{JUNIT_FILE}", b"second")
    path = tmp_path / "h.zip"
    path.write_bytes(buffer.getvalue())
    assert read_report_members(path) == {JUNIT_FILE: b"first"}
    assert [p.name for p in tmp_path.iterdir()] == ["h.zip"]  # nothing extracted


def test_health_score_is_given_or_derived_from_findings() -> None:
    assert parse_health(b'{"score": 72.5, "findings": []}').score == 72.5
    derived = parse_health(json.dumps({"findings": [{"severity": "critical"}, {"severity": "MINOR"}, {}]}).encode())
    assert derived.score == 100 - 5 - 0.5 - 1
    assert derived.counts == {"critical": 1, "minor": 1, "unknown": 1}


@pytest.mark.parametrize("body", [
    b"[" * 100_000, b'{"score": NaN}', b'{"score": 1' + b"0" * 5000 + b"}", b'{"a": 1, "a": 2}',
    b'{"findings": {}}', b'{"score": "high"}', b"\xff\xfe",
])
def test_hostile_health_json_is_unreadable_not_a_crash(body: bytes) -> None:
    with pytest.raises(HealthUnreadable):
        parse_health(body)


def test_lone_surrogate_in_a_finding_is_replaced() -> None:
    report = parse_health(b'{"findings": [{"message": "bad \\ud800", "path": "a\\udcff.py", "line": 2}]}')
    finding = report.findings[0]
    assert "\ud800" not in finding.message and finding.path is not None and "\udcff" not in finding.path
    finding.message.encode("utf-8")  # would raise on a surrogate
