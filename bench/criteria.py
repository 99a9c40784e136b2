"""Time extract_criteria on the issue corpus and on a synthetic 64 KB body, against str.splitlines().

Run: .venv/bin/python bench/criteria.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from quantumreview.analysis.criteria import extract_criteria

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "issues"
TARGET_64K_MS = 2.0


def batch_seconds(run: Callable[[], object], number: int) -> float:
    """Return the mean time of one call over a batch of `number` calls."""
    started = time.perf_counter()
    for _ in range(number):
        run()
    return (time.perf_counter() - started) / number


def median_us(run: Callable[[], object], repeat: int, number: int) -> float:
    """Return the median time of one call in microseconds, over `repeat` batches of `number` calls."""
    return statistics.median(batch_seconds(run, number) for _ in range(repeat)) * 1e6


def paired_medians(
    subject: Callable[[], object], baseline: Callable[[], object], repeat: int
) -> tuple[float, float, float]:
    """Time subject and baseline in alternating batches; return their medians (µs) and the median ratio."""
    pairs = [(batch_seconds(subject, 20), batch_seconds(baseline, 20)) for _ in range(repeat)]
    ratio = statistics.median(subject_s / baseline_s for subject_s, baseline_s in pairs)
    return (
        statistics.median(p[0] for p in pairs) * 1e6,
        statistics.median(p[1] for p in pairs) * 1e6,
        ratio,
    )


def corpus_classes() -> dict[str, list[str]]:
    """Group the corpus bodies by case kind."""
    classes: dict[str, list[str]] = {"corpus: section": [], "corpus: task list only": [], "corpus: no criteria": []}
    for expected_path in sorted(CORPUS.glob("*.expected.json")):
        expected = json.loads(expected_path.read_text(encoding="utf-8"))
        body = expected_path.with_name(expected_path.name.replace(".expected.json", ".md")).read_text(encoding="utf-8")
        if expected["has_section"]:
            classes["corpus: section"].append(body)
        elif expected["criteria"]:
            classes["corpus: task list only"].append(body)
        else:
            classes["corpus: no criteria"].append(body)
    return classes


def synthetic_body(size: int = 65_536, seed: int = 7) -> str:
    """Build a realistic issue body of `size` characters: headings, prose, code, criteria sections."""
    rng = random.Random(seed)
    lines: list[str] = []
    while sum(len(line) + 1 for line in lines) < size:
        roll = rng.random()
        if roll < 0.05:
            lines.append(f"## Notes {len(lines)}")
        elif roll < 0.08:
            lines.append("## Acceptance Criteria")
        elif roll < 0.40:
            lines.append(f"- [ ] Criterion {len(lines)} works with `code`, **bold** and a [link](https://example.com)")
        elif roll < 0.45:
            lines.append("  - a sub-item with more detail")
        elif roll < 0.48:
            lines.append("```")
        elif roll < 0.55:
            lines.append("")
        else:
            lines.append("Some prose describing the feature in detail, with `inline code` and an @mention.")
    return "\n".join(lines)[:size]


def parse_all(bodies: list[str]) -> None:
    """Extract the criteria of every body once."""
    for body in bodies:
        extract_criteria(body)


def main() -> None:
    """Print median microseconds per body for each class and the 64 KB ratio to splitlines()."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    repeat = parser.parse_args().repeat

    print(f"{'class':<28}{'bodies':>7}{'median µs/body':>16}")
    for name, bodies in corpus_classes().items():
        per_pass = median_us(partial(parse_all, bodies), repeat, 20)
        print(f"{name:<28}{len(bodies):>7}{per_pass / len(bodies):>16.1f}")

    body = synthetic_body()
    hostile = {
        "5,000 list items": "## Acceptance Criteria\n" + "".join(f"- [ ] item {i}\n" for i in range(5000)),
        "1,000 nested levels": "## Acceptance Criteria\n" + "".join("  " * d + f"- level {d}\n" for d in range(1000)),
    }
    parsed, baseline, ratio = paired_medians(lambda: extract_criteria(body), body.splitlines, repeat)
    print(f"{'synthetic 64 KB':<28}{1:>7}{parsed:>16.1f}")
    for name, hostile_body in hostile.items():
        print(f"{name:<28}{1:>7}{median_us(partial(extract_criteria, hostile_body), repeat, 2):>16.1f}")
    print()
    print(
        f"64 KB body: {len(body):,} chars, {body.count(chr(10)) + 1} lines, "
        f"{len(extract_criteria(body, limit=10_000).criteria)} criteria"
    )
    print(f"baseline str.splitlines(): {baseline:.1f} µs")
    print(f"extract_criteria / splitlines ratio (median of paired batches): {ratio:.1f}x")
    verdict = "OK" if parsed / 1000 <= TARGET_64K_MS else "OVER TARGET"
    print(f"64 KB target ≤ {TARGET_64K_MS:.1f} ms: {parsed / 1000:.2f} ms {verdict}")


if __name__ == "__main__":
    main()
