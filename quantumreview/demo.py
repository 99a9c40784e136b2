"""`quantumreview demo`: the real server wired to the built-in fake GitHub, a scripted story, then a live API.

Nothing here is a shortcut around production code: deliveries are signed and POSTed to /webhooks/github, the
job runner, the GitHub client and its token cache talk HTTP to the fake, and the demo user logs in through the
real OAuth routes. Only the fake GitHub and the story (demo_story.py) are demo-specific.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from quantumreview import keys
from quantumreview.app import create_app
from quantumreview.demo_fixtures import APP_ID, INSTALLATION_ID
from quantumreview.demo_story import play_story, print_browse_hints
from quantumreview.settings import Settings
from quantumreview.testing.fake import FakeGitHub
from quantumreview.testing.signing import signed_delivery
from storage import jobs as job_store

DESCRIPTION = "Watch QuantumReview review an issue and a pull request on a built-in fake GitHub, offline."
DEFAULT_DATA_DIR = Path("data/demo")
DB_NAME = "quantumreview.db"
IDLE_TIMEOUT = 20.0
IDLE_POLL = 0.02
PENDING = frozenset({"queued", "running"})
FAILED = frozenset({"dead", "failed"})


class DemoError(Exception):
    """The demo could not go on; the message says what stalled or failed and where to look."""


def generate_private_key() -> str:
    """A fresh 2048-bit RSA key (PEM) for the demo App; the fake GitHub verifies JWTs with it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode("ascii")


