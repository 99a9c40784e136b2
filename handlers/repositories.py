"""Follow a repository renamed or transferred on GitHub: what is stored under its old name moves at once."""

from __future__ import annotations

from gidgethub import routing, sansio

from quantumreview.checklists import follow_rename
from quantumreview.context import Context

router = routing.Router()


@router.register("repository", action="renamed")
@router.register("repository", action="transferred")
async def follow_repository(event: sansio.Event, ctx: Context) -> None:
    """Re-key the repository's checklists and pull requests to its name now (GitHub keeps its id).

    Why now: else they stayed under the old name (hidden from the dashboard, not found by events carrying the
    new one) until the repository's next issue or pull request event. Why GitHub's list and not the payload's
    name: a late delivery carries an older name and must not rename it back.
    """
    await follow_rename(ctx, event.data.get("repository"))
