"""User-to-server OAuth: exchange a code, refresh a user token (both on the web host, GITHUB_URL), and revoke
one (on the API host).

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app
https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
https://docs.github.com/en/rest/apps/oauth-applications#delete-an-app-token
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from quantumreview.errors import PermanentError, RetryLater
from quantumreview.github_client import API_VERSION, DEFAULT_TIMEOUT, NETWORK_ERRORS, read_capped

MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024


class OAuthError(PermanentError):
    """GitHub refused an OAuth exchange; `oauth_code` is GitHub's error code (e.g. "bad_verification_code")."""

    code = "oauth_error"

    def __init__(self, oauth_code: str, description: str = "") -> None:
        super().__init__(f"GitHub OAuth error {oauth_code}" + (f": {description}" if description else ""))
        self.oauth_code = oauth_code


@dataclass(frozen=True)
class UserTokens:
    """A user access token and its refresh token, with absolute expiry times (epoch seconds) when GitHub sets them."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    refresh_token_expires_at: float | None = None
    scope: str = ""
    token_type: str = "bearer"  # noqa: S105 - a token kind, not a secret


@dataclass(frozen=True)
class OAuthClient:
    """The App's OAuth client credentials and where GitHub's web and API hosts are."""

    session: aiohttp.ClientSession
    web_url: str
    api_url: str
    client_id: str | None
    client_secret: str | None = field(repr=False)
    user_agent: str
    clock: Callable[[], float]

    async def exchange_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> UserTokens:
        """Trade the authorization code (with its PKCE verifier) for user tokens."""
        return await self._token_request({"code": code, "redirect_uri": redirect_uri,
                                          "code_verifier": code_verifier})

    async def refresh_user_token(self, refresh_token: str) -> UserTokens:
        """Trade a refresh token for a new user token (GitHub rotates the refresh token too)."""
        return await self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def revoke_user_token(self, access_token: str) -> None:
        """Make GitHub forget a user token (DELETE /applications/{client_id}/token, client credentials as Basic
        auth). A token GitHub no longer knows (404) counts as revoked."""
        client_id, client_secret = self._client_credentials()
        url = f"{self.api_url.rstrip('/')}/applications/{client_id}/token"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                   "User-Agent": self.user_agent, "Authorization": aiohttp.encode_basic_auth(client_id, client_secret)}
        try:
            async with self.session.delete(url, json={"access_token": access_token}, headers=headers,
                                           timeout=DEFAULT_TIMEOUT) as response:
                status = response.status
        except NETWORK_ERRORS as exc:
            raise RetryLater(f"GitHub's API is unreachable ({type(exc).__name__})") from None
        if status >= 500 or status == 429:
            raise RetryLater(f"GitHub answered {status} to the token revocation")
        if status not in (204, 404):
            raise OAuthError(f"http_{status}", "GitHub refused to revoke the token")

    def _client_credentials(self) -> tuple[str, str]:
        if not self.client_id or not self.client_secret:
            raise OAuthError("not_configured", "GITHUB_OAUTH_CLIENT_ID and GITHUB_OAUTH_CLIENT_SECRET are not set")
        return self.client_id, self.client_secret

    async def _token_request(self, fields: Mapping[str, str]) -> UserTokens:
        self._client_credentials()
        form = {"client_id": self.client_id, "client_secret": self.client_secret, **fields}
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        url = self.web_url.rstrip("/") + "/login/oauth/access_token"
        try:
            # Why: not retried — an authorization code is single-use, a repeat would be refused anyway.
            async with self.session.post(url, data=form, headers=headers, timeout=DEFAULT_TIMEOUT) as response:
                status, body = response.status, await read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
        except NETWORK_ERRORS as exc:
            raise RetryLater(f"GitHub's OAuth endpoint is unreachable ({type(exc).__name__})") from None
        if body is None:  # a token answer is a few hundred bytes; one that never ends is a broken proxy
            raise RetryLater(f"GitHub's token endpoint answered {status} with a body over {MAX_TOKEN_RESPONSE_BYTES} "
                             "bytes")
        return parse_token_response(status, body, self.clock())


def parse_token_response(status: int, body: bytes, now: float) -> UserTokens:
    """Read GitHub's token answer; it reports errors as HTTP 200 with {"error": ...}. A 5xx or 429 is RetryLater."""
    # Why not OAuthError: an outage is no verdict on the code or refresh token; read as one, it ended the user's
    # session and discarded a refresh token that still worked.
    if status >= 500 or status == 429:
        raise RetryLater(f"GitHub's token endpoint answered {status}")
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise OAuthError(f"http_{status}", "the token endpoint did not answer JSON")
    if "error" in data:
        raise OAuthError(str(data["error"]), str(data.get("error_description") or ""))
    token = data.get("access_token")
    if status != 200 or not isinstance(token, str) or not token:
        raise OAuthError(f"http_{status}", "no access_token in the answer")
    refresh = data.get("refresh_token")
    return UserTokens(
        access_token=token,
        # Why the type checks here and in _after: a number there was encrypted (AttributeError) and "²" passed
        # isdigit but not float(), each a 500 at login or refresh; an unusable field counts as absent.
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=_after(now, data.get("expires_in")),
        refresh_token_expires_at=_after(now, data.get("refresh_token_expires_in")),
        scope=str(data.get("scope") or ""),
        token_type=str(data.get("token_type") or "bearer"),
    )


def _after(now: float, seconds: object) -> float | None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float | str):
        return None
    if isinstance(seconds, str) and not (seconds.isascii() and seconds.isdigit()):
        return None
    try:
        value = float(seconds)
    except OverflowError:  # an integer past float's range
        return None
    return now + value if math.isfinite(value) else None
