"""Turn a pull request's changed files into a test manifest: files by class, tests per criterion, suggestions.

Paths are classified, and suggested tests placed, by quantumreview.analysis.paths. A test covers an ID only in a
form its JUnit report carries (analysis.test_ids, the rule the verdict reads reports by); a test that names an ID in
another form (`@Tag("T1")`, `func TestT1Login`) is listed as uncarried, with how to write it.

Input is GitHub's list of pull request files: https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from quantumreview.analysis.paths import FILE_CLASSES, FileClass, classify_file, language_of, suggest_test_path
from quantumreview.analysis.test_ids import (
    CLASS_TID,
    MAX_TID_LENGTH,
    NUMBER,
    contract_tids,
    how_to_carry,
    name_tid,
    suggested_name,
)

MAX_FILES = 3000
MAX_LISTED = 100
MAX_TESTS = 2000
MAX_REFS_PER_FILE = 500
MAX_CRITERIA = 500
MAX_NAME = 300
SLUG_CHARS = 50
FORMAT_VERSION = 1

# Any test ID form contains "T" and a digit, so a patch without that pair is skipped with one C-level scan.
_ID_HINT = re.compile(r"T[0-9]")
# Where a test names an ID at all, carried or not: a word in a string or annotation, a part of an identifier.
_WORD_TID = re.compile(r"(?<![A-Za-z0-9])T" + NUMBER + r"(?![A-Za-z0-9])")
_IDENT_TID = re.compile(r"(?:^|_|(?<=[a-z0-9]))T" + NUMBER + r"(?=_|[A-Z]|$)")
_NAME_MARK = re.compile("::|est_T")  # every form of test_ids.NAME_TID holds one
_HUNK_START = re.compile(r"\n(?=@@ )")
_HUNK = re.compile(r"@@ -[0-9]+(?:,[0-9]+)? \+([0-9]+)(?:,[0-9]+)? @@ ?(.*)")
_DECL = re.compile(
    r"[ \t]*(?:"
    r"(?:async[ \t]+)?def[ \t]+(?P<py>\w+)"
    r"|func[ \t]+(?P<go>Test\w*)"
    r"|(?:(?:public|private|protected|internal|static|final|override|suspend|async|pub|unsafe|open)[ \t]+)*"
    r"(?:void|fun|fn|Task)[ \t]+(?P<method>`[^`\n]{1,300}`|\w+)[ \t]*[(<]"
    # Spaces, then an optional "(" with its own spaces: two adjacent [ \t]* around a bare \(? would try every split
    # of a long run of blanks, quadratic in its length.
    r"|(?:[\w$]+\.)?(?:it|test|describe|context|specify|scenario|suite|Run)(?:\.\w+)*[ \t]*(?:\([ \t]*)?"
    r"(?P<q>['\"`])(?P<str>(?:\\.|(?!(?P=q))[^\\\n]){0,300})(?P=q)"
    r")"
)
_ANNOTATION = re.compile(r"[ \t]*(?:@(?P<at>[\w.]+)|#\[(?P<rs>[\w:]+)|\[(?P<cs>\w+))")
_ID_ANNOTATIONS = frozenset({"tid", "tag", "tags", "displayname", "autoqa", "trait", "category", "testid", "test_id",
                             "description", "test"})  # fmt: skip
_TEST_MARKERS = frozenset({"test", "fact", "theory", "parameterizedtest", "testcase", "tokio::test", "rstest"})
_WORDS = re.compile(r"[a-z0-9]+")


class ManifestDataError(ValueError):
    """A stored manifest does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class CriterionRef:
    """One acceptance criterion of a linked issue, with its test ID."""

    repo: str
    issue_number: int
    tid: str
    text: str


@dataclass(frozen=True, slots=True)
class TestRef:
    """A test in the pull request that carries a test ID; line is in the new file, None when not known."""

    __test__ = False  # keep pytest from collecting this class

    tid: str
    path: str
    name: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class UncarriedRef:
    """A test that names an ID in a form its JUnit report will not carry, so it covers nothing; advice says how."""

    tid: str
    path: str
    name: str | None
    line: int | None
    advice: str


@dataclass(frozen=True, slots=True)
class FileGroup:
    """The changed files of one class: count and line totals over all, paths capped for display."""

    kind: FileClass
    count: int
    additions: int
    deletions: int
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A test to add for an uncovered criterion: its name (ID first) and a path in the repository's layout."""

    name: str
    path: str


