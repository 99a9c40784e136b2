"""Read a delivery's routing fields with SQLite's JSON functions, on the intake writer's thread.

The intake stores the raw body and one job per matching handler; it needs only a few fields (action,
installation, repository, issue or pull request number, and whatever keys handlers are routed by) and
proof that the body is a JSON object. SQLite's C JSON parser gives both on the writer's thread, where it
runs without the GIL, instead of a full `json.loads` on the event loop (most of a delivery's cost there).
The job that handles the delivery parses the whole payload later.

Bodies SQLite accepts are a subset of those `json.loads` accepts (NaN and Infinity are refused). Where a
key repeats, SQLite reads the first and `json.loads` the last: GitHub never sends repeated keys.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gidgethub import sansio

from quantumreview.plugins import HandlerRegistry
from storage.deliveries import DeliveryRecord
from storage.jobs import NewJob

# Paths read for the stored columns and the ordering key; NUMBER_PATHS in order of preference.
ACTION, INSTALLATION, REPOSITORY = "$.action", "$.installation.id", "$.repository.full_name"
NUMBER_PATHS = ("$.issue.number", "$.pull_request.number", "$.number")
_FIXED = (ACTION, INSTALLATION, REPOSITORY, *NUMBER_PATHS)
# Routed keys become quoted JSON path labels; SQLite's path syntax has no escape for a double quote.
_ROUTABLE_KEY = re.compile(r'[^"\\]+')
_UNHASHABLE = frozenset({"object", "array"})


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
                raise ValueError(f"handlers are routed by the key {key!r}, which a JSON path cannot name")
        self._routed = tuple(keys)
        paths = [*_FIXED, *(f'$."{key}"' for key in keys)]
        # json_valid first: the other functions raise on malformed JSON, and the CASE keeps them from
        # running on it. All calls share ?1, which SQLite parses once per statement.
        columns = ", ".join(f"CASE WHEN ok THEN json_type(?1, '{p}') END, CASE WHEN ok THEN json_extract(?1, '{p}') END"
                            for p in paths)
        self._sql = f"SELECT ok, CASE WHEN ok THEN json_type(?1) END, {columns} FROM (SELECT json_valid(?1) AS ok)"  # noqa: S608 - paths are constants or checked keys

    def prepare(self, conn: sqlite3.Connection, arrival: Arrival) -> tuple[DeliveryRecord, list[NewJob]]:
        """The delivery row and one job row per matching handler; InvalidPayload for a body to refuse."""
        try:
            text = arrival.body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (UnicodeDecodeError)") from None
        try:
            row = conn.execute(self._sql, (text,)).fetchone()
        except (sqlite3.Error, OverflowError) as exc:  # e.g. a lone surrogate escape that cannot come back as str
            raise InvalidPayload("invalid_json", f"the body is not UTF-8 JSON ({type(exc).__name__})") from None
        if not row[0]:
            raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (malformed)")
        if row[1] != "object":
            raise InvalidPayload("invalid_json", "the body must be a JSON object")
        values = [_value(row[i], row[i + 1]) for i in range(2, len(row), 2)]
        found = dict(zip(_FIXED, values[: len(_FIXED)], strict=True))
        routing = {key: value for key, value in zip(self._routed, values[len(_FIXED):], strict=True)
                   if value is not _ABSENT}
        if any(value is _UNHASHABLE_VALUE for value in routing.values()):
            raise InvalidPayload("invalid_payload", "a routed field (such as action) has an invalid type")
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


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_ABSENT = _Marker("absent")
_UNHASHABLE_VALUE = _Marker("unhashable")
# SQLite's 64-bit integers; a JSON integer beyond them comes back as a float and is no id.
_INT64 = range(-(2**63), 2**63)


def _value(json_type: str | None, value: Any) -> Any:
    """The Python value json.loads would give for a scalar; markers for a missing path or a container."""
    if json_type is None:
        return _ABSENT
    if json_type in _UNHASHABLE:
        return _UNHASHABLE_VALUE
    if json_type in ("true", "false"):
        return json_type == "true"
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value in _INT64 else None


def _member(data: dict[str, Any], outer: str, inner: str) -> Any:
    obj = data.get(outer)
    return obj.get(inner) if isinstance(obj, dict) else None
