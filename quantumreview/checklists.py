"""Build an issue's checklist from its body and keep its one bot comment in step (used by several handlers)."""

from __future__ import annotations

import time
from typing import Any

from gidgethub import BadRequest

from quantumreview.analysis.checklist import Item, reconcile
from quantumreview.analysis.checklist_comment import MARKER, ChecklistLine, render_checklist_comment
from quantumreview.analysis.criteria import MAX_CRITERIA, extract_criteria
from quantumreview.comments import is_locked_refusal, upsert_comment
from quantumreview.context import Context
from quantumreview.github_client import getitem_or_none
from quantumreview.pull_requests import REVALIDATE_EVENT
from storage import checklists as store
from storage import installations as installation_store
from storage import jobs as job_store
from storage import notifications
from storage import pulls as pull_store

REGENERATE_EVENT = "quantumreview.regenerate_checklist"


async def fetch_issue(ctx: Context, repo: str, number: int) -> dict[str, Any] | None:
    """The issue as GitHub has it now (the payload may be older than a later edit); None if gone or moved."""
    issue = await getitem_or_none(ctx.gh, f"/repos/{repo}/issues/{number}")
    if issue is None or _is_at(issue, repo, number):
        return issue
    # Why: GitHub redirects a transferred issue's old address to where it went; built on here, the checklist of
    # the moved issue landed on this repository's issue of the new number (an unrelated one) and was shown twice.
    ctx.log.info("%s#%d moved to %s: nothing to build here", repo, number, issue.get("html_url"))
    return None


def _is_at(issue: dict[str, Any], repo: str, number: int) -> bool:
    """Whether GitHub's issue is still `repo`#`number` (names compare case-insensitively, as on GitHub)."""
    repository_url = issue.get("repository_url")
    in_repo = not isinstance(repository_url, str) or repository_url.lower().endswith(f"/repos/{repo.lower()}")
    return in_repo and issue.get("number") == number


async def follow_rename(ctx: Context, repository: Any) -> None:
    """Catch up with a rename or transfer of the event's repository not yet known: the `repository` event may still
    be queued, or not sent (an App registered before it subscribed to it). GitHub's repository list, stored, re-keys
    what was kept under the old name.

    Why: they stayed there, so the dashboard showed the repository without them and an edit built the issue's
    checklist again from T1 (IDs that tests carry then named other criteria).
    """
    if not isinstance(repository, dict) or ctx.gh is None or ctx.installation_id is None:
        return
    repo_id, name = repository.get("id"), repository.get("full_name")
    if not isinstance(repo_id, int) or not isinstance(name, str):
        return
    stored = await installation_store.repository_name(ctx.db, repo_id)
    if stored is None or stored == name:
        return
    # Why GitHub's list, not the payload's name: a late delivery carries the old name and must not rename it back.
    # Why per_page=100 (GitHub's maximum), as handlers/installations.py: at 30 an organization's 600 took 20 requests.
    repos = [r async for r in ctx.gh.getiter("/installation/repositories?per_page=100", iterable_key="repositories")]
    async with ctx.db.transaction() as conn:
        await installation_store.replace_repositories(conn, ctx.installation_id, repos, time.time())


# The follow-up a changed checklist owes (storage.jobs.owe): revalidating the open pull requests linking the issue.
REVALIDATE_LINKING = "revalidate linking pulls"


async def refresh_checklist(ctx: Context, repo: str, issue: dict[str, Any]) -> bool:
    """Re-read criteria from the issue body, keep IDs stable, store, and update the comment; False if none."""
    number = int(issue["number"])
    extraction = extract_criteria(issue.get("body"), limit=MAX_CRITERIA)
    existing = await store.get_checklist(ctx.db, repo, number)
    if existing is None and not extraction.criteria:
        return False  # no criteria and never had any: stay silent
    previous: list[Item] = []
    retired: dict[str, str] = {}
    next_number = 1
    if existing is not None:
        live, retired = await store.get_items(ctx.db, existing.id)
        previous = [Item(i.tid, i.text, i.detail) for i in live]
        next_number = existing.next_number
    result = reconcile(previous, retired, next_number, extraction.criteria)
    change = {"added": list(result.added), "removed": list(result.removed), "reworded": list(result.reworded)}
    is_change = existing is None or any(change.values())
    subject = f"{repo}#{number}"
    async with ctx.db.transaction() as conn:
        checklist_id = await store.save_checklist(
            conn, repo=repo, issue_number=number, installation_id=ctx.installation_id,
            title=str(issue.get("title") or ""), state=str(issue.get("state") or "open"), items=result.items,
            next_number=result.next_number, truncated=extraction.truncated, total_found=extraction.total_found,
            change=change if is_change else {}, now=time.time(),
        )
        if is_change:
            # Why staged with the change: a rerun after a kill between the two finds no change, and told nobody.
            verb = "created" if existing is None else "updated"
            await notifications.stage(
                conn, subject=subject, repo=repo, kind="checklist",
                title=f"Checklist {verb} for {repo}#{number} ({len(result.items)} criteria)",
                url=issue.get("html_url"), data={"issue": number, "checklist_id": checklist_id, **change})
            # Why owed with the change: a rerun after a kill before the queueing finds no change, and the linking
            # pull requests kept their verdicts on the old criteria.
            await job_store.owe(conn, subject, REVALIDATE_LINKING, time.time())
    # Why before the comment: the change is stored now, so a retry after GitHub failed the comment sees no change;
    # queued after it, the linking pulls were never judged again.
    if await job_store.is_owed(ctx.db, subject, REVALIDATE_LINKING):  # this run's, or a killed run's
        await revalidate_linking_pulls(ctx, repo, number)
        await job_store.settle_owed(ctx.db, subject, REVALIDATE_LINKING)
    await ctx.send_staged(subject)  # this run's, or what a run killed before sending it owed
    await publish_checklist_comment(ctx, repo, number)
    return True


