"""Read JUnit XML reports into results per test ID, streaming, with DTDs and entities refused."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from lxml import etree

from quantumreview.analysis.test_ids import CLASS_TID as CLASS_TID  # re-exported
from quantumreview.analysis.test_ids import MAX_TID_LENGTH as MAX_TID_LENGTH  # re-exported
from quantumreview.analysis.test_ids import NAME_TID as NAME_TID  # re-exported
from quantumreview.analysis.test_ids import NAME_TID_PATTERN, classname_tid
from quantumreview.analysis.xml_prolog import PROLOG_READ as PROLOG_READ  # re-exported
from quantumreview.analysis.xml_prolog import ReportUnreadable as ReportUnreadable  # re-exported
from quantumreview.analysis.xml_prolog import lxml_problem as lxml_problem  # re-exported
from quantumreview.analysis.xml_prolog import refuse_doctype

Status = Literal["passed", "failed", "error", "skipped"]
Outcome = Literal["passed", "failed", "skipped"]

MESSAGE_LIMIT = 1024
FAILING_LIMIT = 1000
# Criteria IDs are T plus at most 9 digits, a hundred or so per issue. Without these caps (and MAX_TID_LENGTH) a
# 64 MiB report of distinct (or megabyte-long) IDs held ~300 MB in by_tid and put a 50 MB results row per run.
# Which names and classnames carry an ID is analysis.test_ids' rule, the one the manifest counts coverage by.
MAX_TIDS = 10_000
JUNIT_ROOTS = frozenset({"testsuites", "testsuite"})
# One TID over several testcases: error > failed > passed > skipped (skipped only if all were).
_RANK: dict[Status, int] = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}
# Within one testcase a <skipped> child beats no result child; rerun/flaky children count for nothing.
# The output children are listed so that the hot loop knows them without a namespace lookup; any tag
# not here (namespaced ones included) takes the general path.
_CHILD_RANK: dict[str, int] = {"skipped": 1, "failure": 2, "error": 3, "system-out": 0, "system-err": 0}
_CASE_TAG = "{*}testcase"
_SUITE_TAGS = ("{*}testsuites", "{*}testsuite")
# Placed before the root element so that its comment event hands over the root; see _scan.
_ANCHOR = b"<!---->"
# libxml2's push parser does not read a UTF-32 BOM (its whole-document parser does); named, the encoding is
# read as the BOM says, which is also how the prolog check read it.
_UTF32_BOMS = {b"\xff\xfe\x00\x00": "UTF-32LE", b"\x00\x00\xfe\xff": "UTF-32BE"}
# NAME_TID's first match in each NUL-led name of a joined batch: the lazy prefix cannot cross a NUL,
# and a NUL before a TID passes the lookbehinds just as the start of a name does. Inside a lookahead
# the match is just the NUL, which makes findall a third cheaper per name. It yields the ID's number.
_FIRST_NAME_TID = re.compile(r"\x00(?=[^\x00]*?" + NAME_TID_PATTERN + ")")
_BY_CASE_RANK: tuple[Status, ...] = ("passed", "skipped", "failed", "error")
_BY_TID_RANK: tuple[Status, ...] = ("skipped", "passed", "failed", "error")
# Bytes fed to libxml2 at a time. Each feed is followed by a tally-and-delete pass, so this bounds the
# unfreed tree: 64 KiB keeps peak RSS near the interpreter's own, and larger chunks were no faster.
CHUNK = 1 << 16
CLASSNAME_CACHE = 4096
_TID_RANK_OF_CASE_RANK = (1, 0, 2, 3)
_UNSEEN = "?"  # a cache value is a TID or None, never this


class FailingCase(NamedTuple):
    """A failed or errored testcase that carries a test ID, with its message cut to ~1 KB.

    A NamedTuple, not a frozen dataclass: one is built per failing case while the report streams
    past, and a frozen dataclass's __init__ costs six times as much.
    """

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
    tids_ignored: bool = False  # IDs past MAX_TIDS distinct ones, or longer than MAX_TID_LENGTH, were not kept


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
    ignored = False
    for report in reports:
        ignored = ignored or report.tids_ignored
        tests += report.tests
        failures += report.failures
        errors += report.errors
        skipped += report.skipped
        for tid, status in report.by_tid.items():
            known = by_tid.get(tid)
            if known is None or _RANK[status] > _RANK[known]:
                by_tid[tid] = status
        failing.extend(report.failing[: FAILING_LIMIT - len(failing)])
    return JUnitReport(tests, failures, errors, skipped, by_tid, tuple(failing), ignored)


def parse_junit(source: bytes | Path) -> JUnitReport:
    """Parse one JUnit report (bytes or a file path); raise ReportUnreadable for anything else."""
    try:
        with _open(source) as stream:
            head, root_at = refuse_doctype(stream, CHUNK)
            return _scan(stream, head, root_at)
    except OSError as exc:
        raise ReportUnreadable(f"cannot read file: {exc.strerror or type(exc).__name__}") from None


def _open(source: bytes | Path) -> IO[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    return Path(source).open("rb")


def _scan(source: IO[bytes], head: bytes = b"", root_at: int | None = None) -> JUnitReport:
    """Feed the report to libxml2 a chunk at a time; after each chunk, tally and free the finished part.

    No per-testcase parser events: those cost more than the parse itself (an iterparse event is a
    C-to-Python round trip per element). After a feed, the only unfinished elements are the last
    child at each level of the tree, so everything before them is complete and can be read in a
    plain loop and then deleted, which keeps memory flat.

    The one event needed is a first element to find the root by. Where the root's byte offset is
    known, a comment placed just before it is that element, and only comments raise events; else
    start events on suites do, at the price of lxml looking at every element's start.
    """
    tally = _Tally()
    if root_at is not None:
        head = head[:root_at] + _ANCHOR + head[root_at:]
    # huge_tree lets a 20 MB <system-out> through (without it libxml2 refuses any text node over 10 MB, and the
    # whole report would be lost). It also lifts libxml2's entity-amplification limit, which is safe only because
    # no DOCTYPE reaches libxml2: the prolog check refuses one, reading only encodings where its reading is exact
    # (analysis.xml_prolog). Memory stays bounded by the member size cap.
    parser = etree.XMLPullParser(
        encoding=_UTF32_BOMS.get(head[:4]),
        events=("comment",) if root_at is not None else ("start",),
        tag=None if root_at is not None else _SUITE_TAGS,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,
        remove_comments=root_at is None,
        remove_pis=True,
        remove_blank_text=True,
        collect_ids=False,
    )
    try:
        root = _feed(parser, source, head, tally)
    except etree.XMLSyntaxError as exc:
        raise ReportUnreadable(f"not well-formed XML: {exc.msg[:200]}") from None
    except (etree.LxmlError, ValueError, LookupError) as exc:
        raise ReportUnreadable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    root_name = _local(root.tag)
    if root_name not in JUNIT_ROOTS:
        raise ReportUnreadable(f"not a JUnit report (root element <{root_name[:100]}>)")
    return tally.report()


def _feed(parser: etree.XMLPullParser, source: IO[bytes], head: bytes, tally: _Tally) -> Any:
    """Feed every chunk, taking finished testcases after each; return the root element."""
    root = anchor = None
    data = head or source.read(CHUNK)
    while data:
        parser.feed(data)
        for _, element in parser.read_events():  # drained every time: a queued event pins its element
            if anchor is None and isinstance(element, etree._Element):
                anchor = element
        if root is None and anchor is not None:  # the root's start tag may end in a later chunk
            root = anchor.getroottree().getroot()
        if root is not None:
            _take_finished(root, tally)
        data = source.read(CHUNK)
    root = parser.close()
    tally.add([root])  # whatever is left was never tallied: tallied elements were deleted
    return root


def _take_finished(root: etree._Element, tally: _Tally) -> None:
    """Tally and delete every finished element: all but the last child along the tree's right edge.

    libxml2 is building inside the last child at each level, so that one is never touched; and an
    open testcase is left whole, since its result children decide its status when it ends.
    """
    node = root
    while True:
        count = len(node)
        if count > 1:
            tally.add(node[: count - 1])  # type: ignore[index]  # lxml-stubs lack slicing
            del node[: count - 1]
        if not count:
            return
        node = node[-1]
        if _local(node.tag) == "testcase":
            return


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def _message(result: etree._Element) -> str:
    return _cut((result.get("message") or _leading_text(result) or result.get("type") or "").strip())


def _leading_text(element: etree._Element) -> str:
    """The text before the first child element, across comments (kept when one anchors the root)."""
    parts = [element.text or ""]
    for child in element[:]:  # type: ignore[index]
        if isinstance(child.tag, str):
            break
        parts.append(child.tail or "")
    return "".join(parts)


def _cut(text: str) -> str:
    """Keep stored text to about 1 KB: names and messages can be megabytes long."""
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _result_of(case: etree._Element) -> tuple[int, etree._Element | None, bool]:
    """The case rank and result element from a testcase's children, and whether any may nest a testcase.

    The worst result child wins; ties keep the first, whose message is the one reported.
    """
    rank, result, deep = 0, None, False
    for child in case[:]:  # type: ignore[index]  # a slice: iterating the element itself builds a tag matcher first
        tag = child.tag
        found = _CHILD_RANK.get(tag)
        if found is None:
            local = _local(tag)
            found = _CHILD_RANK.get(local, 0)
            deep = deep or local == "testcase"
        if found > rank:
            rank, result = found, child
        if len(child):
            deep = True
    return rank, result, deep


class _Tally:
    """Running counts while the testcases stream past; counts are indexed by case rank."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0, 0]
        self.tid_rank: dict[str, int] = {}
        self.failing: list[FailingCase] = []
        # A report repeats the same few classnames thousands of times, so their TIDs are cached.
        self.class_tids: dict[str, str | None] = {}
        # The numbers of TIDs at passed or worse, which a passed case cannot change (numbers, as the batch
        # regex yields them: no "T" is joined per name), and classnames whose TID (if any) is among them.
        self.lifted: set[str] = set()
        self.settled_classnames: set[str] = set()
        self.tids_ignored = False

    def add(self, subtrees: Iterable[etree._Element]) -> None:
        """Tally every testcase in finished subtrees, in document order; this loop is the hot path.

        A passed testcase only lifts its TIDs to at least "passed", so passed cases are not matched
        one by one: their names and classnames are collected and matched once per batch. Elements
        around testcases (a suite that ended within the last chunk still holds the cases parsed
        in it) are descended into with a stack of iterators, so their cases take this path too and
        no XML depth can exhaust Python's recursion limit. Any testcase shape other than no child, one
        result or output child, or several that nest nothing, goes through _whole.
        """
        names: list[str] = []
        classnames: list[str] = []
        add_name, add_classname = names.append, classnames.append
        child_rank = _CHILD_RANK
        stack = [iter(subtrees)]
        while stack:
            for sub in stack[-1]:
                if sub.tag != "testcase":
                    if _local(sub.tag) == "testcase":
                        self._whole(sub)
                    elif len(sub):
                        stack.append(iter(sub[:]))  # type: ignore[index]  # lxml-stubs lack slicing
                        break
                    continue
                count = len(sub)
                if count:
                    if count == 1:  # the usual child is one <system-out> or result: sub[0] beats a loop
                        result = sub[0]
                        rank = child_rank.get(result.tag, -1)
                        if rank < 0 or len(result):  # namespaced, unknown, or holding elements
                            self._whole(sub)
                            continue
                    else:
                        rank, result, deep = _result_of(sub)  # type: ignore[assignment]
                        if deep:
                            self._whole(sub)
                            continue
                    if rank:
                        self._ranked(sub, rank, result)
                        continue
                # A bytes key skips lxml's str-to-UTF-8 step; "" keeps the join below simple.
                add_name(sub.get(b"name", ""))
                add_classname(sub.get(b"classname", ""))
            else:
                stack.pop()
        if names:
            self._passed(names, classnames)

    def _passed(self, names: list[str], classnames: list[str]) -> None:
        """Count a batch of passed testcases and lift their TIDs to at least passed.

        Set differences against what is already settled keep the per-item work in C: in a long
        report nearly every TID and classname in a batch was seen before.
        """
        self.counts[0] += len(names)
        # NUL cannot occur in XML text, so it separates the names; see _FIRST_NAME_TID.
        numbers = _FIRST_NAME_TID.findall("\0" + "\0".join(names))
        # issuperset only hashes and looks up, without building a set: the usual batch has nothing new.
        if not self.lifted.issuperset(numbers):
            lifted = self.lifted
            for number in dict.fromkeys(numbers):  # in order, not a set's: which IDs past MAX_TIDS are kept is stable
                if number not in lifted:
                    self.lift("T" + number, 1)
        if self.settled_classnames.issuperset(classnames):
            return
        for classname in set(classnames) - self.settled_classnames:
            ctid = self.class_tids.get(classname, _UNSEEN)
            if ctid is _UNSEEN:
                ctid = self.remember_classname(classname)
            if ctid:
                self.lift(ctid, 1)
            if len(self.settled_classnames) < CLASSNAME_CACHE:  # its passed cases can change nothing more
                self.settled_classnames.add(classname)

    def lift(self, tid: str, tid_rank: int) -> bool:
        """Raise a TID's rank to at least tid_rank; the only writer of tid_rank, so lifted stays true.

        False when the TID is not kept: too long, or new past MAX_TIDS.
        """
        known = self.tid_rank.get(tid)
        if known is None and (len(tid) > MAX_TID_LENGTH or len(self.tid_rank) >= MAX_TIDS):
            self.tids_ignored = True
            return False
        if known is None or known < tid_rank:
            self.tid_rank[tid] = tid_rank
            if tid_rank >= 1:
                self.lifted.add(tid[1:])
        return True

    def _whole(self, case: etree._Element) -> None:
        """Tally a testcase of any shape (namespaced, odd children, testcases nested in it), in document order.

        Everything around testcases is walked by add, so only a testcase ever comes here.
        """
        if self._case(case):  # iter() builds a tag matcher per call: only for the rare nesting
            for child in case[:]:  # type: ignore[index]
                for nested in child.iter(_CASE_TAG):
                    self._case(nested)

    def _case(self, case: etree._Element) -> bool:
        """Tally one testcase alone (not those nested in it); True if a child may nest a testcase.

        Its status is its own result children's.
        """
        rank, result, deep = _result_of(case) if len(case) else (0, None, False)
        self._ranked(case, rank, result)
        return deep

    def _ranked(self, case: etree._Element, rank: int, result: etree._Element | None) -> None:
        """Tally one testcase whose rank and result element are known."""
        self.counts[rank] += 1
        name = case.get(b"name") or ""
        classname = case.get(b"classname") or ""
        tid = None
        if "::" in name or "est_T" in name:  # every name form holds one: a name without either skips the regex
            match = NAME_TID.search(name)
            if match:
                tid = "T" + match[1]
                self.record(tid, rank, result, name, classname)
        if classname:
            ctid = self.class_tids.get(classname, _UNSEEN)
            if ctid is _UNSEEN:
                ctid = self.remember_classname(classname)
            if ctid and ctid != tid:
                self.record(ctid, rank, result, name, classname)

    def remember_classname(self, classname: str) -> str | None:
        """Return the classname's TID (or None) and cache it while the cache is small."""
        # A C-speed test spares the regex for classnames without a TID.
        tid = classname_tid(classname) if "autoqa:" in classname else None
        if len(self.class_tids) < CLASSNAME_CACHE:
            self.class_tids[classname] = tid
        return tid

    def record(self, tid: str, rank: int, result: etree._Element | None, name: str, classname: str) -> None:
        """Fold one testcase's status into a TID; keep the message of a failed or errored one."""
        kept = self.lift(tid, _TID_RANK_OF_CASE_RANK[rank])
        if kept and result is not None and rank >= 2 and len(self.failing) < FAILING_LIMIT:
            self.failing.append(FailingCase(tid, _BY_CASE_RANK[rank], _cut(name), _cut(classname), _message(result)))

    def report(self) -> JUnitReport:
        """Freeze the running counts into a JUnitReport."""
        passed, skipped, failed, errored = self.counts
        tests = passed + skipped + failed + errored
        by_tid = {tid: _BY_TID_RANK[rank] for tid, rank in self.tid_rank.items()}
        return JUnitReport(tests, failed, errored, skipped, by_tid, tuple(self.failing), self.tids_ignored)
