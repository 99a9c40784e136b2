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
from typing import Any, NamedTuple

from gidgethub import sansio

from quantumreview.intake import Prepared, prepare_one_by_one
from quantumreview.plugins import HandlerRegistry, PluginError
from storage.deliveries import DeliveryRecord
from storage.jobs import NewJob

# Paths read for the stored columns and the ordering key; NUMBER_PATHS in order of preference.
ACTION, INSTALLATION, REPOSITORY = "$.action", "$.installation.id", "$.repository.full_name"
NUMBER_PATHS = ("$.issue.number", "$.pull_request.number", "$.number")
# A workflow run names no issue or pull request: its jobs are ordered per commit (see ordering_key).
COMMIT = "$.workflow_run.head_sha"
_FIXED = (ACTION, INSTALLATION, REPOSITORY, *NUMBER_PATHS, COMMIT)
# Routed keys become quoted JSON path labels; SQLite's path syntax has no escape for a double quote.
_ROUTABLE_KEY = re.compile(r'[^"\\\']+')


class InvalidPayload(Exception):
    """A signed body the intake refuses (answered 400); the message never holds the body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Arrival(NamedTuple):
    """A delivery whose headers and signature have been checked, not yet its body (a NamedTuple: one per
    delivery, made on the event loop)."""

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
        presence = "".join(f", CASE WHEN ok THEN json_type(b, {p}) END" for p in routed_paths)
        # json_valid first: the other functions raise on malformed JSON, and the CASE keeps them from running on
        # it. The calls on one body share its parse (SQLite caches it); with several paths json_extract returns
        # one JSON array of the values as written (so a boolean stays a boolean and a big integer exact);
        # json_type tells a routed key that is missing from one that is null.
        self._columns = (f"ok, CASE WHEN ok THEN json_type(b) END, "
                         f"CASE WHEN ok THEN json_extract(b, {paths}) END{presence}")
        self._sql = f"SELECT {self._columns} FROM (SELECT ?1 AS b, json_valid(?1) AS ok)"  # noqa: S608 - constant paths, checked keys
        self._batch_sql: dict[int, str] = {}

    def prepare(self, conn: sqlite3.Connection, arrival: Arrival) -> Prepared:
        """The delivery row and one job row per matching handler; InvalidPayload for a body to refuse."""
        ok, kind, extracted, *presence = conn.execute(self._sql, (_text(arrival),)).fetchone()
        try:
            values = None if extracted is None else json.loads(extracted)  # a few scalars: cheap
        except RecursionError:  # SQLite allows 2,000 levels of nesting, json.loads about 1,000
            raise InvalidPayload("invalid_payload", "a routed field is nested too deeply") from None
        return self._rows(arrival, ok, kind, values, presence)

    def prepare_all(self, conn: sqlite3.Connection, arrivals: list[Arrival]) -> list[Prepared | Exception]:
        """`prepare` for every delivery of a batch, with one SQL statement for all their bodies.

        Why one: each statement step releases the GIL, and taking it back means waiting for the event loop
        to let go of it. One step for the batch's JSON work instead of two per delivery nearly doubles what
        the writer gets through under load. Per-delivery refusals are the same as `prepare`'s.
        """
        if len(arrivals) == 1:  # what a quiet server sees: the plain statement, no aggregate to unpack
            return prepare_one_by_one(conn, arrivals, self.prepare)
        texts: list[str | None] = []
        refused: dict[int, InvalidPayload] = {}
        for n, arrival in enumerate(arrivals):
            try:
                texts.append(_text(arrival))
            except InvalidPayload as exc:
                texts.append(None)  # a NULL body: SQLite reads nothing from it
                refused[n] = exc
        try:
            found = self._read_all(conn, texts)
        except RecursionError:  # a routed value nested too deep for json.loads: read each on its own
            return prepare_one_by_one(conn, arrivals, self.prepare)
        results: list[Prepared | Exception] = []
        for n, (arrival, (ok, kind, values, *presence)) in enumerate(zip(arrivals, found, strict=True)):
            if n in refused:
                results.append(refused[n])
                continue
            try:
                results.append(self._rows(arrival, ok, kind, values, presence))
            except Exception as exc:  # refuses this delivery only
                results.append(exc)
        return results

    def _read_all(self, conn: sqlite3.Connection, texts: list[str | None]) -> list[list[Any]]:
        """[ok, type, [values at the paths], presence...] for each text, in order, from one statement."""
        size = 1 << max(len(texts) - 1, 0).bit_length()  # a few statement shapes, padded with NULL bodies
        sql = self._batch_sql.get(size)
        if sql is None:
            values = ", ".join(f"({n}, ?)" for n in range(size))
            sql = self._batch_sql[size] = (
                f"SELECT json_group_array(json_array(n, {self._columns})) "  # noqa: S608 - constant text
                f"FROM (SELECT column1 AS n, column2 AS b, json_valid(column2) AS ok FROM (VALUES {values}))")
        (aggregate,) = conn.execute(sql, texts + [None] * (size - len(texts))).fetchone()
        rows: list[list[Any]] = [[]] * len(texts)
        for n, *row in json.loads(aggregate):
            if n < len(texts):
                rows[n] = row
        if not all(rows):
            raise sqlite3.DataError("the batch read did not return every delivery")
        return rows

    def _rows(self, arrival: Arrival, ok: Any, kind: Any, values: Any, presence: list[Any]) -> Prepared:
        """The rows from what the SQL read (see _columns), or InvalidPayload."""
        if not ok:
            raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (malformed)")
        if kind != "object":
            raise InvalidPayload("invalid_json", "the body must be a JSON object")
        action, installation, repo = values[0], values[1], values[2]
        for value in (action, repo):  # stored as TEXT: a lone surrogate escape cannot be
            if isinstance(value, str) and not value.isascii() and not _encodable(value):
                raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (lone surrogate)")
        routing: dict[str, Any] = {}
        for key, value, json_type in zip(self._routed, values[len(_FIXED):], presence, strict=True):
            if json_type is None:
                continue  # missing, unlike null
            routing[key] = value
        try:  # a routed object or list matches no handler's value (HandlerRegistry.handlers_for)...
            names = self._registry.handlers_for(sansio.Event(routing, event=arrival.event,
                                                             delivery_id=arrival.delivery_id))
        except TypeError:  # ...except an action, which GitHub always sends as a string
            raise InvalidPayload("invalid_payload", "the action field has an invalid type") from None
        number = next((n for n in map(_int, values[3:3 + len(NUMBER_PATHS)]) if n is not None), None)
        commit = values[3 + len(NUMBER_PATHS)]
        return build_delivery(arrival, action, _int(installation), repo, number, names, commit=_commit(commit))


def _text(arrival: Arrival) -> str:
    try:
        return arrival.body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("invalid_json", "the body is not UTF-8 JSON (UnicodeDecodeError)") from None


def build_delivery(arrival: Arrival, action: Any, installation_id: int | None, repo: Any, number: int | None,
                   handlers: Iterable[str], *, commit: str | None = None) -> Prepared:
    """The delivery row and its jobs from the values read at the fixed paths (any JSON type: checked here)."""
    repo = repo if isinstance(repo, str) else None
    record = DeliveryRecord(arrival.delivery_id, arrival.event, action if isinstance(action, str) else None,
                            installation_id, repo, arrival.received_at, arrival.body)
    key = ordering_key(repo, number, installation_id, f"delivery:{arrival.delivery_id}", commit=commit)
    jobs = [NewJob(name, key, arrival.received_at, arrival.received_at, arrival.delivery_id, None, installation_id)
            for name in handlers]
    return record, jobs


def ordering_key(repo: str | None, number: int | None, installation_id: int | None, fallback: str, *,
                 commit: str | None = None) -> str:
    """Jobs with one key run in order: repo#number, else repo@commit (a workflow run), else the installation,
    else `fallback`.

    Why a workflow run's commit: under the installation's key, one run waiting for its artifacts (60 s, twice) or
    for its pull request's manifest held every other run of the installation's repositories behind it.
    """
    if repo is not None and number is not None:
        return f"{repo}#{number}"
    if repo is not None and commit is not None:
        return f"{repo}@{commit}"
    if installation_id is not None:
        return f"installation:{installation_id}"
    return fallback


def ordering_key_of(data: dict[str, Any], fallback: str) -> str:
    """`ordering_key` from a parsed payload (for replaying a stored delivery)."""
    repo = _member(data, "repository", "full_name")
    number = next((n for n in (_int(_member(data, outer, "number")) for outer in ("issue", "pull_request"))
                   if n is not None), _int(data.get("number")))
    commit = _member(data, "workflow_run", "head_sha")
    return ordering_key(repo if isinstance(repo, str) else None, number,
                        _int(_member(data, "installation", "id")), fallback, commit=_commit(commit))


def _commit(value: Any) -> str | None:
    """A workflow run's head_sha as an ordering key's part, or None when it is not an ASCII string."""
    return value if isinstance(value, str) and value.isascii() else None


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
