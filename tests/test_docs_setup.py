"""The setup link the README and docs/deploy.md show is the one the server prints, and the token rule they state
is the server's (PUBLIC_URL local and HOST loopback, 75ce605)."""

from __future__ import annotations

import inspect
import re

from quantumreview import app as app_module
from quantumreview.settings import Settings
from quantumreview.setup_flow import _is_local, _is_loopback, needs_token, setup_link
from tests.test_docs_deploy import DEPLOY, README, dockerfile_env, flat, fly_settings


def test_quick_start_setup_link_is_the_one_the_server_prints_with_the_defaults() -> None:
    # The state cookie is kept per host and GitHub sends the browser back to PUBLIC_URL: the README's link must
    # name PUBLIC_URL's host (localhost), not 127.0.0.1, or the callback is refused as "not started here".
    printed = setup_link(Settings(), b"k" * 32)
    assert f"Open the link its log prints, {printed}," in flat(README)
    assert "127.0.0.1:8000/setup" not in README.read_text() + DEPLOY.read_text()


def test_fly_and_the_docker_image_print_a_link_with_the_token() -> None:
    assert needs_token(fly_settings())
    assert needs_token(Settings.from_env(dockerfile_env()))
    assert not needs_token(Settings())
    assert "open https://my-quantumreview.fly.dev/setup?token=... to create one" in flat(DEPLOY)
    # The doc quotes the server's start-up line.
    assert '"no GitHub App configured: open %s to create one"' in inspect.getsource(app_module)


def test_the_hosts_the_guide_calls_local_and_loopback_are() -> None:
    text = flat(DEPLOY)
    local = re.search(r"when `PUBLIC_URL` is local \(([^)]*)\) \*\*and\*\* `HOST` is a loopback address \(([^)]*)\)",
                      text)
    assert local, "the guide no longer states the setup token rule"
    public_hosts, listen_hosts = (re.findall(r"`([^`]+)`", group) for group in local.groups())
    for host in public_hosts:
        name = host.replace("*.", "qr.")
        assert _is_local(f"http://{f'[{name}]' if ':' in name else name}:8000"), host
    for host in listen_hosts:
        assert _is_loopback(host), host
    assert not _is_loopback("0.0.0.0")  # noqa: S104 - the Docker image's HOST, which the guide says needs the token
