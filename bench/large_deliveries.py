"""Peak memory of the real server when large deliveries arrive and their jobs run.

Run: .venv/bin/python bench/large_deliveries.py [--count 8] [--mib 20] [--one-by-one] [--hold 5] [--unsigned]
Starts `quantumreview serve` with one handler for `issues` that holds its job `--hold` seconds (as a handler
waiting on GitHub would), sends `--count` signed deliveries of `--mib` MiB each (many small JSON objects, the
shape that costs most once parsed; each on its own issue, so their jobs may run side by side), all at once or one
after another, waits until every job is done and prints the server's peak RSS (VmHWM) against its idle RSS
measured in the same run, and against the 512 MB of the Fly machine (fly.toml). With --unsigned the signatures
are wrong (each answered 401, no job): what any sender on the internet can make the server hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from intake import SECRET, free_port, start_intake, wait_jobs_settled, wait_up, write_handlers

from quantumreview.testing.signing import sign

FLY_MEMORY = 512 * 1024 * 1024
HANDLER = """
import asyncio, os
from gidgethub import routing
router = routing.Router()

@router.register("issues")
async def hold(event, ctx):
    await asyncio.sleep(float(os.environ["BENCH_HOLD"]))
"""


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def payload(number: int, mib: int) -> bytes:
    item = {"id": 123456, "name": "x" * 20, "ok": True}
    count = mib * 1024 * 1024 // (len(json.dumps(item, separators=(",", ":"))) + 1)
    data = {"action": "opened", "issue": {"number": number}, "repository": {"full_name": "o/r"},
            "filler": [item] * count}
    return json.dumps(data, separators=(",", ":")).encode()


def post(port: int, delivery_id: str, body: bytes, signed: bool) -> int:
    signature = sign(body, SECRET) if signed else "sha256=" + "0" * 64
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/github", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery_id,
                 "X-Hub-Signature-256": signature})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def main(count: int, mib: int, one_by_one: bool, hold: float, signed: bool) -> int:
    import os

    os.environ["BENCH_HOLD"] = str(hold)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        server = start_intake(port, root / "bench.db", write_handlers(root, "bench_large", HANDLER))
        try:
            await wait_up(f"http://127.0.0.1:{port}")
            idle = memory(server.pid)["VmRSS"]
            bodies = [payload(n + 1, mib) for n in range(count)]
            began = time.monotonic()
            if one_by_one:
                statuses = [await asyncio.to_thread(post, port, f"large-{n}", body, signed)
                            for n, body in enumerate(bodies)]
            else:  # one thread each: asyncio.to_thread's default pool would send only a few at a time
                loop = asyncio.get_running_loop()
                with ThreadPoolExecutor(max_workers=count) as pool:
                    statuses = list(await asyncio.gather(*(
                        loop.run_in_executor(pool, post, port, f"large-{n}", body, signed)
                        for n, body in enumerate(bodies))))
            stored = time.monotonic() - began
            jobs = await wait_jobs_settled(f"http://127.0.0.1:{port}", timeout=count * (hold + 30))
            done = time.monotonic() - began
            peak = memory(server.pid)["VmHWM"]
        finally:
            server.terminate()
            server.wait(timeout=30)
    arrival = "one after another" if one_by_one else "all at once"
    kind = f"each job held {hold:g} s" if signed else "unsigned (401, no job)"
    print(f"{count} deliveries of {len(bodies[0]) / 2**20:.1f} MiB ({arrival}), {kind}")
    print(f"replies {statuses} in {stored:.1f} s; jobs settled after {done:.1f} s: {jobs}")
    print(f"server idle RSS {idle / 2**20:.0f} MiB, peak (VmHWM) {peak / 2**20:.0f} MiB = {peak / idle:.1f}x idle, "
          f"{peak / FLY_MEMORY:.2f} of the Fly machine's 512 MB")
    expected = 202 if signed else 401
    return 0 if all(status == expected for status in statuses) and jobs.get("queued") == jobs.get("running") == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--one-by-one", action="store_true")
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--unsigned", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.count, args.mib, args.one_by_one, args.hold, not args.unsigned)))
