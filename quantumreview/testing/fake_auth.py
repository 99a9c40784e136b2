"""Check the credentials a request to the fake carries: App JWTs and access tokens."""

from __future__ import annotations

from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from quantumreview.testing.fake_http import JWT_CLAIMS, TOKEN, GitHubError, state_of
from quantumreview.testing.fake_state import FakeState, Token

MAX_JWT_LIFETIME = 600  # GitHub refuses an App JWT whose exp is more than 10 minutes ahead
CLOCK_DRIFT = 60  # seconds of skew GitHub tolerates
SUSPENDED_MESSAGE = "This GitHub App installation is currently suspended."
OTHER_APP = "_other_app"  # marks an App of created_apps whose JWTs the fake accepts (add_other_app)


def add_other_app(state: FakeState, app_id: int, private_key_pem: str, *, slug: str) -> dict[str, Any]:
    """Make GitHub know another App (a staging App, say) with its own key and no installations of the main one.

    Kept in `created_apps`, with the Apps GitHub created from manifests: its JWTs are accepted, GET /app answers
    it, and it gets 404 for the main App's installations, as GitHub answers another App.
    """
    other: dict[str, Any] = {
        "id": app_id, "slug": slug, "name": slug, "node_id": f"A_{app_id}", "owner": state.account("octo-org"),
        "html_url": f"{state.web_url}/apps/{slug}", "client_id": f"Iv1.{app_id:012x}", "permissions": {},
        "events": [], "_pem": private_key_pem, OTHER_APP: True,
    }
    state.created_apps.append(other)
    return other


def other_app(state: FakeState, app_id: object) -> dict[str, Any] | None:
    """The App added with add_other_app under this id, if any."""
    return next((a for a in state.created_apps if a.get(OTHER_APP) and str(a["id"]) == str(app_id)), None)


def caller_app_id(request: web.Request) -> int:
    """The id of the App whose JWT authenticated the request (the main App's when there was none)."""
    claims = request.get(JWT_CLAIMS) or {}
    issuer = str(claims.get("iss", ""))
    return int(issuer) if issuer.isdigit() else state_of(request).app_id


def credentials(request: web.Request) -> str | None:
    """Return the credential after "token " or "Bearer " in Authorization, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


def check_app_jwt(state: FakeState, public_key: Any, token: str) -> dict[str, Any]:
    """Return the claims of a valid App JWT, or raise 401 the way GitHub words it."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        issuer = None
    other = other_app(state, issuer) if str(issuer) != str(state.app_id) else None
    if other is not None:  # another App GitHub knows: its own key signs its JWTs
        public_key = load_pem_private_key(other["_pem"].encode(), password=None).public_key()
    try:
        claims: dict[str, Any] = jwt.decode(
            token, public_key, algorithms=["RS256"],
            options={"verify_signature": public_key is not None, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise GitHubError(401, "A JSON web token could not be decoded") from None
    now = state.clock()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(iat, int) or iat > now + CLOCK_DRIFT:
        raise GitHubError(401, "'Issued at' claim ('iat') must be an Integer representing the time that the "
                               "assertion was issued.")
    if not isinstance(exp, int) or exp <= now or exp > now + MAX_JWT_LIFETIME + CLOCK_DRIFT:
        raise GitHubError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future "
                               "time at which the assertion expires.")
    if str(claims.get("iss")) != str(state.app_id) and other is None:
        raise GitHubError(401, "'Issuer' claim ('iss') must be an Integer")
    return claims


def authenticate(request: web.Request, kind: str, public_key: Any) -> None:
    """Check the request's credentials for a route needing kind; keep what was accepted on the request."""
    if kind == "none":
        return
    state = state_of(request)
    value = credentials(request)
    if value is None:
        raise GitHubError(401, "Requires authentication")
    if kind == "app":
        request[JWT_CLAIMS] = check_app_jwt(state, public_key, value)
        return
    token: Token | None = state.live_token(value)
    if token is None or (token.installation_id is not None and token.installation_id not in state.installations):
        raise GitHubError(401, "Bad credentials")
    if token.installation_id is not None and token.installation_id in state.suspended:
        # GitHub keeps the token but refuses it while the installation is suspended (its wording)
        raise GitHubError(403, SUSPENDED_MESSAGE)
    if kind == "user" and token.login is None:
        raise GitHubError(403, "Resource not accessible by integration")
    request[TOKEN] = token
