"""FakeGitHub: an aiohttp server on 127.0.0.1 playing GitHub's REST API, OAuth and artifact storage."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from quantumreview.testing import fake_faults, fake_routes_app, fake_routes_repos
from quantumreview.testing.contract import Contract
from quantumreview.testing.fake_auth import authenticate
from quantumreview.testing.fake_http import API_PREFIX, STATE, GitHubError, Route
from quantumreview.testing.fake_state import BlobScript, FakeState, RecordedRequest
from quantumreview.testing.signing import encode_payload

# Templates people naturally write, mapped to the OpenAPI template the fake records.
ROUTE_ALIASES = {
    "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/zip":
        "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}",
}


def route_modules() -> tuple[tuple[Route, ...], ...]:
    """Return every route table the fake serves."""
    from quantumreview.testing import fake_oauth, fake_routes_actions

    return (fake_routes_app.ROUTES, fake_routes_repos.ROUTES, fake_routes_actions.ROUTES, fake_oauth.ROUTES)


def normalise_route(route: str) -> str:
    """Return the recorded template for route (strips /api/v3, resolves aliases)."""
    route = route.removeprefix(API_PREFIX)
    return ROUTE_ALIASES.get(route, route)


def loopback_socket() -> socket.socket:
    """Return a listening-ready socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class FakeGitHub:
    """A real HTTP server that answers like GitHub, records every request and fails on demand."""

    def __init__(
        self, *, app_id: int = 1, private_key_pem: str | None = None, contract: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare the state; call start() (or use `async with`) to listen."""
        self.state = FakeState(app_id=app_id, clock=clock, private_key_pem=private_key_pem)
        self.private_key_pem = private_key_pem
        self._public_key = (load_pem_private_key(private_key_pem.encode(), password=None).public_key()
                            if private_key_pem else None)
        self._contract = Contract.load() if contract else None
        self._routes: dict[tuple[str, str], Route] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.api_url = ""
        self.blob_url = ""

    # -- server -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on two loopback ports: one for GitHub (web + API), one for the artifact blob host."""
        app = web.Application(middlewares=[self._middleware], client_max_size=32 * 1024 * 1024)
        app[STATE] = self.state
        for table in route_modules():
            for route in table:
                path = API_PREFIX + route.path if route.host == "api" else route.path
                app.router.add_route(route.method, path, route.handler)
                self._routes[(route.method, path)] = route
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        main_sock, blob_sock = loopback_socket(), loopback_socket()
        await web.SockSite(self._runner, main_sock).start()
        await web.SockSite(self._runner, blob_sock).start()
        self.url = f"http://127.0.0.1:{main_sock.getsockname()[1]}"
        self.blob_url = f"http://127.0.0.1:{blob_sock.getsockname()[1]}"
        self.api_url = self.url + API_PREFIX
        self.state.api_url, self.state.web_url, self.state.blob_url = self.api_url, self.url, self.blob_url

    async def close(self) -> None:
        """Stop listening; hung requests are released first."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Close the server."""
        await self.close()

    # -- what the app did -----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order."""
        return self.state.requests

    @property
    def contract_violations(self) -> list[str]:
        """Requests that broke GitHub's OpenAPI description."""
        return self.state.contract_violations

    @property
    def comments(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """(repo, issue_number) -> comments."""
        return self.state.comments

    @property
    def check_runs(self) -> dict[str, list[dict[str, Any]]]:
        """repo -> check runs."""
        return self.state.check_runs

    @property
    def check_run_annotations(self) -> dict[int, list[dict[str, Any]]]:
        """check run id -> every annotation sent for it."""
        return self.state.check_run_annotations

    @property
    def blob_bytes_sent(self) -> dict[int, int]:
        """artifact id -> bytes the blob host wrote for it."""
        return self.state.blob_bytes_sent

    @property
    def token_ttl(self) -> float:
        """Seconds an installation token lives."""
        return self.state.token_ttl

    @token_ttl.setter
    def token_ttl(self, seconds: float) -> None:
        self.state.token_ttl = seconds

    def calls(self, method: str, route: str) -> list[RecordedRequest]:
        """Return the recorded requests for METHOD and route template (e.g. "/repos/{owner}/{repo}/check-runs")."""
        wanted = normalise_route(route)
        return [r for r in self.state.requests if r.method == method.upper() and r.route == wanted]

    # -- state builders ---------------------------------------------------------------------------------------

    def add_installation(self, installation_id: int, *, account: str = "octo-org", repositories: Sequence[str] = (),
                         repository_selection: str = "selected") -> dict[str, Any]:
        """Create an installation with its repositories."""
        return self.state.add_installation(installation_id, account=account, repositories=repositories,
                                           repository_selection=repository_selection)

    def add_repository(self, installation_id: int, full_name: str) -> dict[str, Any]:
        """Add a repository to an installation."""
        return self.state.add_repository(installation_id, full_name)

    def remove_installation(self, installation_id: int) -> None:
        """Uninstall: minting answers 404 and existing tokens 401."""
        self.state.remove_installation(installation_id)

    def suspend_installation(self, installation_id: int) -> None:
        """Suspend: minting answers 403 and GET /app/installations/{id} shows suspended_at."""
        self.state.suspended.add(installation_id)
        installation = self.state.installations.get(installation_id)
        if installation is not None:
            installation["suspended_at"] = "2026-01-01T00:00:00Z"

    def unsuspend_installation(self, installation_id: int) -> None:
        """Undo suspend_installation."""
        self.state.suspended.discard(installation_id)
        installation = self.state.installations.get(installation_id)
        if installation is not None:
            installation["suspended_at"] = None

    def expire_tokens(self) -> None:
        """Make every existing token answer 401."""
        self.state.expire_tokens()

    def add_issue(self, repo: str, number: int, *, title: str = "", body: str | None = "",
                  state: str = "open") -> dict[str, Any]:
        """Create an issue."""
        return self.state.add_issue(repo, number, title=title, body=body, state=state)

    def add_comment(self, repo: str, number: int, body: str, *, login: str = "octocat") -> dict[str, Any]:
        """Add a comment written by a person (the app's own come from its POSTs)."""
        return self.state.add_comment(repo, number, body, self.state.account(login))

    def add_pull(self, repo: str, number: int, *, title: str = "", body: str | None = "", head_sha: str,
                 head_ref: str = "feature", base_ref: str = "main",
                 files: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """Create a pull request with files ({"filename", "patch", "status", ...})."""
        return self.state.add_pull(repo, number, title=title, body=body, head_sha=head_sha, head_ref=head_ref,
                                   base_ref=base_ref, files=files)

    def add_check_run(self, repo: str, *, head_sha: str, name: str, app_id: int,
                      status: str = "completed", conclusion: str | None = "success") -> dict[str, Any]:
        """Add a check run some App created (e.g. another App, or this one under an earlier app id)."""
        run_id = self.state.next_id()
        url = f"{self.state.api_url}/repos/{repo}/check-runs/{run_id}"
        run: dict[str, Any] = {
            "id": run_id, "head_sha": head_sha, "name": name, "status": status, "conclusion": conclusion,
            "external_id": "", "url": url, "app": {"id": app_id, "slug": f"app-{app_id}"},
            "output": {"title": None, "summary": None, "text": None, "annotations_count": 0,
                       "annotations_url": f"{url}/annotations"},
        }
        self.state.check_runs.setdefault(repo, []).append(run)
        return run

    def add_workflow_run(self, repo: str, run_id: int, *, head_sha: str, run_attempt: int = 1,
                         conclusion: str = "success", pull_requests: Sequence[int] = (),
                         artifacts: Mapping[str, Mapping[str, bytes]] = {}, expired: Sequence[str] = (),
                         declared_sizes: Mapping[str, int] = {}, status: str = "completed",
                         started_at: float | None = None, name: str = "CI") -> dict[str, Any]:
        """Create a run (completed unless `status`, e.g. "in_progress", says otherwise; then no conclusion);
        artifacts map name -> {file in zip -> bytes}; declared_sizes fake size_in_bytes; started_at is the
        attempt's run_started_at (now when None)."""
        return self.state.add_workflow_run(repo, run_id, head_sha=head_sha, run_attempt=run_attempt,
                                           conclusion=conclusion, pull_requests=pull_requests,
                                           artifacts=artifacts, expired=expired, declared_sizes=declared_sizes,
                                           status=status, started_at=started_at, name=name)

    def set_workflows(self, repo: str, names: Sequence[str]) -> list[dict[str, Any]]:
        """Give the repository exactly these Actions workflows, by name; [] makes a repository without CI. A
        repository never set has one, "CI"."""
        return self.state.set_workflows(repo, names)

    def artifact_id(self, repo: str, run_id: int, name: str) -> int:
        """Return the id of the run's artifact called name."""
        for artifact_id in self.state.run_artifacts.get((repo, run_id), []):
            if self.state.artifacts[artifact_id].json["name"] == name:
                return artifact_id
        raise KeyError(name)

    def script_blob(self, artifact_id: int, *, body_size: int | None = None, content_length: int | None = None,
                    omit_content_length: bool = False, chunk_size: int = 65536, chunk_delay: float = 0.0,
                    html_status: int | None = None) -> None:
        """Change how the blob host serves an artifact: a huge or lying stream, a slow one, or an HTML error."""
        self.state.blob_scripts[artifact_id] = BlobScript(
            body_size=body_size, content_length=content_length, omit_content_length=omit_content_length,
            chunk_size=chunk_size, chunk_delay=chunk_delay, html_status=html_status)

    def add_user(self, login: str, user_id: int, *, installations: Mapping[int, Sequence[str]] = {},
                 permissions: Mapping[str, Mapping[str, bool]] = {}) -> dict[str, Any]:
        """Create a user who sees installations (id -> repo names) with per-repo permissions."""
        return self.state.add_user(login, user_id, installations=installations, permissions=permissions)

    def add_hook_delivery(self, guid: str, *, status: str = "OK", event: str = "issues", action: str | None = None,
                          delivered_at: float | None = None, redelivery: bool = False,
                          payload: Mapping[str, Any] | bytes | None = None) -> dict[str, Any]:
        """Add an attempt to the app's webhook delivery log; with a payload, a redelivery really sends it."""
        body = encode_payload(payload) if payload is not None else None
        return self.state.add_hook_delivery(guid, status=status, event=event, action=action,
                                            delivered_at=delivered_at, redelivery=redelivery, payload=body)

    def send_webhooks_to(self, url: str, secret: str) -> None:
        """Make redelivery attempts POST the stored payload, signed with secret, to the app at url."""
        self.state.webhook_url, self.state.webhook_secret = url, secret

    def authorize_as(self, login: str | None) -> None:
        """Make /login/oauth/authorize approve as login (None: the user denies access)."""
        self.state.current_login = login

    @property
    def oauth_client_id(self) -> str:
        """The OAuth client id the token endpoint accepts."""
        return self.state.oauth_client_id

    @property
    def oauth_client_secret(self) -> str:
        """The OAuth client secret the token endpoint accepts."""
        return self.state.oauth_client_secret

    # -- faults -----------------------------------------------------------------------------------------------

    def fail_next(self, method: str, route: str, *, status: int = 500, times: int = 1,
                  headers: Mapping[str, str] = {}, body: Any = None, delay: float = 0.0,
                  kind: str = "status") -> None:
        """Script the next `times` responses of a route: kind "status" | "reset" | "hang" | "slow" (delay only) |
        "endless" (`status` with a body that never ends).

        aiohttp's client retries an idempotent request once on a dropped connection: reset a GET twice to fail it.
        """
        fault = fake_faults.make_fault(kind=kind, status=status, headers=headers, body=body, delay=delay)
        queue = self.state.faults.setdefault((method.upper(), normalise_route(route)), deque())
        queue.extend([fault] * times)

    def rate_limit(self, method: str, route: str, *, reset_in: float = 60.0, status: int = 403,
                   times: int = 1) -> None:
        """Answer the next requests with a primary rate limit (remaining 0, reset in reset_in seconds)."""
        now = self.state.clock()
        fault = fake_faults.rate_limit_fault(status=status, reset_at=now + reset_in, now=now)
        self.state.faults.setdefault((method.upper(), normalise_route(route)), deque()).extend([fault] * times)

    def secondary_limit(self, method: str, route: str, *, retry_after: int | None = 60, status: int = 403,
                        times: int = 1) -> None:
        """Answer the next requests with a secondary rate limit (retry-after when given)."""
        fault = fake_faults.secondary_limit_fault(status=status, retry_after=retry_after)
        self.state.faults.setdefault((method.upper(), normalise_route(route)), deque()).extend([fault] * times)

    # -- request pipeline -----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        """Record, check against the contract, act out faults, authenticate, then serve (with ETags)."""
        route = self._matched_route(request)
        recorded = await self._record(request, route)
        try:
            response = await self._serve(request, handler, route, recorded)
        except GitHubError as error:
            response = error.response()
        recorded.status = response.status
        return response

    def _matched_route(self, request: web.Request) -> Route | None:
        """Return the served route the request matched, if any."""
        if request.match_info.http_exception is not None:
            return None
        canonical = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
        return self._routes.get((request.method, canonical))

    async def _record(self, request: web.Request, route: Route | None) -> RecordedRequest:
        """Append the request to the log."""
        body = await request.read()
        parsed: Any = None
        if body and "json" in request.headers.get("Content-Type", "json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        host = route.host if route else ("api" if request.path.startswith(API_PREFIX) else "web")
        recorded = RecordedRequest(
            method=request.method, path=request.path.removeprefix(API_PREFIX),
            route=normalise_route(route.path) if route else None, query=dict(request.query),
            headers=dict(request.headers), json=parsed, body=body, host=host, at=self.state.clock(),
        )
        self.state.requests.append(recorded)
        return recorded

    async def _serve(self, request: web.Request, handler: Callable[..., Any], route: Route | None,
                     recorded: RecordedRequest) -> web.StreamResponse:
        """Run the checks and the handler for one recorded request."""
        if route is None:
            if recorded.host == "api" and self._contract is not None:
                self.state.contract_violations.append(
                    f"{request.method} {recorded.path}: no such operation in GitHub's REST API description")
            raise GitHubError(404, "Not Found")
        if route.host == "api" and self._contract is not None:
            self._check_contract(request, route, recorded)
        queue = self.state.faults.get((request.method, recorded.route or ""))
        if queue:
            scripted = await fake_faults.apply_fault(request, queue.popleft(), self._closing)
            if scripted is not None:
                return scripted
        authenticate(request, route.auth, self._public_key)
        response: web.StreamResponse = await handler(request)
        if route.host == "api":
            return self._with_api_headers(request, response)
        return response

    def _check_contract(self, request: web.Request, route: Route, recorded: RecordedRequest) -> None:
        """Record and refuse (422) a request that breaks the description."""
        assert self._contract is not None
        has_body = bool(recorded.body)
        problems = self._contract.check(
            request.method, recorded.route, path_params=dict(request.match_info), query=recorded.query,
            body=recorded.json, has_body=has_body)
        if has_body and recorded.json is None:
            problems.append(f"{request.method} {recorded.route}: body is not valid JSON")
        if problems:
            self.state.contract_violations.extend(problems)
            raise GitHubError(422, "Invalid request.\n\n" + "\n".join(problems))

    def _with_api_headers(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Add rate-limit headers and an ETag; answer 304 when If-None-Match holds the current one."""
        reset = str(int(self.state.clock()) + 3600)
        for name, value in (("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "4999"),
                            ("x-ratelimit-reset", reset), ("x-ratelimit-used", "1"),
                            ("x-ratelimit-resource", "core"), ("x-github-media-type", "github.v3; format=json")):
            response.headers.setdefault(name, value)
        if request.method != "GET" or response.status != 200 or not isinstance(response, web.Response):
            return response
        body = response.body if isinstance(response.body, bytes) else b""
        etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        response.headers["ETag"] = etag
        wanted = request.headers.get("If-None-Match", "")
        if etag in [tag.strip().removeprefix("W/") for tag in wanted.split(",")]:
            return web.Response(status=304, headers={"ETag": etag, **{
                k: v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")}})
        return response
