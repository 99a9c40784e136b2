"""The OpenAPI document: served, complete (routes ⇔ paths), one error shape, and a bounded schemathesis run."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from quantumreview.api.openapi import PATH, build_document
from tests.test_api_support import (
    ORIGIN,
    REPO,
    Api,
    SchemaMismatch,
    add_checklist,
    add_health,
    add_manifest,
    add_pull,
    check_against_openapi,
    database,
)

pytest_plugins = ["tests.test_api_support"]

# Why 30: enough to hit bounds and odd strings; this machine does ~30 ms per generated call.
EXAMPLES_PER_OPERATION = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
METHODS = {"get", "post", "put", "patch", "delete"}


def api_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every /api route registered on the app."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path") or ""
        if path.startswith("/api/") and route.method.lower() in METHODS:
            found.add((route.method.lower(), re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)))
    return found


def documented_operations() -> set[tuple[str, str]]:
    """(method, path) of every operation in the document."""
    return {(method, path) for path, item in build_document()["paths"].items() for method in item
            if method in METHODS}


def test_every_api_route_is_documented_and_every_documented_path_is_served(api_app: web.Application) -> None:
    served = api_routes(api_app)
    assert len(served) == 15
    assert served == documented_operations()


def test_document_is_openapi_3_1_with_one_error_shape_for_every_error_response() -> None:
    document = build_document()
    assert document["openapi"].startswith("3.1.")
    operation_ids = []
    for item in document["paths"].values():
        for operation in item.values():
            operation_ids.append(operation["operationId"])
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    name = response["$ref"].rpartition("/")[2]
                    content = document["components"]["responses"][name]["content"]
                    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert len(operation_ids) == len(set(operation_ids))
    for path, item in document["paths"].items():
        for operation in item.values():
            named = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert named == set(re.findall(r"\{(\w+)\}", path)), path


async def test_document_is_served_without_a_session(api_client: TestClient[Any, Any]) -> None:
    response = await api_client.get(PATH)
    assert response.status == 200
    assert await response.json() == build_document()


def test_response_check_rejects_a_body_the_document_does_not_describe() -> None:
    with pytest.raises(SchemaMismatch, match="required"):
        check_against_openapi("GET", "/api/me", 200, {"id": 1})
    with pytest.raises(SchemaMismatch, match="does not document status 500"):
        check_against_openapi("GET", "/api/me", 500, {"error": {"code": "internal_error", "message": "x"}})
    with pytest.raises(SchemaMismatch, match="not in the OpenAPI document"):
        check_against_openapi("GET", "/api/unknown", 200, {})


async def seed_examples(api: Api) -> None:
    """Rows behind the document's examples (octo/widgets, #1), so generated calls reach real data too."""
    db = database(api)
    await add_checklist(db, 1, ["passed", "failed", "pending"], retired=["T9"])
    await add_pull(db, 1, links=[(REPO, 1)], head_sha="h1")
    await add_manifest(db, 1, "h1", {"coverage": []}, {"results": [], "passed": 0, "failed": 0, "skipped": 0,
                                                         "missing": 0, "conclusion": "neutral"})
    await add_health(db, 90, "h1", 1e9)
    await db.execute("INSERT INTO notifications (user_id, repo, kind, title, created_at) VALUES (1, ?, 'k', 't', 0)",
                     (REPO,))


def fuzz(base_url: str, cookie: str, *, examples: int = EXAMPLES_PER_OPERATION, only: str = "") -> list[str]:
    """Run schemathesis against each operation (or those whose path contains `only`); return those exercised."""
    schema = schemathesis.openapi.from_dict(build_document())
    session = requests.Session()
    exercised = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if only not in operation.path:
            continue

        @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            case.call_and_validate(base_url=base_url, session=session, headers={"Cookie": cookie, "Origin": ORIGIN},
                                   checks=CHECKS)

        call()
        exercised.append(operation.label)
    return exercised


async def test_schemathesis_finds_no_server_error_and_no_response_outside_the_schema(maintainer: Api) -> None:
    await seed_examples(maintainer)
    base_url = str(maintainer.client.make_url("/")).rstrip("/")
    exercised = await asyncio.to_thread(fuzz, base_url, maintainer.cookie)
    assert len(exercised) == len(documented_operations())


async def test_schemathesis_run_fails_on_a_response_outside_the_schema(aiohttp_server: Any) -> None:
    async def wrong_me(request: web.Request) -> web.Response:
        return web.json_response({"id": "not a number"})

    app = web.Application()
    app.router.add_get("/api/me", wrong_me)
    server = await aiohttp_server(app)
    base_url = str(server.make_url("/")).rstrip("/")
    with pytest.raises(FailureGroup) as failed:
        await asyncio.to_thread(fuzz, base_url, "", examples=3, only="/api/me")
    assert any(isinstance(e, JsonSchemaError) for e in failed.value.exceptions)
