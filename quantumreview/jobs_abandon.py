"""A handler run in a task of its own, which the job runner can give up on when it ignores cancellation.

Why a task of its own: a job's task is a child of the runner's TaskGroup, whose exit waits for every child. A handler
catching CancelledError for ever (`except CancelledError: pass` in a loop) kept its job running, its ordering key
blocked, and at shutdown the process up until SIGKILL. The job's task now waits for the handler's task and can end
without it; the handler's task is left behind (`Runaways`).
Why stepped by hand (`Releasable`): asyncio.run and aiohttp's run_app cancel every task left at exit and wait for them
all, so a task left behind still held the process. Released, it closes the handler's coroutine at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Generator
from typing import Any

# How long a handler is given to end once cancelled (its cleanup's awaits) before it is left behind. Why this short:
# Fly's kill_timeout (30 s) must cover SHUTDOWN_GRACE (20 s), aiohttp's shutdown (5 s) and this.
CANCEL_ALLOWANCE = 1.0


class Releasable:
    """Awaits what `start()` returns, one step at a time, until released: its next step then closes it (GeneratorExit
    runs its `finally` blocks) and raises CancelledError, however it treats cancellation."""

    def __init__(self, start: Callable[[], Awaitable[None]]) -> None:
        self._start = start
        self._released = False

    def release(self) -> None:
        """End at the next step (wake the task with cancel() to make that now)."""
        self._released = True

    def __await__(self) -> Generator[Any, Any, None]:
        if self._released:
            raise asyncio.CancelledError("released before it started")
        steps = self._start().__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                request = steps.send(value) if error is None else steps.throw(error)
            except StopIteration:
                return
            value = error = None
            try:
                value = yield request
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # passed on as `await` would: a cancellation, mostly
                error = exc
            if self._released:
                # Why suppress: a handler that awaits again after GeneratorExit cannot be closed; its frame is dropped.
                with contextlib.suppress(Exception):
                    steps.close()
                # Why now: the error's traceback holds this frame; a coroutine kept by it was finalized (closed
                # once more) whenever the task was collected, perhaps with no event loop left to run its awaits.
                del steps
                raise asyncio.CancelledError("released: it ignored its cancellation")


async def outcome(call: Releasable) -> BaseException | None:
    """What `call` raised, None if it returned. Why a task that never raises: a handler's own SystemExit or
    KeyboardInterrupt would go through the event loop (and end the process), and its own CancelledError could not be
    told from a cancellation."""
    try:
        await call
    except BaseException as exc:
        return exc
    return None


async def cancel_until_done(task: asyncio.Task[Any], allowance: float, repeat: float) -> tuple[bool, bool]:
    """Cancel `task` again every `repeat` s until it ends, for at most `allowance` s: (whether it ended, whether the
    caller was cancelled meanwhile). Why not raise the caller's cancellation at once: it is passed on to `task`,
    and the caller must still end within the allowance."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + allowance
    interrupted = False
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            return False, interrupted
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=min(repeat, left))
        except asyncio.CancelledError:
            interrupted = True
    return True, interrupted


class Runaways:
    """Handler tasks given up on, kept referenced until they end (asyncio holds only weak references to tasks)."""

    def __init__(self) -> None:
        self._calls: dict[asyncio.Task[Any], Releasable] = {}

    def add(self, task: asyncio.Task[Any], call: Releasable) -> None:
        """Keep `task` (running `call`) until it ends."""
        self._calls[task] = call
        task.add_done_callback(self._forget)

    def __len__(self) -> int:
        return len(self._calls)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._calls.pop(task, None)

    async def release(self, wait: float) -> int:
        """Close every one still running, waiting up to `wait` s for them to end; return how many there were."""
        tasks = list(self._calls)
        for task in tasks:
            self._calls[task].release()
            task.cancel()  # wakes it: its next step closes it
        if tasks:
            await asyncio.wait(tasks, timeout=wait)
        return len(tasks)
