"""Waking the jobs that waited for App credentials shown right.

Jobs deferred for credentials not shown to be the installations' App (CredentialsUnproven) wait uncounted; they
are made due at once when a new client appears (the setup flow stored new credentials, or a restart that may
bring them) or when the credentials are shown right (a token minted, a webhook naming their App).
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


class CredentialsWatch:
    """Follows the job runner's GitHub client (it may be replaced at any time); one per runner."""

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now
        self._client: object = None
        self._shown = False
        self._wake_due = False

    async def follow(self, github: object) -> None:
        """Look at the client now in use, and wake the deferred jobs when it is new or its credentials were just
        shown right. Cheap when nothing changed."""
        if github is None:
            return
        if github is not self._client:
            self._client = github
            self._shown = False
            self._wake_due = True
        shown = getattr(github, "credentials_shown", False) is True
        if shown and not self._shown:
            self._wake_due = True
        self._shown = shown
        if not self._wake_due:
            return
        try:
            async with self._db.transaction() as conn:
                woken = await store.wake_credentials_jobs(conn, self._now(), deferred_with=CREDENTIALS_ERROR_PREFIX)
        except Exception as exc:  # a busy database: tried again at the next look
            log.warning("could not wake the jobs waiting for App credentials: %s", type(exc).__name__)
            return
        self._wake_due = False
        if woken:
            log.info("woke %d job(s) that waited for the App credentials to be replaced or shown right", woken)
