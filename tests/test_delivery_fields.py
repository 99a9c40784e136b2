"""The intake reads routing fields with SQLite's JSON functions: same results as json.loads, stricter refusals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gidgethub import routing

from quantumreview.delivery_fields import Arrival, FieldReader, InvalidPayload, ordering_key_of
from quantumreview.plugins import HandlerRegistry, PluginError

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"


async def on_opened(event: Any, ctx: Any) -> None: ...


async def on_any_issue(event: Any, ctx: Any) -> None: ...


async def on_flag(event: Any, ctx: Any) -> None: ...


async def on_null_label(event: Any, ctx: Any) -> None: ...


NEIGHBOUR = Arrival("n-1", "issues", b'{"action": "opened", "installation": {"id": 3}}', 1.0)


class Batched:
    """`prepare` the way the intake does: through `prepare_all`, between two good deliveries, which must
    come out right whatever happens to the one in the middle."""

    def __init__(self, reader: FieldReader) -> None:
        self.reader = reader
        self.statements: list[str] = []

    def prepare(self, conn: sqlite3.Connection, arrival: Arrival) -> Any:
        conn.set_trace_callback(self.statements.append)
        try:
            first, middle, last = self.reader.prepare_all(conn, [NEIGHBOUR, arrival, NEIGHBOUR])
        finally:
            conn.set_trace_callback(None)
        for neighbour in (first, last):
            assert not isinstance(neighbour, Exception)
            assert neighbour[0].installation_id == 3 and neighbour[1][0].handler.endswith(":on_any_issue")
        if isinstance(middle, Exception):
            raise middle
        return middle


Reader = FieldReader | Batched


@pytest.fixture(params=["one", "batch"])
def reader(request: pytest.FixtureRequest) -> Any:
    """The FieldReader on one delivery, or on it inside a batch (every test here runs both ways)."""
    router = routing.Router()
    router.add(on_opened, "issues", action="opened")
    router.add(on_any_issue, "issues")
    router.add(on_flag, "custom", flag=True)
    router.add(on_null_label, "labelled", label=None)
    fields = FieldReader(HandlerRegistry.from_routers([router]))
    return fields if request.param == "one" else Batched(fields)


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    """Inside a transaction, as on the intake writer."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute("BEGIN")
    yield connection
    connection.close()


def prepare(reader: Reader, conn: sqlite3.Connection, body: bytes | dict[str, Any],
            event: str = "issues") -> tuple[Any, list[str], str | None]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    record, jobs = reader.prepare(conn, Arrival("d-1", event, raw, 5.0))
    keys = {job.ordering_key for job in jobs}
    return record, [job.handler.rpartition(":")[2] for job in jobs], keys.pop() if keys else None


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_fields_match_what_json_loads_reads_for_every_shipped_payload(
    reader: Reader, conn: sqlite3.Connection, name: str
) -> None:
    body = (FIXTURES / f"{name}.json").read_bytes()
    data = json.loads(body)
    event = name.partition(".")[0]

    record, _, key = prepare(reader, conn, body, event)

    assert record.body == body and record.received_at == 5.0 and record.id == "d-1"
    assert record.action == data.get("action")
    assert record.installation_id == (data.get("installation") or {}).get("id")
    assert record.repository == (data.get("repository") or {}).get("full_name")
    if key is not None:
        assert key == ordering_key_of(data, "delivery:d-1")


def test_handlers_are_matched_by_event_and_action(reader: Reader, conn: sqlite3.Connection) -> None:
    payload = {"action": "opened", "issue": {"number": 7}, "repository": {"full_name": "o/r"},
               "installation": {"id": 42}}
    record, handlers, key = prepare(reader, conn, payload)
    assert handlers == ["on_any_issue", "on_opened"] and key == "o/r#7" and record.installation_id == 42

    _, handlers, key = prepare(reader, conn, {**payload, "action": "closed", "issue": {}})
    assert handlers == ["on_any_issue"] and key == "installation:42"


