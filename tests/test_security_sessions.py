"""Sessions across a JWT_SECRET rotation: the previous key's sessions live out their lifetime, but that key can no
longer make new ones (a key is often rotated because it leaked)."""

from __future__ import annotations

from quantumreview import auth
from quantumreview.crypto import SecretBox
from storage import users
from tests import test_auth as shared
from tests.test_auth import MASTER, ROTATED, Dashboard, api_status, log_in, rotate

# The dashboard fixtures live with the auth tests; re-exported so pytest finds them here.
fake, database, make_dashboard, dash = shared.fake, shared.database, shared.make_dashboard, shared.dash
migrated_file = shared.migrated_file


async def session_made_now(dash: Dashboard, key: bytes, user_id: int = 42) -> str:
    """A session cookie signed with `key` at the current time, as anyone holding the key can make one."""
    user = await users.get_user(dash.db, user_id)
    assert user is not None
    return auth.encode_session(key, user, dash.clock(), auth.SESSION_LIFETIME)


async def test_the_previous_key_cannot_sign_new_sessions_after_the_server_started(dash: Dashboard) -> None:
    before = await log_in(dash)  # issued while MASTER was the key
    rotate(dash, SecretBox(ROTATED, MASTER))  # restarted with JWT_SECRET_PREVIOUS=MASTER
    dash.clock.advance(3600)
    forged = await session_made_now(dash, SecretBox(MASTER).session_key)
    assert await api_status(dash, forged) == 401
    assert await api_status(dash, before) == 200  # still inside its lifetime
    assert await api_status(dash, await session_made_now(dash, SecretBox(ROTATED).session_key)) == 200


async def test_previous_key_sessions_issued_just_before_the_start_are_accepted(dash: Dashboard) -> None:
    """Within CLOCK_SKEW of the start: another machine still on the old key during a rolling deploy."""
    await log_in(dash)
    rotate(dash, SecretBox(ROTATED, MASTER))
    dash.clock.advance(auth.CLOCK_SKEW)
    assert await api_status(dash, await session_made_now(dash, SecretBox(MASTER).session_key)) == 200
    dash.clock.advance(1)
    assert await api_status(dash, await session_made_now(dash, SecretBox(MASTER).session_key)) == 401
