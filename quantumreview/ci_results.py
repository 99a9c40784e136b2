"""Turn a workflow run into test results: find its report artifacts, download, read the zips, parse the reports.

CI contract: an artifact named `autoqa-test-report` holds `autoqa-test-report.xml` (JUnit) and, optionally,
`code_health.json` with a `findings` array. Problems (expired artifact, unreadable report) become notes shown
in the check output; only transient failures (network, deadline) propagate, as RetryLater.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gidgethub

from quantumreview.analysis.artifact_zip import ZipRejected, read_members
from quantumreview.analysis.health import Finding, HealthReport, HealthUnreadable, parse_health
from quantumreview.analysis.junit import (
    MAX_TID_LENGTH,
    MAX_TIDS,
    JUnitReport,
    ReportUnreadable,
    merge_reports,
    parse_junit,
)
from quantumreview.analysis.pr_render import Annotation, HealthLike
from quantumreview.analysis.verdict import Verdict
from quantumreview.errors import ArtifactError, PermissionDenied, RetryLater
from quantumreview.github_client import getitem_or_none, is_gone

REPORT_ARTIFACT = "autoqa-test-report"
JUNIT_FILE = "autoqa-test-report.xml"
HEALTH_FILE = "code_health.json"
WANTED_FILES = frozenset({JUNIT_FILE, HEALTH_FILE})
MAX_SCANNED_ARTIFACTS = 5
MAX_FINDING_ANNOTATIONS = 500
PERMISSION_HINT = "the App needs the Actions: read permission on this repository"
MAX_LISTED_RUNS = 100  # a commit's workflow runs read to find those still running (one page)
MAX_NAMED_RUNS = 5
_HUNK = re.compile(r"@@ -[0-9]+(?:,[0-9]+)? \+([0-9]+)(?:,[0-9]+)? @@")


class ArtifactSource(Protocol):
    """The part of GitHubApp the pipeline uses."""

    async def list_artifacts(self, installation_id: int, repo: str, run_id: int) -> list[dict[str, Any]]: ...

    async def download_artifact(self, installation_id: int, repo: str, artifact: dict[str, Any], *,
                                dest_dir: Path, max_bytes: int = ...) -> Path: ...


@dataclass(frozen=True)
class RunReports:
    """What a run's artifacts said: the JUnit report (None: none usable), health, and notes for people."""

    artifact_count: int
    junit: JUnitReport | None = None
    health: HealthReport | None = None
    notes: tuple[str, ...] = ()
    matched: bool = False  # some artifact was the report artifact or held a report file
    listed: bool = True  # False: GitHub refused the list, so artifact_count says nothing

    @property
    def results(self) -> dict[str, str] | None:
        """Status per test ID, or None when no report could be read."""
        return None if self.junit is None else dict(self.junit.by_tid)


@dataclass
class _Found:
    junit: list[JUnitReport] = field(default_factory=list)
    health: HealthReport | None = None
    notes: list[str] = field(default_factory=list)
    matched: bool = False
    junit_noted: bool = False  # a note already says why there is no usable JUnit report


