"""JUnit reports: corpus results, status and TID rules, hostile XML refused (RELIABILITY XML)."""

from __future__ import annotations

import io
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from quantumreview.analysis import junit
from quantumreview.analysis.junit import (
    JUnitReport,
    ReportUnreadable,
    merge_reports,
    parse_junit,
    tid_outcome,
)
from quantumreview.analysis.test_ids import classname_tid, name_tid
from quantumreview.analysis.xml_prolog import refuse_doctype
from quantumreview.errors import PermanentError

CORPUS = Path(__file__).parent / "fixtures" / "junit"
GENERATED = sorted((CORPUS / "generated").glob("*.xml"))
WILD = json.loads((CORPUS / "wild" / "index.json").read_text())
CANARY = "CANARY-7d1e-secret"


def summary(report: JUnitReport) -> dict[str, object]:
    return {
        "tests": report.tests,
        "failures": report.failures,
        "errors": report.errors,
        "skipped": report.skipped,
        "by_tid": dict(report.by_tid),
    }


def suite(*cases: str, root: str = "testsuites") -> bytes:
    body = "".join(cases)
    return f'<?xml version="1.0"?><{root}><testsuite name="s">{body}</testsuite></{root}>'.encode()


# --- the corpus -------------------------------------------------------------------------------


@pytest.mark.parametrize("report", GENERATED, ids=lambda path: path.name)
def test_generated_report_matches_its_expected_results(report: Path) -> None:
    expected = json.loads(report.with_suffix(".expected.json").read_text())

    if expected.pop("well_formed", True) is False:
        with pytest.raises(ReportUnreadable, match="report unreadable"):
            parse_junit(report)
    else:
        assert summary(parse_junit(report)) == expected


def test_corpus_has_the_documented_generated_reports() -> None:
    assert len(GENERATED) == 54


@pytest.mark.parametrize("entry", WILD, ids=lambda entry: entry["file"].removeprefix("sources/"))
def test_wild_report_parses_or_is_reported_unreadable(entry: dict[str, str]) -> None:
    path = CORPUS / "wild" / entry["file"]
    try:
        report = parse_junit(path)
    except ReportUnreadable as exc:
        assert str(exc).startswith("report unreadable: ")
        return
    assert entry["category"] not in ("broken", "security", "not-junit")
    assert report.tests >= 0 and report.failures + report.errors + report.skipped <= report.tests


@pytest.mark.parametrize("category", ["broken", "security", "not-junit"])
def test_wild_files_that_are_not_reports_are_unreadable(category: str) -> None:
    files = [entry["file"] for entry in WILD if entry["category"] == category]

    assert files
    for name in files:
        with pytest.raises(ReportUnreadable):
            parse_junit(CORPUS / "wild" / name)


def test_bytes_and_path_give_the_same_report() -> None:
    path = CORPUS / "generated" / "pytest-xunit1.xml"

    assert parse_junit(path.read_bytes()) == parse_junit(path)


# --- statuses, TIDs, messages -------------------------------------------------------------------


def test_status_precedence_is_error_then_failure_then_skipped() -> None:
    report = parse_junit(
        suite(
            '<testcase name="T1::a"><skipped/><failure/><error/></testcase>',
            '<testcase name="T2::b"><skipped/><failure/></testcase>',
            '<testcase name="T3::c"><system-out>x</system-out><skipped/></testcase>',
            '<testcase name="T4::d"><properties/><warning/></testcase>',
        )
    )

    assert dict(report.by_tid) == {"T1": "error", "T2": "failed", "T3": "skipped", "T4": "passed"}
    assert (report.tests, report.errors, report.failures, report.skipped) == (4, 1, 1, 1)


@pytest.mark.parametrize("child", ["rerunFailure", "flakyFailure", "rerunError", "flakyError"])
def test_rerun_and_flaky_children_leave_a_passed_case_passed(child: str) -> None:
    report = parse_junit(suite(f'<testcase name="T1::a"><{child} message="first try"/></testcase>'))

    assert dict(report.by_tid) == {"T1": "passed"} and report.failures == report.errors == 0


def test_rerun_children_do_not_hide_a_final_failure() -> None:
    report = parse_junit(suite('<testcase name="T1::a"><rerunFailure/><failure message="still"/></testcase>'))

    assert dict(report.by_tid) == {"T1": "failed"}


