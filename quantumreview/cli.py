"""The `quantumreview` command: serve | migrate | receive | replay | jobs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from quantumreview.logs import configure_logging
from quantumreview.settings import Settings, SettingsError

# Why: aiohttp waits this long for open connections; fly.toml's kill_timeout covers it plus the runner's grace.
HTTP_SHUTDOWN_TIMEOUT = 5.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per operation."""
    parser = argparse.ArgumentParser(prog="quantumreview", description="QuantumReview GitHub App server and tools.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the web server and job runner (default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    return parser


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; the job runner drains within SHUTDOWN_GRACE."""
    from aiohttp import web

    from quantumreview.app import create_app

    app = create_app(settings)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
        print=lambda msg: print(msg, file=sys.stderr),
    )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Apply pending migrations to DATABASE_PATH."""
    from storage.migrations import migrate

    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    applied = migrate(settings.database_path)
    names = f": {', '.join(applied)}" if applied else ""
    print(f"applied {len(applied)} migration(s) to {settings.database_path}{names}")
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Parse arguments, read settings once, run the command; exit 2 on bad configuration."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"quantumreview: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    return COMMANDS[args.command or "serve"](settings, args)