async def collect_reports(source: ArtifactSource, installation_id: int, repo: str, run_id: int, *,
                          max_bytes: int, last_try: bool = False, reading: asyncio.Lock | None = None) -> RunReports:
    """List the run's artifacts, download the report ones into a temp dir (always removed), and parse them.

    A transient failure (RetryLater) propagates, unless this is the job's last try: then it becomes a note,
    since a job that dies retrying leaves the pull request's check run in progress for good.
    `reading`, shared by every job, is held while a downloaded zip's reports are read and parsed. Why: each may
    hold up to two 64 MiB reports and their parse, so eight jobs at once could pass the machine's 512 MB; the
    parse is CPU work under the GIL, so running one at a time costs little. Downloads (to disk) still overlap.
    """
    reading = reading or asyncio.Lock()
    try:
        artifacts = await source.list_artifacts(installation_id, repo, run_id)
    except PermissionDenied as exc:
        # Why a note, not a failed job: retrying cannot grant the permission.
        return RunReports(0, notes=(f"cannot read the run's artifacts: {exc} ({PERMISSION_HINT})",), listed=False)
    except RetryLater as exc:
        if not last_try:
            raise
        return RunReports(0, notes=(f"cannot read the run's artifacts: {exc} (gave up after the last try)",),
                          listed=False)
    except gidgethub.BadRequest as exc:
        if not is_gone(exc):
            raise
        # Why: the run was deleted since it completed; retrying cannot bring it back.
        return RunReports(0, notes=(f"run {run_id} is gone from GitHub ({int(exc.status_code)}); "
                                    "its artifacts cannot be read",), listed=False)
    found = _Found()
    with tempfile.TemporaryDirectory(prefix="qr-artifacts-") as tmp:
        for artifact in candidate_artifacts(artifacts):
            named = artifact.get("name") == REPORT_ARTIFACT
            found.matched = found.matched or named
            try:
                path = await source.download_artifact(installation_id, repo, artifact, dest_dir=Path(tmp),
                                                      max_bytes=max_bytes)
                async with reading:
                    await asyncio.to_thread(_read_and_parse, path, _label(artifact), found)
            except ZipRejected as exc:
                found.notes.append(f"artifact {_label(artifact)}: {exc.reason}")
                found.junit_noted = found.junit_noted or named
                continue
            except (ArtifactError, PermissionDenied) as exc:
                if named:
                    found.notes.append(_artifact_note(exc))
                    found.junit_noted = True
                continue
            except RetryLater as exc:
                if not last_try:
                    raise
                if named:
                    found.notes.append(f"artifact {REPORT_ARTIFACT} unusable: {exc} (gave up after the last try)")
                    found.junit_noted = True
                continue
            finally:
                _remove_downloads(Path(tmp))
            if found.junit:
                break
    if found.matched and not found.junit and not found.junit_noted:
        found.notes.append(f"no {JUNIT_FILE} in the {REPORT_ARTIFACT} artifact")
    junit = merge_reports(found.junit) if found.junit else None
    return RunReports(len(artifacts), junit, found.health, tuple(found.notes), found.matched)


