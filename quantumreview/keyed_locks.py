"""Locks by key, for work that must not run twice at once in this process even across ordering keys."""

from __future__ import annotations

import asyncio
import weakref


class KeyedLocks:
    """One asyncio.Lock per key, made on first use; weak values, so a lock nobody holds or waits for goes away.

    Why: jobs of different ordering keys (a pull request's and its CI run's) can publish on one pull request at
    once; each looked for the bot's comment or check run, found none and created one. Looking and creating run
    under the lock of what they create. In-process is enough: one server per database (serve_lock).
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[tuple[object, ...], asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, *key: object) -> asyncio.Lock:
        """The lock for `key`."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock
