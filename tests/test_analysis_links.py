"""Linked issues: closing keywords as GitHub reads them, hidden Markdown, the branch-name fallback, bounds."""

from __future__ import annotations

import time

import pytest

from quantumreview.analysis.links import MAX_LINKS, IssueLink, branch_issue_number, find_linked_issues

REPO = "octo/app"


def numbers(body: str | None, *, title: str = "", head_ref: str = "topic") -> list[tuple[str, int, str]]:
    """Return (repo, number, source) for every link found."""
    return [(link.repo, link.number, link.source) for link in find_linked_issues(title, body, head_ref, REPO)]


@pytest.mark.parametrize(
    "body",
    [
        "Closes #12",
        "closes #12",
        "CLOSED #12",
        "fix #12",
        "Fixes: #12",
        "fixed #12",
        "Resolve #12",
        "resolves:#12",
        "Resolved   #12",
        "This PR fixes #12.",
    ],
)
def test_every_closing_keyword_links_in_any_case(body: str) -> None:
    assert numbers(body) == [(REPO, 12, "keyword")]


@pytest.mark.parametrize("body", ["prefixes #12", "fixing #12", "closes#12", "closes #12abc", "see #12", "hotfix-#3"])
def test_words_that_are_not_closing_keywords_do_not_link(body: str) -> None:
    assert numbers(body) == []


def test_several_keywords_link_several_issues_in_order() -> None:
    assert numbers("Fixes #1, fixes #2\nResolves other/lib#3") == [
        (REPO, 1, "keyword"),
        (REPO, 2, "keyword"),
        ("other/lib", 3, "keyword"),
    ]


def test_one_keyword_links_only_its_own_reference_as_on_github() -> None:
    assert numbers("Closes #1 and #2") == [(REPO, 1, "keyword")]


def test_issue_urls_link_on_any_host() -> None:
    body = "Fixes https://github.com/a/b/issues/5 and fixes https://ghe.corp.example:8443/c/d/issues/6#top"
    assert numbers(body) == [("a/b", 5, "keyword"), ("c/d", 6, "keyword")]


def test_pull_request_urls_do_not_link() -> None:
    assert numbers("Fixes https://github.com/a/b/pull/5") == []


def test_same_repository_spelled_differently_is_deduplicated() -> None:
    assert numbers("Fixes #4\nfixes OCTO/App#4\ncloses https://github.com/octo/app/issues/4") == [(REPO, 4, "keyword")]


def test_title_links_count_before_body_links() -> None:
    assert numbers("Fixes #2", title="Fix #1: login") == [(REPO, 1, "keyword"), (REPO, 2, "keyword")]


@pytest.mark.parametrize(
    "body",
    [
        "```\nFixes #7\n```",
        "~~~python\nfixes #7\n~~~",
        "Use `fixes #7` in the body",
        "Use ``fixes `#7` here`` please",
        "> Fixes #7",
        "> quoted\nfixes #7",
        "<!-- Fixes #7 -->",
        "<!--\nTemplate: Fixes #7\n-->",
        "<!-- unterminated\nFixes #7",
    ],
)
def test_code_quotes_and_comments_do_not_link(body: str) -> None:
    assert numbers(body) == []


@pytest.mark.parametrize(
    "body", ["> quoted\n- Fixes #12", "> quoted\n1. fixes #12", "> q\n## Fixes #12", "> q\n---\nFixes #12"]
)
def test_a_list_item_or_heading_after_a_quote_is_not_part_of_it(body: str) -> None:
    # Only paragraph text continues a quote lazily; these lines start a block of their own, which GitHub
    # reads as prose, but they were skipped as part of the quote and the issue was not linked.
    assert numbers(body) == [(REPO, 12, "keyword")]
    assert numbers("> quoted\nfixes #7\n2. fixes #8\n" + body) == [(REPO, 12, "keyword")]


def test_text_after_hidden_parts_still_links() -> None:
    body = "```\nfixes #1\n```\n> fixes #2\n\n<!-- fixes #3 --> Fixes #4 `x` closes #5\nan ` unmatched fixes #6"
    assert [n for _, n, _ in numbers(body)] == [4, 5, 6]


@pytest.mark.parametrize(
    "body",
    ["```npm test``` passes again\n\nFixes #12", "``` `x` ```\nFixes #12"],
)
def test_a_line_of_inline_code_with_three_backticks_does_not_hide_the_rest(body: str) -> None:
    # A backtick fence's info string cannot hold a backtick: such a line is inline code. It was read as an
    # unclosed fence, so every keyword after it was ignored and the pull request linked nothing.
    assert numbers(body) == [(REPO, 12, "keyword")]
    assert numbers("~~~ `info`\nFixes #3\n~~~\n" + body) == [(REPO, 12, "keyword")]  # a tilde fence may


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("42-login", 42),
        ("feature/42-login", 42),
        ("issue-42", 42),
        ("gh-42-foo", 42),
        ("Issue_7", 7),
        ("refs/heads/users/me/9_fix", 9),
        ("42", 42),
    ],
)
def test_branch_names_that_carry_an_issue_number(ref: str, expected: int) -> None:
    assert branch_issue_number(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "release/1.2",
        "release/12",
        "v2-login",
        "7-0-stable",
        "2024-05-01-notes",
        "main",
        "0-zero",
        "lodash-4.17.21",
        "JIRA-12",
        "99999999999-x",
    ],
)
def test_branch_names_without_an_issue_number(ref: str) -> None:
    assert branch_issue_number(ref) is None


def test_branch_is_a_fallback_only_when_no_keyword_links() -> None:
    assert numbers("no keyword", head_ref="42-login") == [(REPO, 42, "branch")]
    assert numbers("Fixes #3", head_ref="42-login") == [(REPO, 3, "keyword")]


def test_missing_body_and_odd_types_do_not_crash() -> None:
    assert find_linked_issues("", None, "", REPO) == ()
    assert find_linked_issues(None, 12, None, REPO) == ()  # type: ignore[arg-type]


def test_links_are_capped() -> None:
    body = " ".join(f"fixes #{n}" for n in range(1, 500))
    assert len(find_linked_issues("", body, "", REPO)) == MAX_LINKS


def test_links_are_frozen_values() -> None:
    link = find_linked_issues("", "fixes #1", "", REPO)[0]
    assert link == IssueLink(REPO, 1, "keyword")
    with pytest.raises(AttributeError):
        link.number = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "body",
    [
        "`" * 1_000_000,
        "` `` ``` " * 110_000,
        "fixes " * 170_000,
        "<!--" * 250_000,
        "> fixes #1\n" * 90_000,
        "fixes " + "a" * 1_000_000,
        "fixes a/" + "b" * 1_000_000,
    ],
    ids=["backticks", "unmatched-runs", "keywords", "comment-openers", "quotes", "long-word", "long-repo"],
)
def test_one_megabyte_hostile_bodies_finish_fast(body: str) -> None:
    started = time.perf_counter()
    find_linked_issues("", body, "", REPO)
    assert time.perf_counter() - started < 1.0
