"""A pull request's test manifest: linked issues, diff analysis, the one check run and the one comment.

Check runs: https://docs.github.com/en/rest/checks/runs
Pull request files: https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gidgethub import BadRequest

from quantumreview.analysis.checklist_comment import escape_cell
from quantumreview.analysis.links import IssueLink, find_linked_issues
from quantumreview.analysis.manifest import MAX_FILES, CriterionRef, Manifest, build_manifest
from quantumreview.analysis.paths import classify_file
from quantumreview.analysis.pr_render import (
    MARKER,
    MAX_CHECK_CHARS,
    MAX_TITLE,
    Annotation,
    CheckOutput,
    FailingCaseLike,
    HealthLike,
    batch_annotations,
    render_manifest_check,
    render_no_links_check,
    render_pr_comment,
    render_verdict_check,
)
from quantumreview.analysis.verdict import Conclusion, CriterionResult, Verdict
from quantumreview.ci_results import REPORT_ARTIFACT
from quantumreview.comments import is_locked_refusal, upsert_comment
from quantumreview.context import Context
from quantumreview.errors import PermissionDenied
from quantumreview.github_client import getitem_or_none, is_gone
from storage import checklists as checklist_store
from storage import installations as installation_store
from storage import jobs as job_store
from storage import notifications
from storage import pulls as store

CHECK_NAME = "QuantumReview"
REVALIDATE_EVENT = "quantumreview.revalidate_pr"
FILES_PER_PAGE = 100
# Why cap patches: only test files are scanned, and 3,000 files of 1 MB each must not sit in memory at once.
MAX_PATCH_CHARS = 1024 * 1024
MAX_PATCH_TOTAL = 32 * 1024 * 1024
MAX_PROBLEMS = 20
ANNOTATIONS_DIGEST_PREFIX = "quantumreview-annotations:"
OTHER_APPS_RUN = "can only be modified by the GitHub App that created it"  # GitHub's 403 for another App's run
# Where the README shows the workflow step that uploads the report (linked from the "no CI workflow" check).
REPORT_UPLOAD_HELP = "https://github.com/quantumreview/quantumreview#how-it-works"
NO_CI_NOTE = (f"> No CI workflow in this repository: these tests will not be run for the criteria; [add one that "
              f"uploads the report]({REPORT_UPLOAD_HELP}).")


async def fetch_pull(ctx: Context, repo: str, number: int) -> dict[str, Any] | None:
    """The pull request as GitHub has it now; None if it is gone."""
    return await getitem_or_none(ctx.gh, f"/repos/{repo}/pulls/{number}")


async def list_pull_files(gh: Any, repo: str, number: int) -> list[dict[str, Any]]:
    """Every changed file (all pages, at most 3,000), keeping patches of test files only and within a budget."""
    files: list[dict[str, Any]] = []
    budget = MAX_PATCH_TOTAL
    async for item in gh.getiter(f"/repos/{repo}/pulls/{number}/files?per_page={FILES_PER_PAGE}"):
        if not isinstance(item, dict):
            continue
        entry = {k: v for k, v in item.items() if k in ("filename", "status", "additions", "deletions")}
        patch = item.get("patch")
        path = item.get("filename")
        if isinstance(patch, str) and isinstance(path, str) and classify_file(path) == "test" and budget > 0:
            kept = clip_patch(patch, min(MAX_PATCH_CHARS, budget))
            budget -= len(kept)
            entry["patch"] = kept
        files.append(entry)
        if len(files) >= MAX_FILES:
            break
    return files


def clip_patch(patch: str, limit: int) -> str:
    """Cut a patch to at most `limit` characters at a line end (a half line could invent a test name)."""
    if len(patch) <= limit:
        return patch
    cut = patch.rfind("\n", 0, limit)
    return patch[:cut] if cut > 0 else ""


def links_of(repo: str, pull: Mapping[str, Any]) -> list[IssueLink]:
    """The issues a pull request links, from its title, body and head branch."""
    head = pull.get("head")
    head = head if isinstance(head, Mapping) else {}
    return list(find_linked_issues(str(pull.get("title") or ""), pull.get("body"), str(head.get("ref") or ""),
                                   repo))


def link_dicts(links: Sequence[IssueLink]) -> list[dict[str, Any]]:
    """Links as stored: {repo, number, source}."""
    return [{"repo": link.repo, "number": link.number, "source": link.source} for link in links]


def issue_links(stored: Sequence[Mapping[str, Any]]) -> list[IssueLink]:
    """Links read back from storage; malformed entries are skipped."""
    out: list[IssueLink] = []
    for item in stored:
        repo, number, source = item.get("repo"), item.get("number"), item.get("source")
        if isinstance(repo, str) and isinstance(number, int) and source in ("keyword", "branch"):
            out.append(IssueLink(repo, number, "keyword" if source == "keyword" else "branch"))
    return out


async def linked_criteria(ctx: Context, repo: str, links: Sequence[Mapping[str, Any]]) -> tuple[
        list[CriterionRef], list[str]]:
    """The criteria of each linked issue's checklist, and what kept a link from counting (never fatal)."""
    criteria: list[CriterionRef] = []
    problems: list[str] = []
    for link in links:
        target, number = str(link.get("repo") or repo), int(link.get("number") or 0)
        name = f"{target}#{number}"
        checklist = await checklist_store.get_checklist(ctx.db, target, number)
        if not await _visible(ctx, repo, target, checklist):
            problems.append(f"{name}: not visible to the app (install it on {target} to use its criteria)")
        elif checklist is None:
            problems.append(f"{name}: no acceptance-criteria checklist (not an issue, or it lists no criteria)")
        elif checklist.retired:
            problems.append(f"{name}: the issue was deleted or transferred")
        else:
            live, _retired = await checklist_store.get_items(ctx.db, checklist.id)
            criteria.extend(CriterionRef(checklist.repo, number, item.tid, item.text) for item in live)
    return criteria, problems


