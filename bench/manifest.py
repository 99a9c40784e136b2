"""Time build_manifest on a synthetic 3,000-file pull request, against merely splitting every patch into lines.

Run: .venv/bin/python bench/manifest.py [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from quantumreview.analysis.manifest import CriterionRef, build_manifest

FILES = 3000
TARGET_MS = 200.0
MEGABYTE = 1 << 20
SOURCES = [("src/app/{n}.py", "py"), ("web/src/{n}.ts", "ts"), ("pkg/{n}.go", "go"),
           ("src/main/java/com/acme/C{n}.java", "java"), ("app/models/m{n}.rb", "rb")]  # fmt: skip
TESTS = [("tests/test_{n}.py", "py"), ("web/src/{n}.test.ts", "ts"), ("pkg/{n}_test.go", "go"),
         ("src/test/java/com/acme/C{n}Test.java", "java"), ("spec/models/m{n}_spec.rb", "rb")]  # fmt: skip
OTHERS = ["docs/page{n}.md", "config/svc{n}.yaml", ".github/workflows/w{n}.yml", "assets/img{n}.png"]
TEST_LINES = {
    "py": ["def test_T{t}_case_{n}(record_xml_attribute):", "    assert run({n}) == '2024-01-01T12:00'"],
    "ts": ["it('T{t}: handles case {n}', () => {{", "  expect(run({n})).toBe(true);", "}});"],
    "go": ["func TestT{t}Case{n}(t *testing.T) {{", "\tif run({n}) != nil {{ t.Fatal() }}", "}}"],
    "java": ['  @Tag("T{t}")', "  @Test", "  void case{n}() {{ assertTrue(run({n})); }}"],
    "rb": ["  it 'T{t}: handles case {n}' do", "    expect(run({n})).to be true", "  end"],
}


def patch_of(lines: list[str], rng: random.Random) -> str:
    """Return a unified-diff patch with hunks of added, removed and context lines."""
    out: list[str] = []
    for start in range(0, len(lines), 40):
        chunk = lines[start : start + 40]
        out.append(f"@@ -{start + 1},{len(chunk)} +{start + 1},{len(chunk)} @@ def context_{start}():")
        out += [rng.choice("+ +-") + line for line in chunk]
    return "\n".join(out)


def source_lines(n: int, count: int) -> list[str]:
    """Return plausible source lines."""
    return [f"    value_{n}_{i} = compute(value_{n}_{i - 1}, 'key{i}')  # step {i}" for i in range(count)]


def test_lines(lang: str, n: int, count: int, rng: random.Random) -> list[str]:
    """Return test functions in one language; about one in four carries a criterion ID."""
    lines: list[str] = []
    while len(lines) < count:
        tid = rng.randint(1, 12) if rng.random() < 0.25 else 0
        template = TEST_LINES[lang] if tid else [line.replace("T{t}", "") for line in TEST_LINES[lang]]
        lines += [line.format(t=tid, n=n + len(lines)) for line in template]
    return lines


def synthetic_pr(seed: int = 7) -> list[dict[str, Any]]:
    """Return 3,000 GitHub file items: ~20% tests, mixed languages, a few 1 MB patches, some binaries."""
    rng = random.Random(seed)
    files: list[dict[str, Any]] = []
    for n in range(FILES):
        roll = rng.random()
        size = 25_000 if n % 600 == 5 else rng.randint(5, 120)  # five files carry ~1 MB patches
        if roll < 0.2:
            template, lang = rng.choice(TESTS)
            patch: str | None = patch_of(test_lines(lang, n, size, rng), rng)
        elif roll < 0.75:
            template, _ = rng.choice(SOURCES)
            patch = patch_of(source_lines(n, size), rng)
        else:
            template = rng.choice(OTHERS)
            patch = None if template.endswith(".png") else patch_of(source_lines(n, size), rng)
        item: dict[str, Any] = {"filename": template.format(n=n), "status": "modified", "additions": size,
                                "deletions": size // 3, "changes": size + size // 3}  # fmt: skip
        if patch is not None:
            item["patch"] = patch
        files.append(item)
    return files


def split_all(files: list[dict[str, Any]]) -> int:
    """Baseline: the least any analysis must do, split every patch into lines."""
    return sum(len(item["patch"].split("\n")) for item in files if "patch" in item)


def time_ms(run: Callable[[], object]) -> float:
    """Return one call's wall time in milliseconds."""
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1e3


def main() -> None:
    """Print the median times, the ratio and the target check."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    files = synthetic_pr()
    criteria = [CriterionRef("octo/app", 1, f"T{n}", f"Criterion number {n} about login") for n in range(1, 11)]
    total_bytes = sum(len(item.get("patch", "")) for item in files)
    big = sum(len(item.get("patch", "")) >= MEGABYTE * 0.9 for item in files)
    binary = sum("patch" not in item for item in files)
    pairs = [
        (time_ms(lambda: build_manifest(files, criteria)), time_ms(lambda: split_all(files)))
        for _ in range(args.repeat)
    ]
    subject = statistics.median(p[0] for p in pairs)
    baseline = statistics.median(p[1] for p in pairs)
    manifest = build_manifest(files, criteria)
    print(f"files: {len(files)}, patch bytes: {total_bytes / MEGABYTE:.1f} MiB, ~1 MB patches: {big}, binary: {binary}")
    print(f"tests found: {len(manifest.tests)}, tests group: {manifest.group('test').count} files")
    verdict = "OK" if subject <= TARGET_MS else "MISSED"
    print(f"build_manifest median: {subject:.1f} ms  (target <= {TARGET_MS:.0f} ms: {verdict})")
    print(f"baseline split lines median: {baseline:.1f} ms")
    print(f"ratio build_manifest / split: {subject / baseline:.2f}x  over {args.repeat} runs")


if __name__ == "__main__":
    main()
