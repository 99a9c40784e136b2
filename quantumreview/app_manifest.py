"""The GitHub App manifest: app.yml read with a small YAML-subset reader, and the URLs filled in for one server.

Why a reader of our own: PyYAML is not in the stack, and app.yml only needs block maps, lists of scalars,
plain or quoted scalars and comments. Anything else is rejected with its line number rather than misread.
https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
INTEGER = re.compile(r"[-+]?[0-9]+")
FLOATISH = re.compile(r"[-+]?(\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
# Why: YAML 1.1 readers (PyYAML, Probot's js-yaml in some modes) turn these into booleans; demand quotes.
AMBIGUOUS = frozenset({"yes", "no", "on", "off", "y", "n"})
INDICATORS = tuple("[]{}&*!|>%@`,?\"'")
CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None}

WEBHOOK_PATH = "/webhooks/github"
SETUP_CALLBACK_PATH = "/setup/callback"
SETUP_INSTALLED_PATH = "/setup/installed"
OAUTH_CALLBACK_PATH = "/auth/callback"


class ManifestSyntaxError(ValueError):
    """app.yml uses YAML outside the supported subset, or is malformed; the message names the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"app.yml line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class _Line:
    number: int
    indent: int
    text: str


def _strip_comment(text: str) -> str:
    """Drop a trailing `# comment` that is outside quotes."""
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote == "'" and text.startswith("''", i):
            i += 1  # '' is an escaped quote inside a single-quoted string
        elif quote == '"' and ch == "\\":
            i += 1
        elif quote and ch == quote:
            quote = None
        elif not quote and ch in "\"'" and (i == 0 or text[i - 1] in " :-"):
            quote = ch
        elif not quote and ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
        i += 1
    return text.rstrip()


def _lines(text: str) -> list[_Line]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        content = _strip_comment(raw)
        if not content.strip():
            continue
        if content.strip() in ("---", "..."):
            raise ManifestSyntaxError(number, "only one document is supported")
        stripped = content.lstrip(" ")
        if stripped.startswith("\t") or "\t" in content[: len(content) - len(stripped)]:
            raise ManifestSyntaxError(number, "indent with spaces, not tabs")
        lines.append(_Line(number, len(content) - len(stripped), stripped))
    return lines


def parse_scalar(text: str, line: int) -> Any:
    """Read one scalar: quoted string, true/false, null, integer or plain string."""
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise ManifestSyntaxError(line, "unterminated double-quoted string")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestSyntaxError(line, f"bad double-quoted string ({exc.msg})") from None
    if text.startswith("'"):
        inner = text[1:-1]
        if len(text) < 2 or not text.endswith("'") or "'" in inner.replace("''", ""):
            raise ManifestSyntaxError(line, "bad single-quoted string")
        return inner.replace("''", "'")
    if text in CONSTANTS:
        return CONSTANTS[text]
    if INTEGER.fullmatch(text):
        return int(text)
    if FLOATISH.fullmatch(text) or text.lower() in AMBIGUOUS or text.lower() in CONSTANTS:
        raise ManifestSyntaxError(line, f"ambiguous value {text!r}: quote it")
    if text.startswith(INDICATORS) or text.startswith("- ") or ": " in text or text.endswith(":"):
        raise ManifestSyntaxError(line, f"unsupported YAML syntax in {text!r}: quote the value")
    return text


class _Parser:
    def __init__(self, lines: list[_Line]) -> None:
        self.lines = lines
        self.i = 0

    def peek(self) -> _Line | None:
        return self.lines[self.i] if self.i < len(self.lines) else None

    def block(self, indent: int) -> Any:
        line = self.peek()
        assert line is not None
        if line.text == "-" or line.text.startswith("- "):
            return self.sequence(indent)
        return self.mapping(indent)

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while (line := self.peek()) is not None and line.indent == indent:
            if not line.text.startswith("- "):
                break
            self.i += 1
            items.append(parse_scalar(line.text[2:].strip(), line.number))
        return items

    def mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while (line := self.peek()) is not None and line.indent >= indent:
            if line.indent > indent:
                raise ManifestSyntaxError(line.number, "unexpected indentation")
            key, sep, rest = line.text.partition(":")
            if not sep or not KEY.fullmatch(key) or (rest and not rest.startswith(" ")):
                raise ManifestSyntaxError(line.number, "expected `key: value` (plain keys only)")
            if key in result:
                raise ManifestSyntaxError(line.number, f"duplicate key {key!r}")
            self.i += 1
            value = rest.strip()
            if value:
                result[key] = parse_scalar(value, line.number)
                continue
            child = self.peek()
            nested_list = child is not None and child.indent == indent and child.text.startswith("- ")
            if child is not None and (child.indent > indent or nested_list):
                result[key] = self.block(child.indent)
            else:
                result[key] = None
        return result


def parse_yaml_subset(text: str) -> dict[str, Any]:
    """Parse app.yml's YAML subset (block maps, lists of scalars, scalars, comments) into plain Python."""
    lines = _lines(text)
    if not lines:
        return {}
    if lines[0].indent != 0:
        raise ManifestSyntaxError(lines[0].number, "the document must start at column 0")
    parser = _Parser(lines)
    result = parser.mapping(0)
    if (left := parser.peek()) is not None:
        raise ManifestSyntaxError(left.number, "unexpected content")
    return result


def _dump_scalar(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    text = str(value)
    try:
        plain_ok = parse_scalar(text, 0) == text and "#" not in text and text == text.strip()
    except ManifestSyntaxError:
        plain_ok = False
    return text if plain_ok and text else json.dumps(text, ensure_ascii=False)


def dump_yaml_subset(data: Mapping[str, Any], indent: int = 0) -> str:
    """Write plain Python (maps, lists of scalars, scalars) back as the subset parse_yaml_subset reads."""
    pad = " " * indent
    out = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.append(f"{pad}{key}:\n{dump_yaml_subset(value, indent + 2)}" if value else f"{pad}{key}: null\n")
        elif isinstance(value, list):
            items = "".join(f"{pad}  - {_dump_scalar(item)}\n" for item in value)
            out.append(f"{pad}{key}:\n{items}" if value else f"{pad}{key}: null\n")
        else:
            out.append(f"{pad}{key}: {_dump_scalar(value)}\n")
    return "".join(out)


def read_app_yml() -> str:
    """The app.yml text shipped inside the package."""
    # Why not importlib.resources: editable installs give the top-level package a path it cannot list.
    return Path(__file__).with_name("app.yml").read_text(encoding="utf-8")


def load_manifest_template() -> dict[str, Any]:
    """The packaged app.yml as a dict."""
    return parse_yaml_subset(read_app_yml())


def build_manifest(template: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """Fill the manifest's URLs in for a server reachable at `public_url`."""
    base = public_url.rstrip("/")
    manifest = copy.deepcopy(dict(template))
    hook = dict(manifest.get("hook_attributes") or {})
    hook["url"] = base + WEBHOOK_PATH
    hook.setdefault("active", True)
    manifest["hook_attributes"] = hook
    manifest["redirect_url"] = base + SETUP_CALLBACK_PATH
    manifest["callback_urls"] = [base + OAUTH_CALLBACK_PATH]
    manifest["setup_url"] = base + SETUP_INSTALLED_PATH
    return manifest
