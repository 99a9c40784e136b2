"""One GitHub fault at a time, on the calls the review pipeline makes: the review must end exactly as the clean
run does (the same check run, one bot comment per thread with the same body, the same checklist, every job done).

Each case plays the whole pipeline from scratch (tests/test_fault_sweep_pipeline.py) with one request answered by
one fault: the nth request of a route during one delivery's jobs. The job runner and the client retry on the
pipeline's shared clock. Faults: 500, 502 with GitHub's HTML page, a connection reset, a secondary rate limit with
Retry-After 60, and an answer slower than the client's timeout (the fake still carries the request out, as GitHub
may: a POST that timed out may have created its comment).

Sampled (a whole run costs about half a second): every write (POST, PATCH) meets every fault, since a write
repeated or half done is where a retry can go wrong; each read meets one fault, the kinds taken in turn, as reads
are retried in place by the client whatever failed. QUANTUMREVIEW_FAULT_SWEEP=full runs every pair (about a minute).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quantumreview.testing.fake import FakeGitHub
from tests.test_fault_sweep_pipeline import STEP_CALLS, Outcome, run_pipeline

SLOW = 1.0  # seconds the fake waits before answering: past the client's read timeout and the download deadline
BLOB = ("GET", "/_blobs/{key}")
WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})

Fault = Callable[[FakeGitHub, str, str], None]
FAULTS: dict[str, Fault] = {
    "500": lambda fake, method, route: fake.fail_next(method, route, status=500),
    "502-html": lambda fake, method, route: fake.fail_next(method, route, status=502),  # GitHub's HTML error page
    "reset": lambda fake, method, route: fake.fail_next(method, route, kind="reset"),
    "secondary-limit": lambda fake, method, route: fake.secondary_limit(method, route, retry_after=60),
    "timeout": lambda fake, method, route: fake.fail_next(method, route, kind="slow", delay=SLOW),
}
# Faults that cannot happen on a route, each with why.
UNREALISTIC = {
    (BLOB, "secondary-limit"): "the blob host is Azure storage, not the API: it sends no GitHub rate limits",
}
# Cases that fail until a fix outside this test's files lands (see the commit adding this file); then remove them.
AWAITING_FIX: dict[tuple[str, str, str, int, str], str] = {}


def calls() -> Iterator[tuple[str, str, str, int]]:
    """Every request of the clean run as (delivery, method, route, nth of that route in the delivery's jobs)."""
    for step, counts in STEP_CALLS.items():
        for (method, route), count in counts.items():
            for nth in range(1, count + 1):
                yield step, method, route, nth


def cases(full: bool) -> list[Any]:
    """The (call, fault) pairs, named "workflow_run PATCH /repos/.../comments/{comment_id}#2-500"."""
    params = []
    reads = 0
    for step, method, route, nth in calls():
        realistic = [name for name in FAULTS if ((method, route), name) not in UNREALISTIC]
        if full or method in WRITES:
            chosen = realistic
        else:
            chosen, reads = [realistic[reads % len(realistic)]], reads + 1
        for name in chosen:
            if (step, method, route, nth, name) not in AWAITING_FIX:
                params.append(pytest.param(step, method, route, nth, name, id=f"{step} {method} {route}#{nth}-{name}"))
    return params


def script(fake: FakeGitHub, event: str, *, step: str, method: str, route: str, nth: int, fault: str) -> None:
    """Before `step`'s delivery: let its first nth-1 requests of the route through, then the fault."""
    if event != step:
        return
    for _ in range(nth - 1):
        fake.fail_next(method, route, kind="slow", delay=0.0)  # served as usual
    FAULTS[fault](fake, method, route)


def shown(outcome: Outcome) -> tuple[Any, ...]:
    """What the review shows: check runs, comments, checklist and notifications (the calls made and the retries'
    errors may differ)."""
    return outcome.check_runs, outcome.comments, outcome.checklist, outcome.notifications


@pytest.fixture(scope="module")
def clean_runs() -> dict[str, Outcome]:
    """The clean run, played once for the module by the first case."""
    return {}


@pytest.mark.parametrize(("step", "method", "route", "nth", "fault"),
                         cases(os.environ.get("QUANTUMREVIEW_FAULT_SWEEP") == "full"))
async def test_one_fault_ends_in_the_clean_runs_review(
        step: str, method: str, route: str, nth: int, fault: str, clean_runs: dict[str, Outcome], tmp_path: Path,
        rsa_private_key: str, aiohttp_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    if "clean" not in clean_runs:
        clean_runs["clean"] = await run_pipeline(tmp_path / "clean", rsa_private_key, aiohttp_client, monkeypatch)
    faulted = await run_pipeline(tmp_path / "faulted", rsa_private_key, aiohttp_client, monkeypatch,
                                 fault=functools.partial(script, step=step, method=method, route=route, nth=nth,
                                                         fault=fault))
    assert faulted.faults_left == 0  # the fault was met
    assert shown(faulted) == shown(clean_runs["clean"])
    assert [(handler, status) for handler, status, _ in faulted.jobs if status != "done"] == []


def test_the_sample_gives_every_call_a_fault_and_every_write_each_fault() -> None:
    sampled = {tuple(p.values) for p in cases(full=False)}
    for step, method, route, nth in calls():
        met = {fault for s, m, r, n, fault in sampled if (s, m, r, n) == (step, method, route, nth)}
        wanted = {f for f in FAULTS if ((method, route), f) not in UNREALISTIC and (step, method, route, nth, f)
                  not in AWAITING_FIX}
        assert met == wanted if method in WRITES else len(met) == 1, (step, method, route, nth, met)
    assert {p.values[4] for p in cases(full=False) if p.values[1] not in WRITES} == set(FAULTS)
