"""CI results: a workflow run's JUnit report and code health become a verdict per criterion on each pull request."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast, get_args

from gidgethub import BadRequest, routing, sansio

from quantumreview import pull_requests as prs
from quantumreview.analysis.health import HealthReport, health_trend
from quantumreview.analysis.junit import JUnitReport, Status
from quantumreview.analysis.pr_render import Annotation
from quantumreview.analysis.verdict import Verdict, compute_verdict
from quantumreview.checklists import follow_rename, publish_checklist_comment
from quantumreview.ci_results import (
    PERMISSION_HINT,
    REPORT_ARTIFACT,
    RunReports,
    changed_lines,
    collect_reports,
    finding_annotations,
    pending_runs,
    stored_form,
    verdict_record,
    waiting_note,
)
from quantumreview.context import Context
from quantumreview.errors import PermanentError, PermissionDenied, RetryLater
from quantumreview.github_client import getitem_or_none, is_gone
from storage import checklists as checklist_store
from storage import notifications
from storage import pulls as pull_store
from storage import runs as run_store

REVALIDATE_EVENT = "quantumreview.revalidate_pr"
# Judge a pull request from the run already stored for its head (this handler only; data: repo, pr_number).
JUDGE_STORED_RUN_EVENT = "quantumreview.judge_stored_run"
# Artifacts can be missing from the list for a while after `completed` (actions/upload-artifact#400): the
# list is read EMPTY_LIST_TRIES times, EMPTY_LIST_WAIT apart (0, 60 and 120 s), then "no artifacts" is the result.
EMPTY_LIST_TRIES = 3
EMPTY_LIST_WAIT = 60.0
MANIFEST_WAIT_TRIES = 3
# A fork PR's run held for approval "completes" with this conclusion, having run no job.
AWAITING_APPROVAL = "action_required"
# At most this many pull requests are judged again when the owner grants the App a new permission.
MAX_PERMISSION_REJUDGES = 100
# A check left waiting for the commit's other runs is judged again this much later, once. Why: GitHub's run list
# lags the completions it sends, so two report-less runs finishing together could each list the other as still
# going; both waited, and no run was left whose completion would decide.
WAIT_RECHECK_SECONDS = 120.0

router = routing.Router()


@dataclass(frozen=True)
class HealthSummary:
    """What the check output shows about code health: score, change against the base branch, counts."""

    score: int
    delta: int | None
    counts: Mapping[str, int]


@router.register("workflow_run", action="completed")
async def judge_workflow_run(event: sansio.Event, ctx: Context) -> None:
    """Read the finished run's reports and give each of its pull requests a verdict."""
    if ctx.installation_id is None:
        # Why quietly, as every other handler: a repository webhook (or `quantumreview receive` of its payload)
        # names no installation, and nothing can be read without one; failing made a dead job and a "failed" line.
        ctx.log.info("workflow run of %s: the event names no installation of the App; nothing to judge",
                     ctx.repo or "an unnamed repository")
        return
    run = event.data.get("workflow_run")
    if ctx.repo is None or not isinstance(run, dict):
        return
    # Why: after a rename no other event may come first (a re-run), and under the new name the run found none of
    # the pull requests stored under the old one: their checks stayed in progress, their health had no baseline.
    await follow_rename(ctx, event.data.get("repository"))
    await judge_run(ctx, ctx.repo, run, force=False)


@router.register("check_run", action="rerequested")
async def rejudge_rerequested_check(event: sansio.Event, ctx: Context) -> None:
    """Someone pressed "Re-run" on our check: judge the commit again from its latest run."""
    check = event.data.get("check_run") or {}
    if ctx.repo is None or check.get("name") != prs.CHECK_NAME or not _is_ours(check, ctx):
        return
    await rejudge_commit(ctx, ctx.repo, str(check["head_sha"]), None)


