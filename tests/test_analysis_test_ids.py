"""One rule for test IDs: the manifest counts a test as covering an ID exactly when its JUnit report carries it.

Each row is one way of naming T1 in source, with the testcase its runner writes (names as the runners in the JUnit
corpus write them). The manifest reads the source, the reader the report; both must give the same answer, and a
form neither counts must be listed by the manifest as uncarried, so that no test shows as covered, then "missing".
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pytest

from quantumreview.analysis.junit import parse_junit
from quantumreview.analysis.manifest import CriterionRef, build_manifest
from quantumreview.analysis.test_ids import classname_tid, name_tid
from quantumreview.analysis.verdict import compute_verdict

CRITERION = CriterionRef("octo/app", 1, "T1", "User can log in")

# (test file, added source lines, testcase name and classname in the report, the ID both must read)
FORMS = [
    ("tests/test_auth.py", ["def test_T1_login():"], "test_T1_login", "tests.test_auth", "T1"),
    ("tests/test_auth.py", ["def test_T1_login(case):"], "test_T1_login[a-b]", "tests.test_auth", "T1"),
    ("tests/test_auth.py", ["def test_T01_login():"], "test_T01_login", "tests.test_auth", "T1"),
    ("tests/test_auth.py", ["    def test_T1_login(self):"], "test_T1_login", "tests.test_auth.AuthTests", "T1"),
    ("tests/test_auth.py", ["def test_login(record_xml_attribute):", '    record_xml_attribute("name", "T1::login")'],
     "T1::login", "tests.test_auth", "T1"),
    ("tests/test_auth.py", ["def test_login(record_xml_attribute):",
                            '    record_xml_attribute("classname", "autoqa:T1")'], "test_login", "autoqa:T1", "T1"),
    ("tests/test_auth.py", ["def test_login_T1():"], "test_login_T1", "tests.test_auth", None),
    ("tests/test_auth.py", ["    def testT1Login(self):"], "testT1Login", "tests.test_auth.AuthTests", None),
    ("tests/test_auth.py", ['@pytest.mark.tid("T1")', "def test_login():"], "test_login", "tests.test_auth", None),
    ("tests/test_auth.py", ["@pytest.mark.T1", "def test_login():"], "test_login", "tests.test_auth", None),
    ("pkg/auth_test.go", ["func Test_T1_login(t *testing.T) {"], "Test_T1_login", "example.com/pkg", "T1"),
    ("pkg/auth_test.go", ["func TestT1Login(t *testing.T) {"], "TestT1Login", "example.com/pkg", None),
    ("pkg/auth_test.go", ['\tt.Run("T1::login", func(t *testing.T) {'], "TestAuth/T1::login", "example.com/pkg",
     "T1"),
    ("web/auth.test.ts", ['it("T1::logs in", () => {'], "auth T1::logs in", "auth T1::logs in", "T1"),
    ("web/auth.test.ts", ['it("T01::logs in", () => {'], "auth T01::logs in", "auth T01::logs in", "T1"),
    ("web/auth.test.ts", ['it("T1 logs in", () => {'], "auth T1 logs in", "auth T1 logs in", None),
    ("web/auth.test.ts", ['it("T1: logs in", () => {'], "auth T1: logs in", "auth T1: logs in", None),
    ("web/auth.test.ts", ['describe("autoqa:T1", () => {', '  it("logs in", () => {'], "logs in", "autoqa:T1",
     "T1"),
    ("src/test/java/a/AuthTest.java", ['@Tag("T1")', "@Test", "void login() {"], "login()", "a.AuthTest", None),
    ("src/test/java/a/AuthTest.java", ['@DisplayName("T1 logs in")', "@Test", "void login() {"], "login()",
     "a.AuthTest", None),
    ("src/test/java/a/AuthTest.java", ["@Test", "void test_T1_login() {"], "test_T1_login()", "a.AuthTest", "T1"),
    ("src/test/kotlin/a/AuthTest.kt", ["@Test", "fun `T1 logs in`() {"], "T1 logs in()", "a.AuthTest", None),
    ("tests/auth.rs", ["#[test]", "fn test_T1_login() {"], "test_T1_login", "auth", "T1"),
    ("spec/auth_spec.rb", ['  it "T1::logs in" do'], "auth T1::logs in", "spec.auth_spec", "T1"),
    ("test/auth_test.rb", ["  def test_T1_login"], "test_T1_login", "AuthTest", "T1"),
    ("tests/AuthTests.cs", ["[Fact]", "public void Login_T1() {"], "Login_T1", "App.AuthTests", None),
]


def report(name: str, classname: str) -> bytes:
    return f"<testsuite><testcase name={quoteattr(name)} classname={quoteattr(classname)}/></testsuite>".encode()


def patch(lines: list[str]) -> str:
    return f"@@ -0,0 +1,{len(lines)} @@\n" + "\n".join("+" + line for line in lines)


@pytest.mark.parametrize(("path", "source", "name", "classname", "tid"), FORMS, ids=lambda v: str(v)[:40])
def test_the_manifest_and_the_junit_reader_read_each_form_alike(
    path: str, source: list[str], name: str, classname: str, tid: str | None
) -> None:
    manifest = build_manifest([{"filename": path, "status": "added", "patch": patch(source)}], [CRITERION])
    results = parse_junit(report(name, classname)).by_tid
    verdict = compute_verdict([CRITERION], results)

    assert {ref.tid for ref in manifest.tests} == set(results) == ({tid} if tid else set())
    assert bool(manifest.coverage[0].tests) == (verdict.results[0].outcome != "missing")
    # No silent disagreement: a form that covers nothing is listed, with how to write it.
    assert [ref.tid for ref in manifest.uncarried] == ([] if tid else ["T1"])


@pytest.mark.parametrize(("name", "tid"), [("test_T1_x", "T1"), ("T001::x", "T1"), ("T0::x", "T0"), ("x", None),
                                           ("TestT1X", None), ("a T2::b T3::c", "T2")])
def test_name_tid_is_the_first_id_without_leading_zeros(name: str, tid: str | None) -> None:
    assert name_tid(name) == tid


def test_classname_tid_needs_a_whole_number() -> None:
    assert (classname_tid("a.autoqa:T012.B"), classname_tid("autoqa:T1x"), classname_tid("autoqa_T1")) == (
        "T12", "T1", None)
