"""Keep the stored installations and their repositories exact as the App is installed, changed and removed."""

from __future__ import annotations

import time
from typing import Any

from gidgethub import routing, sansio

from quantumreview.context import Context
from quantumreview.jobs import SUSPENDED_ERROR_PREFIX
from storage import installations as store
from storage import jobs as job_store

router = routing.Router()


async def _sync_all_repositories(ctx: Context, installation_id: int) -> None:
    """Read the full repository list from GitHub (payloads omit repos for `repository_selection: all`)."""
    if ctx.gh is None:
        return
    # Why per_page=100 (GitHub's maximum): at the default 30, an organization's 600 repositories took 20 requests,
    # on every installation and installation_repositories delivery.
    repos = [r async for r in ctx.gh.getiter("/installation/repositories?per_page=100",
                                             iterable_key="repositories")]
    async with ctx.db.transaction() as conn:
        await store.replace_repositories(conn, installation_id, repos, time.time())


def _note_app(event: sansio.Event, ctx: Context) -> None:
    """Tell the GitHub client which App GitHub says sent this webhook (`installation.app_id`).

    Why: credentials of another App get 404 for every installation, as an uninstall does; knowing the App of
    the installations, a token mint's 404 marks one deleted only if the credentials are that App's.
    """
    note = getattr(ctx.github, "note_webhook_app_id", None)
    installation = event.data.get("installation")
    if callable(note) and isinstance(installation, dict):
        note(installation.get("app_id"))


def _ignore_late_event(event: sansio.Event, ctx: Context) -> None:
    """Log an event for a deleted installation, which changed nothing (a reinstall gets a new id)."""
    ctx.log.info("ignored a late %s.%s for deleted installation %s", event.event, event.data.get("action"),
                 event.data["installation"]["id"])


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action="unsuspend")
async def record_installation(event: sansio.Event, ctx: Context) -> None:
    """Store the installation (and, on creation, its repositories); unsuspending lets waiting jobs run."""
    installation: dict[str, Any] = event.data["installation"]
    _note_app(event, ctx)
    now = time.time()
    async with ctx.db.transaction() as conn:
        installation_id = await store.upsert_installation(conn, installation, now)
        if installation_id is None:
            return _ignore_late_event(event, ctx)
        if event.data.get("action") == "unsuspend":
            await store.set_suspended(conn, installation_id, None)
            # Why: else its deferred jobs wait out SUSPENDED_RECHECK (5 min) after GitHub allowed them again.
            await job_store.wake_installation_jobs(conn, installation_id, now, deferred_with=SUSPENDED_ERROR_PREFIX)
        repos = event.data.get("repositories")
        if isinstance(repos, list):
            await store.replace_repositories(conn, installation_id, repos, now)
    # Why whatever the selection: a `created` redelivered late (or processed after installation_repositories
    # events) carries the list of its time, and replacing the stored list with it undid later changes.
    await _sync_all_repositories(ctx, installation_id)
    if event.data.get("action") == "created":
        # Why a key per installation and repository: a rerun (killed after notifying, before the job was done) or
        # a replay of the delivery tells each manager once; a reinstall is a new installation id.
        await ctx.notify_repos("installed", [
            (repo, f"QuantumReview was installed on {repo}", f"installed:{installation_id}:{repo}")
            for repo in await store.active_repositories(ctx.db, installation_id)])
    ctx.log.info("installation %s %s", installation_id, event.data.get("action"))


@router.register("installation", action="deleted")
async def forget_installation(event: sansio.Event, ctx: Context) -> None:
    """Hide the installation's repositories and cancel its queued jobs: nothing calls GitHub for it again."""
    installation = event.data["installation"]
    _note_app(event, ctx)
    installation_id = int(installation["id"])
    repos = await store.active_repositories(ctx.db, installation_id)
    # Keyed: a rerun (killed before the deletion was stored) tells each manager once.
    await ctx.notify_repos("uninstalled", [
        (repo, f"QuantumReview was removed from {repo}", f"uninstalled:{installation_id}:{repo}") for repo in repos])
    account = installation.get("account")
    login = account.get("login") if isinstance(account, dict) else None
    async with ctx.db.transaction() as conn:
        await store.mark_deleted(conn, installation_id, time.time(),
                                 account_login=login if isinstance(login, str) else "")
    ctx.log.info("installation %s deleted; %d repositories hidden", installation_id, len(repos))


async def _listed_active(ctx: Context, installation_id: int) -> bool:
    """Whether GitHub answers that the installation is not suspended now (False when it cannot tell)."""
    if ctx.github is None:
        return False
    try:
        found: Any = await ctx.github.as_app().getitem(f"/app/installations/{installation_id}")
    except Exception as exc:  # unknown: keep the event's word (a stray suspension ends at the mint's next 403)
        ctx.log.warning("could not read installation %s from GitHub: %s", installation_id, type(exc).__name__)
        return False
    return isinstance(found, dict) and "suspended_at" in found and not found["suspended_at"]


@router.register("installation", action="suspend")
async def suspend_installation(event: sansio.Event, ctx: Context) -> None:
    """Mark the installation suspended: its jobs wait until `unsuspend`."""
    installation = event.data["installation"]
    _note_app(event, ctx)
    # Why ask GitHub: a `suspend` delivered after its `unsuspend` (deliveries are not ordered; the redelivery sweep
    # resends failed ones days later) held the installation's jobs for good, as nothing would unsuspend it again.
    if await _listed_active(ctx, int(installation["id"])):
        ctx.log.info("ignored a stale installation.suspend for %s: GitHub lists it active", installation["id"])
        return None
    async with ctx.db.transaction() as conn:
        installation_id = await store.upsert_installation(conn, installation, time.time())
        if installation_id is None:
            return _ignore_late_event(event, ctx)
        await store.set_suspended(conn, installation_id, time.time())


@router.register("installation_repositories", action="added")
@router.register("installation_repositories", action="removed")
async def update_repositories(event: sansio.Event, ctx: Context) -> None:
    """Follow repositories added to or removed from the installation."""
    installation = event.data["installation"]
    _note_app(event, ctx)
    now = time.time()
    async with ctx.db.transaction() as conn:
        installation_id = await store.upsert_installation(conn, installation, now)
        if installation_id is None:
            return _ignore_late_event(event, ctx)
        await store.add_repositories(conn, installation_id, event.data.get("repositories_added") or [], now)
        await store.remove_repositories(conn, installation_id, event.data.get("repositories_removed") or [], now)
    # Why read GitHub's list whatever the selection: deliveries are not ordered, and an `added` processed after its
    # `removed` listed the repository again (and sent an "installed" notice) though the App no longer reaches it.
    await _sync_all_repositories(ctx, installation_id)
    active = set(await store.active_repositories(ctx.db, installation_id))
    added = [repo["full_name"] for repo in event.data.get("repositories_added") or []
             if isinstance(repo, dict) and repo.get("full_name") in active]
    # Why the delivery in the key: a repository removed and added again is told again; a rerun is not.
    await ctx.notify_repos("installed", [
        (name, f"QuantumReview was installed on {name}",
         f"installed:{ctx.delivery_id}:{name}" if ctx.delivery_id else None) for name in added])
