"""Fixtures for the API tests: the app with auth and the API mounted, a real session cookie, and seeded rows."""

from __future__ import annotations

import functools
import json
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from gidgethub import routing, sansio

from quantumreview import access, auth, keys
from quantumreview.access import RepoAccess
from quantumreview.api.openapi import build_document
from quantumreview.app import create_app
from quantumreview.context import Context
from quantumreview.plugins import HandlerRegistry
from storage import pulls, users
from storage.db import Database
from tests.conftest import SettingsFactory

REPO = "octo/widgets"
OTHER = "octo/secret"
INSTALLATION = 42
ORIGIN = "http://localhost:8000"


class SchemaMismatch(AssertionError):
    """A response the OpenAPI document does not describe."""


@functools.cache
def _document() -> dict[str, Any]:
    return build_document()


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(template)) + "$")


@functools.cache
def _validator(path: str, method: str, status: str) -> Any:
    operation = _document()["paths"][path][method]
    response = operation["responses"].get(status)
    if response is None:
        raise SchemaMismatch(f"{method.upper()} {path} does not document status {status}")
    if "$ref" in response:
        response = _document()["components"]["responses"][response["$ref"].rpartition("/")[2]]
    schema = response["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
         "components": _document()["components"]}, validate_formats=True)


def check_against_openapi(method: str, path: str, status: int, body: Any) -> None:
    """Raise SchemaMismatch unless the document describes this response of this operation."""
    templates = [t for t in _document()["paths"] if _template_pattern(t).match(path)]
    if not templates:
        raise SchemaMismatch(f"{path} is not in the OpenAPI document")
    validator = _validator(templates[0], method.lower(), str(status))
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]
    if errors:
        raise SchemaMismatch(f"{method} {path} {status}: {errors[:3]}")


@pytest.fixture
def job_router() -> routing.Router:
    """Handlers for the events the API enqueues; they do nothing, so the jobs finish at once."""
    router = routing.Router()

    @router.register("quantumreview.regenerate_checklist")
    @router.register("quantumreview.revalidate_pr")
    async def accept_api_job(event: sansio.Event, ctx: Context) -> None:
        return None

    return router


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings fields a test replaces (parametrize this name to change them)."""
    return {}


@pytest.fixture
def api_app(make_settings: SettingsFactory, job_router: routing.Router,
            settings_overrides: dict[str, Any]) -> web.Application:
    """The app as create_app wires it (login, access, web security and the API), with the test's handlers."""
    return create_app(make_settings(**settings_overrides), registry=HandlerRegistry.from_routers([job_router]))


@dataclass
class Api:
    """A test client that sends one user's session cookie and the dashboard's Origin."""

    client: TestClient[Any, Any]
    cookie: str = ""

    async def call(self, method: str, path: str, **params: Any) -> tuple[int, Any]:
        """Send a request; return the status and the parsed JSON body."""
        headers = {"Origin": ORIGIN, **({"Cookie": self.cookie} if self.cookie else {})}
        query = {k: str(v) for k, v in params.items()}
        async with self.client.request(method, path, params=query, headers=headers) as response:
            assert response.content_type == "application/json", await response.text()
            body = await response.json()
            # Why here: every API test then also proves its responses match the OpenAPI document.
            check_against_openapi(method, path, response.status, body)
            return response.status, body

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        """GET `path`."""
        return await self.call("GET", path, **params)

    async def post(self, path: str) -> tuple[int, Any]:
        """POST `path` without a body."""
        return await self.call("POST", path)


async def sign_in(client: TestClient[Any, Any], user_id: int, login: str, repos: Sequence[RepoAccess]) -> Api:
    """Store the user, warm their access cache with `repos` and return an Api carrying their session cookie."""
    app = client.app
    box = app[keys.secret_box]
    user = await users.save_user(app[keys.db], users.User(id=user_id, login=login, name=login.title(),
                                                          avatar_url=f"https://avatars.test/{login}"),
                                 users.StoredTokens(token_enc=box.encrypt("gho_test")))
    await users.set_user_repositories(app[keys.db], user_id,
                                      [users.UserRepository(r.repo, r.installation_id, r.permission) for r in repos])
    app[access.ACCESS].put(user_id, tuple(repos))
    state = app[auth.AUTH]
    token = auth.encode_session(box.session_key, user, state.clock(), state.session_lifetime)
    return Api(client, f"{auth.session_cookie_name(app[keys.settings])}={token}")


