"""docs/operations.md: every `provault` command of its ```bash blocks parses with the real CLI."""

from __future__ import annotations

import re
import shlex

import pytest

from ledger.cli import build_parser

from .manifests import ROOT

DOC = ROOT / "docs" / "operations.md"
_BASH = re.compile(r"^```bash\n(.*?)^```$", re.S | re.M)


def _command_lines() -> list[str]:
    """Command lines of the ```bash blocks: continuations joined, comments and blank lines dropped."""
    lines = []
    for block in _BASH.findall(DOC.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_every_provault_command_in_the_operator_guide_parses() -> None:
    commands = [ln for ln in _command_lines() if ln.startswith("provault ")]
    assert len(commands) >= 10
    shown = set()
    for line in commands:
        try:
            args = build_parser().parse_args(shlex.split(line, comments=True)[1:])
        except SystemExit as e:
            pytest.fail(f"docs/operations.md: `{line}` does not parse with the CLI (exit {e.code})")
        assert callable(getattr(args, "run", None)), line
        shown.add(line.split()[1])
    assert {"db", "ledger", "verify", "checkpoint", "keys", "project"} <= shown


def test_files_the_operator_guide_names_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:deploy|tests/deploy|docs)/[\w./-]+)`", text))
    assert named, "the guide points at the deploy files"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert missing == [], f"docs/operations.md names files that do not exist: {missing}"
