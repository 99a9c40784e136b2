"""Issues with acceptance criteria get a checklist of test IDs, kept in one bot comment."""

from __future__ import annotations

import time

from gidgethub import routing, sansio

from quantumreview.checklists import REGENERATE_EVENT, fetch_issue, refresh_checklist
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


@router.register(REGENERATE_EVENT)
async def regenerate_checklist(event: sansio.Event, ctx: Context) -> None:
    """Rebuild a checklist on request (API or CLI): data carries repo and issue_number."""
    repo = str(event.data["repo"])
    if ctx.gh is None:
        ctx.log.warning("no installation client for %s: cannot regenerate its checklist", repo)
        return
    latest = await fetch_issue(ctx, repo, int(event.data["issue_number"]))
    if latest is not None:
        await refresh_checklist(ctx, repo, latest)


@router.register("issues", action="deleted")
@router.register("issues", action="transferred")
async def retire_checklist(event: sansio.Event, ctx: Context) -> None:
    """The issue left this repository: its checklist is retired (kept for the record, hidden from the API)."""
    repo = ctx.repo
    if repo is None:
        return
    async with ctx.db.transaction() as conn:
        await store.retire_checklist(conn, repo, int(event.data["issue"]["number"]), time.time())
