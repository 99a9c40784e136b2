"""The contract checker catches requests that break GitHub's OpenAPI description, and the fixture fails on them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quantumreview.testing import FakeGitHub
from quantumreview.testing.contract import Contract
from quantumreview.testing.fake import route_modules

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "github" / "api.github.com.json"
SUBSET = ROOT / "quantumreview" / "testing" / "openapi_subset.json"
CHECK_RUNS = "/repos/{owner}/{repo}/check-runs"
CHECK_RUN = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
PATH = {"owner": "o", "repo": "r"}
ANNOTATION = {"path": "a.py", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "m"}


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract.load()


def check_run_body(**changes: Any) -> dict[str, Any]:
    return {"name": "QuantumReview", "head_sha": "a" * 40, **changes}


def test_a_conforming_check_run_has_no_violations(contract: Contract) -> None:
    body = check_run_body(status="completed", conclusion="success",
                          output={"title": "t", "summary": "s", "annotations": [ANNOTATION]})
    assert contract.check("POST", CHECK_RUNS, path_params=PATH, body=body, has_body=True) == []


def test_a_missing_required_field_is_a_violation(contract: Contract) -> None:
    [problem] = contract.check("POST", CHECK_RUNS, path_params=PATH, body={"name": "x"}, has_body=True)
    assert "head_sha" in problem and "missing" in problem


def test_a_wrongly_typed_field_is_a_violation(contract: Contract) -> None:
    [problem] = contract.check("POST", CHECK_RUNS, path_params=PATH, body=check_run_body(head_sha=123),
                               has_body=True)
    assert "body.head_sha" in problem and "string" in problem


def test_a_boolean_is_not_an_integer(contract: Contract) -> None:
    annotation = {**ANNOTATION, "start_line": True}
    body = check_run_body(output={"title": "t", "summary": "s", "annotations": [annotation]})
    [problem] = contract.check("POST", CHECK_RUNS, path_params=PATH, body=body, has_body=True)
    assert "start_line" in problem


@pytest.mark.parametrize(("field", "value"), [("status", "done"), ("conclusion", "passed")])
def test_a_value_outside_the_enum_is_a_violation(contract: Contract, field: str, value: str) -> None:
    [problem] = contract.check("POST", CHECK_RUNS, path_params=PATH, body=check_run_body(**{field: value}),
                               has_body=True)
    assert f"body.{field}" in problem and repr(value) in problem


def test_a_bad_annotation_level_deep_in_the_body_is_a_violation(contract: Contract) -> None:
    annotation = {**ANNOTATION, "annotation_level": "error"}
    body = check_run_body(output={"title": "t", "summary": "s", "annotations": [annotation]})
    [problem] = contract.check("POST", CHECK_RUNS, path_params=PATH, body=body, has_body=True)
    assert "body.output.annotations[0].annotation_level" in problem


def test_more_than_fifty_annotations_is_a_violation(contract: Contract) -> None:
    body = check_run_body(output={"title": "t", "summary": "s", "annotations": [ANNOTATION] * 51})
    [problem] = contract.check("POST", CHECK_RUNS, path_params=PATH, body=body, has_body=True)
    assert "more than 50" in problem


def test_completing_a_check_run_without_a_conclusion_is_a_violation(contract: Contract) -> None:
    params = {**PATH, "check_run_id": "5"}
    problems = contract.check("PATCH", CHECK_RUN, path_params=params, body={"status": "completed"}, has_body=True)
    assert problems and "none of the allowed shapes" in problems[0]
    assert contract.check("PATCH", CHECK_RUN, path_params=params, body={"status": "in_progress"},
                          has_body=True) == []


def test_unknown_paths_and_methods_are_violations(contract: Contract) -> None:
    assert "no such operation" in contract.check("GET", "/repos/{owner}/{repo}/nonsense")[0]
    assert "no such operation" in contract.check("DELETE", "/app")[0]
    assert "no such operation" in contract.check("GET", None)[0]


def test_query_and_path_parameters_are_type_checked(contract: Contract) -> None:
    [per_page] = contract.check("GET", "/repos/{owner}/{repo}/pulls", path_params=PATH, query={"per_page": "lots"})
    assert "per_page" in per_page and "integer" in per_page
    [state] = contract.check("GET", "/repos/{owner}/{repo}/pulls", path_params=PATH, query={"state": "merged"})
    assert "state" in state
    [run_id] = contract.check("GET", CHECK_RUN, path_params={**PATH, "check_run_id": "abc"})
    assert "check_run_id" in run_id


def test_a_missing_required_body_is_a_violation(contract: Contract) -> None:
    [problem] = contract.check("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                               path_params={**PATH, "issue_number": "1"})
    assert "missing required request body" in problem


async def test_the_fake_answers_a_violation_with_422_and_records_it(rsa_private_key: str) -> None:
    async with FakeGitHub(private_key_pem=rsa_private_key) as fake, aiohttp.ClientSession() as session:
        fake.add_installation(7, repositories=["o/r"])
        token = fake.state.mint_installation_token(7).value
        headers = {"Authorization": f"token {token}"}
        async with session.post(f"{fake.api_url}/repos/o/r/check-runs", json={"name": "x"},
                                headers=headers) as response:
            assert response.status == 422
        async with session.get(f"{fake.api_url}/repos/o/r/not-a-thing", headers=headers) as response:
            assert response.status == 404
        async with session.delete(f"{fake.api_url}/repos/o/r/check-runs/1", headers=headers) as response:
            assert response.status == 404
        assert len(fake.contract_violations) == 3
        assert fake.check_runs == {}


async def test_contract_checking_can_be_turned_off() -> None:
    async with FakeGitHub(contract=False) as fake, aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_url}/nowhere") as response:
            assert response.status == 404
        assert fake.contract_violations == []


def test_the_fake_github_fixture_fails_a_test_that_broke_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("""
        import aiohttp

        async def test_posts_a_check_run_without_head_sha(fake_github):
            async with aiohttp.ClientSession() as session:
                await session.post(fake_github.api_url + "/repos/o/r/check-runs", json={"name": "x"})

        async def test_behaves(fake_github):
            assert fake_github.api_url.startswith("http://127.0.0.1:")
    """)
    result = pytester.runpytest_subprocess()  # the plugin loads through its pytest11 entry point
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*broke GitHub's REST API description*", "*missing required field 'head_sha'*"])


def test_every_api_route_the_fake_serves_is_in_the_subset_and_back(contract: Contract) -> None:
    served = {(r.method, r.path) for table in route_modules() for r in table if r.host == "api"}
    assert served == set(contract.routes())


def test_the_subset_is_small_and_self_contained() -> None:
    text = SUBSET.read_text(encoding="utf-8")
    assert len(text.encode()) < 1_000_000
    assert "$ref" not in text


def test_the_generator_reproduces_the_committed_subset() -> None:
    if not SPEC.exists():
        pytest.skip(f"GitHub's full description is not at {SPEC}")
    spec = importlib.util.spec_from_file_location("gen_openapi_subset", ROOT / "scripts" / "gen_openapi_subset.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build_subset(json.loads(SPEC.read_text(encoding="utf-8")))
    assert built == json.loads(SUBSET.read_text(encoding="utf-8"))
