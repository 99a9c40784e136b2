"""`quantumreview receive` with odd input: a clear one-line error (exit 2) or an honest report, never a traceback,
and nothing from the payload or the command line printed raw (a newline or terminal escape forged lines)."""

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
    import gidgethub
    from gidgethub import routing
    router = routing.Router()

    @router.register("issues", action="opened")
    async def reads_an_odd_url(event, ctx):
        try:
            await ctx.gh.getitem(f"/repos/{event.data['repository']['full_name']}/issues/1")
        except gidgethub.BadRequest:
            pass
    '''
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    pkg = tmp_path / "receive_input_handlers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "feature.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"DATABASE_PATH": str(tmp_path / "data" / "qr.db"), "QUANTUMREVIEW_HANDLERS": "receive_input_handlers"}


def run_cli(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv, env)
    return code, out.getvalue(), err.getvalue()


def printable(text: str) -> bool:
    return all(line.isprintable() for line in text.splitlines())


@pytest.mark.parametrize("event_name", ["", "iss ues", "issues\n", "\x1b[2Jissues", "issues\udcff", "é", "a" * 201,
                                        "issues/opened"])
def test_an_event_name_the_server_would_refuse_is_a_one_line_error(
        env: dict[str, str], tmp_path: Path, event_name: str) -> None:
    # They matched nothing and were printed raw ("no handler matches \x1b[2Jissues.opened"), exit 0.
    path = tmp_path / "payload.json"
    path.write_text('{"action": "opened"}')
    code, out, err = run_cli(["receive", event_name, str(path)], env)
    assert (code, out) == (2, "")
    assert "is not an event name: give X-GitHub-Event's, such as issues" in err
    assert len(err.splitlines()) == 1 and printable(err)


@pytest.mark.parametrize("event_name", ["issues", "pull_request", "quantumreview.regenerate_checklist", "my-plugin.x"])
def test_event_names_of_github_and_of_queued_work_are_taken(
        env: dict[str, str], tmp_path: Path, event_name: str) -> None:
    path = tmp_path / "payload.json"
    path.write_text('{"action": "labeled"}')
    assert load_event(event_name, path).event == event_name


def test_event_given_as_event_dot_action_gets_a_hint(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "issues.opened.1.json"
    path.write_text('{"action": "opened"}')
    code, out, _ = run_cli(["receive", "issues.opened", str(path)], env)
    assert code == 0
    assert out == ("no handler matches issues.opened.opened (the event name is X-GitHub-Event's, such as issues: the "
                   "action comes from the payload, so `receive issues PAYLOAD` runs the opened handlers)\n")


def test_an_action_holding_a_terminal_escape_is_printed_escaped(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"action": "lab\x1b[2Jeled\nforged line"}))
    code, out, _ = run_cli(["receive", "issues", str(path)], env)
    assert code == 0
    assert out == "no handler matches issues.lab\\x1b[2Jeled\\nforged line\n"


@pytest.mark.parametrize("name", ["missing\n.json", "a\x1b[2J.json"])
def test_a_payload_path_with_control_characters_is_shown_escaped(
        env: dict[str, str], tmp_path: Path, name: str) -> None:
    code, out, err = run_cli(["receive", "issues", str(tmp_path / name)], env)
    assert (code, out) == (2, "")
    assert err.startswith("quantumreview: cannot read ") and len(err.splitlines()) == 1 and printable(err)


@pytest.mark.parametrize(("content", "message"), [
    (b"not json", "cannot read"),
    (b"\xff\xfe\x00garbage", "cannot read"),
    (b"[]", "does not hold a JSON object"),
    (b'"text"', "does not hold a JSON object"),
    (b"", "cannot read"),
])
def test_a_payload_that_is_no_json_object_is_a_one_line_error(
        env: dict[str, str], tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "payload.json"
    path.write_bytes(content)
    code, out, err = run_cli(["receive", "issues", str(path)], env)
    assert (code, out) == (2, "")
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_missing_payload_or_a_directory_is_a_one_line_error(env: dict[str, str], tmp_path: Path) -> None:
    for path, message in ((tmp_path / "nope.json", "No such file"), (tmp_path, "Is a directory")):
        code, out, err = run_cli(["receive", "issues", str(path)], env)
        assert (code, out) == (2, "")
        assert message in err and len(err.splitlines()) == 1


def test_an_unknown_event_says_no_handler_matches(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text('{"action": "created"}')
    code, out, _ = run_cli(["receive", "no_such_event", str(path)], env)
    assert (code, out) == (0, "no handler matches no_such_event.created\n")


async def test_github_calls_are_printed_escaped(env: dict[str, str], tmp_path: Path, fake_github: FakeGitHub,
                                                rsa_private_key: str) -> None:
    fake_github.add_installation(3, repositories=["o/r"])
    env.update(GITHUB_APP_ID="1", GITHUB_PRIVATE_KEY=rsa_private_key, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
               GITHUB_API_URL=fake_github.api_url, GITHUB_URL=fake_github.url)
    path = tmp_path / "payload.json"
    payload: dict[str, Any] = {"action": "opened", "installation": {"id": 3},
                               "repository": {"full_name": "o/r\x1b[2J\nforged"}}
    path.write_text(json.dumps(payload))
    settings = Settings.from_env(env)
    out = io.StringIO()
    code = await receive(settings, load_handlers(settings.handlers_package), load_event("issues", path), out)
    assert code == 0
    assert out.getvalue().splitlines() == ["receive_input_handlers.feature:reads_an_odd_url: ok",
                                           "  GET /repos/o/r\\x1b[2J\\nforged/issues/1"]


def test_a_payload_larger_than_github_sends_is_refused_unread(env: dict[str, str], tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:
        file.truncate(25 * 1024 * 1024 + 1)  # sparse: one byte over GitHub's cap costs no disk
    code, out, err = run_cli(["receive", "issues", str(huge)], env)
    assert (code, out) == (2, "")
    assert "larger than 26214400 bytes" in err and len(err.splitlines()) == 1
