"""The commands, flags and exit codes the README and docs show are the command line's own."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from quantumreview import receive_codes
from quantumreview.cli import INTERRUPTED, build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = (README, ROOT / "docs" / "deploy.md", ROOT / "docs" / "testing-plugins.md")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def command_rows() -> dict[str, str]:
    """The README's Commands table: the usage cell of each row, by command name."""
    section = README.read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for usage in re.findall(r"^\| `quantumreview ([^`]+)` \|", section, flags=re.M):
        rows[usage.split()[0]] = usage
    return rows


def test_the_commands_table_lists_every_command_and_no_other() -> None:
    assert sorted(command_rows()) == sorted(subcommands())


def test_each_rows_flags_and_arguments_are_the_commands() -> None:
    parsers = subcommands()
    for name, usage in command_rows().items():
        parser = parsers[name]
        options = {opt for action in parser._actions for opt in action.option_strings}
        positionals = [a for a in parser._actions if not a.option_strings]
        assert set(re.findall(r"--[a-z-]+", usage)) <= options, usage
        # Arguments are the upper-case words outside [optional] parts: `receive EVENT PAYLOAD.json`.
        required = re.findall(r"\b[A-Z][A-Z_.a-z]*\b", re.sub(r"\[[^]]*\]", "", usage))
        assert len(required) == len(positionals), usage


def test_every_command_the_docs_run_exists() -> None:
    parsers = subcommands()
    for doc in DOCS:
        for name, rest in re.findall(r"\bquantumreview ([a-z]+)([^`\n]*)", doc.read_text()):
            assert name in parsers, f"{doc.name}: quantumreview {name}"
            options = {opt for action in parsers[name]._actions for opt in action.option_strings}
            assert set(re.findall(r"(?<!\S)--[a-z-]+", rest)) <= options, f"{doc.name}: quantumreview {name}{rest}"


def exit_codes(text: str) -> dict[int, str]:
    return {int(code): meaning.strip() for code, meaning in re.findall(r"\b(\d{1,3}): ([^;|]+)", text)}


def test_receive_exit_codes_in_the_readme_are_the_commands() -> None:
    [row] = [line for line in README.read_text().splitlines() if line.startswith("| `quantumreview receive ")]
    codes = exit_codes(row)
    assert codes[receive_codes.OK].startswith("every matching handler ran")
    assert codes[receive_codes.FAILED].startswith("a handler failed")
    assert codes[receive_codes.BAD_INPUT].startswith("bad event name or payload")
    assert codes[receive_codes.SKIPPED].startswith("none failed but one skipped")


def test_receive_exit_codes_in_the_guides_are_the_commands() -> None:
    deploy = " ".join((ROOT / "docs" / "deploy.md").read_text().split())
    assert (f"exits {receive_codes.OK} when every matching handler ran (or none matched), {receive_codes.FAILED} "
            f"when one failed, {receive_codes.BAD_INPUT} for an event name or payload it cannot use, "
            f"{receive_codes.SKIPPED} when none failed but one skipped") in deploy
    guide = " ".join((ROOT / "docs" / "testing-plugins.md").read_text().split())
    assert (f"the exit code is {receive_codes.OK} (all ran), {receive_codes.FAILED} (one failed), "
            f"{receive_codes.BAD_INPUT} (bad event name or payload) or {receive_codes.SKIPPED} (one skipped)") in guide


def test_interrupted_exit_code_in_the_readme_is_the_commands() -> None:
    assert f"exit code {INTERRUPTED}" in " ".join(README.read_text().split())