async def _visible(ctx: Context, repo: str, target: str, checklist: checklist_store.Checklist | None) -> bool:
    """A link counts only within the pull request's installation: its own repository, or one that shares it."""
    if target.lower() == repo.lower():
        return True
    if checklist is not None and checklist.installation_id is not None:
        return checklist.installation_id == ctx.installation_id
    owner = await installation_store.installation_for_repo(ctx.db, target)
    return owner is not None and owner == ctx.installation_id


async def refresh_manifest(ctx: Context, repo: str, pull: Mapping[str, Any]) -> Manifest:
    """Recompute the manifest of the pull request's head, store it with the pull request, and publish it."""
    number = int(pull["number"])
    head, base = pull.get("head") or {}, pull.get("base") or {}
    head_sha = str(head["sha"])
    links = links_of(repo, pull)
    criteria, problems = await linked_criteria(ctx, repo, link_dicts(links))
    files = await list_pull_files(ctx.gh, repo, number) if links else []
    manifest = build_manifest(files, criteria, changed_files=pull.get("changed_files") if links else None)
    data = {**manifest.to_dict(), "links": link_dicts(links), "problems": problems[:MAX_PROBLEMS]}
    known = await store.get_manifest(ctx.db, repo, number, head_sha)
    now = time.time()
    subject = f"{repo}#{number}"
    async with ctx.db.transaction() as conn:
        await store.upsert_pull(
            conn, repo=repo, number=number, installation_id=ctx.installation_id, title=str(pull.get("title") or ""),
            state=str(pull.get("state") or "open"), merged=bool(pull.get("merged")), head_sha=head_sha,
            head_ref=head.get("ref"), base_ref=base.get("ref"), linked=link_dicts(links), now=now,
        )
        await store.save_manifest(conn, repo=repo, pr_number=number, head_sha=head_sha, manifest=data, now=now)
        if known is None and links:
            # Why staged with the manifest: a rerun after a kill between the two finds it known, and told nobody.
            covered = sum(bool(item.tests) for item in manifest.coverage)
            await notifications.stage(
                conn, subject=subject, repo=repo, kind="manifest",
                title=f"{repo}#{number}: {covered} of {len(manifest.coverage)} criteria have tests at {head_sha[:7]}",
                url=pull.get("html_url"), data={"pr_number": number, "head_sha": head_sha}, now=now)
        if known is not None and known.verdict is not None and known.manifest.get("links") != link_dicts(links):
            # Why: the stored verdict judged other criteria; a revalidate job redoes it (the CI handler listens).
            # Why owed with the manifest: a rerun after a kill before the queueing finds the links unchanged.
            await job_store.owe(conn, subject, REVALIDATE_EVENT, now)
    # Why before publishing: the manifest is stored now, so a retry after GitHub failed the check run or the
    # comment compares with it and finds nothing new; queued after, the revalidation was lost.
    if await job_store.is_owed(ctx.db, subject, REVALIDATE_EVENT):  # this run's, or a killed run's
        await ctx.enqueue(REVALIDATE_EVENT, {"repo": repo, "pr_number": number}, ordering_key=f"{repo}#{number}",
                          installation_id=ctx.installation_id)
        await job_store.settle_owed(ctx.db, subject, REVALIDATE_EVENT)
    await ctx.send_staged(subject)  # this run's, or what a run killed before sending it owed
    await publish_pr_status(ctx, repo, number, head_sha)
    return manifest


