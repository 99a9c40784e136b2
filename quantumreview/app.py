"""create_app: routes, the error middleware and the resources the app owns (db → http → github → intake → runner)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any

import aiohttp
from aiohttp import web

from quantumreview import access, api, auth, keys, setup_flow, web_security
from quantumreview.credentials import AppCredentials, CredentialsHolder
from quantumreview.crypto import SecretBox
from quantumreview.delivery_fields import Arrival, FieldReader
from quantumreview.github import GitHubApp
from quantumreview.intake import LOCK_TIMEOUT, IntakeWriter, PrepareBatch
from quantumreview.jobs import GitHubFactory, JobRunner, Notify, enqueue
from quantumreview.plugins import HandlerRegistry, load_handlers
from quantumreview.redelivery import SWEEP_EVENT, SWEEP_INTERVAL
from quantumreview.retention import PRUNE_EVENT, PRUNE_INTERVAL, PRUNE_KEY
from quantumreview.settings import Settings
from quantumreview.startup import Resources
from quantumreview.webhook import PATH as WEBHOOK_PATH
from quantumreview.webhook import WebhookReceiver, error_response
from storage import jobs as job_store
from storage import notifications
from storage.checkpoints import checkpoint_when_idle
from storage.db import Database, DatabaseBusy
from storage.sealed import reencrypt_secrets
from storage.sqlite_gate import wal_reset_warning

log = logging.getLogger("quantumreview.app")

SWEEP_KEY = "redelivery-sweep"
HEALTH_TIMEOUT = 3.0
MAX_HEADER_FIELD_BYTES = 64 * 1024
ERROR_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited",
    503: "unavailable",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def version() -> str:
    """The installed package version."""
    try:
        return metadata.version("quantumreview")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into {"error": {"code", "message"}}; never a traceback in a response."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        response = error_response(exc.status, ERROR_CODES.get(exc.status, f"http_{exc.status}"), exc.reason)
        # Why: HTTP requires Allow on a 405, and a client told when to come back should be told so in JSON too.
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except DatabaseBusy:
        log.warning("%s %s: database unavailable", request.method, request.path)
        return error_response(503, "database_unavailable", "the database is busy or failing; retry later")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("%s %s failed: %s", request.method, request.path, type(exc).__name__)
        return error_response(500, "internal_error", "unexpected server error; it has been logged")


async def health(request: web.Request) -> web.Response:
    """GET /health: database reachable and job counts; 503 while it cannot be read, or the last write failed."""
    body: dict[str, Any] = {"status": "ok", "db": "ok", "version": version()}
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            body["jobs"] = await job_store.status_counts(request.app[keys.db])
    except Exception as exc:  # any failure to read means the database is unusable for us
        log.warning("health: database check failed: %s", type(exc).__name__)
        body.update(status="error", db="error")
        return web.json_response(body, status=503)
    intake = request.app.get(keys.intake)
    if intake is not None and intake.failing is not None:  # reads work, writes do not: deliveries get 503
        body.update(status="error", db="not writable", db_error=intake.failing)
        return web.json_response(body, status=503)
    github = request.app.get(keys.github)
    if github is not None and (problem := github.credentials_problem) is not None:
        # Why 200: a restart (what a failing health check brings) cannot fix credentials; the operator must.
        body.update(status="degraded", github=problem)
    runner = request.app.get(keys.runner)
    if runner is not None and (left := runner.left_running):
        # Why say so: each keeps running (CPU, memory, perhaps GitHub calls) until the server stops.
        body.update(status="degraded", handlers_left_running=left)
    return web.json_response(body)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open (and migrate) the database, checkpoint its WAL in quiet moments; close it last."""
    db = await Database.open(app[keys.settings].database_path)  # DatabaseUnavailable stops start-up
    app[keys.db] = db
    if (risk := wal_reset_warning()) is not None:
        log.warning(risk)
    checkpointer = asyncio.create_task(checkpoint_when_idle(db), name="wal-checkpoints")
    yield
    checkpointer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checkpointer
    await db.close()


