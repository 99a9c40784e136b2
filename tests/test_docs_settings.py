"""The README's Configuration table and the docs name exactly the variables quantumreview/settings.py reads,
with the defaults it applies."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from quantumreview.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = (README, ROOT / "docs" / "deploy.md", ROOT / "docs" / "testing-plugins.md")
# Upper-case names in the docs that are not environment variables: a command's argument.
NOT_VARIABLES = frozenset({"DELIVERY_ID"})
# Variables whose Settings field is not the variable's name in lower case.
FIELDS = {"GITHUB_APP_ID": "app_id", "QUANTUMREVIEW_HANDLERS": "handlers_package"}


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_read() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    return env.asked


def configuration_rows() -> list[tuple[list[str], list[str]]]:
    """(variables, defaults) of each row of the README's Configuration table, as the code spans written there."""
    return [(names, defaults) for names, defaults, _ in configuration_table()]


def configuration_table() -> list[tuple[list[str], list[str], str]]:
    """(variables, defaults, meaning) of each row of the README's Configuration table."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[list[str], list[str], str]] = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        rows.append((re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]), re.findall(r"`([^`]*)`", cells[1]), cells[2]))
    return rows


def test_the_recorder_sees_what_settings_reads() -> None:
    # Why: the checks below trust this list; a Settings that read no variable would pass them all.
    assert {"GITHUB_APP_ID", "DATABASE_PATH", "PORT", "JWT_SECRET"} <= variables_read()


def test_every_variable_settings_reads_is_in_the_readme_table_and_nothing_else() -> None:
    documented = {name for names, _ in configuration_rows() for name in names}
    read = variables_read()
    assert sorted(read - documented) == [], "read by settings.py but missing from the README's Configuration table"
    assert sorted(documented - read) == [], "in the README's Configuration table but not read by settings.py"


def test_every_variable_the_docs_name_is_a_setting() -> None:
    read = variables_read()
    for doc in DOCS:
        named = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", doc.read_text()))
        assert sorted(named - read - NOT_VARIABLES) == [], f"{doc.name} names variables settings.py does not read"


def field_of(variable: str) -> str:
    return FIELDS.get(variable, variable.lower())


def default_cases() -> list[tuple[str, str]]:
    cases = []
    for names, defaults in configuration_rows():
        if len(names) == len(defaults):  # a row whose defaults are all written as code, one per variable
            cases += [(name, value) for name, value in zip(names, defaults, strict=True)]
    return cases


@pytest.mark.parametrize(("variable", "documented"), default_cases())
def test_documented_defaults_are_the_ones_applied(variable: str, documented: str) -> None:
    applied = getattr(Settings.from_env({}), field_of(variable))
    if isinstance(applied, Path):
        assert Path(documented) == applied
    elif isinstance(applied, int | float):
        assert float(documented) == applied
    else:
        assert documented.lower() == str(applied).lower()


def test_the_defaults_checked_cover_the_numbers_and_addresses() -> None:
    checked = {name for name, _ in default_cases()}
    assert {"HOST", "PORT", "DATABASE_PATH", "JOB_TIMEOUT", "SHUTDOWN_GRACE", "DELIVERY_RETENTION_DAYS",
            "ARTIFACT_MAX_BYTES", "GITHUB_WRITE_INTERVAL", "LOG_LEVEL", "QUANTUMREVIEW_HANDLERS"} <= checked


def test_fly_default_public_url_is_the_documented_one() -> None:
    [(_, defaults)] = [(names, d) for names, d in configuration_rows() if names == ["PUBLIC_URL"]]
    local, fly = defaults
    assert Settings.from_env({"PORT": "8123"}).public_url == local.replace("PORT", "8123")
    assert Settings.from_env({"FLY_APP_NAME": "qr"}).public_url == fly.replace("$FLY_APP_NAME", "qr")


def documented_bounds() -> list[tuple[str, float | None, float | None]]:
    """(variable, low, high) of each numeric setting whose row states a range: `(1–256)`, `at most 60`."""
    bounds: list[tuple[str, float | None, float | None]] = []
    for names, defaults, meaning in configuration_table():
        if len(defaults) != len(names) or not all(re.fullmatch(r"[0-9.]+", d) for d in defaults):
            continue
        ranges = re.findall(r"\(([0-9]+)–([0-9]+)\)", meaning)
        if len(ranges) == len(names):
            bounds += [(name, float(low), float(high)) for name, (low, high) in zip(names, ranges, strict=True)]
        elif len(names) == 1:
            low = re.search(r"at least ([0-9]+)", meaning, flags=re.I)
            high = re.search(r"at most ([0-9]+)", meaning, flags=re.I)
            if low or high:
                bounds.append((names[0], float(low[1]) if low else None, float(high[1]) if high else None))
    return bounds


def accepted(variable: str, value: float) -> bool:
    try:
        Settings.from_env({variable: f"{value:g}"})
    except SettingsError:
        return False
    return True


@pytest.mark.parametrize(("variable", "low", "high"), documented_bounds())
def test_documented_ranges_are_the_ones_enforced(variable: str, low: float | None, high: float | None) -> None:
    if low is not None:
        assert accepted(variable, low) and not accepted(variable, low - 1)
    if high is not None:
        assert accepted(variable, high) and not accepted(variable, high + 1)


def test_the_ranges_checked_cover_the_job_runner_and_retention() -> None:
    assert {"JOB_CONCURRENCY", "JOB_TIMEOUT", "JOB_MAX_ATTEMPTS", "SHUTDOWN_GRACE", "GITHUB_WRITE_INTERVAL",
            "DELIVERY_RETENTION_DAYS", "ARTIFACT_MAX_BYTES"} <= {name for name, _, _ in documented_bounds()}
