"""App credentials: the private key, the App JWT, and the installation-token cache with single-flight minting.

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import jwt
from cachetools import TLRUCache
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

BAD_KEY_MESSAGE = "GITHUB_PRIVATE_KEY is not a valid RSA private key in PEM format"
JWT_BACKDATE = 60  # GitHub's advice: allow for clock drift between us and GitHub
JWT_LIFETIME = 540  # exp = now + 540 s, under GitHub's 10-minute cap even with a fast clock
JWT_REUSE = 420  # mint a new JWT once this one has less than 2 minutes left
TOKEN_REFRESH_MARGIN = 300  # refresh installation tokens 5 minutes before they expire
TOKEN_CACHE_SIZE = 10_000


def load_rsa_key(pem: str | bytes) -> RSAPrivateKey:
    """Parse an RSA private key from PEM, accepting literal `\\n` escapes; never echo the key on failure."""
    text = pem.decode("utf-8", "replace") if isinstance(pem, bytes) else pem
    # Why: keys pasted into one-line env vars arrive with literal backslash-n sequences.
    text = text.strip().replace("\\r\\n", "\n").replace("\\n", "\n")
    try:
        key = load_pem_private_key(text.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeError):
        raise ValueError(BAD_KEY_MESSAGE) from None
    except Exception:  # cryptography raises its own types for unsupported formats
        raise ValueError(BAD_KEY_MESSAGE) from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(BAD_KEY_MESSAGE)
    return key


def app_jwt_claims(app_id: int | str, now: float) -> dict[str, int | str]:
    """Return the App JWT claims: iat back-dated 60 s, exp 540 s ahead, iss the App id as a string."""
    issued = int(now)
    return {"iat": issued - JWT_BACKDATE, "exp": issued + JWT_LIFETIME, "iss": str(app_id)}


def encode_app_jwt(app_id: int | str, key: RSAPrivateKey, now: float) -> str:
    """Sign the App JWT with RS256."""
    return jwt.encode(app_jwt_claims(app_id, now), key, algorithm="RS256")


class AppJWT:
    """An App JWT reused for a few minutes, then re-signed (signing costs about a millisecond)."""

    def __init__(self, app_id: int | str, key: RSAPrivateKey, clock: Callable[[], float]) -> None:
        self._app_id = app_id
        self._key = key
        self._clock = clock
        self._value = ""
        self._signed_at = float("-inf")

    def current(self) -> str:
        """Return a JWT with at least two minutes of life left."""
        now = self._clock()
        if not self._value or not 0 <= now - self._signed_at < JWT_REUSE:
            self._value = encode_app_jwt(self._app_id, self._key, now)
            self._signed_at = now
        return self._value


@dataclass(frozen=True)
class InstallationToken:
    """An installation access token and when GitHub says it expires (epoch seconds)."""

    value: str = field(repr=False)
    expires_at: float


def parse_expires_at(value: object) -> float:
    """Return epoch seconds from GitHub's ISO-8601 `expires_at` ("2016-07-11T22:14:10Z")."""
    if not isinstance(value, str):
        raise ValueError("expires_at is missing from the token response")
    stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def refresh_deadline(_key: int, token: InstallationToken, _now: float) -> float:
    """TLRUCache time-to-use: drop a token five minutes before it expires."""
    return token.expires_at - TOKEN_REFRESH_MARGIN


Mint = Callable[[int], Awaitable[InstallationToken]]


class TokenCache:
    """Installation tokens in a TLRUCache; concurrent misses for one installation share a single mint.

    The cache holds finished tokens, never coroutines (cachetools' @cached would cache an awaited coroutine).
    """

    def __init__(self, mint: Mint, clock: Callable[[], float], *, maxsize: int = TOKEN_CACHE_SIZE) -> None:
        self._mint = mint
        self._tokens: TLRUCache[int, InstallationToken] = TLRUCache(maxsize, ttu=refresh_deadline, timer=clock)
        self._minting: dict[int, asyncio.Task[InstallationToken]] = {}

    async def get(self, installation_id: int) -> str:
        """Return a live token for the installation, minting at most one at a time per installation."""
        token = self._tokens.get(installation_id)
        if token is not None:
            return token.value
        task = self._minting.get(installation_id)
        if task is None:
            task = asyncio.create_task(self._mint_and_store(installation_id), name=f"mint-{installation_id}")
            self._minting[installation_id] = task
            task.add_done_callback(lambda done: self._forget(installation_id, done))
        # Why: shield, so one cancelled caller does not cancel the mint the others are waiting for.
        return (await asyncio.shield(task)).value

    def drop(self, installation_id: int, value: str) -> None:
        """Forget the cached token if it is still `value` (GitHub answered 401 with it)."""
        token = self._tokens.get(installation_id)
        if token is not None and token.value == value:
            del self._tokens[installation_id]

    def clear(self) -> None:
        """Forget every cached token (new App credentials)."""
        self._tokens.clear()

    async def close(self) -> None:
        """Forget tokens and cancel mints still in flight (shutdown)."""
        self._tokens.clear()
        pending = list(self._minting.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _mint_and_store(self, installation_id: int) -> InstallationToken:
        token = await self._mint(installation_id)
        self._tokens[installation_id] = token
        return token

    def _forget(self, installation_id: int, task: asyncio.Task[InstallationToken]) -> None:
        if self._minting.get(installation_id) is task:
            del self._minting[installation_id]
        if not task.cancelled():
            task.exception()  # Why: mark it retrieved even if every waiter was cancelled
