"""Pull requests get a test manifest per head commit: linked issues' criteria, the tests that carry their IDs."""

from __future__ import annotations

import time
from typing import Any

from gidgethub import routing, sansio

from quantumreview.checklists import follow_rename
from quantumreview.context import Context
from quantumreview.pull_requests import (
    REVALIDATE_EVENT,
    fetch_pull,
    link_dicts,
    links_of,
    publish_pr_status,
    refresh_manifest,
)
from storage import pulls as store

router = routing.Router()


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="synchronize")
@router.register("pull_request", action="edited")
async def build_manifest(event: sansio.Event, ctx: Context) -> None:
    """Recompute the manifest of the PR's head; an edit that left title, body and base alone changes nothing."""
    changes = event.data.get("changes") or {}
    # Why the base too: retargeting the PR changes its diff (files and tests) while the head stays the same.
    if event.data.get("action") == "edited" and not ("title" in changes or "body" in changes or "base" in changes):
        return
    repo = ctx.repo
    number = (event.data.get("pull_request") or {}).get("number")
    if repo is None or not isinstance(number, int) or ctx.gh is None:
        return
    # Why: stored under the old name, the pull request was kept twice and the old row, left open, was revalidated.
    await follow_rename(ctx, event.data.get("repository"))
    # Why fetch: a queued job may run after later pushes or edits; the PR as it is now is what counts.
    latest = await fetch_pull(ctx, repo, number)
    if latest is not None and latest.get("state") == "open":
        if event.data.get("action") == "reopened":
            await _ask_about_ci_again(ctx, repo, number, latest)
        await refresh_manifest(ctx, repo, latest)


async def _ask_about_ci_again(ctx: Context, repo: str, number: int, pull: dict[str, Any]) -> None:
    """Have the head's check ask GitHub for workflows again if it found none (prs.workflows_found).

    Why on reopening: it runs the pull request's workflows again on the same head (a default type of the
    pull_request trigger), with those its base gained since; the stored "none" concluded the check neutral again,
    passing a required check while the tests ran.
    """
    head_sha = (pull.get("head") or {}).get("sha")
    if isinstance(head_sha, str):
        async with ctx.db.transaction() as conn:
            await store.forget_no_ci(conn, repo, number, head_sha)


@router.register(REVALIDATE_EVENT)
async def revalidate_manifest(event: sansio.Event, ctx: Context) -> None:
    """Recompute a manifest on request (dashboard or CLI): data carries repo and pr_number."""
    repo = str(event.data["repo"])
    latest = await fetch_pull(ctx, repo, int(event.data["pr_number"]))
    if latest is not None:
        await refresh_manifest(ctx, repo, latest)


@router.register("pull_request", action="closed")
async def record_closed(event: sansio.Event, ctx: Context) -> None:
    """Record that the PR closed, merged or not, from the payload; GitHub is asked after a rename, and whether it
    is still closed when the stored pull request is open."""
    repo = ctx.repo
    pull = event.data.get("pull_request") or {}
    if repo is None or not isinstance(pull.get("number"), int):
        return
    await follow_rename(ctx, event.data.get("repository"))  # else the row under the old name stayed open
    # Why ask: a `closed` redelivered after the `reopened` that followed it (deliveries are not ordered; the
    # redelivery sweep resends failed ones late) stored an open pull request as closed: hidden from the dashboard's
    # open ones and never judged again when its issue's criteria changed. Only a stored open one can be reopened.
    stored = await store.get_pull(ctx.db, repo, pull["number"])
    if stored is not None and stored.state == "open" and ctx.gh is not None:
        latest = await fetch_pull(ctx, repo, pull["number"])
        if latest is not None and latest.get("state") == "open":
            ctx.log.info("ignored a stale pull_request.closed for %s#%s: GitHub shows it open", repo, pull["number"])
            return
        pull = latest or pull
    # Why keep a stored merge: it is final on GitHub (a merged pull request cannot be reopened), so a `closed`
    # saying otherwise is an earlier close delivered late, which un-merged it on the dashboard.
    merged, now = bool(pull.get("merged")) or (stored is not None and stored.merged), time.time()
    async with ctx.db.transaction() as conn:
        if await store.set_pull_state(conn, repo, pull["number"], state="closed", merged=merged, now=now):
            return
        head, base = pull.get("head") or {}, pull.get("base") or {}
        await store.upsert_pull(
            conn, repo=repo, number=pull["number"], installation_id=ctx.installation_id,
            title=str(pull.get("title") or ""), state="closed", merged=merged, head_sha=head.get("sha"),
            head_ref=head.get("ref"), base_ref=base.get("ref"), linked=link_dicts(links_of(repo, pull)), now=now,
        )


@router.register("pull_request", action="unlocked")
async def publish_after_unlock(event: sansio.Event, ctx: Context) -> None:
    """Post (or bring up to date) the comment GitHub refused while the pull request was locked; its check run
    already shows the same."""
    repo = ctx.repo
    number = (event.data.get("pull_request") or {}).get("number")
    if repo is None or not isinstance(number, int) or ctx.gh is None:
        return
    await follow_rename(ctx, event.data.get("repository"))
    pull = await store.get_pull(ctx.db, repo, number)
    if pull is not None and pull.head_sha is not None:  # none stored: nothing was ever refused
        await publish_pr_status(ctx, repo, number, pull.head_sha)
