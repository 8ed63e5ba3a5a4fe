"""Every `provault` command the docs show parses with the real command line.

For every page in docs/ and the README:

* each line of a ```bash block that starts with ``provault `` (or ``$ provault``);
* each line of any other fenced block that starts with ``$ provault`` (a
  command shown with its output)

must parse with ``ledger.cli.build_parser()``. Backslash continuations are
joined and shell comments dropped. Placeholders in capitals (``KEYID``,
``FILE``) parse like any other word, so they are fine; ``<key id>`` is not,
because the shell would read it as a redirection.

The pages with their own command tests (ledger.md, auditors.md, agents.md,
operations.md) check more than this; this test makes sure no page is left out.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ledger.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```$", re.S | re.M)


def _commands(path: Path) -> list[str]:
    """The `provault ...` command lines of one page, `$ ` prompts stripped."""
    found: list[str] = []
    for m in _FENCE.finditer(path.read_text(encoding="utf-8")):
        for raw in m["body"].replace("\\\n", " ").splitlines():
            line = raw.strip()
            if line.startswith("$ provault "):
                found.append(line[2:])
            elif m["lang"] == "bash" and line.startswith("provault "):
                found.append(line)
    return found


CASES = [(p.relative_to(ROOT).as_posix(), line) for p in PAGES for line in _commands(p)]


def test_the_docs_show_commands() -> None:
    pages = {page for page, _ in CASES}
    assert {"docs/ledger.md", "docs/auditors.md", "docs/agents.md"} <= pages
    assert len(CASES) >= 30


@pytest.mark.parametrize(("page", "line"), CASES, ids=[f"{p}:{i}" for i, (p, _) in enumerate(CASES)])
def test_doc_command_parses(page: str, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = shlex.split(line, comments=True)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on an unknown command or option, or a missing argument
        if e.code == 0:  # --help / --version: shown on purpose
            return
        pytest.fail(f"{page}: `{line}` does not parse with the CLI: {capsys.readouterr().err.strip()}")
    assert callable(getattr(args, "run", None)), f"{page}: `{line}` names no runnable command"
