"""The setup flow's `state`: random, bound to a signed cookie, valid for 10 minutes and accepted once.

Why: Probot's manifest flow sends no state, so anyone can make a victim's server adopt an App they created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from cachetools import TTLCache

STATE_COOKIE = "quantum_setup_state"
STATE_TTL_SECONDS = 600
STATE_BYTES = 32  # 256 bits
MAX_PENDING = 1024


def _signature(key: bytes, state: str, expires: int) -> str:
    mac = hmac.new(key, f"setup-state:{state}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


class SetupStates:
    """States handed out by GET /setup and not yet redeemed by GET /setup/callback."""

    def __init__(self, *, clock: Callable[[], float] = time.time, ttl: int = STATE_TTL_SECONDS) -> None:
        self._clock = clock
        self._ttl = ttl
        # Why: a bounded cache, so reloading /setup forever cannot grow memory; evicted states simply fail.
        self._pending: TTLCache[str, int] = TTLCache(maxsize=MAX_PENDING, ttl=ttl, timer=clock)

    def __repr__(self) -> str:
        return f"SetupStates(pending={len(self._pending)})"

    def issue(self, key: bytes) -> tuple[str, str]:
        """Return a new state and the cookie value that binds it to this browser."""
        state = secrets.token_urlsafe(STATE_BYTES)
        expires = int(self._clock()) + self._ttl
        self._pending[state] = expires
        return state, f"{state}.{expires}.{_signature(key, state, expires)}"

    def redeem(self, key: bytes, state: str | None, cookie: str | None) -> bool:
        """Accept `state` once if it matches this browser's signed, unexpired cookie; False otherwise."""
        if not state or not cookie or cookie.count(".") != 2:
            return False
        cookie_state, raw_expires, signature = cookie.split(".")
        # Why isascii and a length cap: the cookie is the browser's to forge; int() refuses digits such as '²'
        # and numbers past 4,300 digits (ValueError, a 500 instead of "link not valid").
        if not (raw_expires.isascii() and raw_expires.isdigit()) or len(raw_expires) > 20:
            return False
        expires = int(raw_expires)
        # Why bytes: compare_digest raises TypeError on a str with non-ASCII characters.
        if not hmac.compare_digest(signature.encode(), _signature(key, cookie_state, expires).encode()):
            return False
        if not hmac.compare_digest(cookie_state.encode(), state.encode()) or expires <= self._clock():
            return False
        return self._pending.pop(state, None) is not None

    @property
    def ttl(self) -> int:
        """Seconds a state (and its cookie) lives."""
        return self._ttl
