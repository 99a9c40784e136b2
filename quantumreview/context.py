"""The Context every handler receives: the event and everything it may use, passed in, never global."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gidgethub import sansio

from quantumreview.keyed_locks import KeyedLocks
from quantumreview.settings import Settings
from storage.db import Database


class Enqueue(Protocol):
    """Queue work as a job, dispatched like an event named `event` (e.g. "quantumreview.regenerate")."""

    def __call__(
        self, event: str, data: Mapping[str, Any], *, ordering_key: str | None = None,
        installation_id: int | None = None, delay: float = 0.0,
    ) -> Awaitable[list[int]]: ...


Notify = Callable[..., Awaitable[int]]


class DeliveryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that stamps every line with the delivery and job it is about."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        kwargs.setdefault("extra", {}).update(extra)
        tag = " ".join(f"{k}={v}" for k, v in extra.items() if v is not None)
        return (f"[{tag}] {msg}" if tag else msg), kwargs


@dataclass
class Context:
    """What a handler gets: `event`, `gh` (installation client), `db`, `log`, `notify()`, `enqueue()`."""

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
    log: DeliveryLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = DeliveryLog(
            logging.getLogger("quantumreview.handler"),
            {"delivery": self.delivery_id, "job": self.job_id},
        )

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
