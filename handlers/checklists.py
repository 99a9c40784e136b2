"""Issues with acceptance criteria get a checklist of test IDs, kept in one bot comment."""

from __future__ import annotations

import time
from typing import Any

from gidgethub import routing, sansio

from quantumreview.checklists import (
    REGENERATE_EVENT,
    fetch_issue,
    follow_rename,
    live_installation,
    publish_checklist_comment,
    refresh_checklist,
    revalidate_linking_pulls,
)
from quantumreview.context import Context
from storage import checklists as store

router = routing.Router()


@router.register("issues", action="opened")
@router.register("issues", action="reopened")
@router.register("issues", action="edited")
async def build_checklist(event: sansio.Event, ctx: Context) -> None:
    """Build or refresh the checklist; an edit that left the body alone changes nothing."""
    if event.data.get("action") == "edited" and "body" not in (event.data.get("changes") or {}):
        return await follow_issue_header(event, ctx)
    repo = ctx.repo
    issue = event.data.get("issue") or {}
    if repo is None or "pull_request" in issue:
        return
    if ctx.gh is None:
        ctx.log.warning("no installation client for %s (no App configured or no installation): skipped", repo)
        return
    await follow_rename(ctx, event.data.get("repository"))
    latest = await fetch_issue(ctx, repo, int(issue["number"]))
    if latest is None:
        return
    await refresh_checklist(ctx, repo, latest)


@router.register("issues", action="closed")
async def follow_issue_header(event: sansio.Event, ctx: Context) -> None:
    """Keep a checklist's title and state as GitHub has them now: the dashboard lists and filters issues by them."""
    issue = event.data.get("issue") or {}
    repo = ctx.repo
    if repo is None or ctx.gh is None or "pull_request" in issue:
        return
    await follow_rename(ctx, event.data.get("repository"))
    checklist = await store.get_checklist(ctx.db, repo, int(issue["number"]))
    if checklist is None or checklist.retired:
        return  # nothing shown for it: no need to ask GitHub
    # Why GitHub's copy: a `closed` redelivered after the `reopened` that followed it must not close it again.
    latest = await fetch_issue(ctx, repo, checklist.issue_number)
    if latest is None:
        return
    async with ctx.db.transaction() as conn:
        await store.set_header(conn, checklist.id, title=str(latest.get("title") or ""),
                               state=str(latest.get("state") or "open"), now=time.time())


@router.register("issues", action="unlocked")
async def publish_after_unlock(event: sansio.Event, ctx: Context) -> None:
    """Post the checklist GitHub refused while the issue was locked (an App may not comment then), or bring it up
    to date with the edits made meanwhile."""
    issue = event.data.get("issue") or {}
    repo = ctx.repo
    if repo is None or ctx.gh is None or "pull_request" in issue:
        return
    await follow_rename(ctx, event.data.get("repository"))
    await publish_checklist_comment(ctx, repo, int(issue["number"]))  # asks GitHub nothing when there is none


@router.register(REGENERATE_EVENT)
async def regenerate_checklist(event: sansio.Event, ctx: Context) -> None:
    """Rebuild a checklist on request (API or CLI): data carries repo and issue_number."""
    repo = str(event.data["repo"])
    if ctx.gh is None:
        ctx.log.warning("no installation client for %s: cannot regenerate its checklist", repo)
        return
    latest = await fetch_issue(ctx, repo, int(event.data["issue_number"]))
    if latest is not None and "pull_request" in latest:
        # Why: GitHub answers a pull request's number with its issue twin, so a rebuild asked for one (a number
        # mistyped in the API or CLI) posted a checklist of its description's task list on the pull request.
        ctx.log.info("%s#%s is a pull request: pull requests get no checklist", repo, latest.get("number"))
        return
    if latest is not None:
        await refresh_checklist(ctx, repo, latest)


@router.register("issues", action="deleted")
async def retire_checklist(event: sansio.Event, ctx: Context) -> None:
    """The issue left this repository: its checklist is retired (kept for the record, hidden from the API)."""
    repo = ctx.repo
    if repo is None:
        return
    number = int(event.data["issue"]["number"])
    async with ctx.db.transaction() as conn:
        retired = await store.retire_checklist(conn, repo, number, time.time())
    if retired:  # Why: else their checks went on judging the criteria of an issue that is gone
        await revalidate_linking_pulls(ctx, repo, number)


@router.register("issues", action="transferred")
async def move_checklist(event: sansio.Event, ctx: Context) -> None:
    """The issue moved to another repository: its checklist goes with it, so its test IDs keep their criteria.

    Why not a fresh one there: numbered from T1 again, IDs that tests carry would name other criteria.
    """
    destination = _transfer_destination(event.data)
    if ctx.repo is None or destination is None:
        return await retire_checklist(event, ctx)
    new_repo, new_number = destination
    installation_id = await live_installation(ctx, new_repo, ctx.installation_id)
    number = int(event.data["issue"]["number"])
    async with ctx.db.transaction() as conn:
        moved = await store.move_checklist(conn, ctx.repo, number, new_repo, new_number,
                                           installation_id=installation_id, now=time.time())
    if moved:
        await revalidate_linking_pulls(ctx, ctx.repo, number)  # they link the old address: told it moved
        # Why: the new repository's `opened` may have run first; this rebuild puts its comment in step.
        await ctx.enqueue(REGENERATE_EVENT, {"repo": new_repo, "issue_number": new_number},
                          ordering_key=f"{new_repo}#{new_number}", installation_id=installation_id)


def _transfer_destination(data: dict[str, Any]) -> tuple[str, int] | None:
    """(owner/name, number) the issue was transferred to, from the payload's `changes`; None if not given."""
    changes = data.get("changes") or {}
    repo = (changes.get("new_repository") or {}).get("full_name")
    number = (changes.get("new_issue") or {}).get("number")
    if not isinstance(repo, str) or not isinstance(number, int) or isinstance(number, bool):
        return None
    return repo, number
