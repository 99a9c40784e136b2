"""GitHubApp: the one GitHub client of the process — App JWT, installation clients, artifacts, OAuth, manifests.

Everything shares the session passed in (the app owns it via cleanup_ctx), one ETag cache, one in-flight limit,
one rate-limit gate and one token cache. Retry and rate-limit rules: see quantumreview.github_client.
"Installation gone" rule: minting a token answers 404 → InstallationDeleted, an InstallationGone (so every call
of a removed installation ends that way); a suspended installation (mint 403) → InstallationSuspendedByGitHub;
each only once GET /app/installations/{id} agrees, and a 404 only once the credentials are shown to be the App of
this server's installations (quantumreview.credentials_mismatch: another App's credentials get 404 for all of them);
until then CredentialsUnproven, and further mints wait for one recheck per MINT_RECHECK or CREDENTIALS_RECHECK.
For other 404s a handler opts in with `gone_when_missing()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import gidgethub
from cachetools import LRUCache

from quantumreview import github_artifacts as artifacts
from quantumreview.credentials_mismatch import CredentialsCheck
from quantumreview.errors import (
    CredentialsUnproven,
    InstallationDeleted,
    InstallationSuspendedByGitHub,
    PermanentError,
    RetryLater,
)
from quantumreview.github_auth import AppJWT, InstallationToken, TokenCache, load_rsa_key, parse_expires_at
from quantumreview.github_client import (
    DEFAULT_TIMEOUT,
    MAX_RESPONSE_BYTES,
    AppClient,
    GitHubClient,
    InstallationAPI,
    Transport,
    WritePacer,
    gone_when_missing,
)
from quantumreview.github_oauth import OAuthClient, OAuthError, UserTokens
from quantumreview.github_policy import RetryPolicy
from quantumreview.settings import DEFAULT_ARTIFACT_HOSTS

__all__ = ["GitHubApp", "InstallationAPI", "NoInstallation", "OAuthError", "UserTokens", "gone_when_missing"]

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_WEB_URL = "https://github.com"
ETAG_CACHE_SIZE = 2000
# After a token mint's 404 or 403 that GitHub's installation record does not confirm: try again this much later.
MINT_RECHECK = 60.0
# After a 404 while the credentials look like another App's: an operator has to change them, so wait longer.
CREDENTIALS_RECHECK = 600.0


class NoInstallation(PermanentError, TypeError):
    """An installation client was asked for without an installation id: the event carries none.

    Why a TypeError too: `for_installation(None)` raised a bare one ("int() argument must be ..."), which code may
    catch; why a PermanentError: retrying the job cannot give its event an installation.
    """

    code = "no_installation"


def installation_id_of(value: object) -> int:
    """`value` as an installation id; NoInstallation for None, TypeError or ValueError for what cannot be one."""
    if value is None:
        raise NoInstallation(
            "no installation id (None): the event carries no installation (a repository or organization webhook, "
            "or `ping`, names none), so there is no installation client for it. Check that ctx.installation_id "
            "(or ctx.gh) is not None before calling GitHub as an installation, or use ctx.github.as_app() for "
            "App-level calls")
    # Why not int(value): `True` became installation 1 (another account's) and "5" a silent conversion.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"an installation id is a positive int, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"an installation id is a positive int, not {value}")
    return value


def default_user_agent() -> str:
    """Return `quantumreview/<version>` (GitHub asks for a User-Agent naming the app)."""
    try:
        version = metadata.version("quantumreview")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"quantumreview/{version}"


class GitHubApp:
    """One GitHub App on one shared aiohttp session."""

    def __init__(
        self, session: aiohttp.ClientSession, *, app_id: int | str, private_key: str | bytes,
        api_url: str = DEFAULT_API_URL, web_url: str = DEFAULT_WEB_URL, oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None, clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rand: Callable[[], float] = random.random,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
        max_in_flight: int = 100, etag_cache_size: int = ETAG_CACHE_SIZE, download_timeout: float = 60.0,
        user_agent: str | None = None, write_interval: float = 1.0,
        artifact_hosts: Sequence[str] = DEFAULT_ARTIFACT_HOSTS, max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        """Validate the key now (a bad one fails here, without echoing it) and prepare the shared state."""
        if "Authorization" in session.headers or session.auth is not None:
            # Why: artifact blob URLs must get no credentials; a session default would leak the token there.
            raise ValueError("the shared ClientSession must not carry default credentials")
        self.app_id = str(app_id)
        self._jwt = AppJWT(self.app_id, load_rsa_key(private_key), clock)
        self._session = session
        self._clock = clock
        self._download_timeout = download_timeout
        self._artifact_hosts = tuple(artifact_hosts)
        self._transport = Transport(
            session=session, clock=clock, sleep=sleep, rand=rand, user_agent=user_agent or default_user_agent(),
            base_url=api_url.rstrip("/"), timeout=timeout, retry=retry or RetryPolicy(),
            in_flight=asyncio.Semaphore(max_in_flight), pacer=WritePacer(clock, write_interval),
            max_response_bytes=max_response_bytes,
            cache=LRUCache(maxsize=etag_cache_size) if etag_cache_size > 0 else None)
        self._tokens = TokenCache(self._mint_token, clock)
        self._credentials = CredentialsCheck(self.app_id)
        self._described = ""
        self._oauth = OAuthClient(session=session, web_url=web_url.rstrip("/"), api_url=api_url.rstrip("/"),
                                  client_id=oauth_client_id,
                                  client_secret=oauth_client_secret, user_agent=self._transport.user_agent,
                                  clock=clock)

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id}, api_url={self._transport.base_url!r})"

    # -- clients -------------------------------------------------------------------------------------------

    def for_installation(self, installation_id: int | None) -> InstallationAPI:
        """Return a client authenticated as the installation (tokens come from the shared cache).

        NoInstallation (a PermanentError and a TypeError) for None: the event carried no installation.
        """
        checked = installation_id_of(installation_id)
        self._credentials.asked(checked)
        return InstallationAPI(self._transport, self._tokens, checked)

    def as_app(self) -> GitHubClient:
        """Return a client authenticated as the App with a JWT (for /app/hook/deliveries and the like)."""
        return AppClient(self._transport, self._jwt.current)

    def app_jwt(self) -> str:
        """Return the current App JWT (RS256, iat now−60 s, exp now+540 s)."""
        return self._jwt.current()

    async def installation_token(self, installation_id: int) -> str:
        """Return a live installation token (cached; at most one mint at a time per installation)."""
        self._credentials.asked(int(installation_id))
        return await self._tokens.get(int(installation_id))

    @property
    def credentials_problem(self) -> str | None:
        """Why the App credentials look like another App's (logged once), or None; for the operator's view."""
        return self._credentials.problem

    @property
    def webhook_app_id(self) -> int | None:
        """The App id on the latest webhook noted, or None: the job runner keeps it across restarts."""
        return self._credentials.webhook_app_id

    @property
    def credentials_shown(self) -> bool:
        """Whether the credentials are shown to be the App of this server's installations (then the job runner
        wakes the jobs that waited for it)."""
        return self._credentials.shown

    def note_webhook_app_id(self, app_id: object) -> None:
        """Tell the App id GitHub put on a webhook this server received (`installation.app_id`): a 404 for an
        installation then counts as deleted only if the credentials are that App's."""
        self._credentials.note_webhook_app(app_id)

    async def aclose(self) -> None:
        """Forget cached tokens and cancel mints in flight (the session belongs to the caller and stays open)."""
        await self._tokens.close()

    async def _mint_token(self, installation_id: int) -> InstallationToken:
        """POST /app/installations/{id}/access_tokens, mapping 404/403/401 to errors a job runner understands."""
        if (until := self._credentials.waiting(installation_id, self._clock(), MINT_RECHECK)) is not None:
            # Why not ask: a 404 just now was not judged, and asking again before the recheck only spends the
            # (perhaps other) App's rate limit; one mint asks at the recheck for every installation waiting.
            raise CredentialsUnproven(f"installation {installation_id}: no token asked for, as the App credentials "
                                      f"(App {self.app_id}) {self._judged()}: not marked deleted", at=until)
        try:
            # Why idempotent: a second token for the same installation is harmless, so a failed try is repeated.
            data: Any = await self.as_app().post(f"/app/installations/{installation_id}/access_tokens", data=b"",
                                                 idempotent=True)
        except gidgethub.BadRequest as exc:
            status = int(exc.status_code)
            if status in (403, 404):
                # Why ask again: these mark the installation deleted or suspended, and a deleted one never comes
                # back; a stray 404 or 403 from an outage must not do that.
                await self._confirm_lost(installation_id, status)
            raise
        # Why RetryLater: a 201 without a token (or with a garbled or past expiry) is GitHub or a proxy
        # misbehaving, not this job's fault; PermanentError failed every job that asked for a token meanwhile,
        # and a token that had expired on arrival would have been re-minted on every request.
        token = data.get("token") if isinstance(data, dict) else None
        try:
            expires_at = parse_expires_at(data.get("expires_at")) if isinstance(data, dict) else None
        except ValueError:
            expires_at = None
        if not isinstance(token, str) or not token or expires_at is None or expires_at <= self._clock():
            raise RetryLater(f"installation {installation_id}: GitHub's token response holds no usable token "
                             "(token or expires_at missing, unreadable or past)")
        self._credentials.reached(installation_id)
        return InstallationToken(value=token, expires_at=expires_at)

    async def _confirm_lost(self, installation_id: int, status: int) -> None:
        """After a mint's 404 or 403: raise InstallationDeleted or InstallationSuspendedByGitHub if GET
        /app/installations/{id} agrees (404; suspended_at set), else RetryLater."""
        try:
            found: Any = await self.as_app().getitem(f"/app/installations/{installation_id}")
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) == 404:
                await self._confirm_deleted(installation_id)
            raise RetryLater(f"installation {installation_id}: token mint answered {status}, and reading the "
                             f"installation answered {int(exc.status_code)}", at=self._clock() + MINT_RECHECK) from None
        self._credentials.reached(installation_id)
        suspended = isinstance(found, dict) and bool(found.get("suspended_at"))
        if status == 403 and suspended:
            raise InstallationSuspendedByGitHub(f"installation {installation_id} is suspended",
                                                installation_id=installation_id)
        raise RetryLater(f"installation {installation_id}: token mint answered {status}, but GitHub lists the "
                         f"installation as {'suspended' if suspended else 'active'}", at=self._clock() + MINT_RECHECK)

    async def _confirm_deleted(self, installation_id: int) -> None:
        """Raise InstallationDeleted if the credentials are shown to be this server's App, else RetryLater."""
        if await self._credentials.deleted(installation_id, self._has_installation, self._describe_app):
            raise InstallationDeleted(f"installation {installation_id} no longer exists",
                                      installation_id=installation_id) from None
        wrong = self._credentials.problem is not None
        at = self._clock() + (CREDENTIALS_RECHECK if wrong else MINT_RECHECK)
        self._credentials.hold(installation_id, at)
        raise CredentialsUnproven(f"installation {installation_id}: token mint and GitHub's record answered 404, but "
                                  f"the App credentials (App {self.app_id}) {self._judged()}: not marked deleted",
                                  at=at) from None

    def _judged(self) -> str:
        """How the credentials stand, for an error message."""
        if self._credentials.problem is not None:
            return "look like another App's"
        return "are not shown yet to be this server's App"

    async def _has_installation(self, installation_id: int) -> bool | None:
        """GET /app/installations/{id}: True if the credentials' App has it, False on 404, None if unknown."""
        try:
            await self.as_app().getitem(f"/app/installations/{installation_id}")
        except gidgethub.BadRequest as exc:
            return False if int(exc.status_code) == 404 else None
        except Exception:  # an outage or a rate limit: the caller judges later
            return None
        return True

    async def _describe_app(self) -> str:
        """"App 2 (quantumreview-staging)": GET /app names whose credentials these are (read once)."""
        if not self._described:
            slug = None
            try:
                me: Any = await self.as_app().getitem("/app")
                slug = me.get("slug") if isinstance(me, dict) else None
            except Exception:  # the name is a courtesy: the id is enough
                slug = None
            self._described = f"App {self.app_id}" + (f" ({slug})" if isinstance(slug, str) and slug else "")
        return self._described

    def _user_client(self, token: str) -> GitHubClient:
        # Why: per-user data stays out of the shared ETag cache; the gate key is a digest, never the token.
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        return GitHubClient(self._transport, limit_key=f"user:{digest}", use_cache=False)

    # -- artifacts -----------------------------------------------------------------------------------------

    async def list_artifacts(self, installation_id: int, repo: str, run_id: int) -> list[dict[str, Any]]:
        """Return every artifact of a workflow run (all pages)."""
        return await artifacts.list_artifacts(self.for_installation(installation_id), repo, run_id)

    async def download_artifact(self, installation_id: int, repo: str, artifact: dict[str, Any], *,
                                dest_dir: Path, max_bytes: int = artifacts.DEFAULT_MAX_BYTES) -> Path:
        """Download an artifact zip into dest_dir (size-capped, deadline-bound, no token on the blob host)."""
        return await artifacts.download_artifact(
            self.for_installation(installation_id), self._session, repo, artifact, dest_dir=dest_dir,
            max_bytes=max_bytes, timeout=self._download_timeout, allowed_hosts=self._artifact_hosts)

    # -- OAuth (user tokens) and the manifest flow -----------------------------------------------------------

    async def exchange_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> UserTokens:
        """Trade an OAuth authorization code (PKCE) for user tokens; OAuthError when GitHub refuses."""
        return await self._oauth.exchange_code(code, redirect_uri=redirect_uri, code_verifier=code_verifier)

    async def refresh_user_token(self, refresh_token: str) -> UserTokens:
        """Trade a refresh token for fresh user tokens; OAuthError when GitHub refuses."""
        return await self._oauth.refresh_user_token(refresh_token)

    async def revoke_user_token(self, token: str) -> None:
        """Make GitHub forget a user token (at logout)."""
        await self._oauth.revoke_user_token(token)

    async def get_user(self, token: str) -> dict[str, Any]:
        """GET /user with a user token."""
        user: dict[str, Any] = await self._user_client(token).getitem("/user", oauth_token=token)
        return user

    async def get_user_installations(self, token: str) -> list[dict[str, Any]]:
        """GET /user/installations (all pages): this App's installations the user can reach."""
        client = self._user_client(token)
        return [i async for i in client.getiter("/user/installations?per_page=100", oauth_token=token,
                                                iterable_key="installations")]

    async def get_installation_repositories_for_user(self, token: str, installation_id: int) -> list[dict[str, Any]]:
        """GET /user/installations/{id}/repositories (all pages), each with the user's `permissions`."""
        client = self._user_client(token)
        url = f"/user/installations/{int(installation_id)}/repositories?per_page=100"
        return [r async for r in client.getiter(url, oauth_token=token, iterable_key="repositories")]

    async def convert_manifest(self, code: str) -> dict[str, Any]:
        """POST /app-manifests/{code}/conversions (no auth): the new App's id, pem, secrets; single-use code."""
        client = GitHubClient(self._transport, limit_key="manifest", use_cache=False)
        created: dict[str, Any] = await client.post("/app-manifests/{code}/conversions", {"code": code}, data=b"")
        return created
