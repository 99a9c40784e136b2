"""Helpers shared by the GitHub client tests: a settable clock and sleeps that do not wait."""

from __future__ import annotations

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