async def revalidate_linking_pulls(ctx: Context, repo: str, number: int) -> None:
    """Queue a revalidation of every open pull request linking the issue: their manifest and verdict were made
    against the criteria before this change (or before the checklist existed, when the issue's delivery was
    handled after theirs: jobs of different keys run in any order)."""
    for pr_repo, pr_number, stored_id in await pull_store.open_pulls_linking(ctx.db, repo, number):
        # Why the live one first: after an uninstall and reinstall (a new id) the stored one is deleted, and the
        # runner cancels a job queued under it, so the pull request kept its verdict on the old criteria. Why this
        # event's for the issue's own repository: it is live (it just sent the event), even when its
        # installation.created has not been handled yet.
        own = pr_repo.lower() == repo.lower() and ctx.installation_id is not None
        fallback = ctx.installation_id if own else stored_id
        await ctx.enqueue(REVALIDATE_EVENT, {"repo": pr_repo, "pr_number": pr_number},
                          ordering_key=f"{pr_repo}#{pr_number}",
                          installation_id=await live_installation(ctx, pr_repo, fallback))


async def live_installation(ctx: Context, repo: str, fallback: int | None) -> int | None:
    """The live installation that reaches `repo` as stored, else `fallback`."""
    live = await installation_store.installation_for_repo(ctx.db, repo)
    return fallback if live is None else live


async def publish_checklist_comment(ctx: Context, repo: str, number: int) -> int | None:
    """Render the stored checklist into the issue's one bot comment (create once, then edit), one job at a time.

    Why one at a time per issue: the issue's job (an edit) and a linked pull request's CI job publish at once; the
    one that read the stored checklist first could write last, and the comment kept 'pending' (or lacked the
    edit's criteria) for good while the stored checklist and the dashboard had the verdict.
    """
    async with ctx.locks("checklist comment", repo, number):
        return await _publish_checklist_comment(ctx, repo, number)


async def _publish_checklist_comment(ctx: Context, repo: str, number: int) -> int | None:
    checklist = await store.get_checklist(ctx.db, repo, number)
    if checklist is None or checklist.retired:
        return None
    live, _retired = await store.get_items(ctx.db, checklist.id)
    body = render_checklist_comment(
        [ChecklistLine(i.tid, i.text, i.status) for i in live],  # type: ignore[arg-type]
        truncated=checklist.truncated, total_found=checklist.total_found, limit=MAX_CRITERIA,
    )
    try:
        comment_id = await upsert_comment(ctx.gh, repo, number, marker=MARKER, body=body,
                                          known_id=checklist.comment_id, locks=ctx.locks)
    except BadRequest as exc:
        if not is_locked_refusal(exc):
            raise
        # Why not raise: retried, the 403 came back until the job was dead, and the checklist (stored) was still
        # not shown once the issue was unlocked. `issues.unlocked` publishes it.
        ctx.log.info("%s#%d is locked: its checklist comment waits until it is unlocked", repo, number)
        if checklist.comment_id is not None:
            return None  # one is shown, only its update waits: no note at every edit or CI result
        # Why a key: every edit or CI result while the issue stays locked comes here again; told once.
        await ctx.notify(repo, "checklist", f"Checklist for {repo}#{number} not posted: the issue is locked "
                         "(GitHub lets only collaborators comment). It is posted when the issue is unlocked.",
                         data={"issue": number, "checklist_id": checklist.id, "locked": True},
                         key=f"checklist-locked:{repo}#{number}:{checklist.id}")
        return None
    if comment_id != checklist.comment_id:
        async with ctx.db.transaction() as conn:
            await store.set_comment_id(conn, checklist.id, comment_id)
    return comment_id