def candidate_artifacts(artifacts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The report artifact first, then the others (any may hold the files), capped; expired ones only if named."""
    named = [dict(a) for a in artifacts if a.get("name") == REPORT_ARTIFACT]
    others = [dict(a) for a in artifacts if a.get("name") != REPORT_ARTIFACT and not a.get("expired")]
    return (named + others)[:MAX_SCANNED_ARTIFACTS]


def read_report_members(path: Path) -> dict[str, bytes]:
    """Read the report files from a zip by basename, in any folder; of several with one basename the first wins.

    The choice is made before reading, so the others are never decompressed.
    """
    members = read_members(path, wanted=WANTED_FILES.__contains__, key=_basename)
    return {_basename(name): data for name, data in members.items()}


def _read_and_parse(path: Path, label: str, found: _Found) -> None:
    # Why one function: the members' bytes are freed when it returns, inside the caller's `reading` lock.
    members = read_report_members(path)
    if members:
        found.matched = True
        _parse_members(members, label, found)


def _basename(name: str) -> str:
    return name.rpartition("/")[2]


def _parse_members(members: Mapping[str, bytes], label: str, found: _Found) -> None:
    if JUNIT_FILE in members:
        try:
            report = parse_junit(members[JUNIT_FILE])
        except ReportUnreadable as exc:
            found.notes.append(f"{label}/{JUNIT_FILE}: {exc}")
            found.junit_noted = True
        else:
            found.junit.append(report)
            if report.tids_ignored:
                found.notes.append(f"{label}/{JUNIT_FILE}: more than {MAX_TIDS} test IDs, or IDs longer than "
                                   f"{MAX_TID_LENGTH} characters; {MAX_TIDS} at most were read, the others ignored")
    if HEALTH_FILE in members and found.health is None:
        try:
            found.health = parse_health(members[HEALTH_FILE])
        except HealthUnreadable as exc:
            found.notes.append(f"{label}/{HEALTH_FILE}: {exc}")


def _remove_downloads(directory: Path) -> None:
    """Delete each zip once read, so scanning several artifacts never holds more than one on disk."""
    for path in directory.iterdir():
        path.unlink(missing_ok=True)


def _artifact_note(exc: ArtifactError | PermissionDenied) -> str:
    text = str(exc)
    if isinstance(exc, PermissionDenied):
        return f"artifact {REPORT_ARTIFACT} unusable: {text} ({PERMISSION_HINT})"
    if "expired" in text or "gone" in text:
        return f"artifact {REPORT_ARTIFACT} expired: {text}"
    return f"artifact {REPORT_ARTIFACT} unusable: {text}"


def _label(artifact: Mapping[str, Any]) -> str:
    name = artifact.get("name")
    return name[:100] if isinstance(name, str) and name else f"#{artifact.get('id')}"


# -- verdict record and annotations ----------------------------------------------------------------------------


def verdict_record(verdict: Verdict, *, notes: Sequence[str], health: HealthLike | None) -> dict[str, Any]:
    """The verdict as stored with the manifest (asdict, as pull_requests.verdict_from_dict reads it), plus notes."""
    record = asdict(verdict)
    record["notes"] = list(notes)
    record["health"] = None if health is None else {
        "score": health.score, "delta": health.delta, "counts": dict(health.counts)}
    return record


def stored_form(record: Mapping[str, Any]) -> Any:
    """The record as storage gives it back (JSON: tuples read as lists), to compare with a stored verdict."""
    return json.loads(json.dumps(record))


def finding_annotations(findings: Iterable[Finding], changed: Mapping[str, set[int]]) -> list[Annotation]:
    """Warnings for code-health findings on lines the pull request added or changed."""
    return [
        Annotation(path=f.path, start_line=f.line, end_line=f.line, annotation_level="warning",
                   title=f"code health: {f.severity}", message=f.message or f.severity)
        for f in findings
        if f.path and f.line is not None and f.line in changed.get(f.path, ())
    ][:MAX_FINDING_ANNOTATIONS]


def changed_lines(files: Iterable[Mapping[str, Any]]) -> dict[str, set[int]]:
    """New-side line numbers added in each file's patch (GitHub's list of pull request files)."""
    changed: dict[str, set[int]] = {}
    for item in files:
        path, patch = item.get("filename"), item.get("patch")
        if isinstance(path, str) and isinstance(patch, str):
            changed[path] = _added_lines(patch)
    return changed


def _added_lines(patch: str) -> set[int]:
    added: set[int] = set()
    line = 0
    for text in patch.splitlines():
        hunk = _HUNK.match(text)
        if hunk:
            line = int(hunk.group(1))
        elif text.startswith("+"):
            added.add(line)
            line += 1
        elif not text.startswith(("-", "\\")):
            line += 1
    return added


# -- other runs of the commit -----------------------------------------------------------------------------------


async def pending_runs(gh: Any, repo: str, head_sha: str, run_id: int, attempt: int) -> list[str]:
    """The commit's other workflow runs still queued or in progress, as "name #id"; [] when none, or when GitHub
    refuses the list (no Actions: read) or the repository is gone.

    Why: a report-less run (lint) finishing first completed the check "neutral", which passes a required check,
    so the pull request could be merged before the test workflow had reported. This run's own attempt is left out
    (the list can lag its completion); a later attempt of it (a re-run) counts.
    https://docs.github.com/en/rest/actions/workflow-runs#list-workflow-runs-for-a-repository
    """
    try:
        listing = await getitem_or_none(
            gh, f"/repos/{repo}/actions/runs?head_sha={head_sha}&per_page={MAX_LISTED_RUNS}")
    except PermissionDenied:
        return []
    runs = listing.get("workflow_runs") if listing is not None else None
    pending: list[str] = []
    for run in runs if isinstance(runs, list) else []:
        if not isinstance(run, Mapping) or not isinstance(run.get("id"), int):
            continue
        if run.get("status") in (None, "completed"):
            continue
        if run["id"] == run_id and int(run.get("run_attempt") or 1) <= attempt:
            continue
        name = run.get("name")
        pending.append(f"{name[:100] if isinstance(name, str) and name else 'run'} #{run['id']}")
    return pending


def waiting_note(run_id: int, pending: Sequence[str]) -> str:
    """What the check says while it waits for the commit's other runs."""
    shown = ", ".join(pending[:MAX_NAMED_RUNS]) + (f" and {len(pending) - MAX_NAMED_RUNS} more"
                                                    if len(pending) > MAX_NAMED_RUNS else "")
    return (f"run {run_id} had no test report; waiting for the other workflow runs of this commit to finish "
            f"({shown}): the last one to finish decides")