async def secrets_ctx(app: web.Application) -> AsyncIterator[None]:
    """During a key rotation (JWT_SECRET_PREVIOUS set), seal every stored secret with the new key at start."""
    box = app[keys.secret_box]
    if box.rotating:
        count = await reencrypt_secrets(app[keys.db], box.rewrap)
        log.warning("JWT_SECRET_PREVIOUS is set: %d stored secret(s) re-encrypted with JWT_SECRET; sessions signed "
                    "with the previous key stay valid until they expire (at most %d h): remove JWT_SECRET_PREVIOUS "
                    "after that", count, auth.SESSION_LIFETIME // 3600)
    yield


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    """One shared HTTP session for outgoing calls."""
    async with aiohttp.ClientSession() as session:
        app[keys.http] = session
        yield


def build_github(session: aiohttp.ClientSession, settings: Settings, credentials: AppCredentials) -> GitHubApp:
    """The GitHub App client for `credentials` on `session` (the app's, or the CLI's)."""
    return GitHubApp(
        session, app_id=credentials.app_id, private_key=credentials.private_key,
        api_url=settings.github_api_url, web_url=settings.github_url,
        oauth_client_id=credentials.oauth_client_id or settings.oauth_client_id,
        oauth_client_secret=credentials.oauth_client_secret or settings.oauth_client_secret,
        write_interval=settings.github_write_interval, artifact_hosts=settings.artifact_hosts,
    )


async def github_ctx(app: web.Application) -> AsyncIterator[None]:
    """The GitHub App client; None in setup mode, rebuilt whenever the setup flow stores new credentials."""
    holder = app[keys.credentials]
    settings = app[keys.settings]

    def install(credentials: AppCredentials) -> None:
        # Why: jobs and requests read app[keys.github] each time, so replacing it applies at once. aiohttp 3
        # warns about changing a started app's state; this one swap is deliberate (no restart after setup).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            app[keys.github] = build_github(app[keys.http], settings, credentials)

    app[keys.github] = None
    if holder.current is not None:
        install(holder.current)
    else:
        # Why the token in the log: only the operator reads it (see setup_flow.SETUP_TOKEN_LABEL); it is of no use
        # once an App is configured.
        log.warning("no GitHub App configured: open %s to create one",
                    setup_flow.setup_link(settings, app[keys.secret_box].session_key))
    holder.on_change(install)
    yield
    github = app.get(keys.github)
    if github is not None:
        await github.aclose()


def intake_ctx(prepare: PrepareBatch[Arrival], *,
               lock_timeout: float = LOCK_TIMEOUT) -> Callable[[web.Application], AsyncIterator[None]]:
    """The group-commit writer, storing deliveries as `prepare` reads them; each commit wakes the job runner."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        def wake_runner() -> None:
            runner = app.get(keys.runner)
            if runner is not None:
                runner.wake_soon()

        writer = IntakeWriter(app[keys.db], prepare, on_commit=wake_runner, lock_timeout=lock_timeout)
        writer.start()
        app[keys.intake] = writer
        yield
        await writer.stop()

    return ctx


def runner_ctx(github_factory: GitHubFactory | None, notify: Notify | None,
               now: Callable[[], float]) -> Callable[[web.Application], AsyncIterator[None]]:
    """The job runner: resumes interrupted jobs at start, drains within shutdown_grace at stop."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def notify_managers(repo: str, kind: str, title: str, **kwargs: Any) -> int:
            """ctx.notify: one notification per user who manages `repo`."""
            return await notifications.notify_repo_managers(app[keys.db], repo, kind, title, **kwargs)

        async def notify_repos_managers(notes: Sequence[tuple[str, str, str | None]], kind: str) -> int:
            """ctx.notify_repos: the same for many repositories, in one transaction."""
            return await notifications.notify_repos_managers(app[keys.db], notes, kind)

        def from_app(installation_id: int) -> Any:
            github: Any = app.get(keys.github)
            return None if github is None else github.for_installation(installation_id)

        intake = app.get(keys.intake)
        runner = JobRunner(app[keys.db], app[keys.handlers], app[keys.settings],
                           github_factory=github_factory or from_app, github=lambda: app.get(keys.github),
                           notify=notify or notify_managers, now=now,
                           # Why none with a notify given (tests): notify_repos then goes through it, repo by repo.
                           notify_many=None if notify else notify_repos_managers,
                           transact=intake.ride if intake is not None else None)
        await runner.start()
        app[keys.runner] = runner
        yield
        await runner.stop()

    return ctx


def periodic_ctx(name: str, event: str, key: str, interval: float, *,
                 needs_app: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that queues `event` at start and every `interval` seconds (not while one is still pending;
    with `needs_app`, only once an App is configured): scheduled work runs as jobs, with their retries."""

    async def periodic(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                if not needs_app or app.get(keys.github) is not None:
                    try:
                        if not await job_store.has_pending(app[keys.db], key):
                            await enqueue(app, event, {}, ordering_key=key)
                    except Exception as exc:  # the loop must outlive a bad moment of the database
                        log.warning("could not queue %s: %s", event, type(exc).__name__)
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    periodic.__qualname__ = name
    return periodic


# The missed-delivery sweep (once an App is configured) and the pruning of old deliveries.
sweeper_ctx = periodic_ctx("sweeper_ctx", SWEEP_EVENT, SWEEP_KEY, SWEEP_INTERVAL, needs_app=True)
retention_ctx = periodic_ctx("retention_ctx", PRUNE_EVENT, PRUNE_KEY, PRUNE_INTERVAL, needs_app=False)


def create_app(settings: Settings, *, registry: HandlerRegistry | None = None,
               github_factory: GitHubFactory | None = None, now: Callable[[], float] = time.time,
               notify: Notify | None = None, credentials: CredentialsHolder | None = None,
               handlers_package: str | None = None) -> web.Application:
    """Build the application; handlers come from `registry`, or the package named by QUANTUMREVIEW_HANDLERS."""
    if registry is None:
        registry = load_handlers(handlers_package or settings.handlers_package)
    holder = credentials or CredentialsHolder(AppCredentials.from_settings(settings))
    # Why a larger header field than aiohttp's 8 KiB: a malformed, overlong X-Hub-Signature-256 (10 KB in WH-06)
    # must reach the webhook route and get its 401, not a 400 from the HTTP parser quoting the header back.
    # Why web_security outermost: it adds its headers to error_middleware's answers too; the webhook skips it.
    app = web.Application(middlewares=[web_security.middleware, error_middleware],
                          handler_args={"max_field_size": MAX_HEADER_FIELD_BYTES})
    app[keys.settings] = settings
    app[keys.handlers] = registry
    app[keys.credentials] = holder
    app[keys.secret_box] = SecretBox.load_or_create(settings.jwt_secret, settings.database_path.parent,
                                                    settings.jwt_secret_previous)
    receiver = WebhookReceiver(holder.webhook_secrets, now=now)
    app.router.add_post(WEBHOOK_PATH, receiver.handle)
    app.router.add_get("/health", health)
    setup_flow.add_routes(app)
    auth.setup(app, clock=now)
    access.setup(app)
    api.add_routes(app)
    app.cleanup_ctx.append(Resources((
        database_ctx, secrets_ctx, setup_flow.stored_credentials_ctx, http_ctx, github_ctx,
        intake_ctx(FieldReader(registry).prepare_all),
        runner_ctx(github_factory, notify, now), sweeper_ctx, retention_ctx,
    )))
    return app