def test_tid_status_over_several_cases_is_worst_and_skipped_only_if_all_skipped() -> None:
    report = parse_junit(
        suite(
            '<testcase name="T1::a"/>', '<testcase name="T1::b"><skipped/></testcase>',
            '<testcase name="T2::a"><skipped/></testcase>', '<testcase name="T2::b"><skipped/></testcase>',
            '<testcase name="T3::a"/>', '<testcase name="T3::b"><failure/></testcase>',
            '<testcase name="T3::c"><error/></testcase>',
        )
    )

    assert dict(report.by_tid) == {"T1": "passed", "T2": "skipped", "T3": "error"}


@pytest.mark.parametrize(
    ("name", "classname", "tids"),
    [
        ("T1::test_x", "", {"T1"}),
        ("signup T1::test_x", "", {"T1"}),
        ("TestSignup/T1::test_x", "", {"T1"}),
        ('testEmail with data set "T1::x"', "", {"T1"}),
        ("test_0001_T4::x", "", {"T4"}),
        ("XT1::x", "", set()),
        ("T1_test_x", "", set()),
        ("", "autoqa:T4", {"T4"}),
        ("", "checkout.autoqa:T8", {"T8"}),
        ("", "autoqa:T8 > checkout", {"T8"}),
        ("", "autoqa_T4", set()),
        ("T1::x", "autoqa:T2", {"T1", "T2"}),
        ("T1::x", "autoqa:T1", {"T1"}),
        ("test_T1_login", "tests.test_auth", {"T1"}),
        ("test_T1_login[a-b]", "", {"T1"}),
        ("Test_T1_login/sub", "", {"T1"}),
        ("test_T1_login()", "", {"T1"}),
        ("TestT1Login", "", set()),
        ("testT1Login", "", set()),
        ("test_T1login", "", set()),
        ("my_test_T1_x", "", set()),
        ("T01::x", "", {"T1"}),
        ("test_T007_x", "", {"T7"}),
        ("", "autoqa:T04", {"T4"}),
    ],
)
def test_tids_are_read_from_name_and_classname(name: str, classname: str, tids: set[str]) -> None:
    report = parse_junit(suite(f'<testcase name="{name.replace(chr(34), "&quot;")}" classname="{classname}"/>'))

    assert set(report.by_tid) == tids


def test_leading_zeros_and_every_form_count_for_the_same_id() -> None:
    """`T01::` matched no criterion T1 anywhere, so its failure left T1 "missing" or judged by other tests alone."""
    report = parse_junit(suite('<testcase name="T1::a"/>', '<testcase name="T01::b"><failure/></testcase>',
                               '<testcase name="test_T002_c"/>', '<testcase name="x" classname="autoqa:T0002"/>',
                               '<testcase name="test_T3_d"><error message="boom"/></testcase>'))

    assert dict(report.by_tid) == {"T1": "failed", "T2": "passed", "T3": "error"}
    assert [(case.tid, case.name, case.message) for case in report.failing] == [("T1", "T01::b", ""),
                                                                                  ("T3", "test_T3_d", "boom")]


def test_classname_tid_needs_whole_number() -> None:
    report = parse_junit(suite('<testcase name="a" classname="autoqa:T12"/>'))

    assert dict(report.by_tid) == {"T12": "passed"}


def test_failure_message_is_kept_for_failing_tid_cases_only() -> None:
    report = parse_junit(
        suite(
            '<testcase name="T2::a" classname="c"><failure message="expected &lt;min-length&gt;">trace</failure>'
            "</testcase>",
            '<testcase name="T3::b"><error>could not connect &amp; retry failed</error></testcase>',
            '<testcase name="untagged"><failure message="ignored"/></testcase>',
            '<testcase name="T5::c"><skipped message="not here"/></testcase>',
        )
    )

    assert [(case.tid, case.status, case.name, case.classname, case.message) for case in report.failing] == [
        ("T2", "failed", "T2::a", "c", "expected <min-length>"),
        ("T3", "error", "T3::b", "", "could not connect & retry failed"),
    ]


def test_long_failure_message_is_cut_to_about_one_kilobyte() -> None:
    report = parse_junit(suite(f'<testcase name="T1::a"><failure>{"x" * 50_000}</failure></testcase>'))

    (case,) = report.failing
    assert len(case.message) == junit.MESSAGE_LIMIT and case.message.endswith("…")