async def publish_pr_status(
    ctx: Context, repo: str, pr_number: int, head_sha: str, *, failing: Sequence[FailingCaseLike] = (),
    health: HealthLike | Mapping[str, Any] | None = None, annotations: Sequence[Annotation] = (),
    waiting: str | None = None,
) -> None:
    """Show the stored manifest (and verdict, once there is one) in the head's one check run and the PR's comment.

    With a verdict, `failing` tests and extra `annotations` (e.g. code-health findings) are annotated once.
    Without one, `waiting` says which of the commit's runs the check in progress waits for.
    """
    # Why one at a time per pull request: its own job and its CI run's job publish at once; the one that read the
    # stored state first could write last, putting a completed check run back in progress and the verdict away.
    async with ctx.locks("publish", repo, pr_number):
        try:
            await _publish(ctx, repo, pr_number, head_sha, failing, health, annotations, waiting)
        except BadRequest as exc:
            if not is_gone(exc):
                raise
            # Why: a 404 left after the run's and the comment's own fallbacks means the repository (or the pull
            # request) was deleted or left the installation; retrying cannot bring it back, so the job ends here.
            ctx.log.info("%s#%d is gone from GitHub (%d); nothing published", repo, pr_number, int(exc.status_code))


async def _publish(ctx: Context, repo: str, pr_number: int, head_sha: str, failing: Sequence[FailingCaseLike],
                   health: HealthLike | Mapping[str, Any] | None, annotations: Sequence[Annotation],
                   waiting: str | None) -> None:
    row = await store.get_manifest(ctx.db, repo, pr_number, head_sha)
    if row is None:
        ctx.log.info("no manifest for %s#%d at %s: nothing to publish", repo, pr_number, head_sha[:7])
        return
    manifest = Manifest.from_dict(row.manifest)
    links = issue_links(row.manifest.get("links") or [])
    problems = [str(p) for p in row.manifest.get("problems") or []]
    verdict = verdict_from_dict(row.verdict) if row.verdict is not None else None
    if row.verdict is not None:
        # CI's notes (expired artifact, unreadable report) sit beside the link problems, deduplicated.
        problems += [str(n) for n in row.verdict.get("notes") or [] if str(n) not in problems]
    elif waiting is not None and links:
        problems.insert(0, waiting)
    fields: dict[str, Any]
    notes: list[Annotation] = []
    # Why rendered inside: a note added after rendering pushed rows, and the note saying rows were left out,
    # past GitHub's limit, so the text was cut mid-row.
    shown_problems = problem_lines(problems).splitlines() if problems else []
    if verdict is not None and row.verdict is not None:
        # Why fall back to the stored ones: a manifest refresh republishes without CI's details at hand.
        shown = failing or stored_failing(row.verdict)
        health = health if health is not None else _mapping(row.verdict.get("health"))
        output = render_verdict_check(verdict, shown, health, notes=shown_problems)
        fields = {"status": "completed", "conclusion": row.conclusion or verdict.conclusion}
        notes = [*failure_annotations(manifest, failing), *annotations]
    elif not links:
        output = with_problems(render_no_links_check(), problems)
        fields = {"status": "completed", "conclusion": "neutral"}
    elif await _without_ci(ctx, repo, pr_number, head_sha, row):
        output = no_ci_check(manifest, links, notes=shown_problems)
        fields = {"status": "completed", "conclusion": "neutral"}
        shown_problems = [NO_CI_NOTE, "", *shown_problems]
    else:
        output, fields = render_manifest_check(manifest, links, notes=shown_problems), {"status": "in_progress"}
    await upsert_check_run(ctx, repo, pr_number, head_sha, row.check_run_id, fields, output, notes)
    pull = await store.get_pull(ctx.db, repo, pr_number)
    if not links and (pull is None or pull.comment_id is None):
        return  # no linked issue and never commented: the neutral check says enough
    if pull is not None and pull.head_sha not in (None, head_sha):
        return  # a late CI result for a commit the PR has moved past: its check run is its own, the comment is not
    body = render_pr_comment(manifest, verdict, links=links, health=health, notes=shown_problems)
    known = pull.comment_id if pull is not None else None
    try:
        comment_id = await upsert_comment(ctx.gh, repo, pr_number, marker=MARKER, body=body, known_id=known,
                                          locks=ctx.locks)
    except BadRequest as exc:
        if not is_locked_refusal(exc):
            raise
        # Why not raise: no retry gets past a lock, and failing here failed the CI result's job after its check
        # run was written, before the run was recorded and the linked checklists updated. The check run shows the
        # same; `pull_request.unlocked` publishes the comment.
        ctx.log.info("%s#%d is locked: its comment waits until it is unlocked", repo, pr_number)
        return
    if comment_id != known:
        async with ctx.db.transaction() as conn:
            await store.set_pull_comment_id(conn, repo, pr_number, comment_id)