@pytest.fixture
async def api_client(api_app: web.Application, aiohttp_client: Any) -> TestClient[Any, Any]:
    """A started app."""
    client: TestClient[Any, Any] = await aiohttp_client(api_app)
    return client


@pytest.fixture
async def maintainer(api_client: TestClient[Any, Any]) -> Api:
    """User 1 with push on REPO."""
    return await sign_in(api_client, 1, "mona", [RepoAccess(REPO, INSTALLATION, "push")])


@pytest.fixture
async def reader(api_client: TestClient[Any, Any]) -> Api:
    """User 2 with pull (read) on REPO."""
    return await sign_in(api_client, 2, "hubot", [RepoAccess(REPO, INSTALLATION, "pull")])


def database(api: Api) -> Database:
    """The app's database."""
    return api.client.app[keys.db]


async def add_installation(db: Database, installation_id: int = INSTALLATION, repo: str = REPO) -> None:
    """An installation reaching `repo`."""
    now = time.time()
    await db.execute("INSERT OR IGNORE INTO installations (id, account_login, account_type, created_at, updated_at) "
                     "VALUES (?, 'octo', 'Organization', ?, ?)", (installation_id, now, now))
    await db.execute("INSERT INTO repositories (id, installation_id, full_name, updated_at) VALUES (?, ?, ?, ?)",
                     (zlib.crc32(repo.encode()), installation_id, repo, now))


async def add_checklist(db: Database, number: int, statuses: Sequence[str], *, repo: str = REPO, state: str = "open",
                        retired: Sequence[str] = (), title: str = "") -> int:
    """A checklist with one live item per status (T1..Tn) and retired items; return its id."""
    now = time.time()
    checklist_id = await db.execute(
        "INSERT INTO checklists (repo, issue_number, installation_id, title, state, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", (repo, number, INSTALLATION, title or f"Issue {number}", state, now, now))
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO checklist_items (checklist_id, tid, text, detail, position, status, updated_at) "
            "VALUES (?, ?, ?, '', ?, ?, ?)",
            [(checklist_id, f"T{i + 1}", f"criterion {i + 1}", i, s, now) for i, s in enumerate(statuses)])
        await conn.executemany(
            "INSERT INTO checklist_items (checklist_id, tid, text, detail, position, status, retired_at, updated_at) "
            "VALUES (?, ?, ?, '', NULL, 'pending', ?, ?)",
            [(checklist_id, tid, f"old {tid}", now, now) for tid in retired])
    return checklist_id


async def add_pull(db: Database, number: int, *, repo: str = REPO, links: Sequence[tuple[str, int]] = (),
                   head_sha: str = "abc123", state: str = "open") -> None:
    """A pull request linking issues given as (repo, number), written the way the manifest handler writes it."""
    async with db.transaction() as conn:
        await pulls.upsert_pull(
            conn, repo=repo, number=number, installation_id=INSTALLATION, title=f"PR {number}", state=state,
            merged=False, head_sha=head_sha, head_ref="feature", base_ref="main",
            linked=[{"repo": r, "number": n, "source": "closes"} for r, n in links], now=time.time())


async def add_manifest(db: Database, number: int, head_sha: str, manifest: dict[str, Any],
                       verdict: dict[str, Any] | None = None, *, repo: str = REPO, at: float | None = None) -> None:
    """A manifest for one head SHA, with a verdict when given."""
    now = time.time() if at is None else at
    await db.execute(
        "INSERT INTO manifests (repo, pr_number, head_sha, manifest, verdict, conclusion, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (repo, number, head_sha, json.dumps(manifest), None if verdict is None else json.dumps(verdict),
         None if verdict is None else verdict.get("conclusion"), now, now))


async def add_health(db: Database, score: int, head_sha: str, at: float, *, repo: str = REPO,
                     branch: str = "main") -> None:
    """A code-health score (a fork pull request's is kept under its branch as "owner:branch")."""
    await db.execute("INSERT INTO health_scores (repo, head_sha, branch, score, counts, at) VALUES (?, ?, ?, ?, "
                     "'{\"major\": 1}', ?)", (repo, head_sha, branch, score, at))