def test_distinct_test_ids_past_the_cap_are_ignored_and_flagged() -> None:
    """A 64 MiB report of distinct IDs held ~300 MB in by_tid and stored a 50 MB results row per run."""
    cases = [f'<testcase name="T{n}::a"/>' for n in range(1, junit.MAX_TIDS + 1000)]
    cases += [f'<testcase name="T{n}::late"><failure/></testcase>' for n in range(90000, 90100)]
    cases += ['<testcase classname="autoqa:T88888888"/>']
    body = suite(*cases)

    report = parse_junit(body)

    assert len(report.by_tid) == junit.MAX_TIDS and report.tests == junit.MAX_TIDS + 1100
    assert report.failures == 100 and {case.tid for case in report.failing} <= set(report.by_tid)
    assert report.tids_ignored and merge_reports([JUnitReport(), report]).tids_ignored
    assert parse_junit(body) == report  # the same IDs are kept every time


def test_a_test_id_longer_than_any_criterion_id_is_ignored_and_flagged() -> None:
    long_tid = "T" + "7" * 100_000
    report = parse_junit(suite(f'<testcase name="{long_tid}::a"><failure/></testcase>',
                               f'<testcase classname="autoqa:{long_tid}" name="T1::b"/>'))

    assert dict(report.by_tid) == {"T1": "passed"} and report.failing == () and report.tids_ignored


def test_a_test_id_at_the_length_cap_is_kept() -> None:
    tid = "T" + "1" * (junit.MAX_TID_LENGTH - 1)
    report = parse_junit(suite(f'<testcase name="{tid}::a"/>'))

    assert dict(report.by_tid) == {tid: "passed"} and not report.tids_ignored


def test_huge_testcase_names_are_cut_in_failing_cases() -> None:
    huge = f'<testcase name="T1::{"n" * 100_000}" classname="{"c" * 100_000}"><failure/></testcase>'

    report = parse_junit(suite(huge))

    (case,) = report.failing
    assert len(case.name) == len(case.classname) == junit.MESSAGE_LIMIT
    assert dict(report.by_tid) == {"T1": "failed"}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("error", "failed"), ("failed", "failed"), ("passed", "passed"), ("skipped", "skipped")],
)
def test_tid_outcome_maps_error_to_failed(status: junit.Status, outcome: str) -> None:
    assert tid_outcome(status) == outcome


def test_tid_outcome_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        tid_outcome("bogus")  # type: ignore[arg-type]


# --- shapes ------------------------------------------------------------------------------------


def test_bare_testsuite_root_and_nested_suites_count_every_testcase() -> None:
    nested = (
        b'<testsuite name="top"><testcase name="T1::a"/>'
        b'<testsuite name="inner"><testsuite name="deeper"><testcase name="T7::b"><failure/></testcase>'
        b"</testsuite></testsuite><testcase name=\"T1::c\"/></testsuite>"
    )

    report = parse_junit(nested)

    assert report.tests == 3 and dict(report.by_tid) == {"T1": "passed", "T7": "failed"}


def test_testcase_nested_in_a_testcase_keeps_the_outer_status() -> None:
    report = parse_junit(
        suite('<testcase name="T1::outer"><failure/><testcase name="T2::inner"/></testcase>')
    )

    assert report.tests == 2 and dict(report.by_tid) == {"T1": "failed", "T2": "passed"}


def test_namespaced_testcases_are_counted() -> None:
    report = parse_junit(
        b'<testsuites xmlns="urn:x"><testsuite><testcase name="T1::a"><failure/></testcase></testsuite></testsuites>'
    )

    assert report.tests == 1 and dict(report.by_tid) == {"T1": "failed"}


def test_empty_testsuites_is_an_empty_report() -> None:
    assert parse_junit(b"<testsuites/>") == JUnitReport()


def test_thousands_of_cases_in_one_suite_survive_pruning() -> None:
    cases = "".join(
        f'<testcase name="T{i % 7}::c{i}">{"<failure/>" if i == 999 else ""}</testcase>' for i in range(3000)
    )
    report = parse_junit(suite(cases))

    assert report.tests == 3000 and report.failures == 1 and dict(report.by_tid)["T5"] == "failed"


def test_several_reports_merge_as_one() -> None:
    first = parse_junit(suite('<testcase name="T1::a"/>', '<testcase name="T2::a"><skipped/></testcase>'))
    second = parse_junit(
        suite('<testcase name="T1::b"><failure message="m"/></testcase>', '<testcase name="T2::b"/>')
    )

    merged = merge_reports([first, second])

    assert summary(merged) == {
        "tests": 4, "failures": 1, "errors": 0, "skipped": 1, "by_tid": {"T1": "failed", "T2": "passed"},
    }
    assert [case.tid for case in merged.failing] == ["T1"]


