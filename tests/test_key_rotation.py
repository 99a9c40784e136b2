"""RELIABILITY OA-09: JWT_SECRET rotation with JWT_SECRET_PREVIOUS — old sessions live out their lifetime, stored
secrets are re-sealed with the new key at start, and every fresh session is signed with the new key."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from quantumreview import keys
from quantumreview.app import create_app
from quantumreview.credentials import AppCredentials
from quantumreview.crypto import SecretBox, SecretBoxError
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings, SettingsError
from quantumreview.setup_flow import store_credentials
from storage import users
from storage.db import Database
from tests.conftest import SettingsFactory
from tests.test_auth import MASTER

OLD, NEW = MASTER.decode(), "n" * 40


def test_the_box_opens_old_values_and_seals_only_with_the_new_key() -> None:
    old, rotating = SecretBox(OLD.encode()), SecretBox(NEW.encode(), OLD.encode())
    sealed_before = old.encrypt("ghs_before")
    assert rotating.decrypt(sealed_before) == "ghs_before"
    resealed = rotating.rewrap(sealed_before)
    assert resealed is not None and SecretBox(NEW.encode()).decrypt(resealed) == "ghs_before"
    assert rotating.rewrap(resealed) is None  # already under the new key: nothing to do
    assert rotating.rewrap(SecretBox(b"x" * 40).encrypt("foreign")) is None  # neither key opens it
    assert SecretBox(NEW.encode()).decrypt(rotating.encrypt("fresh")) == "fresh"
    with pytest.raises(SecretBoxError):
        old.decrypt(rotating.encrypt("fresh"))
    assert rotating.session_keys == (SecretBox(NEW.encode()).session_key, old.session_key)
    assert SecretBox(NEW.encode()).session_keys == (SecretBox(NEW.encode()).session_key,)


def test_jwt_secret_previous_is_checked_and_never_shown() -> None:
    settings = Settings.from_env({"JWT_SECRET": NEW, "JWT_SECRET_PREVIOUS": OLD})
    assert settings.jwt_secret_previous == OLD and OLD not in repr(settings)
    with pytest.raises(SettingsError, match="JWT_SECRET_PREVIOUS must be at least 32 characters"):
        Settings.from_env({"JWT_SECRET": NEW, "JWT_SECRET_PREVIOUS": "short"})
    with pytest.raises(SettingsError, match="set the new key as JWT_SECRET"):
        Settings.from_env({"JWT_SECRET_PREVIOUS": OLD})


async def test_start_reseals_stored_secrets_with_the_new_key(
        make_settings: SettingsFactory, aiohttp_client: Any, caplog: pytest.LogCaptureFixture,
        rsa_private_key: str) -> None:
    settings = make_settings(app_id=None, private_key=None, webhook_secret=None, jwt_secret=OLD)
    old = SecretBox(OLD.encode())
    db = await Database.open(settings.database_path)
    try:
        await store_credentials(db, old, AppCredentials(app_id=5, private_key=rsa_private_key,
                                                        webhook_secret="w" * 20, slug="qr"))
        await users.save_user(db, users.User(id=42, login="mona"), users.StoredTokens(
            token_enc=old.encrypt("ghu_token"), refresh_enc=old.encrypt("ghr_refresh"), token_expires_at=None,
            refresh_expires_at=None))
    finally:
        await db.close()
    caplog.set_level(logging.WARNING)
    rotated = make_settings(app_id=None, private_key=None, webhook_secret=None, jwt_secret=NEW,
                            jwt_secret_previous=OLD)
    client = await aiohttp_client(create_app(rotated, registry=HandlerRegistry.from_routers([])))
    assert "4 stored secret(s) re-encrypted with JWT_SECRET" in caplog.text  # the PEM, webhook secret, 2 tokens
    assert client.app[keys.credentials].current is not None and client.app[keys.credentials].current.app_id == 5
    new_only, db = SecretBox(NEW.encode()), client.app[keys.db]
    rows = await db.fetchall("SELECT name, value FROM credentials WHERE secret = 1")
    assert {row["name"]: new_only.decrypt(bytes(row["value"])) for row in rows} == {
        "private_key": rsa_private_key, "webhook_secret": "w" * 20}
    tokens = await users.get_tokens(db, 42)
    assert tokens is not None and tokens.refresh_enc is not None
    assert (new_only.decrypt(tokens.token_enc), new_only.decrypt(tokens.refresh_enc)) == ("ghu_token", "ghr_refresh")


async def test_rotation_reseals_a_secret_stored_as_text_by_hand(db: Database) -> None:
    """A value set in the sqlite3 shell is TEXT: bytes(str) raised TypeError and the start failed during a
    JWT_SECRET rotation. It is read as its bytes and resealed (stored as a BLOB again)."""
    from storage.sealed import reencrypt_secrets

    old, rotating = SecretBox(OLD.encode()), SecretBox(NEW.encode(), OLD.encode())
    await db.execute("INSERT INTO credentials (name, value, secret, updated_at) VALUES ('webhook_secret', ?, 1, 0)",
                     (old.encrypt("w" * 20).decode(),))
    await db.execute("INSERT INTO users (id, login, token_enc, refresh_enc, created_at, updated_at) "
                     "VALUES (42, 'mona', ?, NULL, 0, 0)", (old.encrypt("ghu_token").decode(),))
    assert await db.fetchvalue("SELECT typeof(value) FROM credentials") == "text"
    assert await reencrypt_secrets(db, rotating.rewrap) == 2
    new_only = SecretBox(NEW.encode())
    assert new_only.decrypt(bytes(await db.fetchvalue("SELECT value FROM credentials"))) == "w" * 20
    assert new_only.decrypt(bytes(await db.fetchvalue("SELECT token_enc FROM users"))) == "ghu_token"
