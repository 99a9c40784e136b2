"""Read a delivery's routing fields with SQLite's JSON functions, on the intake writer's thread.

The intake stores the raw body and one job per matching handler; it needs only a few fields (action,
installation, repository, issue or pull request number, and whatever keys handlers are routed by) and
proof that the body is a JSON object. SQLite's C JSON parser gives both on the writer's thread, where it
runs without the GIL, instead of a full `json.loads` on the event loop (most of a delivery's cost there).
The job that handles the delivery parses the whole payload later.

SQLite is stricter than `json.loads` (NaN and Infinity are refused) except in depth: it allows 2,000 levels
of nesting, `json.loads` about 1,000, so such a body is stored and its jobs fail saying why. Where a key
repeats, SQLite reads the first and `json.loads` the last. GitHub sends neither.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gidgethub import sansio

from quantumreview.plugins import HandlerRegistry, PluginError
from storage.deliveries import DeliveryRecord
from storage.jobs import NewJob

# Paths read for the stored columns and the ordering key; NUMBER_PATHS in order of preference.
ACTION, INSTALLATION, REPOSITORY = "$.action", "$.installation.id", "$.repository.full_name"
NUMBER_PATHS = ("$.issue.number", "$.pull_request.number", "$.number")
_FIXED = (ACTION, INSTALLATION, REPOSITORY, *NUMBER_PATHS)
# Routed keys become quoted JSON path labels; SQLite's path syntax has no escape for a double quote.
_ROUTABLE_KEY = re.compile(r'[^"\\\']+')


class InvalidPayload(Exception):
    """A signed body the intake refuses (answered 400); the message never holds the body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Arrival:
    """A delivery whose headers and signature have been checked, not yet its body."""

    delivery_id: str
    event: str
    body: bytes
    received_at: float


class FieldReader:
    """One prepared SELECT that validates a body and reads the fixed paths and the routed keys."""

    def __init__(self, registry: HandlerRegistry) -> None:
        self._registry = registry
        keys = sorted(registry.routed_keys())
        for key in keys:
            if not _ROUTABLE_KEY.fullmatch(key):
                raise PluginError(f"handlers are routed by the payload key {key!r}, which the intake cannot "
                                  "read (no \", \\ or ' in routed keys)")
        self._routed = tuple(keys)
        routed_paths = [f"'$.\"{key}\"'" for key in keys]
        paths = ", ".join([*(f"'{p}'" for p in _FIXED), *routed_paths])
        presence = "".join(f", CASE WHEN ok THEN json_type(?1, {p}) END" for p in routed_paths)
        # json_valid first: the other functions raise on malformed JSON, and the CASE keeps them from running on
        # it. All calls share ?1, parsed once per statement; with several paths json_extract returns one JSON
        # array of the values as written (so a boolean stays a boolean and a big integer exact); json_type tells
        # a routed key that is missing from one that is null.
        self._sql = (f"SELECT ok, CASE WHEN ok THEN json_type(?1) END, CASE WHEN ok THEN json_extract(?1, {paths}) END"  # noqa: S608 - constant paths, checked keys
                     f"{presence} FROM (SELECT json_valid(?1) AS ok)")

    def prepare(self, conn: sqlite3.Connection, arrival: Arrival) -> tuple[DeliveryRecord, list[NewJob]]:
        """The delivery row and one job row per matching handler; InvalidPayload for a body to refuse."""
        try:
            text = arrival.body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (UnicodeDecodeError)") from None
        row = conn.execute(self._sql, (text,)).fetchone()
        if not row[0]:
            raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (malformed)")
        if row[1] != "object":
            raise InvalidPayload("invalid_json", "the body must be a JSON object")
        try:
            values = json.loads(row[2])  # a few scalars as the body wrote them: cheap
        except RecursionError:  # SQLite allows 2,000 levels of nesting, json.loads about 1,000
            raise InvalidPayload("invalid_payload", "a routed field is nested too deeply") from None
        found = dict(zip(_FIXED, values[: len(_FIXED)], strict=True))
        for path in (ACTION, REPOSITORY):  # stored as TEXT: a lone surrogate escape cannot be
            if isinstance(found[path], str) and not _encodable(found[path]):
                raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (lone surrogate)")
        routing: dict[str, Any] = {}
        for key, value, json_type in zip(self._routed, values[len(_FIXED):], row[3:], strict=True):
            if json_type is None:
                continue  # missing, unlike null
            if isinstance(value, dict | list):
                raise InvalidPayload("invalid_payload", "a routed field (such as action) has an invalid type")
            routing[key] = value
        names = self._registry.handlers_for(sansio.Event(routing, event=arrival.event,
                                                         delivery_id=arrival.delivery_id))
        return build_delivery(arrival, found, names)


def build_delivery(arrival: Arrival, found: dict[str, Any], handlers: Iterable[str]) -> tuple[DeliveryRecord,
                                                                                               list[NewJob]]:
    """The delivery row and its jobs from the values read at the fixed paths."""
    action, installation_id, repo = found[ACTION], _int(found[INSTALLATION]), found[REPOSITORY]
    repo = repo if isinstance(repo, str) else None
    number = next((n for n in (_int(found[path]) for path in NUMBER_PATHS) if n is not None), None)
    record = DeliveryRecord(
        id=arrival.delivery_id, event=arrival.event, action=action if isinstance(action, str) else None,
        installation_id=installation_id, repository=repo, received_at=arrival.received_at, body=arrival.body,
    )
    key = ordering_key(repo, number, installation_id, f"delivery:{arrival.delivery_id}")
    jobs = [NewJob(handler=name, ordering_key=key, run_after=arrival.received_at, created_at=arrival.received_at,
                   delivery_id=arrival.delivery_id, installation_id=installation_id) for name in handlers]
    return record, jobs


def ordering_key(repo: str | None, number: int | None, installation_id: int | None, fallback: str) -> str:
    """Jobs with one key run in order: repo#number, else the installation, else `fallback`."""
    if repo is not None and number is not None:
        return f"{repo}#{number}"
    if installation_id is not None:
        return f"installation:{installation_id}"
    return fallback


def ordering_key_of(data: dict[str, Any], fallback: str) -> str:
    """`ordering_key` from a parsed payload (for replaying a stored delivery)."""
    repo = _member(data, "repository", "full_name")
    number = next((n for n in (_int(_member(data, outer, "number")) for outer in ("issue", "pull_request"))
                   if n is not None), _int(data.get("number")))
    return ordering_key(repo if isinstance(repo, str) else None, number,
                        _int(_member(data, "installation", "id")), fallback)


# SQLite's 64-bit integers; a larger one is no id (and could not be stored as one).
_INT64 = range(-(2**63), 2**63)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value in _INT64 else None


def _member(data: dict[str, Any], outer: str, inner: str) -> Any:
    obj = data.get(outer)
    return obj.get(inner) if isinstance(obj, dict) else None