@router.register("check_suite", action="rerequested")
async def rejudge_rerequested_suite(event: sansio.Event, ctx: Context) -> None:
    """Someone pressed "Re-run all checks" on our check suite: GitHub sends this, not check_run.rerequested."""
    suite = event.data.get("check_suite") or {}
    if ctx.repo is None or not _is_ours(suite, ctx) or not isinstance(suite.get("head_sha"), str):
        return
    await rejudge_commit(ctx, ctx.repo, suite["head_sha"], None)


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="synchronize")
async def judge_run_finished_before_the_pull(event: sansio.Event, ctx: Context) -> None:
    """CI on the head may have finished before the pull request was open (a push run, then the PR opened): that
    run found no pull request to judge, and no other run will come. Queue its judging after the manifest job."""
    pull = event.data.get("pull_request") or {}
    number, head_sha = pull.get("number"), (pull.get("head") or {}).get("sha")
    if ctx.repo is None or not isinstance(number, int) or not isinstance(head_sha, str):
        return
    if await run_store.latest_run_for_sha(ctx.db, ctx.repo, head_sha) is None:
        return  # CI has not finished on it: its workflow_run will judge the pull request
    row = await pull_store.get_manifest(ctx.db, ctx.repo, number, head_sha)
    if row is not None and row.verdict is not None:
        return
    # Why a queued job, not judging here: the manifest this needs is built by this delivery's other job, which
    # runs after this one (one job at a time per pull request); a job queued now runs after both.
    await queue_judging(ctx, ctx.repo, number, ctx.installation_id)


@router.register("installation", action="new_permissions_accepted")
async def rejudge_runs_refused_for_permission(event: sansio.Event, ctx: Context) -> None:
    """The owner accepted new permissions: judge again the open pull requests whose latest run could not be read
    for lack of Actions: read. Why: no other event comes for those runs, so their checks kept saying the artifacts
    cannot be read until the next push."""
    installation = event.data.get("installation") or {}
    permissions = installation.get("permissions")
    if not isinstance(installation.get("id"), int) or (isinstance(permissions, dict) and "actions" not in permissions):
        return  # still no Actions permission: judging again would be refused the same way
    pulls = await run_store.open_pulls_with_run_noted(ctx.db, installation["id"], PERMISSION_HINT,
                                                      limit=MAX_PERMISSION_REJUDGES)
    for repo, number in pulls:
        await queue_judging(ctx, repo, number, installation["id"])
    ctx.log.info("installation %s: %d pull requests queued for judging again", installation["id"], len(pulls))


async def queue_judging(ctx: Context, repo: str, number: int, installation_id: int | None) -> None:
    """Queue judge_stored_run for the pull request, behind its other jobs (its ordering key)."""
    await ctx.enqueue(JUDGE_STORED_RUN_EVENT, {"repo": repo, "pr_number": number},
                      ordering_key=f"{repo}#{number}", installation_id=installation_id)


async def queue_wait_recheck(ctx: Context, repo: str, number: int) -> None:
    """Queue judge_stored_run for the pull request WAIT_RECHECK_SECONDS from now, under a key of its own.

    Why not the pull request's key: a job waiting for its time heads its key, so every delivery of the pull
    request (a push, an edit) would wait behind it.
    """
    await ctx.enqueue(JUDGE_STORED_RUN_EVENT, {"repo": repo, "pr_number": number},
                      ordering_key=f"{repo}#{number} wait-recheck", installation_id=ctx.installation_id,
                      delay=WAIT_RECHECK_SECONDS)


@router.register(JUDGE_STORED_RUN_EVENT)
async def judge_stored_run(event: sansio.Event, ctx: Context) -> None:
    """Judge a pull request queued behind its manifest job: data carries repo and pr_number."""
    repo, number = str(event.data["repo"]), int(event.data["pr_number"])
    pull = await pull_store.get_pull(ctx.db, repo, number)
    if pull is None or pull.head_sha is None or await pull_store.get_manifest(ctx.db, repo, number,
                                                                               pull.head_sha) is None:
        # Why stop: the manifest job ran before this one; without a manifest (a closed PR) waiting cannot help.
        ctx.log.info("%s#%s has no manifest; nothing to judge", repo, number)
        return
    await rejudge_commit(ctx, repo, pull.head_sha, [number])


