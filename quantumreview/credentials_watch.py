"""What the GitHub client learns of its App credentials, kept past it: the webhooks' App id, and waking the jobs
that waited for credentials shown right.

The App id GitHub puts on this server's signed webhooks is what shows the credentials to be (or not to be) the
installations' App (quantumreview.credentials_mismatch). Held in memory only, a fresh process whose only
installation was removed, with no delivery yet since its start, retried that installation's jobs for good and
never marked it deleted (RELIABILITY GH-11). So it is stored (one row) and told to each new client: after a
restart, or when the setup flow replaces the credentials. A different App id only ever keeps a 404 from marking an
installation deleted; the header is not signed, but only signed deliveries are noted, as before.

Jobs deferred for credentials not shown right (CredentialsUnproven) wait uncounted; they are made due at once
when a new client appears (new credentials, or a restart that may bring them) or when the credentials are shown
right (a token minted, a webhook naming their App).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from quantumreview.errors import CredentialsUnproven
from storage import credentials as store
from storage.db import Database

log = logging.getLogger("quantumreview.jobs")

# How last_error starts for a job deferred for credentials not shown right (the runner writes the class name first).
CREDENTIALS_ERROR_PREFIX = CredentialsUnproven.__name__


def _app_id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class CredentialsWatch:
    """Follows the job runner's GitHub client (it may be replaced at any time); one per runner."""

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now
        self._client: object = None
        self._shown = False
        self._stored: int | None = None
        self._wake_due = False

    async def load(self) -> None:
        """Read the stored webhook App id (at start, before any client is followed)."""
        self._stored = await store.load_webhook_app_id(self._db)

    async def follow(self, github: object) -> None:
        """Look at the client now in use: tell a new one the stored App id, store a new App id it noted, and wake
        the deferred jobs when it is new or its credentials were just shown right. Cheap when nothing changed."""
        if github is None:
            return
        if github is not self._client:
            self._client = github
            self._shown = False
            self._wake_due = True
            note = getattr(github, "note_webhook_app_id", None)
            # Why only when it knows none: a delivery may have reached it before this look.
            if self._stored is not None and callable(note) and getattr(github, "webhook_app_id", None) is None:
                note(self._stored)
        shown = getattr(github, "credentials_shown", False) is True
        if shown and not self._shown:
            self._wake_due = True
        self._shown = shown
        seen = _app_id(getattr(github, "webhook_app_id", None))
        new_id = seen if seen is not None and seen != self._stored else None
        if new_id is None and not self._wake_due:
            return
        try:
            async with self._db.transaction() as conn:
                now = self._now()
                if new_id is not None:
                    await store.save_webhook_app_id(conn, new_id, now=now)
                woken = (await store.wake_credentials_jobs(conn, now, deferred_with=CREDENTIALS_ERROR_PREFIX)
                         if self._wake_due else 0)
        except Exception as exc:  # a busy database: tried again at the next look
            log.warning("could not record what the GitHub client learnt of its credentials: %s", type(exc).__name__)
            return
        if new_id is not None:
            self._stored = new_id
        self._wake_due = False
        if woken:
            log.info("woke %d job(s) that waited for the App credentials to be replaced or shown right", woken)
