"""App-level routes: the app itself, installations and their tokens, the webhook delivery log, manifests."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from quantumreview.testing import fake_shapes as shapes
from quantumreview.testing.fake_auth import OTHER_APP, caller_app_id, other_app
from quantumreview.testing.fake_http import (
    GitHubError,
    Route,
    found,
    int_param,
    page_args,
    paged_json,
    state_of,
    token_of,
)
from quantumreview.testing.fake_state import APP_SLUG, FakeState
from quantumreview.testing.signing import signed_delivery


async def get_app(request: web.Request) -> web.Response:
    """GET /app: the authenticated app."""
    state = state_of(request)
    other = other_app(state, caller_app_id(request))
    if other is not None:
        return web.json_response({k: v for k, v in other.items() if k not in ("_pem", OTHER_APP)})
    return web.json_response({
        "id": state.app_id, "slug": APP_SLUG, "node_id": shapes.node_id("A", state.app_id),
        "name": "QuantumReview (test)", "owner": state.account("octo-org"),
        "html_url": f"{state.web_url}/apps/{APP_SLUG}", "client_id": "Iv1.fakeclientid",
        "permissions": {"issues": "write", "checks": "write", "pull_requests": "read", "actions": "read"},
        "events": ["issues", "pull_request", "workflow_run", "check_run"],
        "created_at": shapes.iso(0), "updated_at": shapes.iso(0),
    })


def own_installation(request: web.Request) -> dict[str, Any]:
    """The route's installation if it is the calling App's; 404 otherwise, as GitHub answers another App."""
    installation = state_of(request).installations.get(int_param(request, "installation_id"))
    if installation is not None and installation["app_id"] != caller_app_id(request):
        installation = None
    return found(installation)


def main_app_only(request: web.Request) -> None:
    """404 for another App's JWT: the fake's delivery log is the main App's."""
    if caller_app_id(request) != state_of(request).app_id:
        raise GitHubError(404, "Not Found")


async def get_installation(request: web.Request) -> web.Response:
    """GET /app/installations/{installation_id}."""
    return web.json_response(own_installation(request))


async def create_access_token(request: web.Request) -> web.Response:
    """POST /app/installations/{installation_id}/access_tokens: 201 with a ghs_ token."""
    state = state_of(request)
    installation_id = int_param(request, "installation_id")
    installation = own_installation(request)
    if installation_id in state.suspended:
        raise GitHubError(403, "This installation has been suspended")
    token = state.mint_installation_token(installation_id)
    return web.json_response({
        "token": token.value, "expires_at": shapes.iso(token.expires_at),
        "permissions": installation["permissions"],
        "repository_selection": installation["repository_selection"],
    }, status=201)


async def list_installation_repositories(request: web.Request) -> web.Response:
    """GET /installation/repositories: the repositories of the token's installation."""
    state = state_of(request)
    installation_id = token_of(request).installation_id
    if installation_id is None:
        raise GitHubError(403, "You must authenticate with an installation access token")
    names = state.installation_repos.get(installation_id, [])
    selection = state.installations[installation_id]["repository_selection"]
    return paged_json(request, [state.repos[n] for n in names], key="repositories",
                      extra={"repository_selection": selection})


async def list_hook_deliveries(request: web.Request) -> web.Response:
    """GET /app/hook/deliveries: newest first, cursor pagination through the Link header."""
    state = state_of(request)
    main_app_only(request)
    per_page, _ = page_args(request)
    ordered = sorted(state.hook_deliveries, key=lambda d: (d["delivered_at"], d["id"]), reverse=True)
    status = request.query.get("status")
    if status == "success":
        ordered = [d for d in ordered if d["status"] == "OK"]
    elif status == "failure":
        ordered = [d for d in ordered if d["status"] != "OK"]
    try:
        start = int(request.query.get("cursor", "0"))
    except ValueError:
        raise GitHubError(422, "Invalid cursor") from None
    chunk = ordered[start:start + per_page]
    headers = {}
    if start + per_page < len(ordered):
        url = request.url.update_query({"per_page": str(per_page), "cursor": str(start + per_page)})
        headers["Link"] = f'<{url}>; rel="next"'
    return web.json_response(chunk, headers=headers)


