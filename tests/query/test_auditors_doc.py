"""docs/auditors.md runs: its commands parse with the real CLI, its SPARQL answers on a real ledger."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from ledger.cli import build_parser
from ledger.db import connect
from query import projector
from tests.ledgerkit import Ledger
from tests.query.provstory import build_story

DOC = Path(__file__).resolve().parents[2] / "docs" / "auditors.md"
_BLOCK = re.compile(r"^```(bash|sparql)\n(.*?)^```$", re.S | re.M)
COMMANDS_SHOWN = {"checkpoint", "verify", "bundle", "verify-bundle", "report", "verify-report", "sparql", "export"}


def blocks(kind: str) -> list[str]:
    return [body for k, body in _BLOCK.findall(DOC.read_text(encoding="utf-8")) if k == kind]


def command_lines() -> list[str]:
    """Every line of the ```bash blocks (backslash continuations joined, comments dropped)."""
    lines = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip())
    return lines


def subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_provault_command_in_the_doc_parses_with_the_cli() -> None:
    lines = command_lines()
    assert lines and all(line.startswith("provault ") for line in lines), (
        "```bash blocks hold only `provault ...` lines"
    )
    known = subcommands()
    shown = set()
    for line in lines:
        argv = shlex.split(line)[1:]
        if argv[0] not in known:
            pytest.fail(f"docs/auditors.md: `{line}` uses the subcommand {argv[0]!r}, which `provault` does not have")
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # argparse exits on an unknown option or a missing argument
            pytest.fail(f"docs/auditors.md: `{line}` does not parse with `provault {argv[0]}` (exit {e.code})")
        assert callable(getattr(args, "run", None)), line
        shown.add(argv[0])
    assert COMMANDS_SHOWN <= shown, f"no example of: {sorted(COMMANDS_SHOWN - shown)}"


@pytest.mark.postgres
def test_the_sparql_examples_answer_on_the_story(ledger: Ledger) -> None:
    from query.sparql import run_sparql  # noqa: PLC0415 - rdflib loads only for this test

    projector.migrate_prov(ledger.dsn)
    s = build_story()
    regs = [
        ledger.registration(c.signer, name=n)
        for c, n in ((s.trainer, "alice"), (s.deployer, "bob"), (s.server, "serving"))
    ]
    ledger.append(*regs, *s.events)
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        projector.project(c)
    queries = blocks("sparql")
    assert len(queries) >= 3
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as conn:
        answers = [run_sparql(conn, q) for q in queries]
    for q, a in zip(queries, answers, strict=True):
        assert a.boolean is True or (a.rows and all(row[0] is not None for row in a.rows)), f"no answer to:\n{q}"
    datasets, deployments, predictions = (a.rows for a in answers[:3])
    assert [(r[1].value, r[2].value) for r in datasets] == [("reviews v1", "5")]
    assert {r[3].value for r in deployments if r[3] is not None} == {"https://provault.dev/ns#approver"}
    assert [r[2].value for r in predictions] == ["pos", "neg", "pos"]
