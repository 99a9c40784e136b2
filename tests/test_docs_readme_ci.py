"""The README's "How it works" matches the CI handler: the report-upload step, the test-ID examples
analysis/test_ids.py reads, the 120 s look again (1edae16) and pull_request.unlocked (4cecf39)."""

from __future__ import annotations

import re

from gidgethub import sansio

from handlers.ci_results import WAIT_RECHECK_SECONDS
from handlers.manifests import router as manifests_router
from quantumreview.analysis.test_ids import classname_tid, name_tid
from quantumreview.ci_results import JUNIT_FILE, REPORT_ARTIFACT
from quantumreview.pull_requests import REPORT_UPLOAD_HELP
from tests.test_docs_deploy import README, section


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def linked_section() -> str:
    """The README section the "no CI workflow" check links to for the upload step."""
    anchor = REPORT_UPLOAD_HELP.split("#", 1)[1]
    text = README.read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    [heading] = [h for h in headings if slug(h) == anchor]
    return section(README, heading)


def test_the_upload_step_the_check_links_to_names_the_artifact_and_file_the_handler_reads() -> None:
    [workflow] = re.findall(r"```yaml\n(.*?)```", linked_section(), flags=re.S)
    assert re.search(rf"--junitxml={re.escape(JUNIT_FILE)}\b", workflow)
    assert re.search(r"uses: actions/upload-artifact@v4\b", workflow)
    assert re.search(rf"name: {re.escape(REPORT_ARTIFACT)},", workflow)
    assert re.search(rf"path: {re.escape(JUNIT_FILE)},", workflow)
    assert f"artifact `{REPORT_ARTIFACT}` (holding `{JUNIT_FILE}`" in " ".join(linked_section().split())


def test_the_readmes_test_id_examples_carry_the_id() -> None:
    text = " ".join(linked_section().split())
    names = re.findall(r'`it\("([^"]+)"\)`', text) + re.findall(r"`def (test_\w+)`", text)
    classnames = re.findall(r'`classname="([^"]+)"`', text)
    assert names and classnames
    assert [name_tid(name) for name in names] == ["T1"] * len(names)
    assert [classname_tid(name) for name in classnames] == ["T1"] * len(classnames)
    assert "(`T01` is T1)" in text and name_tid("T01::x") == "T1"
    # Written only in a tag, an ID is not in the report: the README says so.
    assert '(`@Tag("T1")`) is not in the JUnit report' in text and name_tid('@Tag("T1")') is None


def test_what_the_readme_says_of_a_waiting_check_and_a_locked_pull_request_is_so() -> None:
    text = " ".join(linked_section().split())
    assert f"a check left waiting is judged again once, {WAIT_RECHECK_SECONDS:g} s later" in text
    event = re.search(r"the comment is posted when the pull request is unlocked \(`([a-z_]+)\.([a-z_]+)`\)", text)
    assert event, "the README no longer says when a locked pull request's comment is posted"
    unlocked = sansio.Event({"action": event[2]}, event=event[1], delivery_id="docs")
    assert manifests_router.fetch(unlocked), f"no handler for {event[1]}.{event[2]}"