def test_merging_nothing_gives_an_empty_report() -> None:
    assert merge_reports([]) == JUnitReport()


def test_twenty_megabyte_system_out_parses(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    with path.open("wb") as out:
        out.write(b'<testsuites><testsuite><testcase name="T1::a"><failure message="m"/><system-out>')
        out.write(b"log line\n" * (20 * 1024 * 1024 // 9 + 1))
        out.write(b'</system-out></testcase><testcase name="T2::b"/></testsuite></testsuites>')

    report = parse_junit(path)

    assert path.stat().st_size > 20 * 1024 * 1024
    assert dict(report.by_tid) == {"T1": "failed", "T2": "passed"}


@pytest.mark.parametrize(
    ("body", "tid"),
    [
        ('<?xml version="1.0" encoding="UTF-16"?><testsuite><testcase name="T1::ü"/></testsuite>'.encode("utf-16"),
         "T1"),
        ('<?xml version="1.0" encoding="ISO-8859-1"?><testsuite><testcase name="T2::ü"/></testsuite>'.encode(
            "latin-1"), "T2"),
        ('\ufeff<testsuite><testcase name="T3::ü"/></testsuite>'.encode(), "T3"),
    ],
    ids=["utf-16-bom", "latin-1-declared", "utf-8-bom"],
)
def test_declared_encodings_are_honoured(body: bytes, tid: str) -> None:
    assert dict(parse_junit(body).by_tid) == {tid: "passed"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty or truncated"),
        (b"   \n  ", "empty or truncated"),
        (b"Running tests...\n<testsuite/>", "not XML"),
        (b"\x1f\x8b\x08\x00gzipped", "not XML"),
        (b"<testsuite><testcase name='a'>", "not well-formed"),
        (b"<testsuite/><testsuite/>", "not well-formed"),
        ('<?xml version="1.0" encoding="UTF-8"?><testsuite name="é"/>'.encode("latin-1"), "not well-formed"),
        (b"<test-results/>", "not a JUnit report"),
        (b"<a>" * 5000 + b"</a>" * 5000, "not well-formed"),
    ],
    ids=["empty", "blank", "text-before", "gzip", "truncated", "two-roots", "bad-utf8", "nunit", "depth-5000"],
)
def test_bad_reports_are_unreadable_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ReportUnreadable, match=reason) as caught:
        parse_junit(body)

    assert isinstance(caught.value, PermanentError) and caught.value.code == "report_unreadable"


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ReportUnreadable, match="cannot read file"):
        parse_junit(tmp_path / "absent.xml")


# --- hostile XML -------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b"<!ENTITY lol%d \"%s\">" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)
    )
    + b']><testsuite><testcase name="T1::a"><failure message="&lol9;">&lol9;</failure></testcase></testsuite>'
)
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "' + b"x" * 100_000 + b'">]><testsuite><testcase name="T1::a">'
    b"<failure>" + b"&a;" * 20_000 + b"</failure></testcase></testsuite>"
)


@pytest.mark.parametrize("bomb", [BILLION_LAUGHS, QUADRATIC], ids=["billion-laughs", "quadratic-blowup"])
def test_entity_bombs_are_refused_in_under_a_second(bomb: bytes) -> None:
    started = time.perf_counter()

    with pytest.raises(ReportUnreadable, match="DOCTYPE"):
        parse_junit(bomb)

    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("bomb", [BILLION_LAUGHS, QUADRATIC], ids=["billion-laughs", "quadratic-blowup"])
def test_entity_bombs_stay_small_even_past_the_doctype_check(bomb: bytes) -> None:
    """Defence in depth: the streaming parser itself never expands entities."""
    started = time.perf_counter()
    try:
        report = junit._scan(io.BytesIO(bomb))
    except ReportUnreadable:
        pass
    else:
        assert all(len(case.message) <= junit.MESSAGE_LIMIT for case in report.failing)
    assert time.perf_counter() - started < 1


@pytest.fixture
def canary_file(tmp_path: Path) -> Path:
    path = tmp_path / "canary.txt"
    path.write_text(CANARY)
    return path


