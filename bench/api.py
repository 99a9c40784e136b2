"""Dashboard API latency on a large database, against a bare handler on the same server, over loopback.

Run: .venv/bin/python bench/api.py [--requests 400] [--repos 1000] [--issues-per-repo 20] [--items-per-issue 10]
Builds a temp SQLite file (1,000 repositories, 20,000 issues with checklists, 200,000 items, 5 PRs with
manifests and 10 health scores per repository, one user managing every repository), starts the real app on
127.0.0.1 with a bare GET /bench/bare returning {} beside the API, and sends requests one at a time (rounds
alternate between endpoints, so drift hits all alike). Prints p50/p99 per endpoint and p99 / bare p99.
Target: p99 ≤ 20 ms for every endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quantumreview import access, auth, keys  # noqa: E402
from quantumreview.access import RepoAccess  # noqa: E402
from quantumreview.app import create_app  # noqa: E402
from quantumreview.plugins import HandlerRegistry  # noqa: E402
from quantumreview.settings import Settings  # noqa: E402
from storage import migrations  # noqa: E402
from storage.users import User  # noqa: E402

USER = User(id=1, login="bench", name="Bench")
STATUSES = ("pending", "passed", "failed", "skipped", "missing")
PULLS_PER_REPO = 5
HEALTH_PER_REPO = 10
TARGET_P99_MS = 20.0


def repo_name(index: int) -> str:
    """The bench's repository names."""
    return f"org{index % 50:02}/repo{index:04}"


def populate(path: Path, repos: int, issues: int, items: int, rng: random.Random) -> dict[str, int]:
    """Bulk-insert the data set with plain executemany; return row counts."""
    migrations.migrate(path)
    conn = sqlite3.connect(path)
    now = time.time()
    names = [repo_name(i) for i in range(repos)]
    with conn:
        conn.execute("INSERT INTO installations (id, account_login, created_at, updated_at) VALUES (1, 'org', ?, ?)",
                     (now, now))
        conn.executemany("INSERT INTO repositories (id, installation_id, full_name, updated_at) VALUES (?, 1, ?, ?)",
                         [(i + 1, n, now) for i, n in enumerate(names)])
        conn.executemany(
            "INSERT INTO checklists (id, repo, issue_number, installation_id, title, state, created_at, updated_at) "
            "VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
            [(r * issues + k + 1, n, k + 1, f"Issue {k + 1}", "closed" if k % 4 == 0 else "open", now, now)
             for r, n in enumerate(names) for k in range(issues)])
        conn.executemany(
            "INSERT INTO checklist_items (checklist_id, tid, text, detail, position, status, updated_at) "
            "VALUES (?, ?, ?, '', ?, ?, ?)",
            [(c + 1, f"T{t + 1}", f"criterion {t + 1} of checklist {c + 1}", t, rng.choice(STATUSES), now)
             for c in range(repos * issues) for t in range(items)])
        conn.executemany(
            "INSERT INTO pull_requests (repo, number, installation_id, title, state, head_sha, linked, updated_at) "
            "VALUES (?, ?, 1, ?, 'open', ?, ?, ?)",
            [(n, 1000 + p, f"PR {p}", f"sha{r}-{p}",
              json.dumps([{"number": p + 1, "repo": n, "source": "closes"}], sort_keys=True), now)
             for r, n in enumerate(names) for p in range(PULLS_PER_REPO)])
        conn.executemany(  # as storage.pulls.upsert_pull writes it beside each pull request
            "INSERT INTO pr_links (issue_repo, issue_number, pr_repo, pr_number) VALUES (?, ?, ?, ?)",
            [(n, p + 1, n, 1000 + p) for n in names for p in range(PULLS_PER_REPO)])
        manifest = json.dumps({"version": 1, "coverage": [
            {"criterion": {"repo": "x/y", "issue_number": 1, "tid": f"T{t}", "text": "c"}, "tests": []}
            for t in range(1, items + 1)]})
        conn.executemany(
            "INSERT INTO manifests (repo, pr_number, head_sha, manifest, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(n, 1000 + p, f"sha{r}-{p}", manifest, now, now)
             for r, n in enumerate(names) for p in range(PULLS_PER_REPO)])
        conn.executemany(
            "INSERT INTO health_scores (repo, head_sha, branch, score, counts, at) VALUES (?, ?, 'main', ?, '{}', ?)",
            [(n, f"h{h}", rng.randint(50, 100), now - h) for n in names for h in range(HEALTH_PER_REPO)])
        conn.execute("INSERT INTO users (id, login, name, session_version, created_at, updated_at) "
                     "VALUES (1, 'bench', 'Bench', 1, ?, ?)", (now, now))
        conn.executemany("INSERT INTO user_repositories (user_id, repo, installation_id, permission, refreshed_at) "
                         "VALUES (1, ?, 1, 'push', ?)", [(n, now) for n in names])
        conn.executemany("INSERT INTO notifications (user_id, repo, kind, title, created_at) "
                         "VALUES (1, ?, 'k', 't', ?)", [(names[i % repos], now) for i in range(2000)])
    counts = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
              for table in ("repositories", "checklists", "checklist_items", "pull_requests", "pr_links", "manifests")}
    conn.close()
    return counts


