"""CI-results pipeline latency: a signed workflow_run.completed delivery → the check run completed on the fake GitHub.

Run: .venv/bin/python bench/pipeline.py [--runs 50]
Serves the real app (create_app, the CI-results handler, a GitHubApp client) on loopback, wired to a FakeGitHub.
Prints the median delivery → check-run latency over distinct run ids, and beside it the median GET /health round
trip on the same server as the baseline, with their ratio.
Each run is delivered for an installation of its own (all reaching the same repository): an installation's
writes go out a second apart (GITHUB_WRITE_INTERVAL), and a run writes three times (the check run, then two
comments), so back-to-back runs of one installation would measure that pacing, not the pipeline. A run's first
write is the check run, as on a quiet installation; its token is minted during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from gidgethub import sansio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handlers import ci_results  # noqa: E402
from quantumreview import keys  # noqa: E402
from quantumreview.app import create_app  # noqa: E402
from quantumreview.checklists import refresh_checklist  # noqa: E402
from quantumreview.ci_results import JUNIT_FILE, REPORT_ARTIFACT  # noqa: E402
from quantumreview.context import Context  # noqa: E402
from quantumreview.github import GitHubApp  # noqa: E402
from quantumreview.plugins import HandlerRegistry  # noqa: E402
from quantumreview.pull_requests import refresh_manifest  # noqa: E402
from quantumreview.settings import Settings  # noqa: E402
from quantumreview.testing.fake import FakeGitHub  # noqa: E402
from quantumreview.testing.signing import signed_delivery  # noqa: E402
from storage.db import Database  # noqa: E402

SECRET = "bench-webhook-secret-0123456789"
REPO = "octo-org/octo-repo"
INSTALLATION = 11
SHA = "e" * 40
PAYLOAD = ROOT / "tests" / "fixtures" / "webhooks" / "workflow_run.completed.3.json"
CHECK_RUN = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
ISSUE_BODY = "## Acceptance criteria\n\n" + "".join(f"- [ ] Criterion number {i}\n" for i in range(1, 21))
TEST_PATCH = "@@ -0,0 +1,40 @@\n" + "".join(f"+def test_T{i}_case():\n+    pass\n" for i in range(1, 21))


def private_key() -> str:
    """A fresh RSA key for the bench App."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def junit(run_id: int) -> bytes:
    """A 200-testcase report; every other run fails T3 so the verdict really changes."""
    cases = []
    for i in range(200):
        tid = f"T{i % 20 + 1}"
        failing = tid == "T3" and run_id % 2
        body = '<failure message="boom"/>' if failing else ""
        cases.append(f'<testcase classname="tests.test_x" name="{tid}::test_{i}">{body}</testcase>')
    return ("<testsuite>" + "".join(cases) + "</testsuite>").encode()


def payload(run_id: int, installation: int) -> dict[str, Any]:
    """A real workflow_run.completed payload pointed at the fake's run."""
    data: dict[str, Any] = json.loads(PAYLOAD.read_text())
    data["repository"]["full_name"] = REPO
    data["repository"]["name"] = REPO.split("/")[1]
    data["installation"] = {"id": installation}
    run = data["workflow_run"]
    run.update(id=run_id, run_attempt=1, head_sha=SHA, head_branch="feature")
    for entry in run["pull_requests"]:
        entry.update(number=7)
        entry["head"]["sha"] = SHA
        entry["base"]["repo"]["name"] = REPO.split("/")[1]
    return data


async def seed(fake: FakeGitHub, github: GitHubApp, settings: Settings) -> None:
    """An issue with 20 criteria, its checklist, and PR #7 linking it with its manifest."""
    fake.add_installation(INSTALLATION, repositories=[REPO])
    issue = fake.add_issue(REPO, 4, title="Bench", body=ISSUE_BODY)
    pull = fake.add_pull(REPO, 7, title="Bench", body="Closes #4", head_sha=SHA,
                         files=[{"filename": "tests/test_x.py", "status": "added", "patch": TEST_PATCH,
                                 "additions": 40, "deletions": 0}])
    db = await Database.open(settings.database_path)

    async def notify(*_: Any, **__: Any) -> int:
        return 0

    async def enqueue(*_: Any, **__: Any) -> list[int]:
        return []

    try:
        ctx = Context(event=sansio.Event({}, event="seed", delivery_id="seed"), db=db, settings=settings,
                      gh=github.for_installation(INSTALLATION), github=github, installation_id=INSTALLATION,
                      delivery_id="seed", job_id=0, attempt=1, enqueue=enqueue, notify=notify)
        await refresh_checklist(ctx, REPO, issue)
        await refresh_manifest(ctx, REPO, pull)
    finally:
        await db.close()


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll a condition on the shared loop until it holds."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the check run was not completed in time")
        await asyncio.sleep(0.0005)


