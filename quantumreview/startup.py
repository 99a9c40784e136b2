"""The app's resources as one cleanup_ctx, and the errors that stop start-up with a message instead of a traceback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from aiohttp import web

ResourceContext = Callable[[web.Application], AsyncIterator[None]]


class StartupError(Exception):
    """The server cannot start as configured (a database it cannot open, credentials it cannot use); the message
    says what to change and holds no secret. `quantumreview serve` prints it and exits 2."""


@dataclass(frozen=True)
class Resources:
    """Start `contexts` in order and close them in reverse, as aiohttp's cleanup_ctx list would, except when one
    fails to start: then those already started are closed before the error goes on.

    Why: aiohttp's runner cleans up only after a successful start. A failure in a later context left the database's
    threads open, and the process hung at exit instead of stopping with its error. Each is closed as a normal exit,
    as aiohttp does (the contexts have no try/finally around their yield).
    """

    contexts: tuple[ResourceContext, ...]

    def __call__(self, app: web.Application) -> AbstractAsyncContextManager[None]:
        return self._started(app)

    @contextlib.asynccontextmanager
    async def _started(self, app: web.Application) -> AsyncIterator[None]:
        started: list[AbstractAsyncContextManager[None]] = []
        try:
            for context in self.contexts:
                manager = contextlib.asynccontextmanager(context)(app)
                await manager.__aenter__()
                started.append(manager)
            yield
        finally:
            await _close(reversed(started))


async def _close(managers: Iterable[AbstractAsyncContextManager[None]]) -> None:
    """Close each as a normal exit (the contexts are written for that), all of them even if one fails."""
    errors: list[BaseException] = []
    for manager in managers:
        try:
            await manager.__aexit__(None, None, None)
        except (Exception, asyncio.CancelledError) as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
