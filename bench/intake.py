"""Webhook intake throughput against a bare aiohttp app, side by side on loopback.

Run: .venv/bin/python bench/intake.py [--requests 5000] [--rounds 5] [--concurrency 32]
Four servers in one run: a bare aiohttp app answering 200; "gidget", aiohttp + gidgethub Event.from_http +
background dispatch storing nothing (the issue's second reference); the intake with one no-op job per delivery
("jobs:1"); the intake with no matching handler ("jobs:0"). Rounds alternate between them. Prints req/s,
p50, p99 and server CPU per request for each, the ratios intake/bare and jobs:1/gidget, and checks rows stored
== 2xx replies.
The client is a raw asyncio protocol sending pre-built requests, so it leaves the servers most of the 2 cores.
"jobs:1" is the comparison with "gidget": both run a no-op handler per delivery in the background (ours parses
the stored payload for it, as every job does). This machine's speed drifts up to 2x within seconds, and a bare
server gains more from a fast spell than one that waits on its disk and writer thread: hence several rounds,
the median, and the per-round ratios (each against the bare round just before it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quantumreview.testing.signing import sign  # noqa: E402

# Why this file: the issue asks for ~9 KB; the corpus has no issues.opened that small, this is the smallest.
# The corpus stores it indented (13.4 KB); GitHub sends compact JSON, so it goes on the wire re-encoded that
# way (11.6 KB), as a real delivery would.
PAYLOAD_NAME = "issues.opened.2.json (corpus) = tests/fixtures/webhooks/issues.opened.json, compact as GitHub sends it"
PAYLOAD = json.dumps(json.loads((ROOT / "tests" / "fixtures" / "webhooks" / "issues.opened.json").read_bytes()),
                     separators=(",", ":"), ensure_ascii=False).encode()
SECRET = "bench-webhook-secret-0123456789"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BARE_APP = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"ok": True}, status=200)
app = web.Application(client_max_size=26 * 1024 * 1024)
app.router.add_post("/webhooks/github", ok)
app.router.add_get("/health", lambda r: web.json_response({}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)

"""
# The second reference: aiohttp + gidgethub Event.from_http + dispatch in the background, storing nothing.
GIDGETHUB_APP = """
import asyncio, sys
from aiohttp import web
from gidgethub import routing, sansio
router = routing.Router()
@router.register("issues", action="opened")
async def noop(event):
    pass
tasks = set()
async def ok(request):
    event = sansio.Event.from_http(request.headers, await request.read(), secret=sys.argv[2])
    task = asyncio.create_task(router.dispatch(event))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return web.json_response({"ok": True}, status=200)
app = web.Application(client_max_size=26 * 1024 * 1024)
app.router.add_post("/webhooks/github", ok)
app.router.add_get("/health", lambda r: web.json_response({}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""
NOOP_HANDLERS = """
from gidgethub import routing
router = routing.Router()

@router.register("issues", action="opened")
async def acknowledge(event, ctx):
    pass
"""
NO_HANDLERS = """
from gidgethub import routing
router = routing.Router()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def write_handlers(root: Path, name: str, source: str) -> str:
    """A one-module handler package `name` in `root`."""
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bench.py").write_text(source)
    return name


def write_noop_handlers(root: Path) -> str:
    """One no-op handler for issues.opened: every delivery makes one job that the runner claims and finishes."""
    return write_handlers(root, "bench_handlers", NOOP_HANDLERS)


def start_intake(port: int, db_path: Path, handlers: str) -> subprocess.Popen[bytes]:
    # Why: GITHUB_API_URL on a closed loopback port, so no handler can reach the network during the bench.
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{db_path.parent}", "PORT": str(port),
           "HOST": "127.0.0.1", "GITHUB_API_URL": "http://127.0.0.1:9",
           "DATABASE_PATH": str(db_path), "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key(),
           "GITHUB_WEBHOOK_SECRET": SECRET, "QUANTUMREVIEW_HANDLERS": handlers, "LOG_LEVEL": "warning"}
    return subprocess.Popen([sys.executable, "-m", "quantumreview", "serve"], env=env, cwd=db_path.parent)


def start_bare(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])


def start_gidgethub(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", GIDGETHUB_APP, str(port), SECRET])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def get_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return dict(json.loads(response.read()))
    except OSError:
        return None


async def wait_up(base: str) -> None:
    async with asyncio.timeout(20):
        while await asyncio.to_thread(get_json, f"{base}/health") is None:
            await asyncio.sleep(0.05)


def request_parts(port: int) -> tuple[bytes, bytes]:
    """The bytes before and after the delivery id: each request costs the client two small joins."""
    head = (f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"User-Agent: GitHub-Hookshot/bench\r\nX-GitHub-Event: issues\r\n"
            f"X-Hub-Signature-256: {sign(PAYLOAD, SECRET)}\r\nContent-Length: {len(PAYLOAD)}\r\n"
            f"X-GitHub-Delivery: ").encode()
    return head, b"\r\n\r\n" + PAYLOAD


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request in flight, responses read by Content-Length."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.reply: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = next(int(line[15:]) for line in head.split(b"\r\n") if line.startswith(b"content-length:"))
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[:end + 4 + length]
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ConnectionError("connection lost"))


