"""Shared fixtures: settings factory, a temp database, the app and a test client."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from gidgethub import routing

from quantumreview.app import create_app
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings
from storage.db import Database
from tests.github_support import Clock

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
PREVIOUS_SECRET = "old-webhook-secret-9876543210"

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, rsa_private_key: str) -> SettingsFactory:
    """Return a factory of configured Settings on a temp database; keyword overrides replace fields."""

    def make(**overrides: Any) -> Settings:
        base = Settings(
            app_id=1, private_key=rsa_private_key, webhook_secret=WEBHOOK_SECRET,
            database_path=tmp_path / "quantumreview.db", job_timeout=5.0, shutdown_grace=0.5,
            github_write_interval=0.0,  # the fake GitHub has no secondary limit; pacing has its own tests
        )
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def clock() -> Clock:
    """A settable clock (starting at github_support.T0) for the fake GitHub and the client under test."""
    return Clock()


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Configured settings with short timeouts and a temp database."""
    return make_settings()


@pytest.fixture
def db(handler_db: Database) -> Database:
    """A freshly migrated database in a temp directory (the test kit's handler_db)."""
    return handler_db


@pytest.fixture
def router() -> routing.Router:
    """An empty router tests register handlers on before the app starts."""
    return routing.Router()


@pytest.fixture
def app(settings: Settings, router: routing.Router) -> web.Application:
    """The app with the test's `router` as its only handlers."""
    return create_app(settings, registry=HandlerRegistry.from_routers([router]))


@pytest.fixture
async def client(app: web.Application, aiohttp_client: Any) -> TestClient[Any, Any]:
    """A test client on a started app (database, intake writer and job runner running)."""
    test_client: TestClient[Any, Any] = await aiohttp_client(app)
    return test_client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session, closed after the test."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session
