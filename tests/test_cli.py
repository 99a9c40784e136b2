"""The command line: receive, replay, jobs, migrate and backup do what they say, with clear errors."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from quantumreview.cli import main
from quantumreview.testing.fake import FakeGitHub
from tests.conftest import WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parent.parent
HANDLER = textwrap.dedent(
    '''
    from gidgethub import routing
    router = routing.Router()

    @router.register("issues", action="opened")
    async def comment_on_issue(event, ctx):
        issue = event.data["issue"]
        await ctx.gh.post(f"/repos/{ctx.repo}/issues/{issue['number']}/comments", data={"body": "hello"})

    @router.register("issues", action="closed")
    async def explode(event, ctx):
        raise RuntimeError("handler broke")
    '''
)


def run_cli(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv, env)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rsa_private_key: str) -> dict[str, str]:
    pkg = tmp_path / "cli_handlers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "feature.py").write_text(HANDLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"DATABASE_PATH": str(tmp_path / "data" / "qr.db"), "QUANTUMREVIEW_HANDLERS": "cli_handlers",
            "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": rsa_private_key, "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}


def payload_file(tmp_path: Path, load_payload: Any, action: str = "opened") -> Path:
    data = load_payload("issues.opened")
    data["action"] = action
    data["installation"] = {"id": 3}
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(data))
    return path


async def test_receive_runs_handlers_once_and_prints_their_github_calls(
        env: dict[str, str], tmp_path: Path, fake_github: FakeGitHub, load_payload: Any) -> None:
    fake_github.add_installation(3, repositories=["Codertocat/Hello-World"])
    fake_github.add_issue("Codertocat/Hello-World", 1)
    env.update(GITHUB_API_URL=fake_github.api_url, GITHUB_URL=fake_github.url)
    path = payload_file(tmp_path, load_payload)
    code, out, _ = await run_in_thread(["receive", "issues", str(path)], env)
    assert code == 0
    assert "cli_handlers.feature:comment_on_issue: ok" in out
    assert "POST /repos/Codertocat/Hello-World/issues/1/comments" in out
    assert [c["body"] for c in fake_github.comments[("Codertocat/Hello-World", 1)]] == ["hello"]


async def test_receive_with_an_installation_id_of_true_acts_on_no_installation(
        env: dict[str, str], tmp_path: Path, fake_github: FakeGitHub, load_payload: Any) -> None:
    """`"installation": {"id": true}` passed isinstance(int) and acted as installation 1."""
    fake_github.add_installation(1, repositories=["Codertocat/Hello-World"])
    fake_github.add_issue("Codertocat/Hello-World", 1)
    env.update(GITHUB_API_URL=fake_github.api_url, GITHUB_URL=fake_github.url)
    path = payload_file(tmp_path, load_payload)
    path.write_text(json.dumps({**json.loads(path.read_text()), "installation": {"id": True}}))
    await run_in_thread(["receive", "issues", str(path)], env)
    assert fake_github.calls("POST", "/app/installations/{installation_id}/access_tokens") == []
    assert fake_github.comments.get(("Codertocat/Hello-World", 1), []) == []


async def test_receive_reports_a_failing_handler_and_exits_1(
        env: dict[str, str], tmp_path: Path, load_payload: Any) -> None:
    code, out, _ = await run_in_thread(["receive", "issues", str(payload_file(tmp_path, load_payload, "closed"))],
                                       env)
    assert code == 1
    assert "explode: failed: RuntimeError: handler broke" in out


def test_receive_with_unreadable_payload_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run_cli(["receive", "issues", str(bad)], env)
    assert code == 2 and "does not hold a JSON object" in err


@pytest.mark.parametrize(("content", "message"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # RecursionError, not ValueError
    ('{"action": ["opened"]}', "a routed field (such as action) is a list or an object"),  # unhashable
    ('{"action": {"x": 1}}', "a routed field (such as action) is a list or an object"),
    ('{"action": "\\ud800"}', "lone surrogate"),  # printing the label raised UnicodeEncodeError
])
def test_receive_with_a_payload_it_cannot_route_is_a_one_line_error(
        env: dict[str, str], tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = run_cli(["receive", "issues", str(bad)], env)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_receive_reads_no_more_than_a_webhook_payload_can_hold(env: dict[str, str], tmp_path: Path) -> None:
    """read_bytes() read any file whole: /dev/zero (or a huge file) took all memory and died with MemoryError."""
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:
        file.truncate(26 * 1024 * 1024)  # sparse: one byte over GitHub's 25 MiB cap costs no disk
    code, _, err = run_cli(["receive", "issues", str(huge)], env)
    assert code == 2 and "larger than 26214400 bytes" in err


def test_receive_with_no_matching_handler_says_so(env: dict[str, str], tmp_path: Path, load_payload: Any) -> None:
    code, out, _ = run_cli(["receive", "issues", str(payload_file(tmp_path, load_payload, "labeled"))], env)
    assert code == 0 and "no handler matches issues.labeled" in out


def stored_delivery_with_a_job(env: dict[str, str], load_payload: Any, *, status: str, attempts: int,
                               last_error: str | None = None) -> sqlite3.Connection:
    """A migrated database holding delivery d-1 (issues.opened) and one job of it; a connection to it."""
    assert run_cli(["migrate"], env)[0] == 0
    body = json.dumps({**load_payload("issues.opened"), "installation": {"id": 3}}).encode()
    conn = sqlite3.connect(env["DATABASE_PATH"])
    with conn:
        conn.execute("INSERT INTO deliveries (id, event, action, installation_id, received_at, body) "
                     "VALUES ('d-1', 'issues', 'opened', 3, 0, ?)", (body,))
        conn.execute("INSERT INTO jobs (delivery_id, handler, ordering_key, status, attempts, run_after, created_at,"
                     " last_error) VALUES ('d-1', 'cli_handlers.feature:comment_on_issue', 'k', ?, ?, 0, 0, ?)",
                     (status, attempts, last_error))
    return conn


def test_replay_requeues_a_stored_deliverys_jobs(env: dict[str, str], tmp_path: Path, load_payload: Any) -> None:
    conn = stored_delivery_with_a_job(env, load_payload, status="dead", attempts=6, last_error="x")
    code, out, _ = run_cli(["replay", "d-1"], env)
    assert code == 0 and "queued 1 job(s)" in out
    row = conn.execute("SELECT status, attempts, last_error FROM jobs").fetchone()
    assert row == ("queued", 0, None)
    assert run_cli(["replay", "nope"], env)[0] == 1


def test_replay_of_a_stored_delivery_nested_too_deeply_is_a_one_line_error(env: dict[str, str]) -> None:
    """The intake stores bodies up to SQLite's 2,000 levels of nesting; json.loads stops near 1,000, and replay
    died with a RecursionError traceback."""
    assert run_cli(["migrate"], env)[0] == 0
    body = ('{"action": "opened", "x": ' + "[" * 1500 + "]" * 1500 + "}").encode()
    conn = sqlite3.connect(env["DATABASE_PATH"])
    with conn:
        conn.execute("INSERT INTO deliveries (id, event, action, installation_id, received_at, body) "
                     "VALUES ('deep', 'issues', 'opened', 3, 0, ?)", (body,))
    code, out, _ = run_cli(["replay", "deep"], env)
    assert code == 1 and "cannot replay delivery deep" in out
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def _store_delivery(env: dict[str, str], load_payload: Any, delivery_id: str = "d-1") -> sqlite3.Connection:
    assert run_cli(["migrate"], env)[0] == 0
    body = json.dumps({**load_payload("issues.opened"), "installation": {"id": 3}}).encode()
    conn = sqlite3.connect(env["DATABASE_PATH"], isolation_level=None)
    conn.execute("INSERT INTO deliveries (id, event, action, installation_id, received_at, body) "
                 "VALUES (?, 'issues', 'opened', 3, 0, ?)", (delivery_id, body))
    return conn


def test_replay_while_another_writer_holds_the_database_is_a_one_line_error(
        env: dict[str, str], load_payload: Any) -> None:
    """DatabaseBusy from BEGIN IMMEDIATE after the busy timeout was a traceback."""
    conn = _store_delivery(env, load_payload)
    conn.execute("BEGIN IMMEDIATE")
    try:
        code, out, _ = run_cli(["replay", "d-1"], env)
    finally:
        conn.execute("ROLLBACK")
    assert code == 1 and "cannot queue the jobs of delivery d-1: the database is busy" in out


def test_replay_of_a_delivery_deleted_by_retention_meanwhile_says_so(
        env: dict[str, str], load_payload: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention deleting the delivery between replay's read and its write made the jobs' insert fail on the
    foreign key: an IntegrityError traceback."""
    from quantumreview import replay as replay_module

    conn = _store_delivery(env, load_payload)
    read = replay_module.delivery_store.get_delivery

    async def read_then_prune(db: Any, delivery_id: str) -> Any:
        record = await read(db, delivery_id)
        conn.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))
        return record

    monkeypatch.setattr(replay_module.delivery_store, "get_delivery", read_then_prune)
    code, out, _ = run_cli(["replay", "d-1"], env)
    assert code == 1 and "no stored delivery d-1" in out
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_jobs_lists_counts_and_dead_jobs_with_errors(env: dict[str, str]) -> None:
    assert run_cli(["migrate"], env)[0] == 0
    conn = sqlite3.connect(env["DATABASE_PATH"])
    with conn:
        conn.execute("INSERT INTO jobs (handler, ordering_key, status, attempts, run_after, created_at, last_error) "
                     "VALUES ('m:f', 'k', 'dead', 6, 0, 0, 'RetryLater: GitHub answered 502')")
    code, out, _ = run_cli(["jobs"], env)
    assert code == 0
    assert "dead 1" in out and "RetryLater: GitHub answered 502" in out


