"""Turn a workflow run into test results: find its report artifacts, download, read the zips, parse the reports.

CI contract: an artifact named `autoqa-test-report` holds `autoqa-test-report.xml` (JUnit) and, optionally,
`code_health.json` with a `findings` array. Problems (expired artifact, unreadable report) become notes shown
in the check output; only transient failures (network, deadline) propagate, as RetryLater.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from quantumreview.analysis.artifact_zip import ZipRejected, read_members
from quantumreview.analysis.junit import JUnitReport, ReportUnreadable, merge_reports, parse_junit
from quantumreview.errors import ArtifactError

REPORT_ARTIFACT = "autoqa-test-report"
JUNIT_FILE = "autoqa-test-report.xml"
HEALTH_FILE = "code_health.json"
WANTED_FILES = frozenset({JUNIT_FILE, HEALTH_FILE})
MAX_SCANNED_ARTIFACTS = 5
MAX_HEALTH_BYTES = 8 * 1024 * 1024
MAX_FINDINGS = 5000
MAX_FINDING_TEXT = 1000
SEVERITY_WEIGHTS = {"blocker": 10.0, "critical": 5.0, "major": 2.0, "minor": 0.5, "info": 0.0}
DEFAULT_WEIGHT = 1.0


class ArtifactSource(Protocol):
    """The part of GitHubApp the pipeline uses."""

    async def list_artifacts(self, installation_id: int, repo: str, run_id: int) -> list[dict[str, Any]]: ...

    async def download_artifact(self, installation_id: int, repo: str, artifact: dict[str, Any], *,
                                dest_dir: Path, max_bytes: int = ...) -> Path: ...


class HealthUnreadable(Exception):
    """code_health.json is not valid JSON of the expected shape."""


@dataclass(frozen=True)
class Finding:
    """One code-health finding; path and line only when the report gave them."""

    path: str | None
    line: int | None
    severity: str
    message: str


@dataclass(frozen=True)
class HealthReport:
    """A run's code health: score (given, or derived from findings), counts by severity, findings."""

    score: float
    counts: Mapping[str, int]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class RunReports:
    """What a run's artifacts said: the JUnit report (None: none usable), health, and notes for people."""

    artifact_count: int
    junit: JUnitReport | None = None
    health: HealthReport | None = None
    notes: tuple[str, ...] = ()
    matched: bool = False  # some artifact was the report artifact or held a report file

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
                          max_bytes: int) -> RunReports:
    """List the run's artifacts, download the report ones into a temp dir (always removed), and parse them."""
    artifacts = await source.list_artifacts(installation_id, repo, run_id)
    found = _Found()
    with tempfile.TemporaryDirectory(prefix="qr-artifacts-") as tmp:
        for artifact in candidate_artifacts(artifacts):
            named = artifact.get("name") == REPORT_ARTIFACT
            found.matched = found.matched or named
            try:
                path = await source.download_artifact(installation_id, repo, artifact, dest_dir=Path(tmp),
                                                      max_bytes=max_bytes)
                members = await asyncio.to_thread(read_report_members, path)
            except ZipRejected as exc:
                found.notes.append(f"artifact {_label(artifact)}: {exc.reason}")
                found.junit_noted = found.junit_noted or named
                continue
            except ArtifactError as exc:
                if named:
                    found.notes.append(_artifact_note(exc))
                    found.junit_noted = True
                continue
            finally:
                _remove_downloads(Path(tmp))
            if members:
                found.matched = True
                await asyncio.to_thread(_parse_members, members, _label(artifact), found)
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
    """Read the report files from a zip by basename, in any folder; of several with one basename the first wins."""
    members: dict[str, bytes] = {}
    for name, data in read_members(path, wanted=WANTED_FILES.__contains__).items():
        members.setdefault(name.rpartition("/")[2], data)
    return members


def _parse_members(members: Mapping[str, bytes], label: str, found: _Found) -> None:
    if JUNIT_FILE in members:
        try:
            found.junit.append(parse_junit(members[JUNIT_FILE]))
        except ReportUnreadable as exc:
            found.notes.append(f"{label}/{JUNIT_FILE}: {exc}")
            found.junit_noted = True
    if HEALTH_FILE in members and found.health is None:
        try:
            found.health = parse_health(members[HEALTH_FILE])
        except HealthUnreadable as exc:
            found.notes.append(f"{label}/{HEALTH_FILE}: code health unreadable: {exc}")


def _remove_downloads(directory: Path) -> None:
    """Delete each zip once read, so scanning several artifacts never holds more than one on disk."""
    for path in directory.iterdir():
        path.unlink(missing_ok=True)


def _artifact_note(exc: ArtifactError) -> str:
    text = str(exc)
    if "expired" in text or "gone" in text:
        return f"artifact {REPORT_ARTIFACT} expired: {text}"
    return f"artifact {REPORT_ARTIFACT} unusable: {text}"


def _label(artifact: Mapping[str, Any]) -> str:
    name = artifact.get("name")
    return name[:100] if isinstance(name, str) and name else f"#{artifact.get('id')}"


# -- code_health.json ------------------------------------------------------------------------------------------


def parse_health(data: bytes) -> HealthReport:
    """Read code_health.json: an object with a `findings` array and an optional numeric `score`."""
    if len(data) > MAX_HEALTH_BYTES:
        raise HealthUnreadable(f"larger than {MAX_HEALTH_BYTES} bytes")
    try:
        doc = json.loads(data, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicates)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise HealthUnreadable(f"invalid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(doc, dict):
        raise HealthUnreadable("top level is not an object")
    raw = doc.get("findings", [])
    if not isinstance(raw, list):
        raise HealthUnreadable("`findings` is not an array")
    findings = tuple(_finding(item) for item in raw[:MAX_FINDINGS] if isinstance(item, dict))
    counts: dict[str, int] = {}
    for item in findings:
        counts[item.severity] = counts.get(item.severity, 0) + 1
    score = doc.get("score")
    if score is None:
        score = derive_score(findings)
    elif isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise HealthUnreadable("`score` is not a number")
    return HealthReport(float(score), counts, findings)


def derive_score(findings: Iterable[Finding]) -> float:
    """100 minus a weight per finding by severity, never below 0."""
    return max(0.0, 100.0 - sum(SEVERITY_WEIGHTS.get(f.severity, DEFAULT_WEIGHT) for f in findings))


def _finding(item: Mapping[str, Any]) -> Finding:
    path = item.get("path", item.get("file"))
    line = item.get("line")
    severity = item.get("severity")
    message = item.get("message")
    return Finding(
        path=_text(path, 500) if isinstance(path, str) and path else None,
        line=line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else None,
        severity=_text(severity, 40).lower() if isinstance(severity, str) and severity else "unknown",
        message=_text(message, MAX_FINDING_TEXT) if isinstance(message, str) else "",
    )


def _text(value: str, limit: int) -> str:
    """Cut to limit and replace lone surrogates, so the text is safe to store and render."""
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate keys")
    return result