def xxe_documents(target: str) -> list[bytes]:
    return [
        f'<!DOCTYPE t [<!ENTITY x SYSTEM "{target}">]><testsuite><testcase name="T1::a"><failure>&x;</failure>'
        f"</testcase></testsuite>".encode(),
        f'<!DOCTYPE t [<!ENTITY % p SYSTEM "{target}"> %p;]><testsuite><testcase name="T1::a"><failure/>'
        f"</testcase></testsuite>".encode(),
        f'<!DOCTYPE testsuite SYSTEM "{target}"><testsuite><testcase name="T1::a"><failure>&x;</failure>'
        f"</testcase></testsuite>".encode(),
        f'<testsuite xmlns:xi="http://www.w3.org/2001/XInclude"><testcase name="T1::a"><failure>'
        f'<xi:include href="{target}" parse="text"/></failure></testcase></testsuite>'.encode(),
    ]


def test_external_file_entities_never_leak_the_file(canary_file: Path) -> None:
    for document in xxe_documents(canary_file.as_uri()):
        try:
            report = parse_junit(document)
        except ReportUnreadable as exc:
            assert CANARY not in str(exc)
            continue
        assert CANARY not in repr(report)  # only the XInclude form parses: it must stay unprocessed


def test_external_file_entities_never_leak_even_past_the_doctype_check(canary_file: Path) -> None:
    for document in xxe_documents(canary_file.as_uri()):
        try:
            report = junit._scan(io.BytesIO(document))
        except ReportUnreadable as exc:
            assert CANARY not in str(exc)
            continue
        assert CANARY not in repr(report)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[int]]]:
    """A real TCP listener on 127.0.0.1 that counts connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.05)
    accepts = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepts[0] += 1
            conn.sendall(b'HTTP/1.0 200 OK\r\n\r\n<!ENTITY x "' + CANARY.encode() + b'">')
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/x.dtd", accepts
    stop.set()
    thread.join()
    server.close()


def test_listener_fixture_does_count_connections(listener: tuple[str, list[int]]) -> None:
    url, accepts = listener
    port = int(url.split(":")[2].split("/")[0])
    socket.create_connection(("127.0.0.1", port)).close()
    deadline = time.monotonic() + 2
    while accepts[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert accepts[0] == 1


def test_network_dtds_and_entities_never_connect(listener: tuple[str, list[int]]) -> None:
    url, accepts = listener
    for document in xxe_documents(url):
        for read in (parse_junit, lambda body: junit._scan(io.BytesIO(body))):
            try:
                report = read(document)
            except ReportUnreadable:
                continue
            assert CANARY not in repr(report)
    time.sleep(0.2)  # give a late connection time to be counted

    assert accepts[0] == 0


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report pytest's peak.
MEMORY_PROBE = """
import re, sys
from pathlib import Path
from lxml import etree
from quantumreview.analysis.junit import parse_junit
def peak_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
before = peak_kb()
if sys.argv[2] == "parse_junit":
    parse_junit(Path(sys.argv[1]))
else:
    etree.parse(sys.argv[1])
