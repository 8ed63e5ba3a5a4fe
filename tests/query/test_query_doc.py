"""docs/query.md: its commands parse with the real CLI, and every query command has an example."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ledger.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "query.md"
_BASH = re.compile(r"^```bash\n(.*?)^```$", re.S | re.M)
QUERY_COMMANDS = (
    "trace",
    "impact",
    "export",
    "sparql",
    "bundle",
    "verify-bundle",
    "report",
    "verify-report",
    "project",
    "query serve",
)


def command_lines() -> list[str]:
    """Every line of the ```bash blocks (backslash continuations joined, comments dropped)."""
    lines = []
    for block in _BASH.findall(DOC.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip())
    return lines


def _command(argv: list[str]) -> str:
    """The (sub)command a command line runs: ``query serve`` for nested ones."""
    return " ".join(argv[:2]) if argv[0] == "query" else argv[0]


def test_the_bash_blocks_hold_only_provault_commands() -> None:
    lines = command_lines()
    assert lines, "docs/query.md has no ```bash examples"
    assert all(line.startswith("provault ") for line in lines), [
        line for line in lines if not line.startswith("provault ")
    ]


@pytest.mark.parametrize("line", command_lines())
def test_every_command_in_the_doc_parses_with_the_cli(line: str) -> None:
    argv = shlex.split(line)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on an unknown subcommand or option, or a missing argument
        pytest.fail(f"docs/query.md: `{line}` does not parse with the provault CLI (exit {e.code})")
    assert callable(getattr(args, "run", None)), line


def test_every_query_command_has_an_example() -> None:
    shown = {_command(shlex.split(line)[1:]) for line in command_lines()}
    missing = [c for c in QUERY_COMMANDS if c not in shown]
    assert not missing, f"docs/query.md has no ```bash example of: provault {', provault '.join(missing)}"


def test_every_query_command_is_described() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [c for c in QUERY_COMMANDS if f"`provault {c}" not in text]
    assert not missing, f"docs/query.md never names: {missing}"
