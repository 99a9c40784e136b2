"""Settings: read once, validated, every problem named, secrets never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quantumreview.settings import Settings, SettingsError

SECRET = "a-webhook-secret-of-32-characters"


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_empty_environment_starts_in_setup_mode_with_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.setup_mode
    assert settings.database_path == Path("data/quantumreview.db")
    assert settings.port == 8000
    assert settings.github_api_url == "https://api.github.com"


def test_configured_app_is_not_setup_mode(pem: str) -> None:
    settings = Settings.from_env({"GITHUB_APP_ID": "42", "GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": SECRET})
    assert not settings.setup_mode
    assert settings.app_id == 42


def test_private_key_with_literal_newline_escapes_is_normalised(pem: str) -> None:
    one_line = pem.replace("\n", "\\n")
    settings = Settings.from_env(
        {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": one_line, "GITHUB_WEBHOOK_SECRET": SECRET}
    )
    assert settings.private_key is not None
    assert settings.private_key.strip() == pem.strip()


def test_private_key_path_is_read(tmp_path: Path, pem: str) -> None:
    path = tmp_path / "key.pem"
    path.write_text(pem)
    settings = Settings.from_env(
        {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": str(path), "GITHUB_WEBHOOK_SECRET": SECRET}
    )
    assert settings.private_key is not None and "PRIVATE KEY" in settings.private_key


@pytest.mark.parametrize("kind", ["ec", "damaged"])
def test_a_private_key_github_could_not_use_is_one_clear_problem(kind: str, pem: str) -> None:
    """An EC key, or an RSA PEM with a damaged body, is refused at start (it used to fail later with a traceback)."""
    if kind == "ec":
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    else:
        lines = pem.splitlines()
        key = "\n".join([lines[0], lines[1][::-1], *lines[2:]])
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": key, "GITHUB_WEBHOOK_SECRET": SECRET})
    assert info.value.problems == ["GITHUB_PRIVATE_KEY is not a valid RSA private key in PEM format (a GitHub App's "
                                   "key is RSA: download a new one from the App's settings)"]
    assert key.splitlines()[1] not in str(info.value)


def test_every_bad_variable_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"PORT": "eighty", "LOG_FORMAT": "xml", "PUBLIC_URL": "ftp://x", "JWT_SECRET": "short"})
    message = str(info.value)
    for name in ("PORT", "LOG_FORMAT", "PUBLIC_URL", "JWT_SECRET"):
        assert name in message
    assert len(info.value.problems) == 4


@pytest.mark.parametrize(("url", "problem"), [
    ("https://qr.example/?x=1", "without spaces, '?query' or '#fragment'"),
    ("https://qr.example/#top", "without spaces, '?query' or '#fragment'"),
    ("https://qr.example/?", "without spaces, '?query' or '#fragment'"),
    ("https://qr example", "without spaces, '?query' or '#fragment'"),
    ("https://qr.example:70000", "port that is not a number from 1 to 65535"),
    ("https://qr.example:0", "port that is not a number from 1 to 65535"),
    ("https://qr.example:http", "port that is not a number from 1 to 65535"),
    ("https://admin:hunter2@qr.example", "must not hold a user name or password"),
])
def test_a_url_setting_that_cannot_be_a_base_url_is_refused_at_start(url: str, problem: str) -> None:
    """PUBLIC_URL becomes the App's webhook and callback URLs: a query, fragment or bad port made URLs that could
    never work, found only when GitHub used them."""
    for name in ("PUBLIC_URL", "DASHBOARD_URL", "GITHUB_API_URL", "GITHUB_URL"):
        with pytest.raises(SettingsError) as info:
            Settings.from_env({name: url})
        [message] = info.value.problems
        assert message.startswith(f"{name} ") and problem in message
        assert "hunter2" not in str(info.value)


def test_base_urls_with_paths_ports_and_ipv6_hosts_are_kept() -> None:
    settings = Settings.from_env({"PUBLIC_URL": "https://qr.example:8443/review/", "GITHUB_API_URL":
                                  "http://[::1]:8080/api/v3", "GITHUB_URL": "https://ghe.example"})
    assert (settings.public_url, settings.github_api_url, settings.github_url) == (
        "https://qr.example:8443/review", "http://[::1]:8080/api/v3", "https://ghe.example")


@pytest.mark.parametrize("secret", [None, "", "fifteen-bytes!!"])
def test_configured_app_refuses_missing_or_short_webhook_secret(pem: str, secret: str | None) -> None:
    env = {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": pem}
    if secret is not None:
        env["GITHUB_WEBHOOK_SECRET"] = secret
    with pytest.raises(SettingsError, match="GITHUB_WEBHOOK_SECRET"):
        Settings.from_env(env)


def test_half_configured_app_is_an_error(pem: str) -> None:
    with pytest.raises(SettingsError, match="GITHUB_APP_ID"):
        Settings.from_env({"GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": SECRET})


def test_repr_never_shows_secrets(pem: str) -> None:
    settings = Settings.from_env(
        {
            "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITHUB_OAUTH_CLIENT_ID": "Iv1.abc", "GITHUB_OAUTH_CLIENT_SECRET": "oauth-client-secret-value",
            "JWT_SECRET": "j" * 40,
        }
    )
    text = repr(settings) + str(settings)
    for secret in (SECRET, "oauth-client-secret-value", "j" * 40, "PRIVATE KEY"):
        assert secret not in text
    assert "<redacted>" in text


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_fly_app_name_sets_the_public_url() -> None:
    assert Settings.from_env({"FLY_APP_NAME": "qr-demo"}).public_url == "https://qr-demo.fly.dev"


def test_bad_configuration_exits_2_without_traceback(tmp_path: Path, pem: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": "short",
           "DATABASE_PATH": str(tmp_path / "x.db")}
    result = subprocess.run(
        [sys.executable, "-m", "quantumreview", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "GITHUB_WEBHOOK_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
    assert "short" not in result.stderr.replace("GITHUB_WEBHOOK_SECRET must be at least", "")
    assert "PRIVATE KEY" not in result.stderr


@pytest.mark.parametrize(("name", "raw", "problem"), [
    ("GITHUB_APP_ID", "1_2", "GITHUB_APP_ID must be a whole number (got '1_2')"),
    ("PORT", "8_000", "PORT must be a whole number (got '8_000')"),
    ("JOB_MAX_ATTEMPTS", "٣", "JOB_MAX_ATTEMPTS must be a whole number (got '٣')"),
    ("JOB_TIMEOUT", "1_20", "JOB_TIMEOUT must be a number (got '1_20')"),
    ("SHUTDOWN_GRACE", "٢٠", "SHUTDOWN_GRACE must be a number (got '٢٠')"),
])
def test_a_number_with_underscores_or_other_scripts_digits_is_refused(name: str, raw: str, problem: str) -> None:
    """int() and float() read '1_2' as 12 and '٣' as 3: GITHUB_APP_ID=1_2 (a typo) named App 12 instead of failing."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: raw})
    assert problem in info.value.problems


def test_plain_and_signed_numbers_are_still_read() -> None:
    settings = Settings.from_env({"PORT": "+8080", "JOB_TIMEOUT": "1.5e2", "SHUTDOWN_GRACE": " 10 "})
    assert (settings.port, settings.job_timeout, settings.shutdown_grace) == (8080, 150.0, 10.0)