print((peak_kb() - before) / 1024)
"""


def test_memory_stays_flat_on_a_big_report(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    with path.open("w") as out:
        out.write("<testsuites><testsuite>")
        for i in range(20_000):
            out.write(f'<testcase name="T{i % 50}::c{i}"><system-out>{"log line " * 60}</system-out></testcase>')
        out.write("</testsuite></testsuites>")

    def peak_growth_mb(reader: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(path), reader], check=True, capture_output=True, text=True
        )
        return float(done.stdout)

    assert peak_growth_mb("full_tree") > 20  # the probe does see a reader that keeps the whole tree
    assert peak_growth_mb("parse_junit") < 8


# --- chunked feeding: finished testcases are tallied and freed between chunks --------------------


def reference_summary(body: bytes) -> dict[str, object]:
    """The same rules over a whole in-memory tree: what the streaming reader must agree with."""
    rank_of = {"skipped": 1, "failure": 2, "error": 3}
    tid_rank: dict[str, int] = {}
    counts = [0, 0, 0, 0]
    for case in etree.fromstring(body).iter("{*}testcase"):
        rank = 0
        for child in case:
            rank = max(rank, rank_of.get(etree.QName(child).localname, 0))
        counts[rank] += 1
        tids = {name_tid(case.get("name") or ""), classname_tid(case.get("classname") or "")} - {None}
        for tid in tids:
            tid_rank[tid] = max(tid_rank.get(tid, -1), (1, 0, 2, 3)[rank])
    statuses = ("skipped", "passed", "failed", "error")
    return {
        "tests": sum(counts), "failures": counts[2], "errors": counts[3], "skipped": counts[1],
        "by_tid": {tid: statuses[rank] for tid, rank in tid_rank.items()},
    }


def random_report(rng: random.Random) -> bytes:
    ns = rng.choice(["", ' xmlns="urn:x"'])

    def case(depth: int) -> str:
        name = rng.choice(["T{n}::t{i}", "x T{n}::t{i}", "a::b T{n}::c{i}", "T{n}::a T9{n}::b", "plain{i}", "XT{n}::y",
                           "test_T{n}_x{i}", "T0{n}::z", "testT{n}_no", "test_T{n}_a T9{n}::b"])
        attrs = f'name="{name.format(n=rng.randrange(6), i=rng.randrange(10**6))}"'
        if rng.random() < 0.3:
            attrs += f' classname="pkg.autoqa:T{rng.choice(["", "0"])}{rng.randrange(8)}.C"'
        children = [
            rng.choice(["<system-out>" + "log " * rng.choice([1, 50, 20000]) + "</system-out>", "<system-err/>",
                        '<skipped message="s"/>', '<failure message="f">trace</failure>', "<error>e</error>",
                        "<rerunFailure/>", "<properties><property name='p' value='v'/></properties>"])
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))
        ]
        if depth < 2 and rng.random() < 0.05:
            children.insert(rng.randrange(len(children) + 1), case(depth + 1))
        return f"<testcase {attrs}>{''.join(children)}</testcase>" if children else f"<testcase {attrs}/>"

    def suite(depth: int) -> str:
        parts = [case(0) for _ in range(rng.randrange(40))]
        if depth < 2 and rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts) + 1), suite(depth + 1))
        if rng.random() < 0.3:
            parts.insert(0, "<properties><property name='a' value='b'/></properties>")
        return f"<testsuite>{''.join(parts)}</testsuite>"

    if rng.random() < 0.3:
        return f"<testsuite{ns}>{suite(1)[11:-12]}</testsuite>".encode()
    return f"<testsuites{ns}>{''.join(suite(0) for _ in range(rng.randrange(1, 4)))}</testsuites>".encode()


@pytest.mark.parametrize("chunk", [1, 7, 4096, junit.CHUNK])
def test_any_chunking_agrees_with_a_whole_tree_reading(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(junit, "CHUNK", chunk)
    rng = random.Random(chunk)
    for _ in range(12 if chunk > 1 else 3):
        body = random_report(rng)

        assert summary(parse_junit(body)) == reference_summary(body)


def test_a_case_whose_result_comes_after_chunks_of_output_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "late.xml"
    path.write_bytes(
        b'<testsuites><testsuite><testcase name="T1::a"><system-out>'
        + b"x" * (5 * junit.CHUNK)
        + b'</system-out><failure message="late"/></testcase><testcase name="T2::b"/></testsuite></testsuites>'
    )

    report = parse_junit(path)

    assert dict(report.by_tid) == {"T1": "failed", "T2": "passed"}
    assert [case.message for case in report.failing] == ["late"]


def test_only_the_first_tid_of_a_passed_name_counts() -> None:
    report = parse_junit(suite('<testcase name="T1::a T2::b"/>', '<testcase name="a::b T3::c"/>'))

    assert dict(report.by_tid) == {"T1": "passed", "T3": "passed"}


@pytest.mark.parametrize(
    ("prolog", "reason"),
    [
        (b"<!--" + b"c" * 300_000 + b"--><!DOCTYPE t []>", "DOCTYPE"),
        (b"<?pi " + b"p" * 200_000 + b"?>\n<!-- split -->\n<!DOCTYPE t>", "DOCTYPE"),
        (b"<!--" + b"c" * (junit.PROLOG_READ + 10) + b"-->", "prolog longer than 1 MiB"),
    ],
    ids=["after-long-comment", "after-long-pi", "endless-comment"],
)
def test_a_doctype_past_the_first_chunk_is_still_refused(prolog: bytes, reason: str) -> None:
    with pytest.raises(ReportUnreadable, match=reason):
        parse_junit(prolog + b'<testsuite><testcase name="T1::a"/></testsuite>')


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_comment_split_across_prolog_reads_is_not_mistaken_for_a_declaration(
    monkeypatch: pytest.MonkeyPatch, cut: int
) -> None:
    monkeypatch.setattr(junit, "CHUNK", cut)

    assert parse_junit(b'<?xml version="1.0"?><!-- c --><testsuite><testcase name="T1::a"/></testsuite>').tests == 1


COMMENTED = (
    '<testsuites><!-- a --><testsuite name="s"><!-- b -->'
    '<testcase name="T1::a" classname="c"><!-- c --><failure>first <!-- d -->second</failure></testcase>'
    '<testcase name="T2::b"><!-- e --><system-out>out</system-out></testcase>'
    '<testcase name="x" classname="k.autoqa:T3"><skipped/><!-- f --></testcase>'
    "</testsuite><!-- g --></testsuites>"
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "iso-8859-1", "utf-16"])
@pytest.mark.parametrize("chunk", [7, 64, 1 << 16])
def test_comments_anywhere_change_nothing_in_any_encoding(
    monkeypatch: pytest.MonkeyPatch, encoding: str, chunk: int
) -> None:
    """The reader places a comment before the root to find it by (ASCII-compatible encodings) or
    uses start events (UTF-16/32); either way the report's own comments count for nothing."""
    monkeypatch.setattr(junit, "CHUNK", chunk)
    body = f'<?xml version="1.0" encoding="{encoding.removesuffix("-sig")}"?>\n<!-- prolog -->\n{COMMENTED}'
    plain = parse_junit(COMMENTED.replace("<!-- d -->", "").encode())

    report = parse_junit(body.encode(encoding))

    assert dict(report.by_tid) == {"T1": "failed", "T2": "passed", "T3": "skipped"}
    assert (report.tests, report.failures, report.skipped) == (3, 1, 1)
    assert [case.message for case in report.failing] == ["first second"] == [c.message for c in plain.failing]