@router.register(REVALIDATE_EVENT)
async def revalidate_pull(event: sansio.Event, ctx: Context) -> None:
    """Judge one pull request again (dashboard request): data carries repo and pr_number."""
    repo, number = str(event.data["repo"]), int(event.data["pr_number"])
    pull = await pull_store.get_pull(ctx.db, repo, number)
    head_sha = pull.head_sha if pull is not None else None
    if head_sha is None:
        live = await prs.fetch_pull(ctx, repo, number)
        if live is None:  # deleted, transferred or never there: nothing to judge (a retry cannot help)
            ctx.log.info("%s#%s is gone; nothing to revalidate", repo, number)
            return
        head_sha = str(live["head"]["sha"])
    await rejudge_commit(ctx, repo, head_sha, [number])


async def rejudge_commit(ctx: Context, repo: str, head_sha: str, numbers: Sequence[int] | None) -> None:
    """Process the commit's latest stored run again, or re-publish the stored state when no run is known."""
    stored = await run_store.latest_run_for_sha(ctx.db, repo, head_sha)
    run: dict[str, Any] | None
    if stored is not None:
        run = await getitem_or_none(ctx.gh, f"/repos/{repo}/actions/runs/{stored.run_id}")
        if run is None:  # the run was deleted: re-publish what is stored, as when no run is known
            ctx.log.info("%s: run %s is gone; re-publishing the stored state", repo, stored.run_id)
        elif run.get("status", "completed") != "completed":
            # Why: GitHub's run is its latest attempt, here a re-run still going; judged now, it was recorded as
            # that attempt, and the attempt's own completion was then skipped as already processed.
            ctx.log.info("%s: run %s is running again; its completion will judge it", repo, stored.run_id)
            run = None
    else:
        # Never seen a run for this commit (e.g. it finished while we were not installed): ask GitHub.
        listing = await getitem_or_none(
            ctx.gh, f"/repos/{repo}/actions/runs?head_sha={head_sha}&status=completed&per_page=10")
        if listing is None:  # the repository is gone or renamed: nothing to judge or publish
            ctx.log.info("%s is gone; commit %s not judged", repo, head_sha[:7])
            return
        # Why not runs awaiting approval: they ran nothing, and are judged when they complete after approval.
        runs = [r for r in listing.get("workflow_runs") or [] if r.get("status", "completed") == "completed"
                and r.get("conclusion") != AWAITING_APPROVAL]
        run = await run_with_report(ctx, repo, runs)
    if run is None:
        for number in numbers if numbers is not None else await pulls_for_sha(ctx, repo, head_sha):
            await prs.publish_pr_status(ctx, repo, number, head_sha)
        return
    await judge_run(ctx, repo, run, force=True, numbers=numbers)


