"""The one rule for where a test carries its test ID, shared by the JUnit reader and the pull request's manifest.

A testcase in the JUnit report carries test ID T<n> when
- its name holds `T<n>::`, not right after a letter or digit: `T1::test_login`, `signup T1::x`, `test_0001_T4::x`;
- or its name holds `test_T<n>` (or `Test_T<n>`), not right after a letter, digit or `_`, and with no letter or
  digit after the number: `test_T1_login`, `test_T1_login[a-b]`, `Test_T1_login/sub`, `test_T1_login()`. That is
  the name pytest, unittest, Go, JUnit, libtest and minitest write for a function or method named so;
- or its classname holds `autoqa:T<n>` with no digit after.
Only the first ID in a name counts. Leading zeros do not: `T01::` is T1, as `T01:` in an issue is.

The manifest counts a test as covering an ID only in these forms. Other ways of naming an ID in source
(`@Tag("T1")`, `@pytest.mark.tid("T1")`, `func TestT1Login`, `it("T1 logs in")`) reach no report as something the
reader can tell apart from an ordinary word, so they cover nothing; `how_to_carry` says how to write them instead.
Why not camelCase `TestT1Login`: the corpus's Go report has `TestT11ÜnïcodeNaming`, hand-checked as carrying no ID,
and camel names of things (`TestT5Encoder`) are common; the underscore after `test` is the deliberate mark.
"""

from __future__ import annotations

import re

# A criterion ID is T plus at most 9 digits; longer ones are kept to this length's worth and no further.
MAX_TID_LENGTH = 20
# An ID's number, captured without its leading zeros (a lone zero stays "0"), so "T" + the group is the ID.
NUMBER = r"0*([1-9][0-9]*|0)"
# Whether a name form applies is decided in the lookahead; the captured digits are the same ones it read.
NAME_TID_PATTERN = r"(?<![A-Za-z0-9])T(?=[0-9]+::|(?<=(?<![A-Za-z0-9_])[Tt]est_T)[0-9]+(?![A-Za-z0-9]))" + NUMBER
NAME_TID = re.compile(NAME_TID_PATTERN)
# The `T<n>::` form alone: on any line of source, not only in a test's declared name.
CONTRACT_TID = re.compile(r"(?<![A-Za-z0-9])T" + NUMBER + "::")
CLASS_TID = re.compile(r"autoqa:T" + NUMBER + r"(?![0-9])")

_EXAMPLES = {
    "python": "name the test `test_{tid}_…` (pytest reports the function's name)",
    "go": 'name the test `Test_{tid}_…`, or run it as a subtest `t.Run("{tid}::…", …)`',
    "js": 'start the test\'s title with `{tid}::`, e.g. `it("{tid}::…")`',
    "jvm": "name the method `test_{tid}_…` (JUnit reports the method's name, not tags or display names)",
    "ruby": 'start the example\'s description with `{tid}::` (`it "{tid}::…"`), or name the method `test_{tid}_…`',
    "rust": "name the function `test_{tid}_…`",
}
_DEFAULT_EXAMPLE = "put `{tid}::` in the test's name in the report, or `autoqa:{tid}` in its classname"


def name_tid(name: str) -> str | None:
    """Return the test ID a testcase name carries (its first), or None."""
    match = NAME_TID.search(name)
    return "T" + match[1] if match else None


def classname_tid(classname: str) -> str | None:
    """Return the test ID a testcase classname carries (its first), or None."""
    match = CLASS_TID.search(classname)
    return "T" + match[1] if match else None


def contract_tids(text: str) -> list[str]:
    """Return every ID written as `T<n>::` or `autoqa:T<n>` in a piece of source, in that order."""
    return ["T" + m[1] for m in CONTRACT_TID.finditer(text)] + ["T" + m[1] for m in CLASS_TID.finditer(text)]


# How a suggested test is named, by the language of the file it goes in: a name the JUnit report carries as is,
# and one that language allows (a Python, Java or Rust function cannot hold '::').
_SUGGESTED = {"python": "test_{tid}_{slug}", "jvm": "test_{tid}_{slug}", "rust": "test_{tid}_{slug}",
              "go": "Test_{tid}_{slug}"}
_SUGGESTED_DEFAULT = "{tid}::test_{slug}"  # a test title (JS, Ruby) or a name set by other means


def suggested_name(tid: str, slug: str, language: str | None) -> str:
    """The name to suggest for a new test of `tid` in a file of `language`; name_tid reads `tid` back from it."""
    return _SUGGESTED.get(language or "", _SUGGESTED_DEFAULT).format(tid=tid, slug=slug)


def how_to_carry(tid: str, language: str | None) -> str:
    """Say how to write a test so that its JUnit report carries `tid`, for a language of analysis.paths."""
    return _EXAMPLES.get(language or "", _DEFAULT_EXAMPLE).format(tid=tid)