@dataclass(frozen=True, slots=True)
class Coverage:
    """One criterion, the tests in this pull request that carry its ID, and a suggestion when there are none."""

    criterion: CriterionRef
    tests: tuple[TestRef, ...]
    suggestion: Suggestion | None


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a pull request changes and which criteria its tests cover; JSON-serialisable for storage."""

    files: tuple[FileGroup, ...]
    total_files: int
    files_truncated: bool
    coverage: tuple[Coverage, ...]
    tests: tuple[TestRef, ...]
    unknown_ids: tuple[str, ...]
    uncarried: tuple[UncarriedRef, ...] = ()

    def group(self, kind: FileClass) -> FileGroup:
        """Return the group of one file class."""
        return next(group for group in self.files if group.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-ready data."""
        return {"version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Rebuild a manifest from to_dict() output; raise ManifestDataError on anything else."""
        try:
            if data.get("version") != FORMAT_VERSION:
                raise ManifestDataError(f"unsupported manifest version {data.get('version')!r}")
            return cls(
                files=tuple(_group_from(item) for item in data["files"]),
                total_files=_int(data["total_files"]),
                files_truncated=bool(data["files_truncated"]),
                coverage=tuple(_coverage_from(item) for item in data["coverage"]),
                tests=tuple(_test_from(item) for item in data["tests"]),
                unknown_ids=tuple(_str(tid) for tid in data["unknown_ids"]),
                # Why optional: manifests stored before uncarried IDs were listed stay readable.
                uncarried=tuple(_uncarried_from(item) for item in data.get("uncarried", ())),
            )
        except ManifestDataError:
            raise
        except (KeyError, TypeError, AttributeError) as exc:
            raise ManifestDataError(f"malformed manifest: {type(exc).__name__}: {str(exc)[:100]}") from None


@dataclass(frozen=True, slots=True)
class _File:
    path: str
    kind: FileClass
    status: str
    additions: int
    deletions: int
    patch: str | None


def find_test_ids(patch: str | None, *, path: str = "") -> tuple[TestRef, ...]:
    """Find test IDs on the added lines of a test file's patch, with the test name when one is recognisable."""
    return scan_test_ids(patch, path=path)[0]


def scan_test_ids(patch: str | None, *, path: str = "") -> tuple[tuple[TestRef, ...], tuple[UncarriedRef, ...]]:
    """Find the test IDs a patch's added lines carry, and those they name in a form no JUnit report carries."""
    if not isinstance(patch, str) or not _ID_HINT.search(patch):
        return (), ()
    scan = _PatchScan(path)
    # Why per hunk: hunks are independent (each resets the test context), so a hunk without an ID is skipped.
    for hunk in _HUNK_START.split(patch):
        if not _ID_HINT.search(hunk):
            continue
        for line in hunk.split("\n"):
            if scan.in_hunk and line[:1] in _KEPT_HEADS and not _may_matter(line):
                scan.line += 1  # fast path: a line that can name no test, annotation or ID only advances
                continue
            scan.feed(line)
        if len(scan.refs) >= MAX_REFS_PER_FILE:
            break
    return scan.finish()


def build_manifest(files: Sequence[Mapping[str, Any]], criteria: Sequence[CriterionRef], *,
                   changed_files: int | None = None) -> Manifest:
    """Build the manifest of a pull request from its changed files and the criteria of its linked issues.

    `changed_files` is the pull request's own count: GitHub lists at most 3,000 files, so past that the list
    alone cannot tell that files are missing.
    """
    listed = files[:MAX_FILES]
    total = max(len(files), changed_files if isinstance(changed_files, int) else 0)
    entries = [entry for entry in map(_file_entry, listed) if entry is not None]
    tests, uncarried = _collect_tests(entries)
    by_tid: dict[str, list[TestRef]] = {}
    for ref in tests:
        by_tid.setdefault(ref.tid, []).append(ref)
    layout = _Layout(entries)
    kept = [c for c in criteria[:MAX_CRITERIA] if isinstance(c, CriterionRef)]
    coverage = tuple(
        Coverage(c, tuple(by_tid.get(c.tid, ())), None if c.tid in by_tid else layout.suggest(c)) for c in kept
    )
    known = {c.tid for c in kept}
    unknown = sorted({ref.tid for ref in tests} - known, key=_tid_key)
    return Manifest(
        files=tuple(_group(kind, entries) for kind in FILE_CLASSES),
        total_files=total,
        files_truncated=total > len(listed),
        coverage=coverage,
        tests=tests,
        unknown_ids=tuple(unknown),
        uncarried=uncarried,
    )


def slugify(text: str, *, max_chars: int = SLUG_CHARS) -> str:
    """Return an ASCII snake_case slug of at most max_chars characters, cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text[:1000]).encode("ascii", "ignore").decode("ascii")
    slug = ""
    for word in _WORDS.findall(ascii_text.lower()):
        candidate = f"{slug}_{word}" if slug else word
        if len(candidate) > max_chars:
            slug = slug or word[:max_chars]
            break
        slug = candidate
    return slug or "criterion"


_KEPT_HEADS = ("+", " ")
# Every _DECL match holds one of these (string-named tests need a quote), so lines without them skip the regexes.
_DECL_WORDS = ("'", '"', "`", "def", "fun", "void", "fn", "Task")


def _may_matter(line: str) -> bool:
    """Whether a patch line could declare a test, carry an annotation or an ID (a superset, checked cheaply)."""
    text = line[1:]
    if text.lstrip()[:1] in ("@", "#", "["):
        return True
    for word in _DECL_WORDS:
        if word in text:
            return True
    return _ID_HINT.search(text) is not None


class _PatchScan:
    """Walk one patch line by line, tracking new-file line numbers and the test each line belongs to."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.language = language_of(path)
        self.refs: dict[tuple[str, str | None], TestRef] = {}
        self.uncarried: dict[tuple[str, str | None], UncarriedRef] = {}
        self.line = 0
        self.in_hunk = False
        self.current: str | None = None
        self.annotated = False
        self.pending: list[tuple[str, int, bool]] = []  # (tid, line, carried) of annotations awaiting their test

    def feed(self, line: str) -> None:
        """Take one patch line."""
        head = line[:1]
        if head == "@" and line.startswith("@@"):
            self._start_hunk(line)
        elif not self.in_hunk or head in ("-", "\\") or line.startswith(("+++ a/", "+++ b/", "+++ /dev/null")):
            return
        elif head in ("+", " "):
            self._read(line[1:], added=head == "+")
            self.line += 1

    def finish(self) -> tuple[tuple[TestRef, ...], tuple[UncarriedRef, ...]]:
        """Record IDs still waiting for a test name; return the carried references and the uncarried ones."""
        self._flush(None)
        # A test that also carries the ID (`@Tag("T1")` on `def test_T1_x`) covers it: nothing to correct.
        uncarried = tuple(ref for key, ref in self.uncarried.items() if key not in self.refs)
        return tuple(self.refs.values()), uncarried

    def _start_hunk(self, line: str) -> None:
        match = _HUNK.match(line)
        self.in_hunk = match is not None
        self._flush(None)
        self.current, self.annotated = None, False
        if match:
            self.line = int(match.group(1))
            decl = _test_name(match.group(2), annotated=False)  # git shows the enclosing function here
            self.current = decl.name if decl is not None else None

    def _read(self, text: str, *, added: bool) -> None:
        annotation = _ANNOTATION.match(text) if text.lstrip()[:1] in ("@", "#", "[") else None
        if annotation:
            self._read_annotation(annotation, text, added=added)
            return
        decl = _test_name(text, annotated=self.annotated)
        if decl is not None:
            self._flush(decl.name)
            self.current, self.annotated = decl.name, False
        if not added or not _ID_HINT.search(text):
            return
        if decl is None:
            # C-speed tests spare the regexes for the many lines that hold a "T" and a digit in another way.
            if "::" in text or "autoqa:" in text:
                for tid in contract_tids(text):
                    self._add(tid, self.current, self.line)
            return
        # The name counts as the reader reads a testcase name (its first ID only), or as a classname when it holds
        # `autoqa:T5` (a describe block or suite named so becomes the classname); the rest of the line by the
        # contract's own forms anywhere.
        rest = f"{text[: decl.start]} {text[decl.end :]}"
        carried = contract_tids(rest) if "::" in rest or "autoqa:" in rest else []
        if "autoqa:" in decl.name:
            carried[:0] = ["T" + digits for digits in CLASS_TID.findall(decl.name)]
        first = name_tid(decl.name) if _NAME_MARK.search(decl.name) else None
        if first is not None:
            carried.insert(0, first)
        for tid in carried:
            self._add(tid, decl.name, self.line)
        for tid in decl.named:
            if tid not in carried:
                self._add_uncarried(tid, decl.name, self.line, "its name")

    def _read_annotation(self, match: re.Match[str], text: str, *, added: bool) -> None:
        label = (match.group("at") or match.group("rs") or match.group("cs") or "").lower()
        last = label.rpartition(".")[2]
        if last in _TEST_MARKERS or label in _TEST_MARKERS:
            self.annotated = True
        if not added or not _ID_HINT.search(text):
            return
        carried = contract_tids(text)
        named: list[str] = []
        marker = (match.group("at") or "").rpartition(".")[2]
        if last in _ID_ANNOTATIONS or _WORD_TID.fullmatch(marker):  # @Tag("T3"), @pytest.mark.T3
            # Tags, marks and display names stay out of JUnit reports, unless written in the contract's forms.
            named = [tid for tid in _words(text) if tid not in carried]
        self.pending.extend((tid, self.line, True) for tid in carried)
        self.pending.extend((tid, self.line, False) for tid in named)
        self.annotated = self.annotated or bool(carried or named)  # an ID annotation marks the next method as a test

    def _flush(self, name: str | None) -> None:
        for tid, line, carried in self.pending:
            if carried:
                self._add(tid, name, line)
            else:
                self._add_uncarried(tid, name, line, "an annotation")
        self.pending.clear()

    def _add(self, tid: str, name: str | None, line: int) -> None:
        key = (tid, name)
        if key not in self.refs and len(self.refs) < MAX_REFS_PER_FILE and len(tid) <= MAX_TID_LENGTH:
            self.refs[key] = TestRef(tid, self.path, name, line)

    def _add_uncarried(self, tid: str, name: str | None, line: int, where: str) -> None:
        key = (tid, name)
        if key not in self.uncarried and len(self.uncarried) < MAX_REFS_PER_FILE and len(tid) <= MAX_TID_LENGTH:
            advice = (f"names {tid} in {where}, which its JUnit report will not carry as a test ID, so it covers "
                      f"nothing; to cover {tid}, {how_to_carry(tid, self.language)}")
            self.uncarried[key] = UncarriedRef(tid, self.path, name, line, advice)


class _Decl(NamedTuple):
    """A test declared on a line: its name, where the name is on the line, and every ID it names, in any form."""

    name: str
    start: int
    end: int
    named: list[str]


def _test_name(text: str, *, annotated: bool) -> _Decl | None:
    """Return the test declared on a line, if any."""
    match = _DECL.match(text)
    if match is None:
        return None
    group = match.lastgroup or ""  # the alternative that matched: py, go, method, or str (after its quote)
    ident = match.group(group) or ""
    if group == "str":
        return _Decl(ident[:MAX_NAME], *match.span(group), _words(ident))
    if group == "py" and not ident.lower().startswith("test"):
        return None  # pytest collects only test* functions; other defs are helpers
    if ident.startswith("`"):
        name = ident.strip("`")
        return _Decl(name, *match.span(group), _words(name))
    tids = ["T" + digits for digits in _IDENT_TID.findall(ident)]
    if tids or annotated or ident.lower().startswith("test"):
        return _Decl(ident[:MAX_NAME], *match.span(group), tids)
    return None


def _words(name: str) -> list[str]:
    return ["T" + digits for digits in _WORD_TID.findall(name)]


def _file_entry(item: Mapping[str, Any]) -> _File | None:
    """Read one GitHub file item; an item without a usable filename is skipped."""
    if not isinstance(item, Mapping):
        return None
    path = item.get("filename")
    if not isinstance(path, str) or not path:
        return None
    patch = item.get("patch")
    status = item.get("status")
    return _File(
        path=path,
        kind=classify_file(path),
        status=status if isinstance(status, str) else "modified",
        additions=_count(item.get("additions")),
        deletions=_count(item.get("deletions")),
        patch=patch if isinstance(patch, str) else None,
    )


def _collect_tests(entries: Sequence[_File]) -> tuple[tuple[TestRef, ...], tuple[UncarriedRef, ...]]:
    """Find test IDs in every added or changed test file, carried and uncarried, each capped in total."""
    found: list[TestRef] = []
    uncarried: list[UncarriedRef] = []
    for entry in entries:
        if entry.kind != "test" or entry.status == "removed":
            continue
        refs, misses = scan_test_ids(entry.patch, path=entry.path)
        found.extend(refs[: MAX_TESTS - len(found)])
        uncarried.extend(misses[: MAX_TESTS - len(uncarried)])
        if len(found) >= MAX_TESTS:  # as before uncarried IDs were listed: they never make a diff slower to read
            break
    return tuple(found), tuple(uncarried)


def _group(kind: FileClass, entries: Sequence[_File]) -> FileGroup:
    members = [entry for entry in entries if entry.kind == kind]
    return FileGroup(
        kind=kind,
        count=len(members),
        additions=sum(entry.additions for entry in members),
        deletions=sum(entry.deletions for entry in members),
        paths=tuple(entry.path for entry in members[:MAX_LISTED]),
    )


class _Layout:
    """Where this repository keeps its tests, learned from the source and test files in the diff."""

    def __init__(self, entries: Sequence[_File]) -> None:
        live = [entry for entry in entries if entry.status != "removed"]
        self.sources = sorted(
            (entry for entry in live if entry.kind == "source" and language_of(entry.path)),
            key=lambda entry: -(entry.additions + entry.deletions),
        )
        self.tests = [entry.path for entry in live if entry.kind == "test" and language_of(entry.path)]
        # Why an index of path words: splitting every source path again for each criterion took seconds for
        # 3,000 sources and 500 criteria; now each criterion reads only the sources that share a word with it.
        self.by_word: dict[str, list[int]] = {}
        for position, entry in enumerate(self.sources):
            for word in set(_WORDS.findall(entry.path.lower())):
                self.by_word.setdefault(word, []).append(position)
        self.placed: dict[str, str] = {}  # source path -> its test path: criteria often pick the same source

    def suggest(self, criterion: CriterionRef) -> Suggestion:
        """Suggest a test name and path for an uncovered criterion."""
        slug = slugify(criterion.text)
        source = self._closest_source(slug)
        if source is not None:
            if source not in self.placed:
                self.placed[source] = suggest_test_path(source, self.tests)
            path = self.placed[source]
        else:
            path = self.tests[0] if self.tests else f"tests/test_{slug}.py"
        return Suggestion(suggested_name(criterion.tid, slug, language_of(path)), path)

    def _closest_source(self, slug: str) -> str | None:
        """Pick the changed source whose path shares most words with the criterion; ties go to the biggest change."""
        if not self.sources:
            return None
        shared: Counter[int] = Counter()
        for word in set(slug.split("_")):
            shared.update(self.by_word.get(word, ()))
        # Sources are sorted biggest change first, so the lowest position wins a tie (none shared: the first).
        best = min(shared, key=lambda position: (-shared[position], position), default=0)
        return self.sources[best].path


def _tid_key(tid: str) -> tuple[int, str]:
    digits = tid[1:]
    return (int(digits), tid) if digits.isdigit() else (0, tid)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ManifestDataError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestDataError(f"expected an integer, got {type(value).__name__}")
    return value


def _optional_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _optional_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _kind(value: object) -> FileClass:
    for kind in FILE_CLASSES:
        if value == kind:
            return kind
    raise ManifestDataError(f"unknown file class {value!r}")


def _group_from(data: Mapping[str, Any]) -> FileGroup:
    paths = tuple(_str(path) for path in data["paths"])
    return FileGroup(_kind(data["kind"]), _int(data["count"]), _int(data["additions"]), _int(data["deletions"]), paths)


def _uncarried_from(data: Mapping[str, Any]) -> UncarriedRef:
    return UncarriedRef(_str(data["tid"]), _str(data["path"]), _optional_str(data["name"]),
                        _optional_int(data["line"]), _str(data["advice"]))


def _test_from(data: Mapping[str, Any]) -> TestRef:
    return TestRef(_str(data["tid"]), _str(data["path"]), _optional_str(data["name"]), _optional_int(data["line"]))


def _criterion_from(data: Mapping[str, Any]) -> CriterionRef:
    return CriterionRef(_str(data["repo"]), _int(data["issue_number"]), _str(data["tid"]), _str(data["text"]))


def _coverage_from(data: Mapping[str, Any]) -> Coverage:
    raw = data["suggestion"]
    suggestion = None if raw is None else Suggestion(_str(raw["name"]), _str(raw["path"]))
    tests = tuple(_test_from(item) for item in data["tests"])
    return Coverage(_criterion_from(data["criterion"]), tests, suggestion)