async def _without_ci(ctx: Context, repo: str, pr_number: int, head_sha: str, row: store.ManifestRow) -> bool:
    """Whether the repository had no Actions workflow when the head's check was first to wait for CI.

    Why: no run would ever complete it, and a check left in progress for good blocks a required check. GitHub is
    asked once per head (the answer is kept with its manifest), not at each comment update.
    """
    found = row.ci_workflows
    if found is None:
        found = await workflows_found(ctx, repo)
        async with ctx.db.transaction() as conn:
            await store.set_ci_workflows(conn, repo, pr_number, head_sha, found)
    return found == "none"


async def workflows_found(ctx: Context, repo: str) -> str:
    """Whether the repository has Actions workflows: "none", "some", or "unknown" when GitHub refuses to say (no
    Actions: read: the check then waits for CI as before).

    https://docs.github.com/en/rest/actions/workflows#list-repository-workflows
    """
    try:
        listing = await ctx.gh.getitem(f"/repos/{repo}/actions/workflows?per_page=1")
    except PermissionDenied as exc:
        ctx.log.info("%s: cannot list its workflows (%s); the check waits for CI", repo, exc)
        return "unknown"
    total = listing.get("total_count") if isinstance(listing, dict) else None
    if not isinstance(total, int):
        return "unknown"
    return "none" if total == 0 else "some"