def test_a_root_start_tag_longer_than_a_chunk_is_found_once_it_ends() -> None:
    """The anchor comment's event comes before the root exists; the root is looked up again later."""
    long_attr = "v" * (3 * junit.CHUNK)
    body = f'<testsuites name="{long_attr}">' + '<testcase name="T1::a"/>' * 5000 + "</testsuites>"

    report = parse_junit(body.encode())

    assert (report.tests, dict(report.by_tid)) == (5000, {"T1": "passed"})


def test_the_anchor_goes_exactly_before_the_root_after_a_bom_and_prolog() -> None:
    body = b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- \xc3\xbc -->\n<testsuite/>'
    head, root_at = refuse_doctype(io.BytesIO(body), junit.CHUNK)

    assert root_at is not None and head[root_at:].startswith(b"<testsuite")
    assert refuse_doctype(io.BytesIO("<testsuite/>".encode("utf-16")), junit.CHUNK)[1] is None


@pytest.mark.parametrize("declaration", ["", '<?xml version="1.0" encoding="UTF-32"?>'])
@pytest.mark.parametrize(("bom", "codec"), [(b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be")])
@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_utf32_with_a_bom_is_read(monkeypatch: pytest.MonkeyPatch, declaration: str, bom: bytes, codec: str,
                                  chunk: int) -> None:
    """libxml2's push parser misses a UTF-32 BOM: such reports (the way Python writes UTF-32) were refused as
    'not well-formed XML: Start tag expected' though libxml2 decodes UTF-32 well."""
    monkeypatch.setattr(junit, "CHUNK", chunk)
    body = bom + f'{declaration}\n<testsuite><testcase name="T1::ü 😀"><failure/></testcase></testsuite>'.encode(codec)

    report = parse_junit(body)

    assert dict(report.by_tid) == {"T1": "failed"} and report.failing[0].name == "T1::ü 😀"


def test_utf32_stateful_declarations_are_still_refused() -> None:
    with pytest.raises(ReportUnreadable, match="encoding 'UTF-7' refused"):
        parse_junit('<?xml version="1.0" encoding="UTF-7"?><testsuite/>'.encode("utf-32"))


@pytest.mark.parametrize("chunk", [4096, 1 << 16])
def test_suites_nested_deeper_than_pythons_recursion_limit_are_read(monkeypatch: pytest.MonkeyPatch,
                                                                     chunk: int) -> None:
    """The tally walks finished suites with a stack, not recursion (libxml2's huge_tree allows 2,048 levels)."""
    monkeypatch.setattr(junit, "CHUNK", chunk)
    depth = 2000
    body = ("<testsuites>" + "<testsuite>" * depth + '<testcase name="T1::deep"/>' + "</testsuite>" * depth
            + '<testsuite><testcase name="T2::x"><failure message="m"/></testcase></testsuite></testsuites>')

    report = parse_junit(body.encode())

    assert report.tests == 2 and dict(report.by_tid) == {"T1": "passed", "T2": "failed"}


# --- declared encodings the prolog check cannot follow (XML-03) ---------------------------------

ESC = b"\x1b"
PLAIN_SUITE = b'<testsuite><testcase name="T1::a"><failure message="m"/></testcase></testsuite>'


def stateful_wrap(rest: bytes, encoding: bytes = b"CP50221") -> bytes:
    """The audit's bypass: read one byte per character this looks like a PI and then the root
    element; libxml2, decoding ISO-2022-JP, is still inside the PI and then sees `rest` as prolog."""
    return b'<?xml version="1.0" encoding="' + encoding + b'"?><?a ' + ESC + b"$B?><Te" + ESC + b"(B?>" + rest


@pytest.mark.parametrize(
    "encoding", [b"CP50221", b"ISO-2022-JP", b"iso-2022-jp-2", b"UTF-7", b"HZ-GB-2312", b"IBM037", b"Shift_JIS"]
)
def test_encodings_the_prolog_check_cannot_follow_are_refused(encoding: bytes) -> None:
    with pytest.raises(ReportUnreadable, match=r"encoding .* refused"):
        parse_junit(stateful_wrap(b'<!DOCTYPE testsuite [<!ENTITY e "T7">]>' + PLAIN_SUITE, encoding))


def test_the_bypass_document_without_a_doctype_is_refused_too() -> None:
    """Refused for its encoding, not for what follows: the check cannot know what libxml2 will see."""
    with pytest.raises(ReportUnreadable, match="'CP50221' refused"):
        parse_junit(stateful_wrap(PLAIN_SUITE))


def test_an_entity_in_an_attribute_never_expands() -> None:
    """libxml2 expands entities in attribute values whatever resolve_entities says, and with
    huge_tree that is a quadratic blowup: the DOCTYPE must never reach it, under any declaration."""
    bomb = b'<!DOCTYPE t [<!ENTITY a "' + b"T7::" + b"y" * (1 << 20) + b'">]><testsuite>' \
        b'<testcase name="&a;"><failure message="' + b"&a;" * 200 + b'"/></testcase></testsuite>'
    started = time.perf_counter()
    for document in (stateful_wrap(bomb), b'<?xml version="1.0" encoding="UTF-8"?>' + bomb):
        with pytest.raises(ReportUnreadable, match="refused"):
            parse_junit(document)
    assert time.perf_counter() - started < 1
    # Without a DOCTYPE the reference is undefined: an error, never an expansion.
    with pytest.raises(ReportUnreadable, match="not well-formed"):
        parse_junit(b'<testsuite><testcase name="&a;"/></testsuite>')


@pytest.mark.parametrize(
    "declaration",
    [b'encoding="utf-8"', b"encoding='UTF8'", b'encoding = "US-ASCII"', b'encoding="ISO-8859-15"',
     b'encoding="iso_8859-1"', b'encoding="latin1"', b'encoding="windows-1252"', b'encoding="CP1250"'],
)
def test_ascii_exact_encodings_are_still_read(declaration: bytes) -> None:
    body = b'<?xml version="1.0" ' + declaration + b' standalone="yes"?><testsuite><testcase name="T1::a"/></testsuite>'

    assert dict(parse_junit(body).by_tid) == {"T1": "passed"}


@pytest.mark.parametrize(
    "declaration",
    [b'encoding="UTF-8" encoding="UTF-7"', b"encoding=UTF-7", b'ENCODING="UTF-7" encoding="UTF-8"'],
)
def test_declarations_that_do_not_parse_cleanly_are_refused(declaration: bytes) -> None:
    with pytest.raises(ReportUnreadable, match="encoding"):
        parse_junit(b'<?xml version="1.0" ' + declaration + b"?>" + PLAIN_SUITE)


def test_a_wide_document_may_declare_its_own_encoding_but_not_a_stateful_one() -> None:
    body = '<?xml version="1.0" encoding="{}"?><testsuite><testcase name="T1::a"/></testsuite>'

    assert dict(parse_junit(body.format("UTF-16").encode("utf-16")).by_tid) == {"T1": "passed"}
    with pytest.raises(ReportUnreadable, match="'UTF-7' refused"):
        parse_junit(body.format("UTF-7").encode("utf-16"))
