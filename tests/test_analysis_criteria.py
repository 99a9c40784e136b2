"""Acceptance-criteria extraction: the labelled corpus, synthetic markdown and hostile bodies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from quantumreview.analysis.criteria import MAX_CRITERIA, Criterion, extract_criteria, normalise_title

CORPUS = Path(__file__).parent / "fixtures" / "issues"
CASES = sorted(path.name.removesuffix(".expected.json") for path in CORPUS.glob("*.expected.json"))


def texts(body: str | None) -> list[str]:
    """Return just the criterion texts extracted from a body."""
    return [criterion.text for criterion in extract_criteria(body).criteria]


def test_corpus_copy_is_complete() -> None:
    assert len(CASES) == 59
    assert all((CORPUS / f"{slug}.md").is_file() for slug in CASES)


@pytest.mark.parametrize("slug", CASES)
def test_corpus_case_gives_its_expected_criteria(slug: str) -> None:
    expected = json.loads((CORPUS / f"{slug}.expected.json").read_text(encoding="utf-8"))
    body = (CORPUS / f"{slug}.md").read_text(encoding="utf-8")
    result = extract_criteria(body)
    assert [c.text for c in result.criteria] == expected["criteria"]
    assert result.has_section is expected["has_section"]
    assert result.total_found == len(expected["criteria"])
    assert result.truncated is False


def test_sub_items_and_continuations_become_detail_of_their_parent() -> None:
    body = (
        "## Acceptance Criteria\n- [ ] Switch language:\n    - French\n    - English\n  more words\n- [ ] Translate\n"
    )
    criteria = extract_criteria(body).criteria
    assert criteria == (
        Criterion("Switch language:", "- French\n- English\nmore words", None),
        Criterion("Translate", "", None),
    )


def test_crlf_and_lone_cr_bodies_read_like_lf() -> None:
    lf = "Intro\n\n## Acceptance Criteria\n- [ ] one\n  detail\n- [x] two\n"
    assert extract_criteria(lf.replace("\n", "\r\n")) == extract_criteria(lf)
    assert extract_criteria(lf.replace("\n", "\r")) == extract_criteria(lf)
    assert texts(lf.replace("\n", "\r\n")) == ["one", "two"]


def test_lone_surrogates_become_replacement_characters_so_criteria_can_be_stored() -> None:
    # GitHub's JSON can carry "\ud800"; such a criterion could not be encoded as UTF-8, so storing the
    # checklist raised UnicodeEncodeError on every attempt and the issue never got one.
    criteria = extract_criteria("## Acceptance Criteria\n- [ ] emoji \ud83d cut\n  detail \udfff\n- [ ] 😀 ok").criteria
    assert [(c.text, c.detail) for c in criteria] == [("emoji \ufffd cut", "detail \ufffd"), ("😀 ok", "")]
    for criterion in criteria:
        (criterion.text + criterion.detail).encode("utf-8")


def test_a_byte_order_mark_before_the_first_heading_is_ignored() -> None:
    # GitHub's Markdown skips a leading BOM, so the heading renders; the extractor saw "\ufeff## ..." and
    # found no section, so the issue got no checklist.
    body = "## Acceptance Criteria\n- one\n- two\n## Notes\n- [ ] not a criterion"
    assert extract_criteria("\ufeff" + body) == extract_criteria(body)
    assert texts("\ufeff" + body) == ["one", "two"]


def test_tab_indented_sub_items_stay_with_their_parent() -> None:
    body = "## Acceptance Criteria\n-\tfirst\n\t-\tnested\n-\tsecond"
    criteria = extract_criteria(body).criteria
    assert [c.text for c in criteria] == ["first", "second"]
    assert criteria[0].detail == "-\tnested"


def test_unicode_and_emoji_headings_and_items() -> None:
    body = "## ✅ Критерии приемки 🎉\n- 🚀 запуск работает 👍🏽\n- 验收\n\n## 👩‍💻 Notes\n- not a criterion"
    assert texts(body) == ["🚀 запуск работает 👍🏽", "验收"]


@pytest.mark.parametrize(
    ("label", "matches"),
    [
        ("## 🏗️ Acceptance Criteria", True),
        ("**Acceptance-criteria:**", True),
        ("**Done is**:", True),
        ("Acceptance Criteria :", True),
        ("### **Success criteria**", True),
        ("Critères d’acceptation:", True),
        ("Acceptance Criteria", False),
        ("**Akzeptanzkriterien MUSS**", False),
        ("Definition of Done (DoD):", False),
        ("Acceptance / DoD:", False),
        ("We need Acceptance Criteria:", False),
    ],
)
def test_only_listed_labels_start_a_section(label: str, matches: bool) -> None:
    result = extract_criteria(f"{label}\n- first\n")
    assert result.has_section is matches
    assert texts(f"{label}\n- first\n") == (["first"] if matches else [])


def test_invisible_format_characters_do_not_keep_a_heading_from_matching() -> None:
    # A zero-width space, BOM or direction mark pasted into a heading is invisible, but the title did not match.
    for title in ("## Acceptance Criteria\u200b", "## \u200eAccep\u00adtance Criteria", "**AC\ufeff:**"):
        assert texts(f"{title}\n- first") == ["first"], title


def test_label_normalisation_drops_symbols_and_edge_punctuation() -> None:
    assert normalise_title("  🏗️ **Acceptance_Criteria** :") == "acceptance criteria"
    assert normalise_title("Critères d’Acceptation") == "critères d'acceptation"


def test_html_comments_are_ignored_on_one_line_and_across_lines() -> None:
    body = (
        "## Acceptance Criteria\n"
        "<!-- Write your criteria below\n"
        "- [ ] template example\n"
        "-->\n"
        "- [ ] kept <!-- inline note --> item\n"
        "<!-- whole line -->\n"
        "- [ ] second\n"
    )
    assert texts(body) == ["kept  item", "second"]


def test_a_comment_opener_inside_a_code_span_is_text() -> None:
    # `<!--` in inline code was read as an unclosed comment that hid the rest of the body: the criterion was
    # cut at the backtick and every later criterion was lost.
    body = "## Acceptance Criteria\n- [ ] Comments like `<!--` are stripped\n- [ ] second\n"
    body += "- [ ] a ` <!-- real\n-->\n- [ ] c"  # an unmatched backtick is text: this comment is real
    assert texts(body) == ["Comments like `<!--` are stripped", "second", "a `", "c"]


def test_a_comment_cannot_hide_or_invent_a_section_heading() -> None:
    assert extract_criteria("<!-- ## Acceptance Criteria -->\n- plain bullet").has_section is False
    assert texts("<!--\n## Acceptance Criteria\n- [ ] hidden\n") == []


def test_unclosed_fence_hides_the_rest_of_the_body() -> None:
    body = "## Acceptance Criteria\n- [ ] real\n```\n- [ ] code\n## Acceptance Criteria\n- [ ] code too"
    assert texts(body) == ["real"]


def test_gherkin_scenarios_are_criteria_with_steps_as_detail() -> None:
    body = (
        "## Acceptance Criteria\n"
        "Scenario: Login works\n  Given a user\n  When they log in\n  Then they see home\n\n"
        "**Scenario Outline:** Logout\n  Given <user>\n"
    )
    criteria = extract_criteria(body).criteria
    assert [c.text for c in criteria] == ["Login works", "Logout"]
    assert criteria[0].detail == "Given a user\nWhen they log in\nThen they see home"


def test_given_lines_start_criteria_when_there_is_no_scenario() -> None:
    body = "**AC:**\nGiven a user\nWhen they log in\nThen they see home\nGiven a guest\nThen they see login"
    criteria = extract_criteria(body).criteria
    assert [c.text for c in criteria] == ["Given a user", "Given a guest"]
    assert criteria[1].detail == "Then they see login"


def test_author_written_ids_are_read_but_text_is_kept() -> None:
    body = "## AC\n- [ ] T7: login works\n- [ ] [T3] logout\n- [ ] **T12** - profile\n- T2 weeks of logs\n- T4:: tags\n"
    criteria = extract_criteria(body).criteria
    assert [c.author_tid for c in criteria] == ["T7", "T3", "T12", None, "T4"]
    assert criteria[0].text == "T7: login works"


def test_none_and_empty_bodies_give_nothing() -> None:
    for body in (None, "", "   \n\t\n"):
        result = extract_criteria(body)
        assert (result.criteria, result.has_section, result.truncated, result.total_found) == ((), False, False, 0)


def test_negative_limit_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="limit must be zero or more"):
        extract_criteria("- [ ] x", limit=-1)


def test_five_thousand_items_are_capped_and_counted() -> None:
    body = "## Acceptance Criteria\n" + "".join(f"- [ ] item {i}\n" for i in range(5000))
    result = extract_criteria(body)
    assert len(result.criteria) == MAX_CRITERIA
    assert result.truncated is True
    assert result.total_found == 5000
    assert result.criteria[-1].text == "item 99"


def test_custom_limit_caps_task_list_criteria() -> None:
    result = extract_criteria("".join(f"- [ ] task {i}\n" for i in range(30)), limit=10)
    assert [c.text for c in result.criteria] == [f"task {i}" for i in range(10)]
    assert (result.truncated, result.total_found) == (True, 30)


def test_thousand_level_nesting_is_one_criterion_with_bounded_detail() -> None:
    body = "## Acceptance Criteria\n" + "".join("  " * depth + f"- level {depth}\n" for depth in range(1000))
    result = extract_criteria(body)
    assert [c.text for c in result.criteria] == ["level 0"]
    assert result.criteria[0].detail.count("\n") < 100


@pytest.mark.parametrize(
    "body",
    [
        "*" * 65_536,
        "**" + "_" * 65_530 + "**",
        "#" * 65_536,
        "<!--" * 16_384,
        "```\n" * 16_384,
        "-\n" * 32_768,
        "> " * 32_768,
        "[" * 65_536,
        "a" + " " * 65_000 + "b:",
        "Acceptance Criteria:\n" + "- " * 32_000,
        "## Acceptance Criteria\n" + "*_" * 32_000,
        "\x00\ufeff\u2028" * 20_000,
    ],
    ids=[
        "stars", "bold-underscores", "hashes", "comment-openers", "fences", "dashes", "quotes", "brackets",
        "long-gap", "dash-run", "emphasis-run", "control-chars",
    ],
)  # fmt: skip
def test_markup_only_bodies_finish_fast_without_error(body: str) -> None:
    started = time.perf_counter()
    result = extract_criteria(body)
    assert time.perf_counter() - started < 1.0
    assert len(result.criteria) <= MAX_CRITERIA


def test_full_size_body_keeps_every_criterion_in_order() -> None:
    item = "- [ ] criterion {0} works with `code`, **bold** and a [link](https://example.com)\n"
    lines = ["## Acceptance Criteria\n"] + [item.format(i) for i in range(90)]
    body = "".join(lines)
    body += "x" * (65_536 - len(body))
    assert len(body) == 65_536
    result = extract_criteria(body)
    assert result.total_found == 90
    assert result.criteria[89].text.startswith("criterion 89 works")


def test_label_section_ends_at_the_next_label_line_or_two_blank_lines() -> None:
    assert texts("Acceptance criteria:\n- a\nNotes:\n- b") == ["a"]
    assert texts("**AC**\n- a\n\n- b\n\n\n- c") == ["a", "b"]
    assert texts("## Acceptance criteria\n- a\nNotes:\n- b\n\n\n- c\n# Other\n- d") == ["a", "b", "c"]


def test_setext_heading_section_ends_at_a_heading_of_the_same_level() -> None:
    body = "Acceptance criteria\n===\n- a\n### Detail\n- b\nNext\n---\n- c\nOther\n===\n- d"
    assert texts(body) == ["a", "b", "c"]
    assert texts("Intro\n\n---\n- [ ] not a heading") == ["not a heading"]