def no_ci_check(manifest: Manifest, links: Sequence[IssueLink], *, notes: Sequence[str]) -> CheckOutput:
    """The manifest check, concluded neutral, for a repository without any CI workflow: says so, shows what the
    diff's tests cover, and how to have CI upload the report."""
    lines = [
        "**No CI workflow in this repository**: GitHub Actions lists none, so no test report will come and this "
        "check is concluded `neutral` instead of waiting for one. Below is what the diff alone shows: the tests "
        "this pull request adds or changes for each criterion. None of them has been run.",
        "",
        "To have each criterion judged, add a workflow that runs the tests and uploads their JUnit report as the "
        f"`{REPORT_ARTIFACT}` artifact: the step is in [the README]({REPORT_UPLOAD_HELP}).",
        "",
    ]
    output = render_manifest_check(manifest, links, notes=[*lines, *notes])
    return CheckOutput(_clip(f"No CI workflow: {output.title[:1].lower()}{output.title[1:]}", MAX_TITLE),
                       output.summary, output.text)


async def upsert_check_run(
    ctx: Context, repo: str, pr_number: int, head_sha: str, known_id: int | None, fields: Mapping[str, Any],
    output: CheckOutput, annotations: Sequence[Annotation],
) -> int:
    """Update the head's one check run (stored id, else found by name), or create it once; return its id.

    GitHub appends the annotations of every update to the run, so each request that carries a batch also writes
    into the run's `external_id` the set's digest and how many of its batches the run now holds. Publishing the
    same set again (a job's retry, a revalidation, a re-run with the same failures) sends only the batches the
    run lacks, none once it has them all; a batch is never repeated inline (a lost reply may hide that it landed).
    """
    batches = batch_annotations(annotations)
    digest = annotations_digest(annotations) if batches else None
    run: dict[str, Any] | None = None
    if known_id is not None:
        # Why read it first: only then is it known which of these annotations are already on it, and whether it
        # is completed while this update would reopen it.
        read = bool(batches) or fields.get("status", "completed") != "completed"
        run = await getitem_or_none(ctx.gh, f"/repos/{repo}/check-runs/{known_id}") if read else {"id": known_id}
    run_id = None
    if run is not None and not reopens(run, fields):
        run_id = await _update_known_run(ctx, repo, int(run["id"]), fields, output, batches, digest, run)
    if run_id is None:
        async with ctx.locks("check-run", repo, head_sha):  # the CI job and the manifest job may race here
            # Why look before creating: a crash after the POST but before storing the id must not add a second run.
            found = await find_check_run_item(ctx, repo, head_sha)
            if found is not None and not reopens(found, fields):
                run_id = int(found["id"])
                await _send_check_run(ctx, repo, run_id, fields, output, batches, digest, found)
            else:
                created = await ctx.gh.post(f"/repos/{repo}/check-runs", data={
                    "name": CHECK_NAME, "head_sha": head_sha,
                    **_check_run_body(fields, output, batches[:1], digest, 1)})
                run_id = int(created["id"])
                await _send_more_annotations(ctx, repo, run_id, output, batches, digest, 1)
    if run_id != known_id:
        async with ctx.db.transaction() as conn:
            await store.set_check_run_id(conn, repo, pr_number, head_sha, run_id)
    return run_id


