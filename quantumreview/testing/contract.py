"""Check requests against the shipped subset of GitHub's OpenAPI description."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

SUBSET_FILE = "openapi_subset.json"
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True)
class Operation:
    """One REST operation: its parameters and request body schema."""

    method: str
    route: str
    parameters: tuple[Mapping[str, Any], ...]
    body: Mapping[str, Any] | None


class Contract:
    """The operations a fake may serve, and a checker for requests against them."""

    def __init__(self, operations: Mapping[str, Mapping[str, Any]]) -> None:
        """Index the operations by "METHOD /route"."""
        self._ops: dict[str, Operation] = {}
        for key, raw in operations.items():
            method, route = key.split(" ", 1)
            self._ops[key] = Operation(
                method=method,
                route=route,
                parameters=tuple(raw.get("parameters", ())),
                body=raw.get("requestBody"),
            )

    @classmethod
    def load(cls) -> Contract:
        """Load the subset shipped with the package."""
        text = resources.files("quantumreview.testing").joinpath(SUBSET_FILE).read_text(encoding="utf-8")
        return cls(json.loads(text)["operations"])

    def has(self, method: str, route: str) -> bool:
        """Tell whether the description holds METHOD route."""
        return f"{method.upper()} {route}" in self._ops

    def routes(self) -> list[tuple[str, str]]:
        """Return every (method, route template) in the subset."""
        return [(op.method, op.route) for op in self._ops.values()]

    def check(
        self,
        method: str,
        route: str | None,
        *,
        path_params: Mapping[str, str] = {},
        query: Mapping[str, str] = {},
        body: Any = None,
        has_body: bool = False,
    ) -> list[str]:
        """Return one message per way the request breaks the description (empty when it conforms)."""
        where = f"{method.upper()} {route}"
        op = self._ops.get(where) if route is not None else None
        if op is None:
            return [f"{method.upper()} {route or '?'}: no such operation in GitHub's REST API description"]
        problems: list[str] = []
        for param in op.parameters:
            source = path_params if param["in"] == "path" else query if param["in"] == "query" else None
            if source is None:
                continue
            name = param["name"]
            if name not in source:
                if param.get("required"):
                    problems.append(f"{where}: missing required {param['in']} parameter {name!r}")
                continue
            problems += [f"{where}: {p}" for p in check_text_param(name, source[name], param.get("schema", {}))]
        if op.body is not None:
            if not has_body:
                if op.body.get("required"):
                    problems.append(f"{where}: missing required request body")
            else:
                problems += [f"{where}: {p}" for p in check_schema(body, op.body.get("schema", {}), "body")]
        return problems


def check_text_param(name: str, text: str, schema: Mapping[str, Any]) -> list[str]:
    """Check a path or query parameter given as text against its schema."""
    kind = schema.get("type")
    value: Any = text
    if kind == "integer":
        try:
            value = int(text)
        except ValueError:
            return [f"parameter {name!r} must be an integer, got {text!r}"]
    elif kind == "boolean":
        if text not in ("true", "false"):
            return [f"parameter {name!r} must be true or false, got {text!r}"]
        value = text == "true"
    return check_schema(value, schema, f"parameter {name!r}")


def type_matches(value: Any, kind: str) -> bool:
    """Tell whether a JSON value has the given JSON-schema type (bool is not an integer)."""
    if kind == "null":
        return value is None
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES.get(kind, (object,)))


def check_schema(value: Any, schema: Mapping[str, Any], at: str) -> list[str]:
    """Validate value against the JSON-schema keywords the subset keeps; return the problems."""
    if value is None and schema.get("nullable"):
        return []
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        if not any(type_matches(value, k) for k in allowed):
            return [f"{at} must be of type {'/'.join(allowed)}, got {type(value).__name__}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{at} must be one of {schema['enum']}, got {value!r}")
    problems += check_bounds(value, schema, at)
    if isinstance(value, dict):
        problems += [f"{at} is missing required field {n!r}" for n in schema.get("required", ()) if n not in value]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += check_schema(value[name], sub, f"{at}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += check_schema(item, schema["items"], f"{at}[{index}]")
    for sub in schema.get("allOf", ()):
        problems += check_schema(value, sub, at)
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        # oneOf is checked like anyOf: GitHub's branches often overlap, and GitHub accepts the overlap.
        if branches and all(check_schema(value, b, at) for b in branches):
            problems.append(f"{at} matches none of the allowed shapes ({keyword})")
    return problems


def check_bounds(value: Any, schema: Mapping[str, Any], at: str) -> list[str]:
    """Check length, size and numeric bounds."""
    problems: list[str] = []
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{at} is longer than {schema['maxLength']} characters")
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{at} is shorter than {schema['minLength']} characters")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{at} has more than {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{at} has fewer than {schema['minItems']} items")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{at} is above {schema['maximum']}")
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{at} is below {schema['minimum']}")
    return problems
