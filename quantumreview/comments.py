"""The bot's own comments: one per issue or PR, found by a hidden marker and edited in place, never duplicated."""

from __future__ import annotations

from typing import Any

from gidgethub import BadRequest

from quantumreview.keyed_locks import KeyedLocks

MAX_COMMENT_CHARS = 65_536  # GitHub rejects longer comment bodies


def is_locked_refusal(exc: BadRequest) -> bool:
    """Whether GitHub refused a comment because the conversation is locked (403 "Unable to create comment because
    issue is locked."): only collaborators may comment then, and an App's bot is none, so no retry can succeed."""
    return exc.status_code.value == 403 and "locked" in str(exc).lower()


async def find_marked_comment(gh: Any, repo: str, number: int, marker: str) -> int | None:
    """The id of the first comment on the issue/PR that a bot wrote and that starts with `marker`, or None.

    Why a bot's only: anyone can paste the marker (or quote our comment with it); once our comment was deleted,
    a person's comment holding it was taken for ours and overwritten with the checklist.
    """
    async for comment in gh.getiter(f"/repos/{repo}/issues/{number}/comments?per_page=100"):
        body = comment.get("body") or ""
        user = comment.get("user") or {}
        if body.lstrip().startswith(marker) and user.get("type") == "Bot":
            return int(comment["id"])
    return None


async def upsert_comment(gh: Any, repo: str, number: int, *, marker: str, body: str, known_id: int | None,
                         locks: KeyedLocks) -> int:
    """Edit our comment (by stored id, else by marker) or create it once; return its id. Looking for it and creating
    it hold `locks`' lock for the comment, so two jobs publishing at once make one."""
    if marker not in body:
        raise ValueError("comment body must carry its marker, or it would be posted again")
    body = body[:MAX_COMMENT_CHARS]
    comment_id = known_id
    if comment_id is not None:
        try:
            await gh.patch(f"/repos/{repo}/issues/comments/{comment_id}", data={"body": body})
            return comment_id
        except BadRequest as exc:
            if exc.status_code.value != 404:  # deleted by a person: look again, then recreate
                raise
    async with locks("comment", repo, number, marker):
        # Why look before creating: a crash after the POST but before storing the id must not lead to a second one.
        comment_id = await find_marked_comment(gh, repo, number, marker)
        if comment_id is not None:
            await gh.patch(f"/repos/{repo}/issues/comments/{comment_id}", data={"body": body})
            return comment_id
        created = await gh.post(f"/repos/{repo}/issues/{number}/comments", data={"body": body})
        return int(created["id"])
