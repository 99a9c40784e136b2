"""Dockerfile, .dockerignore and fly.toml: checked statically, and their shell/Python snippets run (JOB-07 lint)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from quantumreview.cli import HTTP_SHUTDOWN_TIMEOUT
from quantumreview.jobs_abandon import CANCEL_ALLOWANCE
from quantumreview.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
APP_UID = 10001


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line.strip())
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    result = []
    for entry in joined:
        instruction, _, args = entry.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def only(instruction: str) -> str:
    found = [args for name, args in dockerfile_instructions() if name == instruction]
    assert len(found) == 1, f"expected one {instruction}, found {len(found)}"
    return found[0]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in dockerfile_instructions():
        if name == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(args)))
    return env


def fly() -> dict[str, Any]:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def seconds(value: int | float | str) -> float:
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", value)
        assert match, f"not a duration: {value!r}"
        return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[match[2]]
    return float(value)


# --- Dockerfile ---------------------------------------------------------------------------------------------------


def test_image_is_one_stage_on_python_313_slim() -> None:
    assert [args for name, args in dockerfile_instructions() if name == "FROM"] == ["python:3.13-slim"]


def test_image_environment_listens_on_all_interfaces_and_keeps_data_in_the_volume() -> None:
    env = dockerfile_env()
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "8080"  # noqa: S104 - a container must listen outside
    assert env["DATABASE_PATH"] == "/data/quantumreview.db"
    assert env["MALLOC_MMAP_THRESHOLD_"] == "131072"  # large buffers go back to the system (bench/large_deliveries.py)
    assert json.loads(only("VOLUME")) == ["/data"]
    assert only("EXPOSE") == env["PORT"]


def test_image_installs_every_package_the_project_declares() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = " ".join(args for name, args in dockerfile_instructions() if name == "COPY")
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert re.search(rf"(^|\s){re.escape(package)}\s", copied), f"{package} is not copied into the image"
    assert "pyproject.toml" in copied and pyproject["project"]["readme"] in copied
    assert any(name == "RUN" and "pip install ." in args for name, args in dockerfile_instructions())


def test_server_command_is_quantumreview_serve() -> None:
    assert json.loads(only("CMD")) == ["quantumreview", "serve"]


def test_app_user_is_unprivileged_and_owns_the_data_directory() -> None:
    runs = " ".join(args for name, args in dockerfile_instructions() if name == "RUN")
    assert f"--uid {APP_UID}" in runs and f"--gid {APP_UID}" in runs
    assert [args for name, args in dockerfile_instructions() if name == "USER"] in ([], [str(APP_UID)],
                                                                                    ["quantumreview"])


@pytest.fixture
def fake_bin(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A PATH directory with `id`, `chown` and `python` stand-ins that log their arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("chown", "python", "quantumreview"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nprintf "%s\\0" {tool} "$@" >> "{log}"\nprintf "\\n" >> "{log}"\n')
        script.chmod(0o755)
    yield bin_dir, log


def run_entrypoint(bin_dir: Path, uid: int) -> None:
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "id").chmod(0o755)
    command = json.loads(only("ENTRYPOINT")) + json.loads(only("CMD"))
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    subprocess.run(command, env=env, check=True, timeout=10)


def logged_calls(log: Path) -> list[list[str]]:
    return [line.split("\0")[:-1] for line in log.read_text().splitlines() if line]


def test_entrypoint_started_as_root_hands_data_to_the_app_user_and_drops_root(
    fake_bin: tuple[Path, Path]
) -> None:
    bin_dir, log = fake_bin
    run_entrypoint(bin_dir, uid=0)
    chown, python = logged_calls(log)
    assert chown == ["chown", "-R", f"{APP_UID}:{APP_UID}", "/data"]
    assert python[:2] == ["python", "-c"] and python[3:] == ["quantumreview", "serve"]
    code = python[2]
    compile(code, "<entrypoint>", "exec")
    assert f"os.setuid({APP_UID})" in code and f"os.setgid({APP_UID})" in code and "os.setgroups([])" in code
    assert code.index("setgid") < code.index("setuid") < code.index("execvp")  # gid first, or setgid would fail


def test_entrypoint_started_as_a_user_runs_the_command_directly(fake_bin: tuple[Path, Path]) -> None:
    bin_dir, log = fake_bin
    run_entrypoint(bin_dir, uid=APP_UID)
    assert logged_calls(log) == [["quantumreview", "serve"]]


class HealthServer:
    """A /health endpoint answering a chosen status on 127.0.0.1."""

    def __init__(self, status: int) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.status, self.paths = status, []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_asks_health_and_fails_on_an_error_status(status: int, healthy: bool) -> None:
    health = only("HEALTHCHECK")
    options, _, command = health.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    server = HealthServer(status)
    try:
        result = subprocess.run([sys.executable, "-c", argv[2]], env={**os.environ, "PORT": str(server.port)},
                                capture_output=True, timeout=20)
    finally:
        server.close()
    assert server.paths == ["/health"]
    assert (result.returncode == 0) is healthy


def test_dockerignore_keeps_secrets_databases_and_the_venv_out_of_the_image() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".env", "data", "*.db", "*.db-wal", "secret.key", "*.pem"} <= patterns
    assert not {"pyproject.toml", "README.md", "quantumreview", "storage", "handlers"} & patterns


# --- fly.toml -----------------------------------------------------------------------------------------------------


def fly_settings() -> Settings:
    return Settings.from_env({**fly()["env"], "FLY_APP_NAME": fly()["app"]})


def test_fly_keeps_the_database_on_the_one_volume() -> None:
    config = fly()
    mounts = config["mounts"]
    assert isinstance(mounts, dict) or len(mounts) == 1, "one machine mounts one volume"
    mount = mounts if isinstance(mounts, dict) else mounts[0]
    assert mount["destination"] == "/data" and mount["source"] == "data"
    assert fly_settings().database_path.parent == Path(mount["destination"])


def test_fly_http_service_is_the_apps_port_with_https_and_never_sleeps() -> None:
    service = fly()["http_service"]
    assert service["internal_port"] == fly_settings().port == int(dockerfile_env()["PORT"])
    assert service["force_https"] is True
    assert service["auto_stop_machines"] in ("off", False)
    assert service["min_machines_running"] >= 1


def test_fly_health_check_asks_health() -> None:
    checks = fly()["http_service"]["checks"]
    assert [c["path"] for c in checks] == ["/health"] and checks[0]["method"] == "GET"
    assert seconds(checks[0]["timeout"]) < seconds(checks[0]["interval"])


def test_fly_kill_timeout_covers_the_job_grace_and_http_shutdown() -> None:
    config = fly()
    assert config["kill_signal"] == "SIGTERM"
    # The grace, then up to CANCEL_ALLOWANCE for handlers that ignore cancellation, then open HTTP connections.
    needed = fly_settings().shutdown_grace + CANCEL_ALLOWANCE + HTTP_SHUTDOWN_TIMEOUT + 3
    assert seconds(config["kill_timeout"]) >= needed
    assert seconds(config["kill_timeout"]) <= 300  # Fly's maximum


def test_fly_deploy_replaces_the_one_machine() -> None:
    assert fly()["deploy"]["strategy"] == "immediate"


def test_fly_public_url_defaults_to_the_fly_dev_address() -> None:
    assert fly_settings().public_url == f"https://{fly()['app']}.fly.dev"