@dataclass
class Round:
    """One round against one server."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    cpu: float = 0.0
    after_cpu: float = 0.0


async def drive(port: int, pid: int, prefix: str, count: int, concurrency: int) -> Round:
    """Send `count` signed deliveries over `concurrency` connections; return the round's figures."""
    loop = asyncio.get_running_loop()
    head, tail = request_parts(port)
    ids = iter(f"{prefix}-{n}".encode() for n in range(count))
    result = Round(0.0)

    async def worker() -> None:
        transport, conn = await loop.create_connection(Connection, "127.0.0.1", port)
        try:
            for delivery_id in ids:
                conn.reply = loop.create_future()
                began = time.perf_counter()
                transport.write(head + delivery_id + tail)
                status = await conn.reply
                result.latencies.append(time.perf_counter() - began)
                result.ok += 200 <= status < 300
        finally:
            transport.close()

    cpu_before, began = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - began
    result.cpu = cpu_seconds(pid) - cpu_before
    return result


async def settle(pid: int, run: Round, quiet: float = 1.0, timeout: float = 60.0) -> None:
    """Wait until the server has used no CPU for `quiet` seconds, recording what it used after the round.

    Work a server defers past its last reply (jobs still running, the intake's WAL checkpoint once writes
    pause) must not run during the next server's round, or it would be charged to that one.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(quiet)
        used = cpu_seconds(pid) - before
        run.after_cpu += used
        if used < 0.02:  # idle: timers and /proc rounding only
            return


def report(name: str, run: Round, count: int) -> float:
    rate = count / run.seconds
    cuts = statistics.quantiles(run.latencies, n=100)
    print(f"{name:8s} {rate:7.0f} req/s   p50 {cuts[49] * 1000:6.2f} ms   p99 {cuts[98] * 1000:6.2f} ms   "
          f"server CPU {run.cpu / count * 1e6:5.0f} µs/req  (+{run.after_cpu / count * 1e6:4.0f} after the round)")
    return rate


async def wait_jobs_settled(base: str, timeout: float = 60.0) -> dict[str, object]:
    """The /health job counts once nothing is queued or running (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        body = await asyncio.to_thread(get_json, f"{base}/health")
        jobs = body.get("jobs") if body else None
        if (isinstance(jobs, dict) and jobs["queued"] == jobs["running"] == 0) or time.monotonic() > deadline:
            return jobs if isinstance(jobs, dict) else {}
        await asyncio.sleep(0.1)


def stored_rows(db_path: Path) -> tuple[int, int, int]:
    """(deliveries, jobs, done jobs) stored by the measured rounds."""
    conn = sqlite3.connect(db_path)
    try:
        deliveries = conn.execute("SELECT count(*) FROM deliveries WHERE id LIKE 'run%'").fetchone()[0]
        jobs, done = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'done') FROM jobs "
                                  "WHERE delivery_id LIKE 'run%'").fetchone()
        return int(deliveries), int(jobs), int(done)
    finally:
        conn.close()


async def main(count: int, concurrency: int, handlers: str | None, rounds: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        configs = {"bare": None, "gidget": None, "jobs:1": handlers or write_noop_handlers(root),
                   "jobs:0": write_handlers(root, "bench_nojobs", NO_HANDLERS)}
        ports = {name: free_port() for name in configs}
        servers = {"bare": start_bare(ports["bare"]), "gidget": start_gidgethub(ports["gidget"])}
        servers.update({name: start_intake(ports[name], root / f"{name.replace(':', '')}.db", package)
                        for name, package in configs.items() if package is not None})
        results: dict[str, list[Round]] = {name: [] for name in configs}
        try:
            for name in configs:
                await wait_up(f"http://127.0.0.1:{ports[name]}")
                await settle(servers[name].pid, await drive(ports[name], servers[name].pid, "warm", 500, concurrency))
            # Why: alternate the servers so machine noise hits all alike; report the median round.
            for n in range(rounds):
                for name in configs:
                    run = await drive(ports[name], servers[name].pid, f"run{n}", count, concurrency)
                    await settle(servers[name].pid, run)
                    results[name].append(run)
            settled = await wait_jobs_settled(f"http://127.0.0.1:{ports['jobs:1']}")
        finally:
            for server in servers.values():
                server.terminate()
            for server in servers.values():
                server.wait(timeout=30)
        stored = {name: stored_rows(root / f"{name.replace(':', '')}.db") for name in configs if configs[name]}
    print(f"payload {PAYLOAD_NAME}, {len(PAYLOAD)} bytes; {count} deliveries x {rounds} rounds, "
          f"{concurrency} connections, {os.cpu_count()} CPUs shared by client and servers")
    rates = {}
    for name, runs in results.items():
        median = sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]
        rates[name] = report(name, median, count)
    # Why jobs:1/gidget too: the bare server gains most from this machine's fast spells, the two slower ones
    # alike; against the reference that does the same work (a no-op handler per delivery) the ratio drifts less.
    for name, base in (("gidget", "bare"), ("jobs:1", "bare"), ("jobs:0", "bare"), ("jobs:1", "gidget")):
        paired = [other.seconds / run.seconds for run, other in zip(results[name], results[base], strict=True)]
        spread = " ".join(f"{ratio:.2f}" for ratio in paired)
        print(f"ratio {name}/{base} {rates[name] / rates[base]:.2f}  (per round {spread}; "
              f"median {statistics.median(paired):.2f})")
    failed = 0
    for name, (deliveries, jobs, done) in stored.items():
        acked = sum(run.ok for run in results[name])
        verdict = "OK" if deliveries == acked else "MISMATCH"
        failed += verdict != "OK"
        print(f"count check {name}: 2xx replies {acked}, rows stored {deliveries}: {verdict}; jobs {jobs}, done {done}")
    print(f"jobs:1 queue after the run: {settled}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--handlers", default=None, help="handler package for jobs:1 (default: one no-op job)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.requests, args.concurrency, args.handlers, args.rounds)))