async def run_with_report(ctx: Context, repo: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest of the commit's runs that has the report artifact, else the newest (None: no run).

    Why look: other workflows run on the commit too, and the newest run was often one without a report (lint),
    judged as "no test report found" while the test workflow's run had one.
    """
    newest_first = sorted(runs, key=_run_rank, reverse=True)
    for run in newest_first:
        try:
            artifacts = await ctx.github.list_artifacts(_installation(ctx), repo, int(run["id"]))
        except (PermissionDenied, BadRequest):  # judging the newest run says why in the check
            break
        if any(a.get("name") == REPORT_ARTIFACT for a in artifacts):
            return run
    return newest_first[0] if newest_first else None


async def judge_run(ctx: Context, repo: str, run: Mapping[str, Any], *, force: bool,
                    numbers: Sequence[int] | None = None) -> None:
    """Collect the run's reports, judge each of its pull requests, then record the run as processed."""
    run_id, attempt, started = int(run["id"]), int(run.get("run_attempt") or 1), _time(run, "run_started_at")
    head_sha, branch = str(run["head_sha"]), _str(run.get("head_branch"))
    if run.get("conclusion") == AWAITING_APPROVAL:
        # Why not recorded: approving runs this same run id and attempt, and completes it again; recorded now,
        # that real completion was skipped as "already processed".
        ctx.log.info("run %s awaits a maintainer's approval; judged once it has run", run_id)
        return
    stored = await run_store.get_run(ctx.db, repo, run_id)
    if stored is not None and not force and stored.run_attempt >= attempt:
        ctx.log.info("run %s attempt %s already processed (stored attempt %s)", run_id, attempt, stored.run_attempt)
        await ctx.send_staged(f"{repo}@{head_sha}")  # a health drop a run killed once it recorded the run owed
        return
    reports = await collect_reports(ctx.github, _installation(ctx), repo, run_id,
                                    max_bytes=ctx.settings.artifact_max_bytes,
                                    last_try=ctx.attempt >= ctx.settings.job_max_attempts,
                                    reading=ctx.locks("artifact reports"))
    if reports.listed and reports.artifact_count == 0:
        if ctx.attempt < EMPTY_LIST_TRIES:
            # Why a fixed wait: the runner's backoff (from 5 s) would spend every try within the first minute.
            raise RetryLater(f"run {run_id} lists no artifacts yet", at=time.time() + EMPTY_LIST_WAIT)
        span = (EMPTY_LIST_TRIES - 1) * EMPTY_LIST_WAIT
        note = f"no artifacts were found for run {run_id} (listed {EMPTY_LIST_TRIES} times over {span:.0f} s)"
        reports = dataclasses.replace(reports, notes=(*reports.notes, note))
    if stored is not None and stored.run_attempt == attempt and reports.junit is None:
        reports = reused_reports(run_id, stored, reports)
    if numbers is None:
        numbers = await pulls_for_run(ctx, repo, run)
    # Why ask: a report-less run (lint) finishing first concluded the check neutral, which passes a required check
    # while the test workflow was still running; the last of the commit's runs to finish decides instead.
    waiting = (await pending_runs(ctx.gh, repo, head_sha, run_id, attempt)
               if numbers and not reports.matched and reports.listed else [])
    drop = None
    unjudged: list[int] = []
    waited: list[int] = []
    for number in numbers:
        summary = await judge_pull(ctx, repo, number, head_sha, run_id, attempt, reports, unjudged=unjudged,
                                   started_at=started, waiting=waiting, waited=waited)
        if summary is not None and summary.delta is not None and summary.delta < 0:
            drop = summary
    health = reports.health
    async with ctx.db.transaction() as conn:
        await run_store.record_run(
            conn, repo=repo, run_id=run_id, run_attempt=attempt, head_sha=head_sha, head_branch=branch,
            conclusion=_str(run.get("conclusion")), results=reports.results, report_error="; ".join(reports.notes)
            or None, health=_health_json(health), now=time.time(), started_at=started)
        first_score = health is not None and await run_store.record_health_score(
            conn, repo=repo, head_sha=head_sha, branch=score_branch(run, branch), score=health.score,
            counts={str(k): n for k, n in health.counts.items()}, now=_time(run, "created_at") or time.time())
        if first_score and drop is not None:
            # Why staged with the score: a rerun finds the score stored (not first), and told nobody.
            await notifications.stage(
                conn, subject=f"{repo}@{head_sha}", repo=repo, kind="health_drop",
                title=f"Code health dropped to {drop.score} ({drop.delta:+d}) on {head_sha[:7]}",
                url=_str(run.get("html_url")),
                data={"run_id": run_id, "head_sha": head_sha, "score": drop.score, "delta": drop.delta})
    if not force:
        for number in unjudged:
            # Why: the pull request's manifest job was still queued or slow (its own ordering key); a job queued
            # behind it judges this run once that manifest is stored. Forced judging (this job) never queues again.
            await queue_judging(ctx, repo, number, ctx.installation_id)
        for number in waited:
            # Why once, and not from that look again (forced): past the list's lag, a run still going is really
            # going, and its own completion is judged.
            await queue_wait_recheck(ctx, repo, number)
    await ctx.send_staged(f"{repo}@{head_sha}")


def reused_reports(run_id: int, stored: run_store.CiRun, reports: RunReports) -> RunReports:
    """The results (and health) read from this run attempt before, when its report can no longer be read.

    Why: artifacts expire (a repository may keep them one day) while its pull requests are revalidated later
    (an issue edit, a re-run); judging them without a report turned a passing check into "No test report found".
    """
    if stored.results is None:
        return reports
    health = reports.health
    if health is None and isinstance(stored.health, dict):
        counts = stored.health.get("counts") or {}
        health = HealthReport(score=int(stored.health["score"]), counts=counts, findings=(),
                              total=int(stored.health.get("total") or 0))
    note = (f"the report of run {run_id} can no longer be read ({'; '.join(reports.notes) or 'no report'}); "
            "the results read from it before are shown")
    by_tid = {tid: cast(Status, status) for tid, status in stored.results.items() if status in get_args(Status)}
    return dataclasses.replace(reports, junit=JUnitReport(by_tid=by_tid), health=health, matched=True, notes=(note,))


async def judge_pull(ctx: Context, repo: str, number: int, head_sha: str, run_id: int, attempt: int,
                     reports: RunReports, *, unjudged: list[int] | None = None,
                     started_at: float | None = None, waiting: Sequence[str] = (),
                     waited: list[int] | None = None) -> HealthSummary | None:
    """Store and publish one pull request's verdict; a run that started earlier never replaces a later result.

    A pull request whose manifest is still missing after the waits is added to `unjudged`. `waiting` names the
    commit's other runs still going when this run had no report: then no verdict is stored, the check stays (or
    goes back) in progress saying so, unless a run with a report already gave the verdict; the pull request is then
    added to `waited`.
    """
    pull = await pull_store.get_pull(ctx.db, repo, number)
    row = await pull_store.get_manifest(ctx.db, repo, number, head_sha)
    if pull is None or row is None:
        if ctx.attempt < MANIFEST_WAIT_TRIES:
            raise RetryLater(f"{repo}#{number}: no manifest for {head_sha[:7]} yet")
        ctx.log.warning("%s#%s: no manifest for %s; verdict skipped", repo, number, head_sha[:7])
        if unjudged is not None:
            unjudged.append(number)
        return None
    if waiting and not row.run_id:  # no verdict yet, or a report-less run's
        async with ctx.db.transaction() as conn:
            await pull_store.clear_report_less_verdict(conn, repo, number, head_sha)
            # Why: runs go on this head, so it has CI, whatever its check's first publish found (workflows added
            # since); else the next publish (a comment update) showed "No CI workflow" neutral again.
            await pull_store.set_ci_workflows(conn, repo, number, head_sha, "some")
        ctx.log.info("%s#%s: run %s had no report; waiting for %s", repo, number, run_id, ", ".join(waiting))
        await prs.publish_pr_status(ctx, repo, number, head_sha, waiting=waiting_note(run_id, waiting))
        if waited is not None:
            waited.append(number)
        return None
    summary = await health_summary(ctx, repo, head_sha, pull.base_ref, reports.health)
    criteria, link_notes = await prs.linked_criteria(ctx, repo, pull.linked)
    verdict = compute_verdict(criteria, reports.results)
    record = verdict_record(verdict, notes=[*reports.notes, *link_notes], health=summary)
    # A run without any report artifact (another workflow on the commit) ranks below every run that had one.
    rank = (run_id, attempt, started_at) if reports.matched else (0, 0, None)
    # Why in stored form: the record holds tuples where the stored one has lists, so they always differed and
    # every run (a rerun, a revalidation with the same result) notified again.
    changed = row.verdict != stored_form(record)
    # Why only at the head: the notice names the pull request, not the commit, so a late run of a commit it moved
    # past told a maintainer, last, that a pull request whose check is green had failed.
    at_head = pull.head_sha in (None, head_sha)
    subject = f"{repo}#{number}"
    async with ctx.db.transaction() as conn:
        written = await pull_store.save_verdict(
            conn, repo=repo, pr_number=number, head_sha=head_sha, verdict=record, conclusion=verdict.conclusion,
            run_id=rank[0], run_attempt=rank[1], started_at=rank[2], now=time.time())
        if written and changed and at_head:
            # Why staged with the verdict: a rerun after a kill between the two finds it unchanged, and told nobody.
            await notifications.stage(
                conn, subject=subject, repo=repo, kind="verdict", title=f"{repo}#{number}: {verdict_title(verdict)}",
                url=f"{ctx.settings.github_url}/{repo}/pull/{number}",
                data={"pr_number": number, "head_sha": head_sha, "conclusion": verdict.conclusion})
    if not written:
        ctx.log.info("%s#%s: a newer run's verdict is stored; run %s ignored", repo, number, run_id)
        return summary
    await prs.publish_pr_status(ctx, repo, number, head_sha, failing=reports.junit.failing if reports.junit else (),
                                health=summary, annotations=await findings_on_changed_lines(ctx, repo, number, reports))
    # Why only at the head: the issue's checklist shows the pull request as it is now, and a late run of a commit
    # it moved past (an older push finishing last) overwrote the head's results there.
    if verdict.report_found and at_head:
        await update_checklists(ctx, verdict)
    await ctx.send_staged(subject)  # this run's, or what a run killed before sending it owed
    return summary


async def findings_on_changed_lines(ctx: Context, repo: str, number: int, reports: RunReports) -> list[Annotation]:
    """Warnings for code-health findings that sit on lines this pull request added (files read only if needed)."""
    health = reports.health
    paths = {f.path for f in health.findings if f.path and f.line is not None} if health is not None else set()
    if not paths or health is None:
        return []
    files: list[dict[str, Any]] = []
    async for item in ctx.gh.getiter(f"/repos/{repo}/pulls/{number}/files?per_page=100"):
        if isinstance(item, dict) and item.get("filename") in paths:
            files.append(item)
    return finding_annotations(health.findings, changed_lines(files))


async def health_summary(ctx: Context, repo: str, head_sha: str, base: str | None,
                         health: HealthReport | None) -> HealthSummary | None:
    """The run's score with its change against the latest score on the pull request's base branch."""
    if health is None:
        return None
    previous = await run_store.latest_health_score(ctx.db, repo, base, exclude_sha=head_sha) if base else None
    trend = health_trend(health.score, None if previous is None else previous.score)
    return HealthSummary(health.score, trend.delta, {k: n for k, n in health.counts.items() if n})


async def update_checklists(ctx: Context, verdict: Verdict) -> None:
    """Write each linked issue's statuses, and re-render the checklist comments whose statuses changed."""
    by_issue: dict[tuple[str, int], dict[str, str]] = {}
    for result in verdict.results:
        key = (result.criterion.repo, result.criterion.issue_number)
        by_issue.setdefault(key, {})[result.criterion.tid] = result.outcome
    for (repo, issue), statuses in by_issue.items():
        checklist = await checklist_store.get_checklist(ctx.db, repo, issue)
        if checklist is None or checklist.retired:
            continue
        async with ctx.db.transaction() as conn:
            changed = await checklist_store.set_statuses(conn, checklist.id, statuses, time.time())
        # Why on a retry too: the statuses are stored before the comment is edited, so when GitHub failed that edit
        # (a rate limit, an outage), the retry found nothing changed and the comment showed the old ones for good.
        if changed or checklist.comment_id is None or ctx.attempt > 1:
            await publish_checklist_comment(ctx, repo, issue)


async def pulls_for_run(ctx: Context, repo: str, run: Mapping[str, Any]) -> list[int]:
    """The run's pull requests: from the payload, else (fork PRs leave it empty) the open ones at its head SHA."""
    repository = run.get("repository")
    repo_id = repository.get("id") if isinstance(repository, dict) else None
    listed = sorted({int(p["number"]) for p in run.get("pull_requests") or [] if isinstance(p, dict)
                     and _base_repo_matches(p, repo, repo_id)})
    return listed or await pulls_for_sha(ctx, repo, str(run["head_sha"]))


async def pulls_for_sha(ctx: Context, repo: str, head_sha: str) -> list[int]:
    """Open pull requests whose head is this commit: stored ones, else GitHub's list of open pull requests."""
    stored = await pull_store.open_pulls_for_sha(ctx.db, repo, head_sha)
    if stored:
        return stored
    found = []
    try:
        async for pull in ctx.gh.getiter(f"/repos/{repo}/pulls?state=open&per_page=100"):
            if (pull.get("head") or {}).get("sha") == head_sha:
                found.append(int(pull["number"]))
    except BadRequest as exc:
        if not is_gone(exc):
            raise
        # Why: the repository was deleted or left the installation; retrying cannot bring it back.
        ctx.log.info("%s is gone (%s); no pull request to judge", repo, int(exc.status_code))
        return []
    return sorted(found)


def verdict_title(verdict: Verdict) -> str:
    """A one-line summary for notifications."""
    if not verdict.results:
        return "no acceptance criteria to check"
    if not verdict.report_found:
        return "no test report found"
    return (f"{verdict.passed} passed, {verdict.failed} failed, {verdict.skipped} skipped, "
            f"{verdict.missing} missing ({verdict.conclusion})")


def score_branch(run: Mapping[str, Any], branch: str | None) -> str | None:
    """The branch a run's health score is kept under: a fork's branch as "owner:branch", as GitHub shows it.

    Why: a fork PR's run names the fork's branch, often "main"; kept as plain "main", its score became the base
    branch's baseline, which every pull request's health trend is measured against.
    """
    repository, head = run.get("repository"), run.get("head_repository")
    if branch is None or not isinstance(repository, Mapping) or not isinstance(head, Mapping):
        return branch
    if isinstance(repository.get("id"), int) and isinstance(head.get("id"), int):
        same = repository["id"] == head["id"]
    else:
        same = str(repository.get("full_name", "")).lower() == str(head.get("full_name", "")).lower()
    if same:
        return branch
    owner = str(head.get("full_name") or "?/").split("/")[0]
    return f"{owner}:{branch}"


def _is_ours(check: Mapping[str, Any], ctx: Context) -> bool:
    app = check.get("app") or {}
    return str(app.get("id")) == str(ctx.settings.app_id)


def _base_repo_matches(pull: Mapping[str, Any], repo: str, repo_id: object) -> bool:
    """Payload entries may name pull requests of other repositories (a fork's own PRs); keep this repo's.

    Why the id or URL before the name: a fork keeps its upstream's name by default, so the name alone let an
    upstream PR pass as this repository's PR of the same number.
    """
    base = (pull.get("base") or {}).get("repo") or {}
    if isinstance(base.get("id"), int) and isinstance(repo_id, int):
        return bool(base["id"] == repo_id)
    url, name = base.get("url"), base.get("name")
    if isinstance(url, str):
        return url.lower().endswith(f"/repos/{repo.lower()}")
    return name is None or repo.lower().endswith(f"/{str(name).lower()}")


def _installation(ctx: Context) -> int:
    if ctx.installation_id is None:
        raise PermanentError("the event names no installation of the App")
    return ctx.installation_id


def _health_json(health: HealthReport | None) -> dict[str, Any] | None:
    return None if health is None else {"score": health.score, "counts": dict(health.counts), "total": health.total}


def _time(run: Mapping[str, Any], key: str) -> float | None:
    """One of the run's times as a timestamp: created_at (its first attempt) or run_started_at (its latest attempt,
    reset by a re-run); None when absent or malformed.

    Why a score is dated by created_at: the base branch's baseline is its newest score, and runs finish in any
    order; dated when processed, an older push's run judged last became the baseline.
    """
    value = run.get(key)
    try:
        return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None
    except ValueError:
        return None


def _run_rank(run: Mapping[str, Any]) -> tuple[bool, float, int]:
    """Orders a commit's runs as runs.LATEST_RUN_FIRST does: the attempt that started last (else the run id) last."""
    started = _time(run, "run_started_at")
    return started is not None, started or 0.0, int(run["id"])


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