def reopens(run: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether the update would put a completed run back in progress (or queued).

    Why: GitHub keeps a completed run's status and conclusion whatever is sent, so a PR first checked "neutral"
    (no linked issue) kept that result after an edit linked an issue; a new run for the head is made instead.
    """
    return run.get("status") == "completed" and fields.get("status", "completed") != "completed"


def annotations_digest(annotations: Sequence[Annotation]) -> str:
    """A short digest of an annotation set, kept in the check run's `external_id` with the batches it holds."""
    data = json.dumps([a.to_dict() for a in annotations], sort_keys=True, ensure_ascii=False)
    return ANNOTATIONS_DIGEST_PREFIX + hashlib.sha256(data.encode()).hexdigest()[:40]


def batches_on_run(run: Mapping[str, Any], digest: str | None) -> int:
    """How many batches of the set `digest` the run already holds, from its external_id ("<digest>:<n>")."""
    marker = run.get("external_id")
    if digest is None or not isinstance(marker, str) or not marker.startswith(digest + ":"):
        return 0
    count = marker.removeprefix(digest + ":")
    return int(count) if count.isdigit() else 0


def _check_run_body(fields: Mapping[str, Any], output: CheckOutput, batch: Sequence[Sequence[Annotation]],
                    digest: str | None, held: int) -> dict[str, Any]:
    """The run's fields and output, with the first of `batch` (none when empty) and the progress it makes."""
    notes = [a.to_dict() for a in batch[0]] if batch else []
    body = {**fields, "output": {**output.to_dict(), "annotations": notes}}
    if batch and digest is not None:
        body["external_id"] = f"{digest}:{held}"
    return body


async def _update_known_run(ctx: Context, repo: str, run_id: int, fields: Mapping[str, Any], output: CheckOutput,
                            batches: Sequence[Sequence[Annotation]], digest: str | None,
                            run: Mapping[str, Any]) -> int | None:
    try:
        await _send_check_run(ctx, repo, run_id, fields, output, batches, digest, run)
    except BadRequest as exc:
        # Why a 403 too: a run the App made under an earlier app id (re-registered through /setup) cannot be
        # changed by this one; every publish for that head failed until its job was dead. Ours is made anew.
        if exc.status_code.value != 404 and not (exc.status_code.value == 403 and OTHER_APPS_RUN in str(exc)):
            raise
        return None
    return run_id


async def _send_check_run(ctx: Context, repo: str, run_id: int, fields: Mapping[str, Any], output: CheckOutput,
                          batches: Sequence[Sequence[Annotation]], digest: str | None,
                          run: Mapping[str, Any]) -> None:
    """Update an existing run, sending only the batches of this annotation set it does not hold yet."""
    held = min(batches_on_run(run, digest), len(batches))
    first = batches[held:held + 1]
    await ctx.gh.patch(f"/repos/{repo}/check-runs/{run_id}",
                       data=_check_run_body(fields, output, first, digest, held + 1), idempotent=not first)
    await _send_more_annotations(ctx, repo, run_id, output, batches, digest, held + 1)


async def _send_more_annotations(ctx: Context, repo: str, run_id: int, output: CheckOutput,
                                 batches: Sequence[Sequence[Annotation]], digest: str | None, held: int) -> None:
    """Send the batches after the first `held` (GitHub takes at most 50 annotations a request), in order."""
    for number in range(held + 1, len(batches) + 1):
        more: dict[str, Any] = {"output": {"title": output.title, "summary": output.summary,
                                           "annotations": [a.to_dict() for a in batches[number - 1]]},
                                "external_id": f"{digest}:{number}"}
        await ctx.gh.patch(f"/repos/{repo}/check-runs/{run_id}", data=more, idempotent=False)


async def find_check_run(ctx: Context, repo: str, head_sha: str) -> int | None:
    """The id of this App's check run named QuantumReview on the commit, or None."""
    run = await find_check_run_item(ctx, repo, head_sha)
    return None if run is None else int(run["id"])


async def find_check_run_item(ctx: Context, repo: str, head_sha: str) -> dict[str, Any] | None:
    """This App's newest check run named QuantumReview on the commit, as GitHub lists it, or None.

    Why the newest: a completed run is replaced by a new one when the check goes back in progress (`reopens`).
    """
    app_id = getattr(ctx.github, "app_id", None)
    url = f"/repos/{repo}/commits/{head_sha}/check-runs?check_name={CHECK_NAME}&filter=all&per_page=100"
    newest: dict[str, Any] | None = None
    async for run in ctx.gh.getiter(url, iterable_key="check_runs"):
        owner = (run.get("app") or {}).get("id")
        if run.get("name") == CHECK_NAME and (app_id is None or str(owner) == str(app_id)):
            if newest is None or int(run["id"]) > int(newest["id"]):
                newest = dict(run)
    return newest


def failure_annotations(manifest: Manifest, failing: Sequence[FailingCaseLike]) -> list[Annotation]:
    """One failure annotation per failing test, placed at the test this PR adds with that ID."""
    where = {ref.tid: ref for ref in manifest.tests if ref.line is not None}
    out: list[Annotation] = []
    for case in failing:
        ref = where.get(case.tid)
        if ref is not None and ref.line is not None:
            out.append(Annotation(ref.path, ref.line, ref.line, "failure", case.message or "failed",
                                  title=f"{case.tid} {case.name}"))
    return out


def verdict_from_dict(data: Mapping[str, Any]) -> Verdict | None:
    """Rebuild a stored verdict (dataclasses.asdict of Verdict); None when it is not shaped like one."""
    try:
        results = tuple(
            CriterionResult(CriterionRef(str(r["criterion"]["repo"]), int(r["criterion"]["issue_number"]),
                                         str(r["criterion"]["tid"]), str(r["criterion"]["text"])), r["outcome"])
            for r in data["results"] if r["outcome"] in ("passed", "failed", "skipped", "missing")
        )
        conclusion: Conclusion = data["conclusion"] if data["conclusion"] in ("success", "failure") else "neutral"
        return Verdict(results, int(data["passed"]), int(data["failed"]), int(data["skipped"]), int(data["missing"]),
                       conclusion, bool(data.get("report_found", True)))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class StoredFailure:
    """A failing test kept in the stored verdict."""

    tid: str
    name: str
    message: str


def stored_failing(verdict: Mapping[str, Any]) -> list[StoredFailure]:
    """Failing tests the CI handler kept in the verdict under "failing" ([{tid, name, message}]), if any."""
    items = verdict.get("failing")
    return [StoredFailure(str(i.get("tid", "")), str(i.get("name", "")), str(i.get("message", "")))
            for i in (items if isinstance(items, list) else []) if isinstance(i, Mapping)]


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


# Markdown punctuation that can start a link, image, emphasis or code span, and the escape itself.
_MARKDOWN_PUNCT = re.compile(r"([\\`*_\[\]!~])")
# Where GitHub would autolink a bare URL ("https://", "www."): a zero-width space there prevents it.
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=\bwww)(?=\.)", re.IGNORECASE)


