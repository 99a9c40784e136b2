"""What `quantumreview receive` says a handler did: ok, skipped (and why) or failed, and its exit code.

Why this is observed, not asked: handlers written for the server return quietly when `ctx.gh` (or `ctx.github`)
is None, so `receive` without an App said "ok" for a handler that did nothing. A WatchedContext notes which of them
(and `ctx.installation_id`) a handler found None; one that did nothing else (no database write, no job, no
notification, no GitHub call) skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from quantumreview.context import Context
from quantumreview.jobs import describe_error
from quantumreview.receive_codes import FAILED, OK, SKIPPED

NO_APP = "no GitHub App is configured (set GITHUB_APP_ID and GITHUB_PRIVATE_KEY, or use the setup page)"
NO_INSTALLATION = "the event carries no installation (a repository webhook or ping names none)"
# Why installation_id too: a handler may return when it is None, before it looks at ctx.gh.
WATCHED = frozenset({"gh", "github", "installation_id"})


@dataclass
class WatchedContext(Context):
    """A Context noting which of `gh`, `github` and `installation_id` the handler read while it was None."""

    found_none: set[str] = field(default_factory=set, repr=False)

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if value is None and name in WATCHED:
            super().__getattribute__("found_none").add(name)
        return value


@dataclass(frozen=True)
class Outcome:
    """One handler's line: `status` is ok, skipped or failed; `line` is what follows "name: "."""

    status: Literal["ok", "skipped", "failed"]
    line: str


def judge(error: BaseException | None, found_none: set[str], *, has_app: bool, acted: bool) -> Outcome:
    """The outcome of a handler that raised `error` (None: it returned), having read `found_none` as None and
    written, queued or notified (`acted`) or not."""
    missing = _missing(found_none, has_app)
    if error is not None:
        hint = f" ({missing})" if missing and isinstance(error, AttributeError) else ""
        return Outcome("failed", f"failed: {describe_error(error)}{hint}")
    if not missing:
        return Outcome("ok", "ok")
    if not acted:
        return Outcome("skipped", f"skipped: {missing}, and it did nothing without it")
    return Outcome("ok", f"ok, without GitHub: {missing}")


def _missing(found_none: set[str], has_app: bool) -> str:
    """'ctx.gh is None, as …': what the handler found missing and why; '' if nothing."""
    if not has_app and found_none & {"gh", "github"}:
        return f"ctx.{'github' if 'github' in found_none else 'gh'} is None, as {NO_APP}"
    if found_none & {"gh", "installation_id"}:
        return f"ctx.{'gh' if 'gh' in found_none else 'installation_id'} is None, as {NO_INSTALLATION}"
    return ""


def exit_code(outcomes: list[Outcome]) -> int:
    """FAILED if any handler failed, else SKIPPED if any skipped, else OK."""
    statuses = {outcome.status for outcome in outcomes}
    return FAILED if "failed" in statuses else SKIPPED if "skipped" in statuses else OK


def shown(text: str) -> str:
    """`text` with control characters (and lone surrogates) escaped: payload text printed raw could hold a
    newline or a terminal escape, forging lines of the report."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)
