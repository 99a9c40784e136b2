"""The web host's OAuth web flow and app-manifest pages, and the user-token API routes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quantumreview.testing.fake_http import GitHubError, Route, found, int_param, paged_json, state_of, token_of
from quantumreview.testing.fake_state import FakeState

CODE_TTL = 600.0  # GitHub's authorization codes expire after 10 minutes
USER_TOKEN_TTL = 28800
REFRESH_TOKEN_TTL = 15897600


def redirect_with(url: str, params: dict[str, str]) -> web.Response:
    """Return a 302 to url with params appended to its query."""
    joiner = "&" if "?" in url else "?"
    return web.Response(status=302, headers={"Location": f"{url}{joiner}{urlencode(params)}"})


async def authorize(request: web.Request) -> web.Response:
    """GET /login/oauth/authorize: approve as the current user (or deny), redirecting with code and state."""
    state = state_of(request)
    query = request.query
    if query.get("client_id") != state.oauth_client_id or "redirect_uri" not in query:
        return web.Response(status=404, content_type="text/html", text="<h1>Not Found</h1>")
    back = {"state": query["state"]} if "state" in query else {}
    if state.current_login is None:
        return redirect_with(query["redirect_uri"], {
            "error": "access_denied", "error_description": "The user has denied your application access.",
            "error_uri": "https://docs.github.com/apps/troubleshooting", **back})
    code = secrets.token_hex(10)
    state.oauth_codes[code] = {
        "login": state.current_login, "redirect_uri": query["redirect_uri"], "expires_at": state.clock() + CODE_TTL,
        "challenge": query.get("code_challenge"), "method": query.get("code_challenge_method", "plain"),
    }
    return redirect_with(query["redirect_uri"], {"code": code, **back})


def s256(verifier: str) -> str:
    """Return the PKCE S256 challenge for verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(entry: dict[str, Any], verifier: str | None) -> bool:
    """Tell whether the code_verifier satisfies the challenge given at authorize (if any)."""
    challenge = entry.get("challenge")
    if challenge is None:
        return True
    if verifier is None:
        return False
    expected = s256(verifier) if entry.get("method") == "S256" else verifier
    return hmac.compare_digest(expected, challenge)


def issue_user_tokens(state: FakeState, login: str) -> dict[str, Any]:
    """Create a user token and its refresh token."""
    token = state.mint_user_token(login, USER_TOKEN_TTL)
    refresh = "ghr_" + secrets.token_hex(30)
    state.refresh_tokens[refresh] = login
    return {"access_token": token.value, "expires_in": USER_TOKEN_TTL, "refresh_token": refresh,
            "refresh_token_expires_in": REFRESH_TOKEN_TTL, "scope": "", "token_type": "bearer"}