async def bare(request: web.Request) -> web.Response:
    """The baseline: a handler that does nothing."""
    return web.json_response({})


def build_app(db_path: Path, repos: int) -> web.Application:
    """The real app (login, access, API) with a warm access cache, plus the bare handler."""
    settings = Settings(database_path=db_path, public_url="http://127.0.0.1", jwt_secret="bench-" + "k" * 40)
    app = create_app(settings, registry=HandlerRegistry.from_routers([]))
    app[access.ACCESS].put(USER.id, tuple(RepoAccess(repo_name(i), 1, "push") for i in range(repos)))
    app.router.add_get("/bench/bare", bare)
    return app


def endpoints(repos: int, issues: int, rng: random.Random) -> dict[str, Any]:
    """Endpoint label → a function returning the next path (random repository and number, seeded)."""
    def repo() -> str:
        return repo_name(rng.randrange(repos))

    return {
        "bare GET /bench/bare": lambda: "/bench/bare",
        "GET /api/me": lambda: "/api/me",
        "GET /api/repos": lambda: "/api/repos",
        "GET /api/repos?page=30": lambda: "/api/repos?page=30",
        "GET /api/repos/{r}": lambda: f"/api/repos/{repo()}",
        "GET /api/repos/{r}/issues": lambda: f"/api/repos/{repo()}/issues",
        "GET /api/repos/{r}/issues?state=all": lambda: f"/api/repos/{repo()}/issues?state=all&per_page=100",
        "GET /api/repos/{r}/issues/{n}": lambda: f"/api/repos/{repo()}/issues/{rng.randint(1, issues)}",
        "GET /api/repos/{r}/prs/{n}": lambda: f"/api/repos/{repo()}/prs/{1000 + rng.randrange(PULLS_PER_REPO)}",
        "GET /api/repos/{r}/audit": lambda: f"/api/repos/{repo()}/audit",
        "GET /api/notifications": lambda: "/api/notifications?unread=true",
    }


async def measure(base: str, cookie: str, paths: dict[str, Any], requests: int) -> dict[str, list[float]]:
    """Send `requests` per endpoint, one at a time, rounds alternating; return latencies in ms."""
    timings: dict[str, list[float]] = {label: [] for label in paths}
    async with aiohttp.ClientSession(base, headers={"Cookie": cookie}) as session:
        for label, next_path in paths.items():  # warm-up
            async with session.get(next_path()) as response:
                assert response.status == 200, (label, response.status, await response.text())
        for _ in range(requests):
            for label, next_path in paths.items():
                path = next_path()
                started = time.perf_counter()
                async with session.get(path) as response:
                    await response.read()
                timings[label].append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}")
    return timings


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def run(args: argparse.Namespace) -> int:
    """Build, serve, measure, print; exit 1 if an endpoint misses the p99 target."""
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "bench.db"
        started = time.perf_counter()
        counts = populate(db_path, args.repos, args.issues_per_repo, args.items_per_issue, rng)
        print(f"data: {counts} in {time.perf_counter() - started:.1f} s")
        app = build_app(db_path, args.repos)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        cookie = f"{auth.session_cookie_name(app[keys.settings])}=" + auth.encode_session(
            app[keys.secret_box].session_key, USER, time.time(), auth.SESSION_LIFETIME)
        try:
            timings = await measure(f"http://127.0.0.1:{port}", cookie,
                                    endpoints(args.repos, args.issues_per_repo, rng), args.requests)
        finally:
            await runner.cleanup()
    base_p99 = percentile(timings["bare GET /bench/bare"], 99)
    print(f"{'endpoint':40} {'p50 ms':>8} {'p99 ms':>8} {'p99/bare':>9}")
    worst = 0.0
    for label, values in timings.items():
        p50, p99 = statistics.median(values), percentile(values, 99)
        worst = max(worst, p99) if not label.startswith("bare") else worst
        print(f"{label:40} {p50:8.2f} {p99:8.2f} {p99 / base_p99:9.1f}")
    verdict = "meets" if worst <= TARGET_P99_MS else "MISSES"
    print(f"worst API p99 {worst:.2f} ms: {verdict} the {TARGET_P99_MS:.0f} ms target ({args.requests} requests each)")
    return 0 if worst <= TARGET_P99_MS else 1


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--issues-per-repo", type=int, default=20)
    parser.add_argument("--items-per-issue", type=int, default=10)
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
