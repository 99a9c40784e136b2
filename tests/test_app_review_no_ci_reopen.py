"""A head checked "No CI workflow" is asked about again when its pull request is reopened, which runs CI on it."""

from __future__ import annotations

from gidgethub import sansio

from handlers import manifests as manifest_handlers
from storage import pulls as pull_store
from tests.test_ci_verdict_no_ci import WORKFLOWS, bare, open_pull
from tests.test_handlers_ci_results import REPO, SHA, Harness

__all__ = ["bare"]  # the fixture: a repository without CI, with an issue and its checklist


async def reopen(h: Harness) -> None:
    """Close and reopen PR #7 (same head): its reopened delivery's manifest job."""
    event = sansio.Event({"action": "reopened", "pull_request": {"number": 7, "state": "open"},
                          "repository": {"full_name": REPO}}, event="pull_request", delivery_id="r")
    for callback in manifest_handlers.router.fetch(event):
        await callback(event, h.context(event))


async def test_reopening_after_ci_was_added_waits_for_it_instead_of_passing_neutral(bare: Harness) -> None:
    """Workflows added to the base since, the reopened pull request's CI ran on the same head, while its check said
    "No CI workflow" neutral again (the stored answer), which passes a required check before the tests report."""
    await open_pull(bare)
    assert [(c["status"], c["conclusion"]) for c in bare.check_runs()] == [("completed", "neutral")]
    bare.fake.set_workflows(REPO, ["CI"])
    await reopen(bare)
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 2
    # A completed check run cannot go back in progress on GitHub: a new one is made for the head.
    assert [(c["status"], c["conclusion"]) for c in bare.check_runs()] == [("completed", "neutral"),
                                                                          ("in_progress", None)]
    row = await pull_store.get_manifest(bare.db, REPO, 7, SHA)
    assert row is not None and row.ci_workflows == "some"


async def test_reopening_without_ci_still_concludes_neutral(bare: Harness) -> None:
    await open_pull(bare)
    await reopen(bare)
    assert len(bare.fake.calls("GET", WORKFLOWS)) == 2
    assert [(c["status"], c["conclusion"]) for c in bare.check_runs()] == [("completed", "neutral")]