def fresh_database(data_dir: Path) -> Path:
    """The demo's database path, with any previous run's database (and its WAL files) removed.

    DemoError if the directory cannot be made or the database there holds what the demo did not put in it.
    """
    path = data_dir / DB_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if (foreign := foreign_data(path)) is not None:
            # Why: `--data-dir data` (or /data on Fly) named the server's own database, and the demo deleted it.
            raise DemoError(f"{path} is not a demo database (it holds {foreign}); the demo deletes its "
                            "database each run, so it leaves this one alone: choose another --data-dir")
        for suffix in ("", "-wal", "-shm", "-journal"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    except OSError as exc:  # Why: a file where the directory should be, no permission...: a traceback before
        raise DemoError(f"cannot use --data-dir {data_dir}: {exc.strerror or exc}") from None
    return path


def foreign_data(path: Path) -> str | None:
    """What the SQLite database at `path` holds that no demo run writes (stored App credentials, another
    installation or its deliveries), or None when it may be deleted (missing, empty or not a database)."""
    try:
        with path.open("rb") as file:
            if file.read(16) != b"SQLite format 3\x00":
                return None  # a left-over file that is no database: nothing in it to keep
    except FileNotFoundError:
        return None
    checks = (("credentials", "SELECT count(*) FROM credentials WHERE ? IS NOT NULL", "stored App credentials"),
              ("installations", "SELECT count(*) FROM installations WHERE id != ?",
               "installations the demo did not make"),
              ("deliveries", "SELECT count(*) FROM deliveries WHERE installation_id IS NOT ?",
               "deliveries the demo did not make"))
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, query, what in checks:
                if table in tables and conn.execute(query, (INSTALLATION_ID,)).fetchone()[0]:
                    return what
    except sqlite3.DatabaseError as exc:
        return f"data it cannot read ({exc})"
    return None


def listening_socket(port: int | None) -> socket.socket:
    """A socket bound on 127.0.0.1 (port 0: any free one), so the URL is known before the app is built."""
    if port is not None and not 0 <= port <= 65535:  # Why: bind() raises OverflowError, a traceback before
        raise DemoError(f"--port {port} is not a port number (0-65535)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as exc:
        sock.close()
        raise DemoError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pick another --port") from exc
    return sock


def demo_settings(fake: FakeGitHub, private_key: str, database_path: Path, port: int) -> Settings:
    """Production settings, pointed at the fake GitHub: its URLs, its OAuth client, our App id and key."""
    return Settings(
        app_id=APP_ID, private_key=private_key, webhook_secret=secrets.token_urlsafe(24),
        oauth_client_id=fake.oauth_client_id, oauth_client_secret=fake.oauth_client_secret,
        jwt_secret=secrets.token_urlsafe(32), database_path=database_path, host="127.0.0.1", port=port,
        public_url=f"http://127.0.0.1:{port}", github_api_url=fake.api_url, github_url=fake.url,
        job_timeout=30.0, shutdown_grace=2.0,
        github_write_interval=0.0,  # the fake has no secondary rate limit: the story need not wait a second a write
    )


@dataclass
class DemoEnv:
    """The running pair: the fake GitHub and the real app, with an HTTP client for deliveries and the demo user."""

    fake: FakeGitHub
    app: web.Application
    settings: Settings
    client: aiohttp.ClientSession
    browser: aiohttp.ClientSession  # the demo user's cookie jar

    @property
    def base_url(self) -> str:
        """The server's URL."""
        return self.settings.public_url

    async def deliver(self, event: str, payload: Mapping[str, Any]) -> str:
        """POST a signed delivery to /webhooks/github like GitHub would; return its delivery id."""
        assert self.settings.webhook_secret is not None
        headers, body = signed_delivery(event, payload, self.settings.webhook_secret)
        async with self.client.post(f"{self.base_url}/webhooks/github", data=body, headers=headers) as response:
            if response.status not in (200, 202):
                raise DemoError(f"the server refused the {event} delivery: {response.status} {await response.text()}")
        return headers["X-GitHub-Delivery"]

    async def wait_idle(self, *, timeout: float = IDLE_TIMEOUT) -> None:
        """Wait until no job is queued or running; raise DemoError if one failed or the queue stalls."""
        db = self.app[keys.db]
        deadline = time.monotonic() + timeout
        while True:
            jobs = await job_store.list_jobs(db)
            failed = [j for j in jobs if j.status in FAILED]
            if failed:
                raise DemoError("a job failed: " + "; ".join(f"{j.handler}: {j.last_error}" for j in failed))
            pending = [j for j in jobs if j.status in PENDING]
            if not pending:
                return
            if time.monotonic() > deadline:
                detail = "; ".join(f"{j.handler} ({j.status}, {j.attempts} attempts, last error: {j.last_error})"
                                   for j in pending)
                raise DemoError(f"the job queue did not drain within {timeout:.0f} s: {detail}; "
                                f"inspect it with DATABASE_PATH={self.settings.database_path} quantumreview jobs")
            await asyncio.sleep(IDLE_POLL)

    async def get_json(self, path: str) -> Any:
        """GET an API path as the logged-in demo user."""
        async with self.browser.get(f"{self.base_url}{path}") as response:
            if response.status != 200:
                raise DemoError(f"GET {path} answered {response.status}: {await response.text()}")
            return await response.json()

    async def log_in(self, next_path: str) -> Any:
        """Log the demo user in through /auth/github (the fake approves at once); return the page it lands on."""
        async with self.browser.get(f"{self.base_url}/auth/github", params={"next": next_path}) as response:
            if response.status != 200 or response.url.path != next_path:
                raise DemoError(f"login through the fake GitHub ended at {response.url.path} with "
                                f"{response.status}: {(await response.text())[:300]}")
            return await response.json()


@asynccontextmanager
async def demo_environment(data_dir: Path, port: int | None) -> AsyncIterator[DemoEnv]:
    """Start the fake GitHub and the real server on 127.0.0.1 (a fresh database), and stop both after."""
    private_key = generate_private_key()
    sock = listening_socket(port)
    bound_port = int(sock.getsockname()[1])
    async with FakeGitHub(app_id=APP_ID, private_key_pem=private_key) as fake:
        settings = demo_settings(fake, private_key, fresh_database(data_dir), bound_port)
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            # Why unsafe: aiohttp's cookie jar ignores cookies from IP hosts unless told, and we serve on 127.0.0.1.
            async with aiohttp.ClientSession() as client, aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                yield DemoEnv(fake, app, settings, client, browser)
        finally:
            await runner.cleanup()
            sock.close()


async def run_demo(*, serve: bool, data_dir: Path, out: TextIO, port: int | None) -> int:
    """Play the story on a fresh database; unless serve is False, keep serving until cancelled (Ctrl-C)."""
    try:
        async with demo_environment(data_dir, port) as env:
            await play_story(env, out)
            if env.fake.contract_violations:
                out.write("\nWarning: requests broke GitHub's API description:\n")
                out.writelines(f"  - {v}\n" for v in env.fake.contract_violations)
            if serve:
                print_browse_hints(env, out)
                out.flush()
                await asyncio.Event().wait()  # until Ctrl-C cancels the task
    except DemoError as exc:
        out.write(f"\ndemo failed: {exc}\n")
        return 1
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, for `quantumreview demo` and `python -m quantumreview.demo`."""
    parser.add_argument("--no-serve", dest="serve", action="store_false",
                        help="play the story and exit instead of leaving the server running")
    parser.add_argument("--port", type=int, default=None, help="port for the server (default: any free one)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"where the demo database lives; it is recreated each run (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--verbose", action="store_true", help="show the server's own log lines")


def cmd_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the demo from parsed arguments; Ctrl-C ends the serving phase cleanly."""
    if not args.verbose:
        # Why: the server's info lines would interleave with the story; warnings and errors still show.
        logging.getLogger("quantumreview").setLevel(logging.WARNING)
    try:
        return asyncio.run(run_demo(serve=args.serve, data_dir=args.data_dir, out=out, port=args.port))
    except KeyboardInterrupt:
        out.write("\nstopped\n")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m quantumreview.demo [--no-serve] [--port N] [--data-dir DIR]`."""
    parser = argparse.ArgumentParser(prog="quantumreview demo", description=DESCRIPTION)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return cmd_demo(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
