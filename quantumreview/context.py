"""The Context every handler receives: the event and everything it may use, passed in, never global."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gidgethub import sansio

from quantumreview.keyed_locks import KeyedLocks
from quantumreview.settings import Settings
from storage import notifications
from storage.db import Database


class Enqueue(Protocol):
    """Queue work as a job, dispatched like an event named `event` (e.g. "quantumreview.regenerate")."""

    def __call__(
        self, event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
        installation_id: int | None = None, delay: float = 0.0,
    ) -> Awaitable[list[int]]: ...


Notify = Callable[..., Awaitable[int]]
# notify for many repositories at once: ([(repo, title, key), ...], kind) -> notifications written.
NotifyMany = Callable[[Sequence[tuple[str, str, str | None]], str], Awaitable[int]]


def check_enqueue(event: object, data: object, ordering_key: object, installation_id: object,
                  delay: object) -> None:
    """TypeError or ValueError, saying which argument and why, for arguments the job queue cannot store."""
    if not isinstance(event, str) or not event:
        raise TypeError(f"ctx.enqueue: event must be a non-empty str such as 'myplugin.recheck', not {event!r:.80}")
    if not isinstance(data, Mapping):
        raise TypeError(f"ctx.enqueue: data must be a dict (the payload), not {type(data).__name__}")
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:  # a datetime, a set, a circular reference
        raise TypeError(f"ctx.enqueue: data must be JSON (it is stored as the job's payload): {exc}") from None
    if ordering_key is not None and not isinstance(ordering_key, str):
        raise TypeError(f"ctx.enqueue: ordering_key must be a str or None, not {type(ordering_key).__name__}")
    if installation_id is not None and (not isinstance(installation_id, int) or isinstance(installation_id, bool)
                                        or installation_id <= 0):
        raise TypeError(f"ctx.enqueue: installation_id must be a positive int or None, not {installation_id!r:.80}")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise TypeError(f"ctx.enqueue: delay must be a finite number of seconds, not {delay!r:.80}")


def checked(enqueue: Enqueue) -> Enqueue:
    """`enqueue` refusing bad arguments before any work, the same way in the server, `receive` and tests.

    Why: the server's queue failed late and obscurely (json's TypeError, a NOT NULL constraint for a NaN delay)
    or stored a text installation id, while the test recorder accepted anything, so a test passed that the
    server's job then failed.
    """
    if getattr(enqueue, "checks_arguments", False):
        return enqueue

    async def call(event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
                   installation_id: int | None = None, delay: float = 0.0) -> list[int]:
        check_enqueue(event, data, ordering_key, installation_id, delay)
        return list(await enqueue(event, data, ordering_key=ordering_key, installation_id=installation_id,
                                  delay=delay))

    call.checks_arguments = True  # type: ignore[attr-defined]
    return call


class DeliveryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that stamps every line with the delivery and job it is about."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        kwargs.setdefault("extra", {}).update(extra)
        tag = " ".join(f"{k}={v}" for k, v in extra.items() if v is not None)
        return (f"[{tag}] {msg}" if tag else msg), kwargs


@dataclass
class Context:
    """What a handler gets: `event`, `gh` (installation client), `db`, `log`, `notify()`, `enqueue()`.

    notify(repo, kind, title, *, url=None, data=None, key=None) tells the repository's managers; with `key` (the
    fact told) a user is told once however often the job runs. Returns the notifications written.
    """

    event: sansio.Event
    db: Database
    settings: Settings
    gh: Any  # the installation-authenticated gidgethub client (quantumreview.github), None without installation
    github: Any  # the GitHubApp itself, for App-level calls and artifact downloads
    installation_id: int | None
    delivery_id: str | None
    job_id: int
    attempt: int
    enqueue: Enqueue
    notify: Notify
    # The job runner passes its one KeyedLocks to every job (a default one serves a lone handler run).
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    # The server's one-transaction form of notify over many repositories; None: notify_repos calls notify for each.
    notify_many: NotifyMany | None = None
    log: DeliveryLog = field(init=False)

    def __post_init__(self) -> None:
        self.enqueue = checked(self.enqueue)
        self.log = DeliveryLog(
            logging.getLogger("quantumreview.handler"),
            {"delivery": self.delivery_id, "job": self.job_id},
        )

    async def notify_repos(self, kind: str, notes: Sequence[tuple[str, str, str | None]]) -> int:
        """notify(repo, kind, title, key=key) for each (repo, title, key), in one transaction when the server
        can (an organization's 600 repositories installed at once); return the notifications written."""
        if not notes:
            return 0
        if self.notify_many is not None:
            return await self.notify_many(notes, kind)
        written = 0
        for repo, title, key in notes:
            written += await self.notify(repo, kind, title, key=key)
        return written

    async def send_staged(self, subject: str) -> int:
        """Send the notifications staged about `subject` (storage.notifications.stage, in the transaction of the
        change they tell of) through notify(), each under its key; return how many were sent.

        Why here and not only where staged: a run killed after storing the change (or after notifying, before the
        job was done) runs again, finds nothing changed, and must still send what the first run owed, once.
        """
        pending = await notifications.staged(self.db, subject)
        for note in pending:
            await self.notify(note.repo, note.kind, note.title, url=note.url, data=note.data, key=note.key)
            await notifications.unstage(self.db, note.key)
        return len(pending)

    @property
    def payload(self) -> dict[str, Any]:
        """The event's JSON payload."""
        data = self.event.data
        return data if isinstance(data, dict) else {}

    @property
    def repo(self) -> str | None:
        """`owner/name` of the event's repository, if it has one."""
        repository = self.payload.get("repository")
        name = repository.get("full_name") if isinstance(repository, dict) else None
        return name if isinstance(name, str) else None
