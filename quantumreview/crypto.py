"""Secrets at rest: one key, from JWT_SECRET or a key file beside the database, for encryption and session signing.

Why a key file: a fresh install has no JWT_SECRET yet, but tokens and the App's PEM must never sit in SQLite in
plain text; the file (mode 0600, on the same volume) keeps a copied database or backup useless on its own.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import IO

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"
OWNER_ONLY = 0o600


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted (wrong key or damaged value)."""


class KeyFileError(Exception):
    """secret.key exists but cannot be used (unreadable or damaged); the message names the file, never the key."""


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
            _create_key_file(path)
        _restrict_to_owner(path)
        try:
            master = path.read_bytes().strip()
        except OSError as exc:
            raise KeyFileError(f"{path} cannot be read ({exc.strerror}): the server needs it to open the "
                               "secrets stored in the database") from None
        if len(master) < 32:
            raise KeyFileError(f"{path} is damaged (under 32 bytes): restore it from a backup (without it the "
                               "secrets stored in the database cannot be opened), or delete it to start over "
                               "with a new key and set up the App again")
        return cls(master)

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


def _restrict_to_owner(path: Path) -> None:
    """Make the key file owner-only (0600) when its group or others may read or write it.

    Why: the key is all that keeps the secrets stored in the database (0644 as SQLite creates it) from being
    opened; a key put back with cp, sftp or `cat >` gets the umask's 0644, and then any local user could read it.
    A file this process may not change (a read-only mount) is used as it is, with a warning.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # reading it fails next, with the message that names the file
    if not mode & 0o077:
        return
    try:
        os.chmod(path, OWNER_ONLY)
    except OSError as exc:
        log.warning("%s may be read by other users (mode %04o) and its mode cannot be changed (%s): make it "
                    "readable by this server's user only", path, mode, exc.strerror)
        return
    log.warning("%s could be read by other users (mode %04o); its mode is now %04o", path, mode, OWNER_ONLY)


def _create_key_file(path: Path) -> None:
    """Write a new random key to `path` (mode 0600), whole and synced before the name appears.

    Why not write in place: a crash mid-write would leave a short key under the real name, and a key not yet
    synced could be lost in a power cut after secrets sealed with it were committed. Why a link: it fails if
    another process (a second server on the same volume) created the file first, and then both use that one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600
    try:
        _write_synced(os.fdopen(fd, "w"), key)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: create the name exclusively and write the key there
            with contextlib.suppress(FileExistsError):
                _write_synced(os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w"), key)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        os.unlink(temporary)


def _write_synced(handle: IO[str], key: str) -> None:
    with handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
