"""The `quantumreview` command: serve | demo | migrate | receive | replay | jobs | backup | restore."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from quantumreview.analysis.xml_prolog import lxml_problem
from quantumreview.crypto import KeyFileError
from quantumreview.logs import AccessLog, configure_logging
from quantumreview.plugins import PluginError
from quantumreview.receive_codes import EXIT_CODES_HELP
from quantumreview.restore import RestoreError
from quantumreview.settings import Settings, SettingsError
from quantumreview.startup import StartupError
from storage.db import DatabaseUnavailable, prepare_database

# Why: aiohttp waits this long for open connections; fly.toml's kill_timeout covers it plus the runner's grace.
HTTP_SHUTDOWN_TIMEOUT = 5.0
# A server started while the previous one still stops waits for it this much longer than its shutdown can take.
LOCK_MARGIN = 5.0
GC_YOUNG_THRESHOLD = 10_000
# What binding the listening socket can fail with: in use, not an address of this machine, a privileged port.
BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT (128 + 2)

log = logging.getLogger("quantumreview.serve")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per operation."""
    parser = argparse.ArgumentParser(prog="quantumreview", description="QuantumReview GitHub App server and tools.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the web server and job runner (default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    receive = sub.add_parser("receive", help="run the matching handlers once on a payload; print what they did",
                             description="Run the matching handlers once on a payload; print what each did: ok, "
                                         "skipped (why) or failed (error), and every GitHub request it made.",
                             epilog=EXIT_CODES_HELP)
    receive.add_argument("event", help="the event name, as in X-GitHub-Event (e.g. issues)")
    receive.add_argument("payload", type=Path, help="a JSON file holding the webhook payload")
    replay = sub.add_parser("replay", help="queue a stored delivery's jobs again (the running server picks them up)")
    replay.add_argument("delivery_id", help="the X-GitHub-Delivery id")
    sub.add_parser("jobs", help="summarise the job queue and list recent dead or failed jobs with their errors")
    demo = sub.add_parser("demo", help="the whole pipeline on a built-in fake GitHub, then its API (offline)")
    demo.add_argument("--no-serve", dest="serve", action="store_false",
                      help="play the story and exit instead of leaving the server running")
    demo.add_argument("--port", type=int, default=None, help="port for the server (default: any free one)")
    demo.add_argument("--data-dir", type=Path, default=Path("data/demo"),
                      help="where the demo database lives; it is recreated each run (default: data/demo)")
    demo.add_argument("--verbose", action="store_true", help="show the server's own log lines")
    backup = sub.add_parser("backup", help="write a consistent copy of the database, safe while the server runs")
    backup.add_argument("dest", type=Path, help="the file to write")
    restore = sub.add_parser("restore", help="replace the database with a backup: at once if no server runs, "
                                              "else when the server next starts")
    restore.add_argument("backup", type=Path, help="a file written by `quantumreview backup`")
    return parser


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; the job runner drains within SHUTDOWN_GRACE.

    One server per database (quantumreview.serve_lock): a second one waits for the first to stop, as long as
    a shutdown can take, then gives up with exit code 2.
    """
    from quantumreview.serve_lock import LockUnavailable, ServerRunning, serve_lock
    from quantumreview.volume_check import ephemeral_database

    if (lost := ephemeral_database(settings.database_path, settings.fly_app_name)) is not None:
        report_error(settings, str(lost))
        return 2
    wait = settings.shutdown_grace + HTTP_SHUTDOWN_TIMEOUT + LOCK_MARGIN

    def waiting(holder: str) -> None:
        log.warning("another quantumreview server (pid %s) is using %s; waiting up to %.0f s for it to stop",
                    holder, settings.database_path, wait)

    try:
        with serve_lock(settings.database_path, wait=wait, on_wait=waiting):
            swap_staged_restore(settings.database_path)
            return _serve(settings)
    except ServerRunning as exc:
        report_error(settings, f"another quantumreview server (pid {exc.holder}) is still using "
                     f"{settings.database_path} after {wait:.0f} s: stop it first")
        return 2
    except LockUnavailable as exc:
        report_error(settings, str(exc))
        return 2


def report_error(settings: Settings, message: str) -> None:
    """Say why the command stops: one JSON log line with LOG_FORMAT=json, else 'quantumreview: message'.

    Why: with LOG_FORMAT=json every line on stderr must be JSON (a log pipeline drops or misreads others), and the
    line saying why the server would not start is the one an operator most needs to find there.
    """
    if settings.log_format == "json":
        log.error("%s", message)
    else:
        print(f"quantumreview: {message}", file=sys.stderr)


def swap_staged_restore(database_path: Path) -> None:
    """Put a backup staged by `quantumreview restore` in place, before anything opens the database."""
    from quantumreview.restore import swap_in_staged

    if (swapped := swap_in_staged(database_path)) is not None:
        kept = f"; the database it replaced is kept as {swapped.replaced}" if swapped.replaced else ""
        log.warning("restored %s from the backup staged by `quantumreview restore`%s", database_path, kept)


def _serve(settings: Settings) -> int:
    from aiohttp import web

    from quantumreview.app import create_app

    app = create_app(settings)
    # Why: each delivery parses into a few hundred dicts and lists that live until its job has run. With
    # the default threshold (700) the collector runs every few dozen deliveries and rescans every payload
    # still alive, about 60 µs per delivery under load; at 10,000 it almost never has to.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    # Why freeze: a full collection walked every module, class and function loaded at start, a 15-20 ms
    # pause for every request in flight about once a second under load; frozen, they are never rescanned.
    gc.freeze()
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
            # Why not aiohttp's: its request line carries the query (/setup/callback?code=, /auth/callback?state=).
            access_log_class=AccessLog,
            # Why a log line, not aiohttp's banner: with LOG_FORMAT=json every line on stderr must be JSON.
            print=lambda _banner: log.info("listening on http://%s:%d", settings.host, settings.port),
        )
    except OSError as exc:
        # Why here: aiohttp binds only after start-up (database, job runner); those have been shut down again.
        if isinstance(exc, socket.gaierror):  # HOST is no address this machine can resolve
            report_error(settings, f"cannot listen on {settings.host}:{settings.port}: {exc.strerror} (set HOST "
                         "to an address of this machine, such as 127.0.0.1 or 0.0.0.0)")
            return 2
        if exc.errno not in BIND_ERRORS:
            raise
        reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
        report_error(settings, f"cannot listen on {settings.host}:{settings.port}: {reason} "
                     "(is another program using that port? set HOST and PORT)")
        return 2
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Apply pending migrations to DATABASE_PATH."""
    applied = prepare_database(settings.database_path)
    names = f": {', '.join(applied)}" if applied else ""
    print(f"applied {len(applied)} migration(s) to {settings.database_path}{names}")
    return 0


