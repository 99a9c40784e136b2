"""`quantumreview receive` says what each handler did: ok, skipped (and why) or failed; the exit code tells which."""

from __future__ import annotations

import io
import json
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from quantumreview.cli import main
from quantumreview.plugins import load_handlers
from quantumreview.receive import load_event, receive
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from tests.conftest import WEBHOOK_SECRET

HANDLERS = textwrap.dedent(
    '''
    from gidgethub import routing
    router = routing.Router()

    @router.register("issues", action="opened")
    @router.register("issues", action="deleted")
    async def needs_github(event, ctx):
        if ctx.gh is None:  # as the project's handlers do: nothing to do without an installation client
            return
        await ctx.gh.getitem(f"/repos/{ctx.repo}/issues/1")

    @router.register("issues", action="closed")
    async def queues_then_needs_github(event, ctx):
        await ctx.enqueue("receive_outcome_test.later", {"n": 1})
        if ctx.gh is None:
            return

    @router.register("issues", action="labeled")
    async def payload_only(event, ctx):
        assert event.data["action"] == "labeled"

    @router.register("issues", action="edited")
    @router.register("issues", action="deleted")
    async def uses_missing_client(event, ctx):
        await ctx.gh.getitem("/repos/o/r/issues/1")

    @router.register("issues", action="reopened")
    async def asks_for_no_installation(event, ctx):
        ctx.github.for_installation(ctx.installation_id)

    @router.register("issues", action="milestoned")
    async def needs_an_installation(event, ctx):
        if ctx.installation_id is None:
            return
        await ctx.enqueue("receive_outcome_test.later", {"installation": ctx.installation_id})

    @router.register("issues", action="unassigned")
    async def talks_as_the_app(event, ctx):
        await ctx.github.as_app().getitem("/app/installations/3")
        [artifact] = await ctx.github.list_artifacts(3, "o/r", 7)
        await ctx.github.download_artifact(3, "o/r", artifact, dest_dir=ctx.settings.database_path.parent)

    @router.register("issues", action="assigned")
    async def talks_to_github(event, ctx):
        await ctx.gh.getitem("/repos/o/r/issues/1")
        [c async for c in ctx.gh.getiter("/repos/o/r/issues/1/comments")]
        await ctx.gh.post("/repos/o/r/issues/1/comments", data={"body": "hi"})
    '''
)
NO_APP = "no GitHub App is configured (set GITHUB_APP_ID and GITHUB_PRIVATE_KEY, or use the setup page)"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    pkg = tmp_path / "receive_outcome_handlers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "feature.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"DATABASE_PATH": str(tmp_path / "data" / "qr.db"), "QUANTUMREVIEW_HANDLERS": "receive_outcome_handlers"}


async def run(env: dict[str, str], tmp_path: Path, payload: dict[str, Any]) -> tuple[int, list[str]]:
    """Run `receive issues` in-process on `payload`; its exit code and output lines."""
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    settings = Settings.from_env(env)
    out = io.StringIO()
    code = await receive(settings, load_handlers(settings.handlers_package), load_event("issues", path), out)
    return code, out.getvalue().splitlines()


def name(handler: str) -> str:
    return f"receive_outcome_handlers.feature:{handler}"


async def test_a_handler_that_returned_for_want_of_github_is_reported_skipped_with_exit_3(
        env: dict[str, str], tmp_path: Path) -> None:
    # Without an App it said "ok" and exited 0, as if it had done its work.
    code, lines = await run(env, tmp_path, {"action": "opened", "installation": {"id": 3}})
    assert lines == [f"{name('needs_github')}: skipped: ctx.gh is None, as {NO_APP}, and it did nothing without it"]
    assert code == 3


async def test_a_handler_that_returned_for_want_of_an_installation_is_reported_skipped(
        env: dict[str, str], tmp_path: Path) -> None:
    # It read only ctx.installation_id (None: the payload names none), and was "ok".
    code, lines = await run(env, tmp_path, {"action": "milestoned"})
    assert lines == [f"{name('needs_an_installation')}: skipped: ctx.installation_id is None, as the event carries "
                     "no installation (a repository webhook or ping names none), and it did nothing without it"]
    assert code == 3
    assert await run(env, tmp_path, {"action": "milestoned", "installation": {"id": 3}}) == (
        0, [f"{name('needs_an_installation')}: ok"])


async def test_a_handler_that_did_part_of_its_work_without_github_is_ok_and_says_so(
        env: dict[str, str], tmp_path: Path) -> None:
    code, lines = await run(env, tmp_path, {"action": "closed"})
    assert lines == [f"{name('queues_then_needs_github')}: ok, without GitHub: ctx.gh is None, as {NO_APP}"]
    assert code == 0


