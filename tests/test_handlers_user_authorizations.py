"""github_app_authorization.revoked: the user's tokens are deleted and their sessions end (WH-26)."""

from __future__ import annotations

from typing import Any

from gidgethub import sansio

from handlers import user_authorizations
from quantumreview.context import Context
from quantumreview.settings import Settings
from quantumreview.testing.plugin import read_payload
from storage import users
from storage.db import Database
from storage.users import StoredTokens, User, UserRepository


async def no_enqueue(*_: Any, **__: Any) -> list[int]:
    return []


async def no_notify(*_: Any, **__: Any) -> int:
    return 0


async def dispatch(db: Database, data: dict[str, Any]) -> None:
    event = sansio.Event(data, event="github_app_authorization", delivery_id="d-1")
    callbacks = user_authorizations.router.fetch(event)
    assert list(callbacks) == [user_authorizations.revoke_authorization]
    ctx = Context(event=event, db=db, settings=Settings(), gh=None, github=None, installation_id=None,
                  delivery_id="d-1", job_id=1, attempt=1, enqueue=no_enqueue, notify=no_notify)
    for callback in callbacks:
        await callback(event, ctx)


async def add_user(db: Database, user_id: int) -> None:
    await users.save_user(db, User(id=user_id, login=f"u{user_id}"), StoredTokens(b"t", b"r", 1.0, 2.0))
    await users.set_user_repositories(db, user_id, [UserRepository("octo/a", 7, "admin")])


async def test_revocation_deletes_the_senders_tokens_and_ends_their_sessions(db: Database) -> None:
    payload = read_payload("github_app_authorization.revoked")
    revoked_id = payload["sender"]["id"]
    await add_user(db, revoked_id)
    await add_user(db, revoked_id + 1)
    await dispatch(db, payload)
    user = await users.get_user(db, revoked_id)
    assert user is not None and user.session_version == 2
    assert await users.get_tokens(db, revoked_id) is None
    assert await users.list_user_repositories(db, revoked_id) == []
    other = await users.get_user(db, revoked_id + 1)
    assert other is not None and other.session_version == 1
    assert await users.get_tokens(db, revoked_id + 1) is not None


async def test_revocation_is_idempotent_on_redelivery(db: Database) -> None:
    payload = read_payload("github_app_authorization.revoked")
    await add_user(db, payload["sender"]["id"])
    await dispatch(db, payload)
    await dispatch(db, payload)
    assert await users.get_tokens(db, payload["sender"]["id"]) is None


async def test_revocation_for_an_unknown_user_changes_nothing(db: Database) -> None:
    await add_user(db, 5)
    await dispatch(db, {"action": "revoked", "sender": {"login": "ghost", "id": 999}})
    await dispatch(db, {"action": "revoked", "sender": {"login": "no-id"}})
    assert await users.get_tokens(db, 5) is not None
    assert await users.get_user(db, 999) is None
