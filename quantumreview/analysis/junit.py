"""Read JUnit XML reports into results per test ID, streaming, with DTDs and entities refused."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from lxml import etree

from quantumreview.errors import PermanentError

Status = Literal["passed", "failed", "error", "skipped"]
Outcome = Literal["passed", "failed", "skipped"]

NAME_TID = re.compile(r"(?<![A-Za-z0-9])(T[0-9]+)::")
CLASS_TID = re.compile(r"autoqa:(T[0-9]+)(?![0-9])")
MESSAGE_LIMIT = 1024
FAILING_LIMIT = 1000
PROLOG_READ = 1 << 20
JUNIT_ROOTS = frozenset({"testsuites", "testsuite"})
# One TID over several testcases: error > failed > passed > skipped (skipped only if all were).
_RANK: dict[Status, int] = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}
_SPACE = re.compile(r"[ \t\r\n]*")
_ROOT_START = re.compile(r"<[A-Za-z_:\u0080-\uffff]")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_BARE_STARTS = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)
# Within one testcase a <skipped> child beats no result child; rerun/flaky children count for nothing.
_CHILD_RANK: dict[str, int] = {"skipped": 1, "failure": 2, "error": 3}
_EVENT_TAGS = ("{*}testcase", "{*}skipped", "{*}failure", "{*}error")
_NO_RESULT: tuple[int, Any] = (0, None)
# Most runners put the TID first: an anchored match is cheaper than a search, and is the first match.
_TID_AT_START = re.compile(r"(T[0-9]+)::")
_BY_CASE_RANK: tuple[Status, ...] = ("passed", "skipped", "failed", "error")
_BY_TID_RANK: tuple[Status, ...] = ("skipped", "passed", "failed", "error")
PRUNE_EVERY = 256
CLASSNAME_CACHE = 4096
_TID_RANK_OF_CASE_RANK = (1, 0, 2, 3)
_UNSEEN = "?"  # a cache value is a TID or None, never this


class ReportUnreadable(PermanentError):
    """The report is not well-formed JUnit XML, or was refused as hostile."""

    code = "report_unreadable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"report unreadable: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class FailingCase:
    """A failed or errored testcase that carries a test ID, with its message cut to ~1 KB."""

    tid: str
    status: Status
    name: str
    classname: str
    message: str


@dataclass(frozen=True)
class JUnitReport:
    """Counts over every <testcase> element, the status per test ID, and the failing TID cases."""

    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    by_tid: Mapping[str, Status] = field(default_factory=dict)
    failing: tuple[FailingCase, ...] = ()


def tid_outcome(status: Status) -> Outcome:
    """Map a testcase status to a verdict outcome: an error is a failure."""
    if status in ("error", "failed"):
        return "failed"
    if status == "passed":
        return "passed"
    if status == "skipped":
        return "skipped"
    raise ValueError(f"unknown status {status!r}")


def merge_reports(reports: Iterable[JUnitReport]) -> JUnitReport:
    """Combine several reports as if their testcases were in one file."""
    tests = failures = errors = skipped = 0
    by_tid: dict[str, Status] = {}
    failing: list[FailingCase] = []
    for report in reports:
        tests += report.tests
        failures += report.failures
        errors += report.errors
        skipped += report.skipped
        for tid, status in report.by_tid.items():
            known = by_tid.get(tid)
            if known is None or _RANK[status] > _RANK[known]:
                by_tid[tid] = status
        failing.extend(report.failing[: FAILING_LIMIT - len(failing)])
    return JUnitReport(tests, failures, errors, skipped, by_tid, tuple(failing))


def parse_junit(source: bytes | Path) -> JUnitReport:
    """Parse one JUnit report (bytes or a file path); raise ReportUnreadable for anything else."""
    try:
        with _open(source) as stream:
            _refuse_doctype(stream)
            # libxml2 reads a named file itself, which is faster than feeding it from Python.
            return _scan(stream if isinstance(stream, io.BytesIO) else str(source))
    except OSError as exc:
        raise ReportUnreadable(f"cannot read file: {exc.strerror or type(exc).__name__}") from None


def _open(source: bytes | Path) -> IO[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    return Path(source).open("rb")


def _refuse_doctype(stream: IO[bytes]) -> None:
    """Check the prolog before libxml2 sees it: no DOCTYPE means no entity of any kind."""
    head = stream.read(PROLOG_READ)
    stream.seek(0)
    text = head.decode(_prolog_codec(head), errors="replace").lstrip("\ufeff")
    pos = 0
    while True:
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        if text.startswith(("<?", "<!--"), pos):
            closer = "?>" if text.startswith("<?", pos) else "-->"
            end = text.find(closer, pos + 2)
            if end < 0:
                break
            pos = end + len(closer)
        elif text.startswith("<!", pos):
            raise ReportUnreadable("DOCTYPE or declaration refused (DTDs and entities are never processed)")
        elif _ROOT_START.match(text, pos):
            return
        elif pos < len(text):
            raise ReportUnreadable("not XML (text before the first element)")
        else:
            break
    if len(head) >= PROLOG_READ:
        raise ReportUnreadable("prolog longer than 1 MiB")
    raise ReportUnreadable("empty or truncated document (no root element)")


def _prolog_codec(head: bytes) -> str:
    """Pick a codec that reads the prolog's ASCII markup; the real decoding is libxml2's job."""
    for prefix, codec in _BOMS:
        if head.startswith(prefix):
            return codec
    for start, codec in _BARE_STARTS:
        if head.startswith(start):
            return codec
    return "latin-1"


def _scan(source: IO[bytes] | str) -> JUnitReport:
    """Stream the testcases once, freeing each after reading its status and test IDs."""
    tally = _Tally()
    # huge_tree lets a 20 MB <system-out> through; it is safe only because the DOCTYPE was refused first.
    events = etree.iterparse(
        source,
        events=("end",),
        tag=_EVENT_TAGS,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
        collect_ids=False,
    )
    try:
        root = _consume(events, tally)
    except etree.XMLSyntaxError as exc:
        raise ReportUnreadable(f"not well-formed XML: {exc.msg[:200]}") from None
    except (etree.LxmlError, ValueError, LookupError) as exc:
        raise ReportUnreadable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    root_name = _local(root.tag)
    if root_name not in JUNIT_ROOTS:
        raise ReportUnreadable(f"not a JUnit report (root element <{root_name[:100]}>)")
    return tally.report()


def _consume(events: etree.iterparse, tally: _Tally) -> Any:
    """Tally every testcase end event; this loop is the hot path, so it inlines the common case.

    Result elements (<error>, <failure>, <skipped>) arrive as their own end events before their
    testcase's, so the testcase's children never need walking: each result is filed under its
    parent and picked up when that parent turns out to be a testcase.
    """
    counts = tally.counts
    tid_rank = tally.tid_rank
    result_rank = _CHILD_RANK
    rank_for_tid = _TID_RANK_OF_CASE_RANK
    tid_at_start = _TID_AT_START.match
    name_tid = NAME_TID.search
    class_tids = tally.class_tids
    results: dict[etree._Element, tuple[int, etree._Element]] = {}
    seen = 0
    for _, element in events:
        tag = element.tag
        found = result_rank.get(tag) if tag != "testcase" else None
        if found is None and tag != "testcase" and "}" in tag:
            found = result_rank.get(_local(tag))
        if found is not None:
            parent = element.getparent()
            if parent is not None and found > results.get(parent, _NO_RESULT)[0]:
                results[parent] = (found, element)
            continue
        case = element
        rank, result = results.pop(case, _NO_RESULT) if results else _NO_RESULT
        counts[rank] += 1
        name = case.get(b"name")
        tid = None
        if name and "::" in name:
            match = tid_at_start(name) or name_tid(name)
            if match:
                tid = match.group(1)
                # Only a status change or a failure message needs the slow path.
                if tid_rank.get(tid, -1) < rank_for_tid[rank] or rank >= 2:
                    tally.record(tid, rank, result, case)
        classname = case.get(b"classname")
        if classname:
            ctid = class_tids.get(classname, _UNSEEN)
            if ctid is _UNSEEN:
                ctid = tally.remember_classname(classname)
            if ctid and ctid != tid and (tid_rank.get(ctid, -1) < rank_for_tid[rank] or rank >= 2):
                tally.record(ctid, rank, result, case)
        if len(case):
            case.clear()  # frees big <system-out> text now; attributes go at the next prune
        seen += 1
        if not seen % PRUNE_EVERY:
            _prune_before(case)
    return events.root


def _prune_before(node: etree._Element) -> None:
    """Delete everything already handled: the earlier siblings of the node and of each ancestor."""
    parent = node.getparent()
    while parent is not None:
        if _local(parent.tag) != "testcase":  # a testcase's own result children are still needed
            del parent[: parent.index(node)]
        node, parent = parent, parent.getparent()


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def _message(result: etree._Element) -> str:
    return _cut((result.get("message") or result.text or result.get("type") or "").strip())


def _cut(text: str) -> str:
    """Keep stored text to about 1 KB: names and messages can be megabytes long."""
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


class _Tally:
    """Running counts while the testcases stream past; counts are indexed by case rank."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0, 0]
        self.tid_rank: dict[str, int] = {}
        self.failing: list[FailingCase] = []
        # A report repeats the same few classnames thousands of times, so their TIDs are cached.
        self.class_tids: dict[str, str | None] = {}

    def remember_classname(self, classname: str) -> str | None:
        """Return the classname's TID (or None) and cache it while the cache is small."""
        match = CLASS_TID.search(classname)
        tid = match.group(1) if match else None
        if len(self.class_tids) < CLASSNAME_CACHE:
            self.class_tids[classname] = tid
        return tid

    def record(self, tid: str, rank: int, result: etree._Element | None, case: etree._Element) -> None:
        """Fold one testcase's status into a TID; keep the message of a failed or errored one."""
        status = _BY_CASE_RANK[rank]
        if self.tid_rank.get(tid, -1) < _TID_RANK_OF_CASE_RANK[rank]:
            self.tid_rank[tid] = _TID_RANK_OF_CASE_RANK[rank]
        if result is not None and rank >= 2 and len(self.failing) < FAILING_LIMIT:
            name, classname = _cut(case.get("name") or ""), _cut(case.get("classname") or "")
            self.failing.append(FailingCase(tid, status, name, classname, _message(result)))

    def report(self) -> JUnitReport:
        """Freeze the running counts into a JUnitReport."""
        passed, skipped, failed, errored = self.counts
        tests = passed + skipped + failed + errored
        by_tid = {tid: _BY_TID_RANK[rank] for tid, rank in self.tid_rank.items()}
        return JUnitReport(tests, failed, errored, skipped, by_tid, tuple(self.failing))