async def test_a_handler_that_never_asked_for_github_is_plainly_ok(env: dict[str, str], tmp_path: Path) -> None:
    assert await run(env, tmp_path, {"action": "labeled"}) == (0, [f"{name('payload_only')}: ok"])


async def test_a_handler_failing_on_the_missing_client_says_why_it_was_missing(
        env: dict[str, str], tmp_path: Path) -> None:
    code, lines = await run(env, tmp_path, {"action": "edited"})
    assert lines == [f"{name('uses_missing_client')}: failed: AttributeError: 'NoneType' object has no attribute "
                     f"'getitem' (ctx.gh is None, as {NO_APP})"]
    assert code == 1


async def test_a_failure_outranks_a_skip_in_the_exit_code(env: dict[str, str], tmp_path: Path) -> None:
    code, lines = await run(env, tmp_path, {"action": "deleted"})
    assert [line.split(": ")[1] for line in lines] == ["skipped", "failed"]
    assert code == 1


async def test_with_an_app_an_event_without_installation_is_the_reason_given(
        env: dict[str, str], tmp_path: Path, fake_github: FakeGitHub, rsa_private_key: str) -> None:
    env.update(GITHUB_APP_ID="1", GITHUB_PRIVATE_KEY=rsa_private_key, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
               GITHUB_API_URL=fake_github.api_url, GITHUB_URL=fake_github.url)
    code, lines = await run(env, tmp_path, {"action": "opened"})
    assert lines == [f"{name('needs_github')}: skipped: ctx.gh is None, as the event carries no installation (a "
                     "repository webhook or ping names none), and it did nothing without it"]
    assert code == 3
    # ctx.github.for_installation(None) was a bare "int() argument must be ... not 'NoneType'".
    code, lines = await run(env, tmp_path, {"action": "reopened"})
    assert lines[0].startswith(f"{name('asks_for_no_installation')}: failed: NoInstallation: no installation id "
                               "(None): the event carries no installation")
    assert code == 1
    assert fake_github.requests == []  # nothing was asked of GitHub for it


def test_the_command_exits_3_when_a_handler_skipped(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"action": "opened", "installation": {"id": 3}}))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["receive", "issues", str(path)], env)
    assert (code, err.getvalue()) == (3, "")
    assert ": skipped: ctx.gh is None" in out.getvalue()


async def test_github_calls_are_listed_by_the_http_method_sent(
        env: dict[str, str], tmp_path: Path, fake_github: FakeGitHub, rsa_private_key: str) -> None:
    # A read was listed as "GETITEM /repos/…" and a paginated one as "GET* …": Python method names, not requests.
    fake_github.add_installation(3, repositories=["o/r"])
    fake_github.add_issue("o/r", 1)
    env.update(GITHUB_APP_ID="1", GITHUB_PRIVATE_KEY=rsa_private_key, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
               GITHUB_API_URL=fake_github.api_url, GITHUB_URL=fake_github.url)
    code, lines = await run(env, tmp_path, {"action": "assigned", "installation": {"id": 3}})
    assert lines == [f"{name('talks_to_github')}: ok", "  GET /repos/o/r/issues/1",
                     "  GET /repos/o/r/issues/1/comments (every page)", "  POST /repos/o/r/issues/1/comments"]
    assert code == 0


async def test_requests_through_ctx_github_are_listed_too(
        env: dict[str, str], tmp_path: Path, fake_github: FakeGitHub, rsa_private_key: str) -> None:
    # Only ctx.gh's requests were listed: an App-level read or an artifact listing and download went unmentioned.
    fake_github.add_installation(3, repositories=["o/r"])
    fake_github.add_workflow_run("o/r", 7, head_sha="a" * 40, artifacts={"report": {"junit.xml": b"<testsuite/>"}})
    env.update(GITHUB_APP_ID="1", GITHUB_PRIVATE_KEY=rsa_private_key, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
               GITHUB_API_URL=fake_github.api_url, GITHUB_URL=fake_github.url)
    code, lines = await run(env, tmp_path, {"action": "unassigned", "installation": {"id": 3}})
    artifact_id = fake_github.artifact_id("o/r", 7, "report")
    assert lines == [f"{name('talks_as_the_app')}: ok", "  GET /app/installations/3",
                     "  GET /repos/o/r/actions/runs/7/artifacts?per_page=100 (every page)",
                     f"  GET /repos/o/r/actions/artifacts/{artifact_id}/zip (then its archive)"]
    assert code == 0