async def idle(session: aiohttp.ClientSession, base: str) -> None:
    """Wait until the job queue is empty, so one run's tail never overlaps the next measurement."""
    for _ in range(2000):
        async with session.get(f"{base}/health") as response:
            jobs = (await response.json()).get("jobs") or {}
        if not jobs.get("queued") and not jobs.get("running"):
            return
        await asyncio.sleep(0.002)


async def measure(runs: int) -> tuple[list[float], list[float]]:
    """Return (delivery → check-run latencies, GET /health round trips), in milliseconds."""
    key = private_key()
    async with FakeGitHub(app_id=1, private_key_pem=key) as fake, aiohttp.ClientSession() as gh_session:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(app_id=1, private_key=key, webhook_secret=SECRET, database_path=Path(tmp) / "b.db",
                                github_api_url=fake.api_url, job_timeout=30.0)
            github = GitHubApp(gh_session, app_id=1, private_key=key, api_url=fake.api_url, web_url=fake.url)
            await seed(fake, github, settings)
            app = create_app(settings, registry=HandlerRegistry.from_routers([ci_results.router]))
            app[keys.github] = github
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            base = f"http://127.0.0.1:{port}"
            try:
                async with aiohttp.ClientSession() as session:
                    return await _measure_runs(fake, session, base, runs)
            finally:
                await runner.cleanup()
                await github.aclose()


async def _measure_runs(fake: FakeGitHub, session: aiohttp.ClientSession, base: str,
                        runs: int) -> tuple[list[float], list[float]]:
    latencies: list[float] = []
    health: list[float] = []
    for i in range(runs + 1):  # the first run warms the token cache and connections; it is not counted
        run_id, installation = 1000 + i, INSTALLATION + 1 + i
        fake.add_installation(installation, repositories=[REPO])
        fake.add_workflow_run(REPO, run_id, head_sha=SHA, pull_requests=[7],
                              artifacts={REPORT_ARTIFACT: {JUNIT_FILE: junit(run_id)}})
        headers, body = signed_delivery("workflow_run", payload(run_id, installation), SECRET)
        before = len(fake.calls("PATCH", CHECK_RUN))
        start = time.perf_counter()
        async with session.post(f"{base}/webhooks/github", data=body, headers=headers) as response:
            if response.status != 202:
                raise RuntimeError(f"delivery refused: {response.status} {await response.text()}")
        await wait_for(lambda before=before: len(fake.calls("PATCH", CHECK_RUN)) > before)
        elapsed = (time.perf_counter() - start) * 1000
        await idle(session, base)
        start = time.perf_counter()
        async with session.get(f"{base}/health") as response:
            await response.read()
        if i:
            latencies.append(elapsed)
            health.append((time.perf_counter() - start) * 1000)
    conclusion = fake.check_runs[REPO][0]["conclusion"]
    if len(fake.check_runs[REPO]) != 1 or conclusion not in ("success", "failure"):
        raise RuntimeError(f"expected one completed check run, got {fake.check_runs[REPO]!r}")
    return latencies, health


def main() -> None:
    """Parse arguments, run the bench, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    latencies, health = asyncio.run(measure(args.runs))
    pipeline, baseline = statistics.median(latencies), statistics.median(health)
    print(f"runs: {len(latencies)} (distinct run ids, each for its own installation; one PR with 20 criteria, "
          "200-testcase JUnit report)")
    print(f"delivery → check run completed: median {pipeline:.1f} ms, p90 "
          f"{statistics.quantiles(latencies, n=10)[-1]:.1f} ms (target ≤ 300 ms)")
    print(f"GET /health round trip (baseline): median {baseline:.2f} ms")
    print(f"ratio pipeline / health: {pipeline / baseline:.0f}x")


if __name__ == "__main__":
    main()