async def get_hook_delivery(request: web.Request) -> web.Response:
    """GET /app/hook/deliveries/{delivery_id}."""
    delivery_id = int_param(request, "delivery_id")
    main_app_only(request)
    delivery = next((d for d in state_of(request).hook_deliveries if d["id"] == delivery_id), None)
    return web.json_response(found(delivery))


async def send_to_webhook(state: FakeState, guid: str, event: str, payload: bytes) -> str:
    """POST a signed delivery to the app's webhook URL; return the attempt status GitHub would log."""
    assert state.webhook_url is not None
    headers, body = signed_delivery(event, payload, state.webhook_secret, delivery_id=guid)
    try:
        async with aiohttp.ClientSession() as session, session.post(
                state.webhook_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as sent:
            return "OK" if 200 <= sent.status < 300 else f"Invalid HTTP Response: {sent.status}"
    except (aiohttp.ClientError, TimeoutError):
        return "failed to connect"


async def redeliver_hook_delivery(request: web.Request) -> web.Response:
    """POST /app/hook/deliveries/{delivery_id}/attempts: 202 and a new attempt (sent when a webhook URL is set)."""
    state = state_of(request)
    delivery_id = int_param(request, "delivery_id")
    main_app_only(request)
    original = found(next((d for d in state.hook_deliveries if d["id"] == delivery_id), None))
    payload = state.hook_payloads.get(delivery_id)
    status = "OK"
    if state.webhook_url is not None and payload is not None:
        status = await send_to_webhook(state, original["guid"], original["event"], payload)
    state.add_hook_delivery(original["guid"], status=status, event=original["event"], action=original["action"],
                            delivered_at=None, redelivery=True, payload=payload)
    return web.json_response({}, status=202)


async def convert_manifest(request: web.Request) -> web.Response:
    """POST /app-manifests/{code}/conversions: the new app's credentials, once per code."""
    state = state_of(request)
    manifest = found(state.manifest_codes.pop(request.match_info["code"], None))
    app_id = state.next_id()
    slug = str(manifest.get("name", "quantumreview")).lower().replace(" ", "-")
    created: dict[str, Any] = {
        "id": app_id, "slug": slug, "node_id": shapes.node_id("A", app_id), "name": manifest.get("name", slug),
        "owner": state.account(str(manifest.get("_owner", "octocat"))),
        "html_url": f"{state.web_url}/apps/{slug}", "client_id": f"Iv1.{app_id:012x}",
        "client_secret": f"secret-{app_id}", "webhook_secret": f"whsec-{app_id:034x}",
        "pem": manifest.get("_pem", ""), "permissions": manifest.get("default_permissions", {}),
        "events": manifest.get("default_events", []),
        "created_at": shapes.iso(state.clock()), "updated_at": shapes.iso(state.clock()),
    }
    state.created_apps.append(created)
    return web.json_response(created, status=201)


ROUTES = (
    Route("GET", "/app", get_app, auth="app"),
    Route("GET", "/app/installations/{installation_id}", get_installation, auth="app"),
    Route("POST", "/app/installations/{installation_id}/access_tokens", create_access_token, auth="app"),
    Route("GET", "/app/hook/deliveries", list_hook_deliveries, auth="app"),
    Route("GET", "/app/hook/deliveries/{delivery_id}", get_hook_delivery, auth="app"),
    Route("POST", "/app/hook/deliveries/{delivery_id}/attempts", redeliver_hook_delivery, auth="app"),
    Route("POST", "/app-manifests/{code}/conversions", convert_manifest),
    Route("GET", "/installation/repositories", list_installation_repositories, auth="token"),
)
