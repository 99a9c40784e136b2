"""Helpers shared by tests: a settable clock, sleeps that do not wait, and polling until something holds."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

T0 = 1_700_000_000.0


class Clock:
    """A settable wall clock shared by the fake and the client."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps(list[float]):
    """Records requested sleeps instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


async def no_sleep(_seconds: float) -> None:
    """Sleep that returns at once."""


async def wait_until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `check` (plain or async) until it is true; fail the test after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(0.01)