def problem_lines(problems: Sequence[str]) -> str:
    """Problems with the links and CI's notes, as a Markdown note, each shown as plain text."""
    shown = [f"> ⚠️ {note_text(p)}" for p in problems[:MAX_PROBLEMS]]
    return "\n".join(shown) + "\n"


def note_text(problem: str) -> str:
    """One problem as Markdown that renders literally, on one line.

    Notes carry names a fork chooses (artifact and zip member names, report text): HTML, links,
    images, emphasis and @mentions in them must show as text, not render or notify.
    """
    text = " ".join(problem.split())
    if len(text) > 200:
        text = text[:199] + "…"
    text = _AUTOLINK.sub("\u200b", _MARKDOWN_PUNCT.sub(r"\\\1", text))
    return escape_cell(text, max_chars=1000)


def with_problems(output: CheckOutput, problems: Sequence[str]) -> CheckOutput:
    """Put the link problems first in the summary, within GitHub's limit."""
    if not problems:
        return output
    return CheckOutput(output.title, _clip(problem_lines(problems) + "\n" + output.summary, MAX_CHECK_CHARS),
                       output.text)


def _clip(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-16 code units (GitHub counts that way)."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    cut = text[: limit - 1]
    while len(cut.encode("utf-16-le")) // 2 > limit - 1:
        cut = cut[:-100]
    return cut + "…"