def exchange(state: FakeState, form: dict[str, str]) -> dict[str, Any]:
    """Return the token endpoint's answer (tokens or an error) for the submitted fields."""
    if form.get("client_id") != state.oauth_client_id or not hmac.compare_digest(
            form.get("client_secret", ""), state.oauth_client_secret):
        return {"error": "incorrect_client_credentials",
                "error_description": "The client_id and/or client_secret passed are incorrect."}
    if form.get("grant_type") == "refresh_token":
        login = state.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if login is None:
            return {"error": "bad_refresh_token", "error_description": "The refresh token passed is incorrect."}
        return issue_user_tokens(state, login)
    entry = state.oauth_codes.pop(form.get("code", ""), None)
    bad = {"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}
    if entry is None or entry["expires_at"] <= state.clock():
        return bad
    if "redirect_uri" in form and form["redirect_uri"] != entry["redirect_uri"]:
        return {"error": "redirect_uri_mismatch", "error_description": "The redirect_uri is not valid."}
    if not verifier_matches(entry, form.get("code_verifier")):
        return bad
    return issue_user_tokens(state, entry["login"])


async def access_token(request: web.Request) -> web.Response:
    """POST /login/oauth/access_token: form or JSON in; JSON or form-encoded out (HTTP 200 even on error)."""
    if request.content_type == "application/json":
        raw = await request.json()
        form = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    else:
        form = {k: str(v) for k, v in (await request.post()).items()}
    answer = exchange(state_of(request), form)
    if "json" in request.headers.get("Accept", ""):
        return web.json_response(answer)
    return web.Response(text=urlencode(answer), content_type="application/x-www-form-urlencoded")


def client_credentials_match(state: FakeState, request: web.Request) -> bool:
    """Whether the request carries the App's OAuth client id and secret as HTTP Basic auth."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return client_id == state.oauth_client_id and hmac.compare_digest(secret, state.oauth_client_secret)


async def delete_app_token(request: web.Request) -> web.Response:
    """DELETE /applications/{client_id}/token: revoke one user token (client credentials as Basic auth)."""
    state = state_of(request)
    if request.match_info["client_id"] != state.oauth_client_id or not client_credentials_match(state, request):
        raise GitHubError(404, "Not Found")
    body = await request.json()
    token = state.tokens.get(body.get("access_token", "")) if isinstance(body, dict) else None
    if token is None or token.login is None:
        raise GitHubError(404, "Not Found")
    del state.tokens[token.value]
    state.revoked_user_tokens.append(token.value)
    return web.Response(status=204)


def new_private_key_pem() -> str:
    """Return a fresh RSA private key in PEM form."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode("ascii")


async def new_app_from_manifest(request: web.Request) -> web.Response:
    """POST /settings/apps/new (or an organization's): redirect to the manifest's redirect_url with a code."""
    state = state_of(request)
    form = await request.post()
    try:
        manifest = json.loads(str(form.get("manifest", "")))
    except ValueError:
        return web.Response(status=422, content_type="text/html", text="<h1>Invalid manifest</h1>")
    if not isinstance(manifest, dict) or not manifest.get("redirect_url"):
        return web.Response(status=422, content_type="text/html", text="<h1>Invalid manifest</h1>")
    code = secrets.token_hex(10)
    owner = request.match_info.get("org") or state.current_login or "octocat"
    state.manifest_codes[code] = {**manifest, "_owner": owner,
                                  "_pem": state.private_key_pem or new_private_key_pem()}
    back = request.query.get("state") or str(form.get("state", ""))
    return redirect_with(str(manifest["redirect_url"]), {"code": code, **({"state": back} if back else {})})


async def get_user(request: web.Request) -> web.Response:
    """GET /user: the signed-in user."""
    return web.json_response(state_of(request).account(token_of(request).login or ""))


async def list_user_installations(request: web.Request) -> web.Response:
    """GET /user/installations: installations of this app the user can see."""
    state = state_of(request)
    visible = state.user_installations.get(token_of(request).login or "", {})
    items = [state.installations[i] for i in visible if i in state.installations]
    return paged_json(request, items, key="installations")


async def list_user_installation_repos(request: web.Request) -> web.Response:
    """GET /user/installations/{installation_id}/repositories: with the user's permissions on each."""
    state = state_of(request)
    login = token_of(request).login or ""
    installation_id = int_param(request, "installation_id")
    names = found(state.user_installations.get(login, {}).get(installation_id))
    found(state.installations.get(installation_id))
    default = {"admin": False, "maintain": False, "push": False, "triage": False, "pull": True}
    repos = [{**state.repos[n], "permissions": {**default, **state.user_permissions.get(login, {}).get(n, {})}}
             for n in names if n in state.repos]
    selection = state.installations[installation_id]["repository_selection"]
    return paged_json(request, repos, key="repositories", extra={"repository_selection": selection})


ROUTES = (
    Route("GET", "/login/oauth/authorize", authorize, host="web"),
    Route("POST", "/login/oauth/access_token", access_token, host="web"),
    Route("POST", "/settings/apps/new", new_app_from_manifest, host="web"),
    Route("POST", "/organizations/{org}/settings/apps/new", new_app_from_manifest, host="web"),
    Route("DELETE", "/applications/{client_id}/token", delete_app_token),
    Route("GET", "/user", get_user, auth="user"),
    Route("GET", "/user/installations", list_user_installations, auth="user"),
    Route("GET", "/user/installations/{installation_id}/repositories", list_user_installation_repos, auth="user"),
)
