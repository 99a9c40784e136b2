"""pytest fixtures for plugin authors (registered as a pytest11 entry point).

Loaded in every pytest run of any project that installs quantumreview, so it imports only pytest at module
level; the fake, aiohttp and cryptography are imported inside the fixtures that need them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import pytest

try:  # strict-mode projects need the explicit decorator; auto mode accepts it too
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio the async fixtures cannot run anyway
    async_fixture = pytest.fixture  # type: ignore[assignment]

if TYPE_CHECKING:
    from quantumreview.testing.fake import FakeGitHub

PAYLOAD_PACKAGE = "quantumreview.testing"


@pytest.fixture(scope="session")
def rsa_private_key() -> str:
    """Return a 2048-bit RSA private key (PEM) for the test session's GitHub App."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return pem.decode("ascii")


def contract_failure(violations: list[str]) -> str:
    """Return the message that fails a test whose requests broke GitHub's API description."""
    lines = "\n".join(f"  - {v}" for v in violations)
    return f"requests to FakeGitHub broke GitHub's REST API description:\n{lines}"


@async_fixture
async def fake_github(rsa_private_key: str) -> AsyncIterator[FakeGitHub]:
    """Yield a started FakeGitHub (app id 1, the session key); fail the test if a request broke the contract."""
    from quantumreview.testing.fake import FakeGitHub

    fake = FakeGitHub(app_id=1, private_key_pem=rsa_private_key)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
    if fake.contract_violations:
        pytest.fail(contract_failure(fake.contract_violations), pytrace=False)


def read_payload(name: str) -> dict[str, Any]:
    """Return the shipped example payload called name ("issues.opened"), parsed."""
    path = resources.files(PAYLOAD_PACKAGE).joinpath("payloads", f"{name}.json")
    if not path.is_file():
        shipped = sorted(p.name.removesuffix(".json") for p in resources.files(PAYLOAD_PACKAGE)
                         .joinpath("payloads").iterdir() if p.name.endswith(".json"))
        raise LookupError(f"no shipped payload {name!r}; available: {', '.join(shipped)}")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def load_payload() -> Callable[[str], dict[str, Any]]:
    """Return a function reading a shipped example webhook payload by name, e.g. load_payload("issues.opened")."""
    return read_payload


@async_fixture
async def github_app(fake_github: FakeGitHub, rsa_private_key: str) -> AsyncIterator[Any]:
    """Yield a GitHubApp client (app id 1, the session key) pointed at fake_github, closed after the test."""
    import inspect

    import aiohttp

    from quantumreview.github import GitHubApp

    async with aiohttp.ClientSession() as session:
        # Why no write pacing: the fake has no secondary rate limit, and handler tests should not wait a second
        # between writes (the pacing itself is tested in the client's tests).
        app = GitHubApp(session=session, app_id=1, private_key=rsa_private_key, api_url=fake_github.api_url,
                        web_url=fake_github.url, write_interval=0.0)
        try:
            yield app
        finally:
            close = getattr(app, "aclose", None) or getattr(app, "close", None)
            if close is not None and inspect.iscoroutinefunction(close):
                await close()


@async_fixture
async def handler_db(tmp_path: Any) -> AsyncIterator[Any]:
    """Yield a freshly migrated app database in a temp directory (for calling handlers directly)."""
    from storage.db import Database

    db = await Database.open(tmp_path / "handlers.db")
    try:
        yield db
    finally:
        await db.close()