def test_backup_writes_a_usable_copy(env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(["migrate"], env)[0] == 0
    dest = tmp_path / "backup.db"
    code, out, _ = run_cli(["backup", str(dest)], env)
    assert code == 0 and "backed up" in out
    assert sqlite3.connect(dest).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_backup_to_a_path_it_cannot_write_says_so_in_one_line(env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(["migrate"], env)[0] == 0
    (tmp_path / "backups").mkdir()
    (tmp_path / "a-file").write_text("kept")
    for dest, reason in ((tmp_path / "backups", "is a directory"), (tmp_path / "a-file" / "b.db", "cannot write")):
        code, out, err = run_cli(["backup", str(dest)], env)  # a traceback used to escape here
        assert code == 1 and out == "" and err.count("\n") == 1
        assert err.startswith("quantumreview: backup failed: ") and reason in err and str(dest) in err
    assert list((tmp_path / "backups").iterdir()) == [] and (tmp_path / "a-file").read_text() == "kept"


def test_broken_handler_module_stops_start_up_naming_it(tmp_path: Path) -> None:
    pkg = tmp_path / "broken_handlers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text("import not_a_module_xyz\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT}", "QUANTUMREVIEW_HANDLERS": "broken_handlers",
           "DATABASE_PATH": str(tmp_path / "x.db")}
    result = subprocess.run([sys.executable, "-m", "quantumreview", "serve"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "broken_handlers.bad" in result.stderr and "Traceback" not in result.stderr


async def run_in_thread(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """main() runs its own event loop; keep it off the test's loop (the fake GitHub serves on that one)."""
    import asyncio

    return await asyncio.to_thread(run_cli, argv, env)


def test_serve_raises_the_young_gc_threshold_and_freezes_start_up_objects(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    """Parsed payloads live until their job runs; the server collects young objects less often, and full
    collections skip everything loaded at start."""
    import gc

    from aiohttp import web

    from quantumreview import cli

    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(web, "run_app",
                        lambda app, **kwargs: seen.append((gc.get_threshold()[0], gc.get_freeze_count())))
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        code, _, err = run_cli(["serve"], {"DATABASE_PATH": str(tmp_path / "x.db")})
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    assert code == 0, err
    assert seen[0][0] == cli.GC_YOUNG_THRESHOLD and cli.GC_YOUNG_THRESHOLD > before[0]
    assert seen[0][1] > 10_000  # the modules, classes and functions loaded so far


def test_serve_on_a_port_in_use_exits_2_saying_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port),
               "DATABASE_PATH": str(tmp_path / "x.db")}
        result = subprocess.run([sys.executable, "-m", "quantumreview", "serve"], env=env, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    # Start-up had run (and was shut down again): the database is migrated and closed cleanly.
    assert sqlite3.connect(tmp_path / "x.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_serve_on_a_host_name_that_does_not_resolve_exits_2_saying_so(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    import gc
    import socket

    from aiohttp import web

    def unresolvable(app: Any, **kwargs: Any) -> None:  # what binding raises; no DNS query leaves the test
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(web, "run_app", unresolvable)
    before = gc.get_threshold()
    try:
        code, _, err = run_cli(["serve"], {"DATABASE_PATH": str(tmp_path / "x.db"), "HOST": "no-such-host.invalid"})
    finally:  # serve raised the threshold and froze what was loaded; the rest of the session must not inherit it
        gc.set_threshold(*before)
        gc.unfreeze()
    assert code == 2
    assert "cannot listen on no-such-host.invalid:8000: Name or service not known (set HOST" in err


def test_an_lxml_older_than_6_1_refuses_every_command(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """XML-01: lxml before 6.1 must never parse an untrusted report; the check runs before any command."""
    from lxml import etree

    monkeypatch.setattr(etree, "LXML_VERSION", (6, 0, 2, 0))
    code, out, err = run_cli(["migrate"], env)
    assert code == 2 and out == ""
    assert "lxml 6.0.2 is installed" in err and "lxml>=6.1" in err and "Traceback" not in err
    assert not (Path(env["DATABASE_PATH"])).exists()  # refused before doing anything


def test_the_installed_lxml_is_recent_enough() -> None:
    from quantumreview.analysis.junit import lxml_problem

    assert lxml_problem() is None
    assert lxml_problem((6, 1, 0, 0)) is None
    assert lxml_problem((5, 4, 0, 0)) is not None


@pytest.mark.parametrize("argv", [["jobs"], ["migrate"], ["replay", "d1"], ["receive", "issues", "PAYLOAD"]])
def test_commands_on_a_file_that_is_not_a_database_exit_2_and_leave_it_as_it_was(
        argv: list[str], env: dict[str, str], tmp_path: Path, load_payload: Any) -> None:
    path = Path(env["DATABASE_PATH"])
    path.parent.mkdir()
    garbage = bytes(range(256)) * 400
    path.write_bytes(garbage)
    argv = [str(payload_file(tmp_path, load_payload)) if arg == "PAYLOAD" else arg for arg in argv]
    code, _, err = run_cli(argv, env)
    assert code == 2
    assert f"quantumreview: cannot open the database {path}: file is not a database" in err
    assert path.read_bytes() == garbage


def test_a_database_that_cannot_be_opened_on_a_full_volume_says_the_volume_is_full(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite says only 'disk I/O error' when it cannot grow the -shm file of a full volume.
    import shutil

    from storage import db as db_module

    path = Path(env["DATABASE_PATH"])
    path.parent.mkdir()
    path.write_bytes(b"x" * 4096)
    monkeypatch.setattr(db_module.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    code, _, err = run_cli(["jobs"], env)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"quantumreview: cannot open the database {path}: ")
    assert err.endswith("(its volume is full: 0 bytes free)\n")


def test_commands_on_a_database_path_that_cannot_be_created_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    code, _, err = run_cli(["jobs"], {**env, "DATABASE_PATH": str(blocker / "qr.db")})
    assert code == 2
    assert f"cannot open the database {blocker / 'qr.db'}" in err


def test_replay_of_a_delivery_whose_job_is_running_does_not_count_it_as_queued(
        env: dict[str, str], load_payload: Any) -> None:
    """requeue_delivery leaves a running job alone, but replay said 'queued 1 job(s)' for it."""
    conn = stored_delivery_with_a_job(env, load_payload, status="running", attempts=1)
    code, out, _ = run_cli(["replay", "d-1"], env)
    assert code == 0 and "queued 0 job(s)" in out
    assert "not queued, still running: cli_handlers.feature:comment_on_issue" in out
    assert conn.execute("SELECT status, attempts FROM jobs").fetchall() == [("running", 1)]


def test_migrate_and_serve_refuse_a_database_a_newer_version_wrote(env: dict[str, str]) -> None:
    # An older release run against a newer one's database (a rollback) would misread or overwrite its schema.
    assert run_cli(["migrate"], env)[0] == 0
    path = Path(env["DATABASE_PATH"])
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('quantumreview', 'm999_from_the_future', '2027-01-01')")
    before = path.read_bytes()
    for command in (["migrate"], ["serve"]):
        code, _, err = run_cli(command, env)
        assert code == 2 and "written by a newer QuantumReview" in err and "m999_from_the_future" in err, err
    assert path.read_bytes() == before
