"""Write quantumreview/testing/openapi_subset.json: the GitHub operations the fake serves, $refs resolved."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The shared folder sits beside the checkout (on developer machines and in CI).
DEFAULT_SPEC = ROOT.parent / "shared" / "github" / "api.github.com.json"
DEFAULT_OUT = ROOT / "quantumreview" / "testing" / "openapi_subset.json"

# Every REST operation FakeGitHub serves; the fake grows here, the check never loosens.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("GET", "/app"),
    ("GET", "/app/installations/{installation_id}"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/app/hook/deliveries"),
    ("GET", "/app/hook/deliveries/{delivery_id}"),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts"),
    ("POST", "/app-manifests/{code}/conversions"),
    ("DELETE", "/applications/{client_id}/token"),
    ("GET", "/installation/repositories"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("GET", "/repos/{owner}/{repo}/actions/workflows"),
    ("GET", "/repos/{owner}/{repo}/actions/runs"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"),
    ("GET", "/user"),
    ("GET", "/user/installations"),
    ("GET", "/user/installations/{installation_id}/repositories"),
)

# Validation keywords kept; descriptions, examples and formats only cost bytes.
KEPT_KEYS = frozenset({
    "type", "enum", "required", "properties", "items", "oneOf", "anyOf", "allOf",
    "maxItems", "minItems", "maxLength", "minLength", "minimum", "maximum", "nullable",
})


def resolve(node: Any, spec: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Return node with every $ref inlined and only validation keywords kept."""
    if isinstance(node, list):
        return [resolve(item, spec, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:  # recursive schema: accept anything below the loop
            return {}
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return resolve(target, spec, (*seen, ref))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in KEPT_KEYS:
            continue
        if key == "properties":
            out[key] = {name: resolve(sub, spec, seen) for name, sub in value.items()}
        else:
            out[key] = resolve(value, spec, seen)
    return out


def parameter(raw: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Return one resolved parameter: name, in, required, schema."""
    if "$ref" in raw:
        target: Any = spec
        for part in raw["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        raw = target
    return {
        "name": raw["name"],
        "in": raw["in"],
        "required": bool(raw.get("required", False)),
        "schema": resolve(raw.get("schema", {}), spec),
    }


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """Return the subset of one operation the contract checker needs."""
    path_item = spec["paths"][path]
    op = path_item[method.lower()]
    params = [parameter(p, spec) for p in [*path_item.get("parameters", []), *op.get("parameters", [])]]
    out: dict[str, Any] = {"operationId": op.get("operationId", ""), "parameters": params}
    body = op.get("requestBody")
    if body is not None:
        if "$ref" in body:
            body = resolve_ref(spec, body["$ref"])
        content = body.get("content", {})
        media = "application/json" if "application/json" in content else next(iter(content), "")
        out["requestBody"] = {
            "required": bool(body.get("required", False)),
            "mediaType": media,
            "schema": resolve(content.get(media, {}).get("schema", {}), spec),
        }
    return out


def resolve_ref(spec: dict[str, Any], ref: str) -> Any:
    """Return the node a local $ref points at."""
    target: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def build_subset(spec: dict[str, Any]) -> dict[str, Any]:
    """Return the subset document for OPERATIONS."""
    ops = {f"{method} {path}": operation(spec, method, path) for method, path in OPERATIONS}
    info = spec.get("info", {})
    return {"source": {"title": info.get("title", ""), "version": info.get("version", "")}, "operations": ops}


def main() -> None:
    """Read the full description and write the subset."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    subset = build_subset(spec)
    args.out.write_text(json.dumps(subset, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(subset['operations'])} operations to {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
