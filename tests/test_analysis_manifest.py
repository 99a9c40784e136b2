"""The test manifest: file classes, test IDs on added lines, coverage per criterion, suggestions, storage."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import pytest

from quantumreview.analysis.manifest import (
    MAX_FILES,
    MAX_LISTED,
    CriterionRef,
    Manifest,
    ManifestDataError,
    TestRef,
    UncarriedRef,
    build_manifest,
    find_test_ids,
    scan_test_ids,
    slugify,
)
from quantumreview.analysis.paths import classify_file, suggest_test_path
from quantumreview.analysis.test_ids import name_tid

REPO = "octo/app"


def crit(tid: str, text: str = "User can log in", *, issue: int = 1) -> CriterionRef:
    """Return a criterion of the default repository."""
    return CriterionRef(REPO, issue, tid, text)


def item(path: str, patch: str | None = None, **extra: Any) -> dict[str, Any]:
    """Return a GitHub pull request file item."""
    data: dict[str, Any] = {"filename": path, "status": "modified", "additions": 1, "deletions": 0, "changes": 1}
    if patch is not None:
        data["patch"] = patch
    data.update(extra)
    return data


def added(*lines: str) -> str:
    """Return a one-hunk patch that adds the given lines."""
    return f"@@ -0,0 +1,{len(lines)} @@\n" + "\n".join("+" + line for line in lines)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("src/app/auth.py", "source"),
        ("tests/test_auth.py", "test"),
        ("app/test_auth.py", "test"),
        ("app/auth_test.py", "test"),
        ("conftest.py", "test"),
        ("src/Button.test.tsx", "test"),
        ("src/api.spec.js", "test"),
        ("src/__tests__/api.js", "test"),
        ("pkg/x_test.go", "test"),
        ("pkg/x.go", "source"),
        ("src/test/java/a/BTest.java", "test"),
        ("src/main/java/a/B.java", "source"),
        ("lib/src/UserServiceIT.java", "test"),
        ("lib/src/GIT.java", "source"),
        ("core/FooTests.kt", "test"),
        ("tests/integration.rs", "test"),
        ("src/lib.rs", "source"),
        ("spec/models/user_spec.rb", "test"),
        ("test/models/user_test.rb", "test"),
        ("app/models/user.rb", "source"),
        ("README.md", "docs"),
        ("docs/guide/setup.py", "docs"),
        ("api/index.rst", "docs"),
        ("LICENSE", "docs"),
        ("tests/README.md", "docs"),
        (".github/workflows/ci.yml", "ci"),
        (".gitlab-ci.yml", "ci"),
        (".circleci/config.yml", "ci"),
        ("Jenkinsfile", "ci"),
        ("pyproject.toml", "config"),
        ("package.json", "config"),
        ("deploy/values.yaml", "config"),
        ("setup.cfg", "config"),
        ("Dockerfile", "config"),
        ("package-lock.json", "config"),
        ("yarn.lock", "config"),
        ("pnpm-lock.yaml", "config"),
        ("requirements-dev.txt", "config"),
        (".gitignore", "config"),
        ("web/.eslintrc", "config"),
        ("tests/fixtures/data.json", "test"),
    ],
)
def test_files_are_classified_by_language_conventions(path: str, kind: str) -> None:
    assert classify_file(path) == kind


def test_ids_count_only_in_forms_a_junit_report_carries_and_the_others_are_listed() -> None:
    """The manifest counted @Tag("T10"), `TestT8Login`, `it('T6: ...')`... as coverage, which no report carries:
    the verdict then said "missing" for a criterion the manifest showed covered. (Test changed: it pinned those.)"""
    patch = added(
        "def test_T3_login():",
        "@pytest.mark.tid('T4')",
        "def test_logout(record_xml_attribute):",
        "    record_xml_attribute('classname', 'autoqa:T5')",
        "it('T6: logs in', () => {})",
        '@DisplayName("T7 shows the form")',
        "void showsForm() {",
        "func TestT8Login(t *testing.T) {",
        "test('T9::renders', () => {})",
        '@Tag("T10")',
        "@Test",
        "public void tagged() {",
    )
    refs, uncarried = scan_test_ids(patch, path="tests/test_x.py")
    assert {(ref.tid, ref.name) for ref in refs} == {("T3", "test_T3_login"), ("T5", "test_logout"),
                                                     ("T9", "T9::renders")}
    assert {(ref.tid, ref.name, ref.line) for ref in uncarried} == {
        ("T4", "test_logout", 2),
        ("T6", "T6: logs in", 5),
        ("T7", "showsForm", 6),
        ("T8", "TestT8Login", 8),
        ("T10", "tagged", 10),
    }
    tagged = next(ref for ref in uncarried if ref.tid == "T10")
    assert tagged.advice.startswith("names T10 in an annotation, which its JUnit report will not carry")
    assert "`test_T10_…`" in tagged.advice  # a Python path: the pytest way


@pytest.mark.parametrize(
    ("path", "line", "how"),
    [
        ("pkg/auth_test.go", "func TestT1Login(t *testing.T) {", '`t.Run("T1::…", …)`'),
        ("src/test/java/a/AuthTest.java", "@Tag(\"T1\") @Test void login() {", "`test_T1_…`"),
        ("web/auth.test.ts", "it('T1 logs in', () => {", '`it("T1::…")`'),
        ("spec/auth_spec.rb", "it 'T1 logs in' do", '`it "T1::…"`'),
        ("tests/auth.rs", "fn login_T1() {", "`test_T1_…`"),
        ("tests/AuthTests.cs", "public void Login_T1() {", "`autoqa:T1`"),
    ],
)
def test_uncarried_ids_say_how_to_write_them_in_the_files_language(path: str, line: str, how: str) -> None:
    refs, uncarried = scan_test_ids(added(line), path=path)
    assert refs == () and [ref.tid for ref in uncarried] == ["T1"] and how in uncarried[0].advice


def test_a_test_that_also_carries_the_id_is_not_listed_as_uncarried() -> None:
    patch = added('@Tag("T1")', "@Test", "void test_T1_login() {", "@pytest.mark.T2", "def test_T2_x(): pass")
    refs, uncarried = scan_test_ids(patch, path="tests/test_x.py")
    assert {(ref.tid, ref.name) for ref in refs} == {("T1", "test_T1_login"), ("T2", "test_T2_x")}
    assert uncarried == ()


def test_only_the_first_id_of_a_test_name_counts_as_the_reader_reads_it() -> None:
    refs, uncarried = scan_test_ids(added("it('T1::a T2::b', () => {})", "def test_T3_and_T4(): pass"))
    assert [ref.tid for ref in refs] == ["T1", "T3"] and [ref.tid for ref in uncarried] == ["T2", "T4"]


def test_leading_zeros_name_the_same_id() -> None:
    """`T01::` matched no criterion T1, so a test written so left T1 uncovered (and "missing" in the verdict)."""
    patch = added("it('T01::logs in', () => {})", "def test_T002_x(): pass", "x = 'autoqa:T0003'")
    manifest = build_manifest([item("tests/test_a.py", patch)], [crit("T1"), crit("T2"), crit("T3")])
    assert [[ref.tid for ref in c.tests] for c in manifest.coverage] == [["T1"], ["T2"], ["T3"]]


def test_a_criterion_named_only_in_an_uncarried_form_is_uncovered_and_listed() -> None:
    files = [item("src/app/auth.py"), item("tests/test_auth.py", added("@pytest.mark.tid('T1')", "def test_login():"))]
    manifest = build_manifest(files, [crit("T1")])
    (coverage,) = manifest.coverage
    assert coverage.tests == () and coverage.suggestion is not None
    assert [(ref.tid, ref.path, ref.name, ref.line) for ref in manifest.uncarried] == [
        ("T1", "tests/test_auth.py", "test_login", 1)
    ]
    assert manifest.unknown_ids == ()


def test_removed_lines_and_file_headers_never_count() -> None:
    patch = "+++ b/tests/test_x.py\n@@ -1,2 +1,1 @@\n-def test_T1_old():\n-    x = 'T2::gone'\n def test_T3_context():"
    assert find_test_ids(patch, path="tests/test_x.py") == ()


def test_an_id_added_inside_an_unchanged_test_takes_its_name_and_new_line_number() -> None:
    patch = "@@ -10,3 +10,4 @@\n def test_login(record_xml_attribute):\n-    pass\n     x = 1\n+    y = 'autoqa:T2'"
    assert find_test_ids(patch, path="t/test_a.py") == (TestRef("T2", "t/test_a.py", "test_login", 12),)


def test_the_hunk_header_names_the_enclosing_test() -> None:
    patch = "@@ -40,2 +40,3 @@ def test_checkout(record_xml_attribute):\n     a = 1\n+    b = 'autoqa:T7'"
    assert find_test_ids(patch)[0].name == "test_checkout"


def test_words_that_only_look_like_ids_do_not_count() -> None:
    patch = added("def test_http2_T3x():", "ts = '2024-01-01T12:00'", "def helper_T4():", "x = 'T5'")
    assert find_test_ids(patch) == ()


def test_missing_or_odd_patches_give_nothing() -> None:
    assert find_test_ids(None) == ()
    assert find_test_ids(12) == ()  # type: ignore[arg-type]
    assert find_test_ids("no hunk T1::x") == ()


def test_criteria_get_their_tests_and_uncovered_ones_a_suggestion() -> None:
    files = [
        item("src/app/auth.py"),
        item("tests/test_session.py", added("def test_T1_login():", "    pass")),
    ]
    manifest = build_manifest(files, [crit("T1"), crit("T2", "Password reset sends an e-mail")])
    covered, uncovered = manifest.coverage
    assert [ref.name for ref in covered.tests] == ["test_T1_login"] and covered.suggestion is None
    assert uncovered.tests == ()
    assert uncovered.suggestion is not None
    assert uncovered.suggestion.name == "test_T2_password_reset_sends_an_e_mail"
    assert uncovered.suggestion.path == "tests/test_auth.py"


def test_a_tid_shared_by_two_issues_counts_for_both() -> None:
    files = [item("tests/test_a.py", added("def test_T1_x(): pass"))]
    manifest = build_manifest(files, [crit("T1", issue=1), crit("T1", issue=2)])
    assert [len(c.tests) for c in manifest.coverage] == [1, 1]


def test_ids_in_no_linked_checklist_are_reported_as_unknown() -> None:
    files = [item("tests/test_a.py", added("def test_T10_x(): pass", "def test_T2_y(): pass", "def test_T1(): pass"))]
    assert build_manifest(files, [crit("T1")]).unknown_ids == ("T2", "T10")


def test_ids_in_source_files_or_removed_test_files_do_not_count() -> None:
    files = [
        item("src/app.py", added("def test_T1_x(): pass")),
        item("tests/test_old.py", added("def test_T2_x(): pass"), status="removed"),
    ]
    manifest = build_manifest(files, [crit("T1"), crit("T2")])
    assert [c.tests for c in manifest.coverage] == [(), ()]


def test_files_are_grouped_with_counts_and_capped_lists() -> None:
    files = [item(f"src/m{n}.py", additions=2, deletions=1) for n in range(MAX_LISTED + 5)]
    files += [item("README.md"), item("broken", patch=None, additions="x"), {"no": "filename"}, "junk"]
    manifest = build_manifest(files, [])  # type: ignore[list-item]
    source = manifest.group("source")
    assert (source.count, source.additions, source.deletions) == (MAX_LISTED + 6, 2 * (MAX_LISTED + 5), MAX_LISTED + 5)
    assert len(source.paths) == MAX_LISTED
    assert manifest.group("docs").count == 1
    assert manifest.total_files == len(files) and not manifest.files_truncated


def test_more_files_than_github_lists_are_cut_and_flagged() -> None:
    manifest = build_manifest([item(f"f{n}.py") for n in range(MAX_FILES + 10)], [])
    assert manifest.files_truncated and manifest.group("source").count == MAX_FILES


def test_files_github_did_not_list_are_counted_from_the_pull_requests_own_count() -> None:
    """GitHub lists at most 3,000 files, so the list alone never held more than MAX_FILES and a 5,000-file
    pull request read as 3,000 files, none left out."""
    listed = [item(f"f{n}.py") for n in range(MAX_FILES)]
    manifest = build_manifest(listed, [], changed_files=5000)
    assert (manifest.total_files, manifest.files_truncated) == (5000, True)
    assert manifest.group("source").count == MAX_FILES
    whole = build_manifest(listed[:3], [], changed_files=3)
    assert (whole.total_files, whole.files_truncated) == (3, False)


@pytest.mark.parametrize(
    ("source", "tests", "expected"),
    [
        ("src/app/auth.py", ["tests/test_x.py"], "tests/test_auth.py"),
        ("src/app/auth.py", ["tests/unit/y_test.py"], "tests/unit/auth_test.py"),
        ("src/app/auth.py", ["src/app/test_x.py"], "src/app/test_auth.py"),
        ("src/app/auth.py", [], "tests/test_auth.py"),
        ("src/foo.ts", ["src/bar.test.ts"], "src/foo.test.ts"),
        ("src/foo.ts", ["src/__tests__/bar.spec.ts"], "src/__tests__/foo.spec.ts"),
        ("src/foo.tsx", ["test/bar.test.js"], "test/foo.test.tsx"),
        ("src/foo.js", [], "src/foo.test.js"),
        ("pkg/x.go", [], "pkg/x_test.go"),
        ("src/main/java/a/B.java", [], "src/test/java/a/BTest.java"),
        ("src/main/kotlin/a/B.kt", ["src/test/kotlin/a/CTests.kt"], "src/test/kotlin/a/BTests.kt"),
        ("app/models/u.rb", [], "spec/models/u_spec.rb"),
        ("app/models/u.rb", ["test/models/v_test.rb"], "test/models/u_test.rb"),
        ("crates/core/src/parse.rs", [], "crates/core/tests/parse.rs"),
    ],
)
def test_suggested_paths_follow_the_layout_seen_in_the_diff(source: str, tests: list[str], expected: str) -> None:
    assert suggest_test_path(source, tests) == expected


def test_suggestion_picks_the_source_that_matches_the_criterion() -> None:
    files = [item("src/billing.py", additions=500), item("src/login.py", additions=1)]
    manifest = build_manifest(files, [crit("T1", "Login rejects a wrong password")])
    suggestion = manifest.coverage[0].suggestion
    assert suggestion is not None and suggestion.path == "tests/test_login.py"


def test_suggestion_without_sources_uses_an_existing_test_file_or_a_default() -> None:
    with_test = build_manifest([item("tests/test_api.py")], [crit("T1")]).coverage[0].suggestion
    bare = build_manifest([item("README.md")], [crit("T1", "Logs in")]).coverage[0].suggestion
    assert with_test is not None and with_test.path == "tests/test_api.py"
    assert bare is not None and bare.path == "tests/test_logs_in.py"


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("User can log in!", "user_can_log_in"),
        ("Café déjà vu — ünïcödé", "cafe_deja_vu_unicode"),
        ("日本語のみ", "criterion"),
        ("word " * 100, "word_" * 9 + "word"),
        ("x" * 80, "x" * 50),
    ],
)
def test_slugs_are_ascii_snake_case_and_bounded(text: str, slug: str) -> None:
    assert slugify(text) == slug and len(slug) <= 50


def test_manifest_round_trips_through_json() -> None:
    patch = added("def test_T1_a(): pass", "def test_T9_b(): pass", "def test_c_T2(): pass")
    files = [item("src/a.py"), item("tests/test_a.py", patch)]
    manifest = build_manifest(files, [crit("T1"), crit("T2")])
    assert manifest.uncarried and Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def test_a_manifest_stored_before_uncarried_ids_were_listed_still_reads() -> None:
    files = [item("tests/test_a.py", added("def test_T1_a(): pass"))]
    stored = build_manifest(files, [crit("T1")]).to_dict()
    del stored["uncarried"]
    assert Manifest.from_dict(stored) == build_manifest(files, [crit("T1")])


def test_a_malformed_uncarried_entry_raises_a_clear_error() -> None:
    stored = build_manifest([], []).to_dict()
    stored["uncarried"] = [{"tid": "T1", "path": "t.py", "name": None, "line": 1}]
    with pytest.raises(ManifestDataError):
        Manifest.from_dict(stored)
    stored["uncarried"] = [asdict(UncarriedRef("T1", "t.py", None, 1, "advice"))]
    assert Manifest.from_dict(stored).uncarried == (UncarriedRef("T1", "t.py", None, 1, "advice"),)


@pytest.mark.parametrize(
    "data",
    [{}, {"version": 99}, {"version": 1, "files": "x"}, {"version": 1, "files": [{"kind": "bogus"}]}],
)
def test_malformed_stored_manifests_raise_a_clear_error(data: dict[str, Any]) -> None:
    with pytest.raises(ManifestDataError):
        Manifest.from_dict(data)


def test_a_one_megabyte_test_patch_is_scanned_quickly() -> None:
    lines = [f"def test_T{n % 50 + 1}_case_{n}():\n    assert run('2024-01-01T12:00') == {n}" for n in range(14_000)]
    patch = added(*"\n".join(lines).split("\n"))
    assert len(patch) > 900_000
    started = time.perf_counter()
    refs = find_test_ids(patch, path="tests/test_big.py")
    assert time.perf_counter() - started < 1.0
    assert len(refs) == 500  # capped per file


def test_a_long_run_of_blanks_after_a_test_call_is_scanned_in_linear_time() -> None:
    # `test` + blanks + no quote: the declaration regex tried every split of the blanks around an optional "(",
    # 20,000 of them took seconds (200,000, minutes) and blocked the server; now it is one pass.
    line = "test" + " \t" * 10_000 + "x' T1::"
    started = time.perf_counter()
    refs = find_test_ids(added(line, "def test_T2_after(): pass"), path="tests/test_blank.py")
    assert time.perf_counter() - started < 0.5
    assert [(ref.tid, ref.name) for ref in refs] == [("T1", None), ("T2", "test_T2_after")]


def test_suggestions_for_many_criteria_over_many_sources_are_quick() -> None:
    # Each criterion re-split every source path: 500 criteria over a 3,000-file pull request took seconds.
    files = [item(f"src/area_{n}/deep/path/with/words/module_{n}.py") for n in range(MAX_FILES - 1)]
    files.append(item("src/billing/invoice.py"))
    criteria = [crit(f"T{n}", f"Criterion {n} about login", issue=n // 100) for n in range(1, 500)]
    criteria.append(crit("T500", "Invoice totals add up", issue=5))
    started = time.perf_counter()
    manifest = build_manifest(files, criteria)
    assert time.perf_counter() - started < 1.0
    paths = [c.suggestion.path if c.suggestion else None for c in manifest.coverage]
    assert (paths[6], paths[-1]) == ("tests/test_module_7.py", "tests/test_invoice.py")


@pytest.mark.parametrize(("test_file", "suggested"), [
    ("tests/test_auth.py", "test_T2_logs_out"),
    ("src/test/java/AuthTest.java", "test_T2_logs_out"),
    ("tests/auth.rs", "test_T2_logs_out"),
    ("auth_test.go", "Test_T2_logs_out"),
    ("tests/auth.test.ts", "T2::test_logs_out"),
    ("spec/auth_spec.rb", "T2::test_logs_out"),
])
def test_a_suggested_test_name_is_one_its_language_allows_and_the_report_carries(test_file: str,
                                                                                  suggested: str) -> None:
    # A Python, Java or Rust function cannot be named 'T2::...': the suggestion was not writable as given.
    manifest = build_manifest([item(test_file, added("x = 1"))], [crit("T2", "Logs out")])
    suggestion = manifest.coverage[0].suggestion
    assert suggestion is not None and (suggestion.name, suggestion.path) == (suggested, test_file)
    assert name_tid(suggestion.name) == "T2"

