"""The GitHub App's credentials, swappable at run time: the setup flow stores new ones and they apply at once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from quantumreview.settings import Settings


@dataclass(frozen=True)
class AppCredentials:
    """What identifies the App to GitHub. Secrets are kept out of repr."""

    app_id: int
    private_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    webhook_secret_previous: str | None = field(default=None, repr=False)
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    slug: str | None = None
    html_url: str | None = None

    @functools.cached_property
    def webhook_secrets(self) -> tuple[str, ...]:
        """The secrets a delivery may be signed with: the current one, then the previous during rotation."""
        return tuple(s for s in (self.webhook_secret, self.webhook_secret_previous) if s)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppCredentials | None:
        """Credentials from the environment, or None in setup mode."""
        if settings.app_id is None or settings.private_key is None or settings.webhook_secret is None:
            return None
        return cls(
            app_id=settings.app_id,
            private_key=settings.private_key,
            webhook_secret=settings.webhook_secret,
            webhook_secret_previous=settings.webhook_secret_previous,
            oauth_client_id=settings.oauth_client_id,
            oauth_client_secret=settings.oauth_client_secret,
        )


Listener = Callable[[AppCredentials], None]


class CredentialsHolder:
    """Holds the current credentials (None = setup mode) and tells listeners when they change."""

    def __init__(self, current: AppCredentials | None = None) -> None:
        self._current = current
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        return f"CredentialsHolder(configured={self._current is not None})"

    @property
    def current(self) -> AppCredentials | None:
        """The credentials in force, or None while the App is not configured."""
        return self._current

    @property
    def configured(self) -> bool:
        """True once an App is configured."""
        return self._current is not None

    def webhook_secrets(self) -> tuple[str, ...]:
        """Secrets that may sign a delivery now; empty in setup mode."""
        return self._current.webhook_secrets if self._current else ()

    def on_change(self, listener: Listener) -> None:
        """Call `listener` with the new credentials whenever they are replaced."""
        self._listeners.append(listener)

    def replace(self, credentials: AppCredentials) -> None:
        """Put new credentials in force and notify listeners (e.g. rebuild the GitHub client)."""
        self._current = credentials
        for listener in self._listeners:
            listener(credentials)
