"""The setup flow's `state`: random, bound to a signed cookie, valid for an hour and accepted once.

Why: Probot's manifest flow sends no state, so anyone can make a victim's server adopt an App they created.
Why an hour: GitHub's manifest code can be converted for an hour; a state of 10 minutes refused the callback of
someone who lingered on GitHub's form, after GitHub had created the App.
https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
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
STATE_TTL_SECONDS = 3600  # as long as GitHub's manifest code can be converted
STATE_BYTES = 32  # 256 bits
# Redeemed states are remembered until their cookie expires; a callback (and its conversion POST) per entry.
MAX_REDEEMED = 4096
MAX_COOKIE_STATES = 4  # a few tabs of /setup open at once; the cookie stays well under 1 KB
COOKIE_SEPARATOR = "~"  # allowed in a cookie value, unlike "," and ";"; not in a state, a number or a signature


def _entries(cookie: str | None) -> list[str]:
    return cookie.split(COOKIE_SEPARATOR)[:MAX_COOKIE_STATES] if cookie else []


def _signature(key: bytes, state: str, expires: int) -> str:
    mac = hmac.new(key, f"setup-state:{state}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


class SetupStates:
    """States handed out by GET /setup, checked by their signed cookie, and those already redeemed."""

    def __init__(self, *, clock: Callable[[], float] = time.time, ttl: int = STATE_TTL_SECONDS) -> None:
        self._clock = clock
        self._ttl = ttl
        # Why the redeemed, not the issued: the issued were kept in a cache of 1,024, so anyone reaching /setup (it
        # is public while the App is set up) could reload it a few times a second and evict the operator's state:
        # the callback then refused it after GitHub had created the App. A state needs no server memory until it
        # is used: its cookie is signed and carries its expiry. Bounded, so callbacks cannot grow memory.
        self._redeemed: TTLCache[str, bool] = TTLCache(maxsize=MAX_REDEEMED, ttl=ttl, timer=clock)

    def __repr__(self) -> str:
        return f"SetupStates(redeemed={len(self._redeemed)})"

    def issue(self, key: bytes, previous: str | None = None) -> tuple[str, str]:
        """Return a new state and the cookie value that binds it to this browser.

        The cookie keeps this browser's other pending states (from `previous`, its current cookie), the newest
        MAX_COOKIE_STATES in all. Why: a second tab's /setup replaced the cookie, so registering from the first
        tab created the App on GitHub, then the callback refused it as "not started from this browser" and the
        App was left behind on GitHub, its name taken.
        """
        state = secrets.token_urlsafe(STATE_BYTES)
        expires = int(self._clock()) + self._ttl
        kept = [entry for entry in _entries(previous) if self._valid(key, entry) is not None]
        entries = [f"{state}.{expires}.{_signature(key, state, expires)}", *kept][:MAX_COOKIE_STATES]
        return state, COOKIE_SEPARATOR.join(entries)

    def redeem(self, key: bytes, state: str | None, cookie: str | None) -> bool:
        """Accept `state` once if it matches this browser's signed, unexpired cookie; False otherwise."""
        if not state:
            return False
        for entry in _entries(cookie):
            if hmac.compare_digest(entry.partition(".")[0].encode(), state.encode()):
                if self._valid(key, entry) is None:
                    return False
                self._redeemed[state] = True
                return True
        return False

    def remaining(self, key: bytes, cookie: str | None) -> str | None:
        """The cookie value holding only the states still usable, or None when none is."""
        kept = [entry for entry in _entries(cookie) if self._valid(key, entry) is not None]
        return COOKIE_SEPARATOR.join(kept) or None

    def _valid(self, key: bytes, entry: str) -> str | None:
        """The state of one signed, unexpired, not yet redeemed cookie entry; None otherwise."""
        if entry.count(".") != 2:
            return None
        cookie_state, raw_expires, signature = entry.split(".")
        # Why isascii and a length cap: the cookie is the browser's to forge; int() refuses digits such as '²'
        # and numbers past 4,300 digits (ValueError, a 500 instead of "link not valid").
        if not (raw_expires.isascii() and raw_expires.isdigit()) or len(raw_expires) > 20:
            return None
        expires = int(raw_expires)
        # Why bytes: compare_digest raises TypeError on a str with non-ASCII characters.
        if not hmac.compare_digest(signature.encode(), _signature(key, cookie_state, expires).encode()):
            return None
        if not self._clock() < expires <= self._clock() + self._ttl or cookie_state in self._redeemed:
            return None
        return cookie_state

    @property
    def ttl(self) -> int:
        """Seconds a state (and its cookie) lives."""
        return self._ttl