def test_a_workflow_runs_jobs_are_ordered_per_commit_not_per_installation(
        reader: Reader, conn: sqlite3.Connection) -> None:
    """Under the installation's key, one run waiting for its artifacts held every other run of the installation."""
    payload = {"action": "completed", "workflow_run": {"head_sha": "ab" * 20}, "repository": {"full_name": "o/r"},
               "installation": {"id": 42}}  # routed as `issues`: the reader's handlers listen to that event
    _, _, key = prepare(reader, conn, payload)
    assert key == f"o/r@{'ab' * 20}" == ordering_key_of(payload, "delivery:d-1")
    _, _, key = prepare(reader, conn, {**payload, "workflow_run": {"head_sha": 7}})
    assert key == "installation:42" == ordering_key_of({**payload, "workflow_run": {"head_sha": 7}}, "d")


@pytest.mark.parametrize(("payload", "matches"), [
    ({"flag": True}, True), ({"flag": False}, False), ({}, False), ({"flag": "true"}, False),
])
def test_json_booleans_route_as_python_booleans(reader: Reader, conn: sqlite3.Connection,
                                                payload: dict[str, Any], matches: bool) -> None:
    _, handlers, _ = prepare(reader, conn, payload, event="custom")
    assert handlers == (["on_flag"] if matches else [])


def test_a_present_null_routes_and_a_missing_key_does_not(reader: Reader, conn: sqlite3.Connection) -> None:
    assert prepare(reader, conn, {"label": None}, event="labelled")[1] == ["on_null_label"]
    assert prepare(reader, conn, {}, event="labelled")[1] == []


@pytest.mark.parametrize("body", [
    b"\xff\xfe{}", b"{", b"", b'{"a": NaN}', b'{"a": 1} x', b"[" * 100_000, b'{"a": "\\ud800"}x',
])
def test_malformed_bodies_are_refused_as_invalid_json(reader: Reader, conn: sqlite3.Connection,
                                                       body: bytes) -> None:
    with pytest.raises(InvalidPayload) as refused:
        prepare(reader, conn, body)
    assert refused.value.code == "invalid_json" and "UTF-8 JSON" in str(refused.value)


@pytest.mark.parametrize("body", [b"[]", b"null", b'"text"', b"1", b"true"])
def test_anything_but_an_object_is_refused(reader: Reader, conn: sqlite3.Connection, body: bytes) -> None:
    with pytest.raises(InvalidPayload, match="must be a JSON object"):
        prepare(reader, conn, body)


def test_a_lone_surrogate_in_a_read_field_is_refused_not_raised(reader: FieldReader,
                                                                conn: sqlite3.Connection) -> None:
    """SQLite hands back bytes Python cannot decode; that refuses this body, never its batch."""
    with pytest.raises(InvalidPayload, match="not UTF-8 JSON"):
        prepare(reader, conn, b'{"action": "\\ud800"}')


@pytest.mark.parametrize("action", [["unhashable"], {"an": "object"}])
def test_a_container_where_a_handler_routes_is_invalid_payload(reader: Reader, conn: sqlite3.Connection,
                                                                action: Any) -> None:
    with pytest.raises(InvalidPayload) as refused:
        prepare(reader, conn, {"action": action})
    assert refused.value.code == "invalid_payload"


def test_an_object_where_a_handler_routes_on_another_key_matches_nothing_and_refuses_nothing(
        reader: Reader, conn: sqlite3.Connection) -> None:
    # A handler routed on label= made every delivery whose label is an object (GitHub's issues.labeled, every
    # pull_request event) a 400, for every handler: GitHub does not retry a 400, so those deliveries were lost.
    labeled = {"action": "labeled", "label": {"name": "bug"}, "issue": {"number": 7}}
    assert prepare(reader, conn, labeled)[1] == ["on_any_issue"]
    assert prepare(reader, conn, {"label": {"name": "bug"}}, "labelled")[1] == []
    assert prepare(reader, conn, {"label": ["bug"]}, "labelled")[1] == []
    assert prepare(reader, conn, {"label": None}, "labelled")[1] == ["on_null_label"]


