"""docs/deploy.md and the README agree with fly.toml, the Dockerfile and /health."""

from __future__ import annotations

import inspect
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from quantumreview import app as app_module
from quantumreview.app import create_app
from quantumreview.cli import HTTP_SHUTDOWN_TIMEOUT
from quantumreview.jobs_abandon import CANCEL_ALLOWANCE
from quantumreview.plugins import HandlerRegistry
from quantumreview.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEPLOY = ROOT / "docs" / "deploy.md"


def flat(path: Path) -> str:
    """The text with every run of whitespace made one space, so a claim may wrap anywhere."""
    return " ".join(path.read_text().split())


def section(path: Path, heading: str) -> str:
    return path.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def fly() -> dict[str, Any]:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def fly_settings() -> Settings:
    return Settings.from_env({**fly()["env"], "FLY_APP_NAME": "my-quantumreview"})


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", text, flags=re.M))))


# --- fly.toml and the Dockerfile ----------------------------------------------------------------------------------


def test_deploy_guide_states_fly_tomls_values() -> None:
    config, text = fly(), flat(DEPLOY)
    assert f'kill_signal = "{config["kill_signal"]}"' in text
    assert f"kill_timeout = {config['kill_timeout']}" in text
    assert f'strategy = "{config["deploy"]["strategy"]}"' in text
    assert f'LOG_FORMAT = "{config["env"]["LOG_FORMAT"]}"' in text
    assert f"mounted at `{config['mounts']['destination']}`" in text
    assert f"the database at `{config['env']['DATABASE_PATH']}`" in text
    assert f"the server on port {config['http_service']['internal_port']} of `{config['env']['HOST']}`" in text
    [check] = config["http_service"]["checks"]
    assert f"a health check on `{check['path']}`" in text


def test_deploy_guide_explains_kill_timeout_with_the_servers_own_numbers() -> None:
    text = flat(DEPLOY)
    grace = fly_settings().shutdown_grace
    assert f"{grace:g}-second grace period (`SHUTDOWN_GRACE`)" in text
    assert f"ignores its cancellation {CANCEL_ALLOWANCE:g} s more" in text
    assert f"open HTTP connections {HTTP_SHUTDOWN_TIMEOUT:g} s" in text
    assert grace + CANCEL_ALLOWANCE + HTTP_SHUTDOWN_TIMEOUT < fly()["kill_timeout"]


def test_readme_states_the_docker_images_address() -> None:
    env = dockerfile_env()
    assert f"(`{env['HOST']}` in the Docker image, port {env['PORT']})" in flat(README)



# --- /health --------------------------------------------------------------------------------------------------------


def documented_health_fields() -> set[str]:
    return set(re.findall(r'"([a-z_]+)"', section(DEPLOY, "What `/health` says")))


def test_health_fields_in_the_code_are_documented() -> None:
    source = inspect.getsource(app_module.health)
    literal = re.findall(r'"([a-z_]+)": ', source)
    updated = [name for call in re.findall(r"body\.update\(([^)]*)\)", source)
               for name in re.findall(r"\b([a-z_]+)=", call)]
    stored = re.findall(r'body\["([a-z_]+)"\]', source)
    fields = set(literal + updated + stored)
    assert {"status", "db", "jobs", "version", "github", "handlers_left_running", "db_error"} <= fields
    assert fields <= documented_health_fields()


async def test_health_answer_has_the_documented_fields(tmp_path: Path, aiohttp_client: Any) -> None:
    app = create_app(Settings(database_path=tmp_path / "qr.db"), registry=HandlerRegistry.from_routers([]))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    response = await client.get("/health")
    body = await response.json()
    assert response.status == 200
    text = flat(DEPLOY)
    jobs = ", ".join(json.dumps(name) for name in body["jobs"])
    assert f'{{"status": "{body["status"]}", "db": "{body["db"]}", "jobs": {{{jobs}}}, "version"}}' in text
    assert set(body) <= documented_health_fields()


# --- the Fly commands -------------------------------------------------------------------------------------------


def sh_blocks(path: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.S)


def test_an_app_created_by_name_is_the_one_fly_toml_deploys() -> None:
    # Before, the README's short version ran `fly apps create my-quantumreview`, then `fly volumes create` and
    # `fly deploy`, which act on fly.toml's `app = "quantumreview"`: another app than the one created.
    created_somewhere = False
    for doc in (README, DEPLOY):
        for block in sh_blocks(doc):
            for name in re.findall(r"fly apps create (\S+)", block):
                created_somewhere = True
                assert f"""sed -i 's/^app = .*/app = "{name}"/' fly.toml""" in block, f"{doc.name}: {block}"
                assert set(re.findall(r"https://([a-z0-9-]+)\.fly\.dev", doc.read_text())) == {name}, doc.name
    assert created_somewhere
    assert re.search(r'^app = "[^"]+"$', (ROOT / "fly.toml").read_text(), flags=re.M), "the sed no longer applies"