def cmd_receive(settings: Settings, args: argparse.Namespace) -> int:
    """Run the matching handlers once against the configured GitHub App and the local database."""
    from quantumreview.plugins import load_handlers
    from quantumreview.receive import load_event, receive

    try:
        event = load_event(args.event, args.payload)
    except ValueError as exc:
        print(f"quantumreview: {exc}", file=sys.stderr)
        return 2
    warn_second_writer(settings)
    return asyncio.run(receive(settings, load_handlers(settings.handlers_package), event, sys.stdout))


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Reset (or create) the jobs of a stored delivery so they run again."""
    from quantumreview.replay import replay

    warn_second_writer(settings)
    return asyncio.run(replay(settings, args.delivery_id, sys.stdout))


def warn_second_writer(settings: Settings) -> None:
    """Say so when this command will write beside a running server on a SQLite with the WAL-reset bug."""
    from quantumreview.serve_lock import holder_of
    from storage.sqlite_gate import wal_reset_warning

    risk = wal_reset_warning()
    if risk is not None and (pid := holder_of(settings.database_path)) is not None:
        print(f"quantumreview: warning: a server (pid {pid}) is running on {settings.database_path} and this "
              f"command writes to it too. {risk}", file=sys.stderr)


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    """Print queue counts and recent failures."""
    from quantumreview.replay import summarise_jobs

    return asyncio.run(summarise_jobs(settings, sys.stdout))


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """Copy the database with SQLite's online backup API."""
    from quantumreview.backup import BackupError, backup

    try:
        result = backup(settings.database_path, args.dest)
    except BackupError as exc:
        print(f"quantumreview: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {settings.database_path} to {result.path} ({result.bytes} bytes in {result.seconds:.2f} s)")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """Check a backup and stage it; swap it in now unless a server runs (it swaps it in when it next starts)."""
    from quantumreview.restore import RestoreError, stage, staged_path
    from quantumreview.serve_lock import LockUnavailable, ServerRunning, serve_lock

    try:
        stage(args.backup, settings.database_path)
    except RestoreError as exc:
        print(f"quantumreview: restore failed: {exc}", file=sys.stderr)
        return 1
    try:
        with serve_lock(settings.database_path, wait=0):
            swap_staged_restore(settings.database_path)
    except ServerRunning as exc:
        print(f"checked {args.backup} and staged it as {staged_path(settings.database_path)}: a server (pid "
              f"{exc.holder}) is running on {settings.database_path}, so restart it (on Fly: fly apps restart) "
              "and it puts the backup in place before it opens the database")
        return 0
    except LockUnavailable as exc:
        print(f"quantumreview: {exc}", file=sys.stderr)
        return 2
    print(f"restored {settings.database_path} from {args.backup}")
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "receive": cmd_receive,
    "replay": cmd_replay,
    "jobs": cmd_jobs,
    "backup": cmd_backup,
    "restore": cmd_restore,
}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Parse arguments, read settings once, run the command; exit 2 on bad configuration."""
    args = build_parser().parse_args(argv)
    if (problem := lxml_problem()) is not None:  # every command may read untrusted JUnit XML (the demo too)
        print(f"quantumreview: {problem}", file=sys.stderr)
        return 2
    if args.command == "demo":
        # Why before reading settings: the demo configures its own server; a stray variable must not block it.
        from quantumreview.demo import cmd_demo

        configure_logging("text", "INFO")
        return cmd_demo(args)
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"quantumreview: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        return COMMANDS[args.command or "serve"](settings, args)
    except (PluginError, KeyFileError, StartupError, DatabaseUnavailable, RestoreError) as exc:
        report_error(settings, str(exc))
        return 2
    except KeyboardInterrupt:
        # Why: Ctrl-C during receive, replay, jobs or backup printed a traceback of asyncio's internals. What was
        # interrupted is safe to run again: writes are transactions, copies are renamed into place once complete.
        print(f"quantumreview: {args.command or 'serve'} interrupted", file=sys.stderr)
        return INTERRUPTED
