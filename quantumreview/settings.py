"""Settings: read once from an environment mapping into one frozen, validated object."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MIN_WEBHOOK_SECRET_BYTES = 16
# Where github.com serves artifact zips: Azure blob storage (upload-artifact v4) and the older Actions pipelines.
DEFAULT_ARTIFACT_HOSTS = ("*.blob.core.windows.net", "*.actions.githubusercontent.com")
_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
MIN_JWT_SECRET_CHARS = 32
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
SECRET_FIELDS = frozenset(
    {"private_key", "webhook_secret", "webhook_secret_previous", "oauth_client_secret", "jwt_secret",
     "jwt_secret_previous"}
)


class SettingsError(Exception):
    """One or more environment variables are invalid; `problems` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    """Everything the process is configured with. Secrets are redacted from repr."""

    app_id: int | None = None
    private_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_previous: str | None = field(default=None, repr=False)
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_secret_previous: str | None = field(default=None, repr=False)
    database_path: Path = Path("data/quantumreview.db")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://localhost:8000"
    dashboard_url: str | None = None
    github_api_url: str = "https://api.github.com"
    github_url: str = "https://github.com"
    github_write_interval: float = 1.0
    log_format: str = "text"
    log_level: str = "INFO"
    job_concurrency: int = 8
    job_timeout: float = 120.0
    job_max_attempts: int = 6
    shutdown_grace: float = 20.0
    delivery_retention_days: int = 14
    artifact_max_bytes: int = 200 * 1024 * 1024
    artifact_hosts: tuple[str, ...] = DEFAULT_ARTIFACT_HOSTS
    fly_app_name: str | None = None
    handlers_package: str = "handlers"

    @property
    def setup_mode(self) -> bool:
        """True while no GitHub App is configured (no id or no key): the server offers /setup."""
        return self.app_id is None or self.private_key is None

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                shown.append(f"{f.name}={'<redacted>' if value else None}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from `environ`; raise SettingsError naming every bad variable."""
        return _Reader(environ).read()


class _Reader:
    """Collects every problem before failing, so one start-up error lists them all."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        # Why not int() alone: it reads '1_2' as 12 and other scripts' digits ('٣') too, so a typo in
        # GITHUB_APP_ID named another App instead of being refused.
        if not _WHOLE_NUMBER.fullmatch(raw):
            self.problems.append(f"{name} must be a whole number (got {raw[:40]!r})")
            return default
        value = int(raw)
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high} (got {value})")
            return default
        return value

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            if "_" in raw or not raw.isascii():  # float() takes '1_0' and other scripts' digits too
                raise ValueError(raw)
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number (got {raw[:40]!r})")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high} (got {value})")
            return default
        return value

    def url(self, name: str, default: str | None) -> str | None:
        raw = self.text(name)
        if raw is None:
            return default
        parts = urlsplit(raw)
        if parts.username is not None or parts.password is not None:  # never echoed: it may hold a password
            self.problems.append(f"{name} must not hold a user name or password")
            return default
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(f"{name} must be an http(s) URL (got {raw[:80]!r})")
            return default
        # Why: these are base URLs that paths are appended to (webhook and callback URLs, API calls); a query,
        # a fragment, spaces or a bad port would make every URL built from them wrong, found only at use.
        if parts.query or parts.fragment or raw.endswith(("?", "#")) or any(c.isspace() for c in raw):
            self.problems.append(f"{name} must be a base URL without spaces, '?query' or '#fragment' "
                                 f"(got {raw[:80]!r})")
            return default
        try:
            port = parts.port  # ValueError for a port that is not a number from 0 to 65535
        except ValueError:
            port = 0
        if port == 0:
            self.problems.append(f"{name} has a port that is not a number from 1 to 65535 (got {raw[:80]!r})")
            return default
        return raw.rstrip("/")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)} (got {raw[:40]!r})")
            return default
        return raw.lower()

    def hosts(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """`default` plus the comma-separated host names (or *.domain patterns) in `name`."""
        raw = self.text(name)
        if raw is None:
            return default
        extra = [part.strip().lower() for part in raw.split(",") if part.strip()]
        bad = [part for part in extra if not _HOST_PATTERN.fullmatch(part)]
        if bad:
            self.problems.append(f"{name} must be host names or *.domain patterns, comma-separated "
                                 f"(got {bad[0][:60]!r})")
            return default
        return default + tuple(part for part in extra if part not in default)

    def private_key(self) -> str | None:
        inline = self.text("GITHUB_PRIVATE_KEY")
        path = self.text("GITHUB_PRIVATE_KEY_PATH")
        if inline and path:
            self.problems.append("set only one of GITHUB_PRIVATE_KEY and GITHUB_PRIVATE_KEY_PATH")
            return None
        if path:
            try:
                inline = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.problems.append(f"GITHUB_PRIVATE_KEY_PATH cannot be read ({type(exc).__name__})")
                return None
        if inline is None:
            return None
        # Why: platforms that take one-line secrets (Fly, .env files) carry the PEM with literal \n escapes.
        key = inline.replace("\\n", "\n").strip() + "\n"
        if "-----BEGIN" not in key or "PRIVATE KEY-----" not in key:
            self.problems.append("GITHUB_PRIVATE_KEY is not a PEM private key (no BEGIN ... PRIVATE KEY line)")
            return None
        from quantumreview.github_auth import load_rsa_key  # cryptography: only when a key is set

        try:  # an EC key, or a damaged one, used to pass here and fail later with a traceback
            load_rsa_key(key)
        except ValueError as exc:
            self.problems.append(f"{exc} (a GitHub App's key is RSA: download a new one from the App's settings)")
            return None
        return key

    def read(self) -> Settings:
        app_id = None
        if (raw_id := self.text("GITHUB_APP_ID")) is not None:
            app_id = self.integer("GITHUB_APP_ID", 0, low=1, high=2**53)
            app_id = app_id or None
        key = self.private_key()
        secret = self.env.get("GITHUB_WEBHOOK_SECRET") or None
        previous = self.env.get("GITHUB_WEBHOOK_SECRET_PREVIOUS") or None
        configured = app_id is not None or key is not None
        if configured and (app_id is None) != (key is None):
            missing = "GITHUB_APP_ID" if app_id is None else "GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)"
            key_given = self.text("GITHUB_PRIVATE_KEY") is not None or self.text("GITHUB_PRIVATE_KEY_PATH") is not None
            # Why: a credential that was set but is invalid already has its own problem line.
            if (raw_id is None or app_id is not None) and (key is not None or not key_given):
                self.problems.append(f"{missing} is required when the other GitHub App credential is set")
        if configured and secret is None:
            self.problems.append("GITHUB_WEBHOOK_SECRET is required once a GitHub App is configured")
        for name, value in (("GITHUB_WEBHOOK_SECRET", secret), ("GITHUB_WEBHOOK_SECRET_PREVIOUS", previous)):
            if value is not None and len(value.encode()) < MIN_WEBHOOK_SECRET_BYTES:
                self.problems.append(f"{name} must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes long")
        jwt_secret = self.env.get("JWT_SECRET") or None
        jwt_previous = self.env.get("JWT_SECRET_PREVIOUS") or None
        for name, value in (("JWT_SECRET", jwt_secret), ("JWT_SECRET_PREVIOUS", jwt_previous)):
            if value is not None and len(value) < MIN_JWT_SECRET_CHARS:
                self.problems.append(f"{name} must be at least {MIN_JWT_SECRET_CHARS} characters long")
        if jwt_previous is not None and jwt_secret is None:
            self.problems.append("JWT_SECRET_PREVIOUS is only read during a rotation: set the new key as JWT_SECRET")
        oauth_id = self.text("GITHUB_OAUTH_CLIENT_ID")
        oauth_secret = self.env.get("GITHUB_OAUTH_CLIENT_SECRET") or None
        if (oauth_id is None) != (oauth_secret is None):
            self.problems.append("set both GITHUB_OAUTH_CLIENT_ID and GITHUB_OAUTH_CLIENT_SECRET, or neither")
        port = self.integer("PORT", 8000, low=1, high=65535)
        fly_app = self.text("FLY_APP_NAME")
        default_public = f"https://{fly_app}.fly.dev" if fly_app else f"http://localhost:{port}"
        settings = Settings(
            app_id=app_id,
            private_key=key,
            webhook_secret=secret,
            webhook_secret_previous=previous,
            oauth_client_id=oauth_id,
            oauth_client_secret=oauth_secret,
            jwt_secret=jwt_secret,
            jwt_secret_previous=jwt_previous,
            database_path=Path(self.text("DATABASE_PATH") or "data/quantumreview.db"),
            host=self.text("HOST") or "127.0.0.1",
            port=port,
            public_url=self.url("PUBLIC_URL", default_public) or default_public,
            dashboard_url=self.url("DASHBOARD_URL", None),
            github_api_url=self.url("GITHUB_API_URL", "https://api.github.com") or "https://api.github.com",
            github_url=self.url("GITHUB_URL", "https://github.com") or "https://github.com",
            github_write_interval=self.number("GITHUB_WRITE_INTERVAL", 1.0, low=0.0, high=60.0),
            log_format=self.choice("LOG_FORMAT", "text", ("text", "json")),
            log_level=self.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
            job_concurrency=self.integer("JOB_CONCURRENCY", 8, low=1, high=256),
            job_timeout=self.number("JOB_TIMEOUT", 120.0, low=1.0, high=3600.0),
            job_max_attempts=self.integer("JOB_MAX_ATTEMPTS", 6, low=1, high=100),
            shutdown_grace=self.number("SHUTDOWN_GRACE", 20.0, low=0.0, high=300.0),
            # Why at least 4: GitHub redelivers (by hand or on our sweep's request) for 3 days, keeping the id; a
            # delivery pruned sooner would be taken for new and handled twice.
            delivery_retention_days=self.integer("DELIVERY_RETENTION_DAYS", 14, low=4, high=3650),
            artifact_max_bytes=self.integer("ARTIFACT_MAX_BYTES", 200 * 1024 * 1024, low=1024, high=2**40),
            artifact_hosts=self.hosts("ARTIFACT_HOSTS", DEFAULT_ARTIFACT_HOSTS),
            fly_app_name=fly_app,
            handlers_package=self.text("QUANTUMREVIEW_HANDLERS") or "handlers",
        )
        if self.problems:
            raise SettingsError(self.problems)
        return settings