def test_a_routed_field_nested_deeper_than_json_loads_allows_is_refused(reader: Reader,
                                                                        conn: sqlite3.Connection) -> None:
    body = b'{"action": ' + b"[" * 1500 + b"]" * 1500 + b"}"
    with pytest.raises(InvalidPayload) as refused:
        prepare(reader, conn, body)
    assert refused.value.code == "invalid_payload"
    if isinstance(reader, Batched):  # json.loads cannot read the batch's answer: each delivery is read alone
        assert len(reader.statements) == 1 + 3


def test_a_batch_is_read_with_one_statement(conn: sqlite3.Connection) -> None:
    router = routing.Router()
    router.add(on_opened, "issues", action="opened")
    batched = Batched(FieldReader(HandlerRegistry.from_routers([router])))
    bodies = [(FIXTURES / name).read_bytes() for name in ("issues.opened.json", "pull_request.opened.2.json")]
    arrivals = [Arrival(f"d-{n}", "issues", body, 1.0) for n, body in enumerate([*bodies, b"[]", b"\xff", b"{"] * 3)]

    conn.set_trace_callback(batched.statements.append)
    results = batched.reader.prepare_all(conn, arrivals)
    conn.set_trace_callback(None)

    assert len(batched.statements) == 1 and "json_group_array" in batched.statements[0]
    for n, (arrival, result) in enumerate(zip(arrivals, results, strict=True)):
        if n % 5 < 2:
            assert result == batched.reader.prepare(conn, arrival)
        else:
            assert isinstance(result, InvalidPayload) and result.code == "invalid_json"


def test_a_container_under_an_unrouted_key_is_fine(reader: Reader, conn: sqlite3.Connection) -> None:
    record, handlers, _ = prepare(reader, conn, {"action": "opened", "sender": {"login": "x"}, "list": [1]})
    assert handlers == ["on_any_issue", "on_opened"] and record.action == "opened"


@pytest.mark.parametrize("installation", [2**64, -(2**63) - 1, True, "42", 4.0, None])
def test_an_installation_id_that_is_no_64_bit_integer_is_not_one(reader: Reader, conn: sqlite3.Connection,
                                                                  installation: Any) -> None:
    record, _, key = prepare(reader, conn, {"action": "x", "installation": {"id": installation}})
    assert record.installation_id is None and key == "delivery:d-1"


def test_the_first_of_repeated_keys_is_read(reader: Reader, conn: sqlite3.Connection) -> None:
    """Documented difference: json.loads keeps the last; GitHub never repeats a key."""
    record, handlers, _ = prepare(reader, conn, b'{"action": "opened", "action": "closed"}')
    assert record.action == "opened" and handlers == ["on_any_issue", "on_opened"]


@pytest.mark.parametrize("key", ['say "hi"', "it's", "back\\slash"])
def test_a_routed_key_no_json_path_can_name_stops_start_up(key: str) -> None:
    router = routing.Router()
    router.add(on_flag, "custom", **{key: 1})
    with pytest.raises(PluginError, match="routed by the payload key"):  # the CLI prints it and exits 2
        FieldReader(HandlerRegistry.from_routers([router]))


def test_a_routed_key_with_spaces_and_dots_is_read_as_one_label(conn: sqlite3.Connection) -> None:
    router = routing.Router()
    router.add(on_flag, "custom", **{"a.b c": "x"})
    reader = FieldReader(HandlerRegistry.from_routers([router]))
    assert prepare(reader, conn, {"a.b c": "x"}, event="custom")[1] == ["on_flag"]
    assert prepare(reader, conn, {"a": {"b c": "x"}}, event="custom")[1] == []
