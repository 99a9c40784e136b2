"""Webhook intake throughput against a bare aiohttp app, side by side on loopback.

Run: .venv/bin/python bench/intake.py [--requests 5000] [--rounds 3] [--concurrency 32]
Prints req/s, p50 and p99 for each server, the ratio intake/bare, and checks rows stored == 2xx replies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quantumreview.testing.signing import sign  # noqa: E402

PAYLOAD = (ROOT / "tests" / "fixtures" / "webhooks" / "issues.opened.json").read_bytes()
SECRET = "bench-webhook-secret-0123456789"
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


NOOP_HANDLERS = """
from gidgethub import routing
router = routing.Router()

@router.register("issues", action="opened")
async def acknowledge(event, ctx):
    pass
"""


def write_noop_handlers(root: Path) -> str:
    """A one-handler package in `root`, so every delivery makes one job that the runner claims and finishes."""
    package = root / "bench_handlers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "noop.py").write_text(NOOP_HANDLERS)
    return "bench_handlers"


def start_intake(port: int, db_path: Path, handlers: str) -> subprocess.Popen[bytes]:
    # Why: GITHUB_API_URL on a closed loopback port, so no handler can reach the network during the bench.
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{db_path.parent}", "PORT": str(port),
           "HOST": "127.0.0.1", "GITHUB_API_URL": "http://127.0.0.1:9",
           "DATABASE_PATH": str(db_path), "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key(),
           "GITHUB_WEBHOOK_SECRET": SECRET, "QUANTUMREVIEW_HANDLERS": handlers, "LOG_LEVEL": "warning"}
    return subprocess.Popen([sys.executable, "-m", "quantumreview", "serve"], env=env, cwd=db_path.parent)


def start_bare(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])


async def wait_up(session: aiohttp.ClientSession, base: str) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                async with session.get(f"{base}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def drive(base: str, prefix: str, count: int, concurrency: int) -> tuple[float, list[float], int]:
    """Send `count` signed deliveries over `concurrency` connections; return (seconds, latencies, 2xx count)."""
    signature = sign(PAYLOAD, SECRET)
    latencies: list[float] = []
    ok = 0
    next_id = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_up(session, base)

        async def worker() -> None:
            nonlocal ok
            for n in next_id:
                headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": f"{prefix}-{n}",
                           "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
                began = time.perf_counter()
                async with session.post(f"{base}/webhooks/github", data=PAYLOAD, headers=headers) as response:
                    await response.read()
                    ok += 200 <= response.status < 300
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began, latencies, ok


def report(name: str, seconds: float, latencies: list[float], count: int) -> float:
    rate = count / seconds
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{name:7s} {rate:8.0f} req/s   p50 {cuts[49] * 1000:6.2f} ms   p99 {cuts[98] * 1000:6.2f} ms")
    return rate


async def main(count: int, concurrency: int, handlers: str | None, rounds: int) -> int:
    bare_port, intake_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "bench.db"
        handlers = handlers or write_noop_handlers(Path(tmp))
        servers = [start_bare(bare_port), start_intake(intake_port, db_path, handlers)]
        bare_base, intake_base = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{intake_port}"
        results: dict[str, list[tuple[float, list[float], int]]] = {"bare": [], "intake": []}
        try:
            await drive(bare_base, "warm", 500, concurrency)
            await drive(intake_base, "warm", 500, concurrency)
            # Why: alternate the two servers so machine noise hits both alike; report the median round.
            for n in range(rounds):
                results["bare"].append(await drive(bare_base, f"run{n}", count, concurrency))
                results["intake"].append(await drive(intake_base, f"run{n}", count, concurrency))
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)
        conn = sqlite3.connect(db_path)
        stored = conn.execute("SELECT count(*) FROM deliveries WHERE id LIKE 'run%'").fetchone()[0]
        conn.close()
    acked = sum(ok for _, _, ok in results["intake"])
    print(f"payload {len(PAYLOAD)} bytes, {count} deliveries x {rounds} rounds, {concurrency} connections, "
          f"handlers={handlers}, {os.cpu_count()} CPUs (client and both servers share them)")
    rates = {}
    for name, runs in results.items():
        median = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
        rates[name] = report(name, median[0], median[1], count)
    print(f"ratio intake/bare {rates['intake'] / rates['bare']:.2f}")
    print(f"count check: 2xx replies {acked}, rows stored {stored}: {'OK' if stored == acked else 'MISMATCH'}")
    return 0 if stored == acked else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--handlers", default=None, help="handler package (default: one no-op job per delivery)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.requests, args.concurrency, args.handlers, args.rounds)))
