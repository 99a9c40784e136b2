"""Secrets at rest: one key, from JWT_SECRET or a key file beside the database, for encryption and session signing.

Why a key file: a fresh install has no JWT_SECRET yet, but tokens and the App's PEM must never sit in SQLite in
plain text; the file (mode 0600, on the same volume) keeps a copied database or backup useless on its own.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_NAME = "secret.key"


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted (wrong key or damaged value)."""


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"quantumreview:" + purpose).derive(master)


class SecretBox:
    """Encrypts small secrets (Fernet) and provides the session-signing key, both derived from one master key.

    During a key rotation (JWT_SECRET_PREVIOUS) the previous master key still opens what it sealed, and still
    verifies the sessions it signed, while everything new is sealed and signed with the current one.
    """

    def __init__(self, master: bytes, previous: bytes | None = None) -> None:
        if len(master) < 32 or (previous is not None and len(previous) < 32):
            raise ValueError("the master key must be at least 32 bytes")
        self._current = Fernet(base64.urlsafe_b64encode(_derive(master, b"encrypt")))
        older = [] if previous is None else [Fernet(base64.urlsafe_b64encode(_derive(previous, b"encrypt")))]
        self._fernet = MultiFernet([self._current, *older])
        self.session_key = _derive(master, b"session")
        # What a session cookie may be signed with: the current key first, then the previous one.
        self.session_keys = (self.session_key, *(() if previous is None else (_derive(previous, b"session"),)))

    def __repr__(self) -> str:
        return "SecretBox(<redacted>)"

    @property
    def rotating(self) -> bool:
        """True while a previous key (JWT_SECRET_PREVIOUS) is still accepted."""
        return len(self.session_keys) > 1

    @classmethod
    def load_or_create(cls, jwt_secret: str | None, key_dir: Path, previous: str | None = None) -> SecretBox:
        """Use JWT_SECRET (and JWT_SECRET_PREVIOUS) when set; otherwise read (or create, mode 0600)
        `key_dir/secret.key`."""
        if jwt_secret:
            return cls(jwt_secret.encode(), previous.encode() if previous else None)
        path = key_dir / KEY_FILE_NAME
        if not path.exists():
            key_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return cls(path.read_text().strip().encode())

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypt and authenticate `plaintext`."""
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        """Decrypt a value made by encrypt(); SecretBoxError if it was not made with this key (or the previous)."""
        try:
            return self._fernet.decrypt(token).decode()
        except (InvalidToken, ValueError, TypeError) as exc:
            raise SecretBoxError("stored secret cannot be decrypted with this key") from exc

    def rewrap(self, token: bytes) -> bytes | None:
        """`token` sealed again with the current key if only the previous key opens it; else None (nothing to do,
        or nothing this box can open)."""
        try:
            self._current.decrypt(token)
            return None
        except (InvalidToken, ValueError, TypeError):
            pass
        try:
            return self._fernet.rotate(token)
        except (InvalidToken, ValueError, TypeError):
            return None
