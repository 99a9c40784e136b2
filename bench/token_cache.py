"""N concurrent events over M installations through GitHubApp.for_installation, against bare aiohttp GETs.

Each event makes one GET of an issue through its installation's client (token cache, retries, semaphore, headers).
The baseline, in the same run and against the same fake, makes the same GETs with plain aiohttp and tokens minted
beforehand. Runs alternate; medians are printed with their ratio. Token requests per client run must equal M.

Run: .venv/bin/python bench/token_cache.py [--events 2000] [--installations 20] [--repeat 3] [--etag]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quantumreview.github import GitHubApp
from quantumreview.testing.fake import FakeGitHub

MINT = "/app/installations/{installation_id}/access_tokens"


def new_key() -> str:
    """Return a fresh RSA key in PEM form for the bench App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def issue_path(event: int, installations: int) -> tuple[int, str]:
    """Return the installation id and API path an event reads."""
    installation = 1 + event % installations
    return installation, f"/repos/org{installation}/app/issues/1"


async def client_run(session: aiohttp.ClientSession, fake: FakeGitHub, key: str, events: int,
                     installations: int, etag: bool) -> tuple[float, int, int]:
    """Run the events through a fresh GitHubApp; return seconds, token requests and API calls."""
    before_mints, before_calls = len(fake.calls("POST", MINT)), len(fake.requests)
    app = GitHubApp(session, app_id=1, private_key=key, api_url=fake.api_url, web_url=fake.url,
                    etag_cache_size=2000 if etag else 0)

    async def event(n: int) -> None:
        installation, path = issue_path(n, installations)
        await app.for_installation(installation).getitem(path)

    started = time.perf_counter()
    await asyncio.gather(*(event(n) for n in range(events)))
    elapsed = time.perf_counter() - started
    return elapsed, len(fake.calls("POST", MINT)) - before_mints, len(fake.requests) - before_calls


async def baseline_run(session: aiohttp.ClientSession, fake: FakeGitHub, tokens: dict[int, str], events: int,
                       installations: int) -> float:
    """Run the same GETs with bare aiohttp and ready tokens; return seconds."""

    async def event(n: int) -> None:
        installation, path = issue_path(n, installations)
        headers = {"Authorization": f"token {tokens[installation]}", "Accept": "application/vnd.github+json"}
        async with session.get(fake.api_url + path, headers=headers) as response:
            response.raise_for_status()
            await response.json()

    started = time.perf_counter()
    await asyncio.gather(*(event(n) for n in range(events)))
    return time.perf_counter() - started


async def main(events: int, installations: int, repeat: int, etag: bool) -> None:
    """Alternate baseline and client runs; print token requests, calls and calls/s with the ratio."""
    key = new_key()
    async with FakeGitHub(app_id=1, private_key_pem=key, contract=False) as fake, aiohttp.ClientSession() as session:
        for i in range(1, installations + 1):
            fake.add_installation(i, account=f"org{i}", repositories=[f"org{i}/app"])
            fake.add_issue(f"org{i}/app", 1, title="bench")
        warm = GitHubApp(session, app_id=1, private_key=key, api_url=fake.api_url)
        tokens = {i: await warm.installation_token(i) for i in range(1, installations + 1)}
        client_times, base_times, mints, calls = [], [], set(), set()
        for _ in range(repeat):
            base_times.append(await baseline_run(session, fake, tokens, events, installations))
            elapsed, minted, made = await client_run(session, fake, key, events, installations, etag)
            client_times.append(elapsed)
            mints.add(minted)
            calls.add(made)
    client_s, base_s = statistics.median(client_times), statistics.median(base_times)
    print(f"events={events} installations={installations} repeat={repeat} etag_cache={'on' if etag else 'off'}")
    print(f"token requests per client run: {sorted(mints)} (must equal {installations})")
    print(f"API calls per client run (GETs + token requests): {sorted(calls)}")
    print(f"client   : {events / client_s:8.0f} calls/s  (median {client_s * 1000:.0f} ms)")
    print(f"baseline : {events / base_s:8.0f} calls/s  (bare aiohttp, median {base_s * 1000:.0f} ms)")
    print(f"ratio client/baseline throughput: {base_s / client_s:.2f}")
    if mints != {installations}:
        raise SystemExit("token requests did not equal the number of installations")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--installations", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--etag", action="store_true", help="keep the ETag cache on (GETs become 304s)")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.installations, args.repeat, args.etag))
