"""docs/security.md's bad-input table cannot point at nothing.

Every row names at least one test as ``tests/<path>.py::<test>`` (optionally
``[<parameter id>]``); each must be a test function of an importable module,
and a parameter id must be one of that test's ids.  In the other direction,
every test of the bad-input modules is named by the table, every rejection
reason the ledger gives appears in it, and every defect it cites is
described under "Known defects".
"""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
COLUMNS = ("#", "bad input", "caught where", "outcome", "recorded", "accepted entries", "proven by")
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[([\w.-]+)\])?`")
BAD_INPUT_MODULES = (
    "tests/security/test_bad_inputs.py",
    "tests/security/test_bad_queries.py",
    "tests/security/test_fixed_defects.py",
    "tests/security/test_nats_auth.py",
)
LEDGER_REASONS = (
    "malformed_envelope",
    "unsupported_payload_type",
    "unknown_key",
    "bad_signature",
    "invalid_event",
    "invalid_prov",
    "clock_skew",
    "envelope_too_large",
    "event_id_conflict",
    "key_revoked",
    "key_not_permitted",
    "producer_chain_broken",
    "wrong_subject",
)
"""Every reason docs/events.md lists that the ledger produces today (cannot_verify it does not)."""


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    assert f"\n## {title}\n" in text, f"docs/security.md has no '## {title}' section"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


@cache
def table() -> tuple[dict[str, str], ...]:
    lines = [ln for ln in _section("Bad inputs").splitlines() if ln.startswith("|")]
    assert len(lines) > 2, "no table under '## Bad inputs'"
    header = tuple(_cells(lines[0]))
    assert header == COLUMNS, f"columns are {header}, expected {COLUMNS}"
    assert set(lines[1]) <= set("|-: "), "the second line must be the header rule"
    rows = []
    for ln in lines[2:]:
        cells = _cells(ln)
        assert len(cells) == len(COLUMNS), f"row has {len(cells)} cells, expected {len(COLUMNS)}: {ln[:80]}"
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return tuple(rows)


def _module(path: str):
    assert (ROOT / path).is_file(), f"{path} does not exist"
    return importlib.import_module(path.removesuffix(".py").replace("/", "."))


def _param_ids(fn) -> set[str]:
    ids: set[str] = set()
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        values = mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("argvalues", ())
        given = mark.kwargs.get("ids")
        if given is not None and not callable(given):
            ids.update(str(i) for i in given)
        for v in values:
            if getattr(v, "id", None):
                ids.add(v.id)
            elif isinstance(v, (str, int)):
                ids.add(str(v))
    return ids


def test_the_table_has_its_columns_and_numbered_rows() -> None:
    rows = table()
    assert [r["#"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert len(rows) >= 40
    for r in rows:
        empty = [c for c in COLUMNS if not r[c]]
        assert not empty, f"row {r['#']} ({r['bad input'][:40]}) has empty cells: {empty}"


@pytest.mark.parametrize("row", range(len(table())), ids=lambda i: f"row-{i + 1}")
def test_every_row_names_tests_that_exist(row: int) -> None:
    r = table()[row]
    refs = REF.findall(r["proven by"])
    assert refs, f"row {r['#']} names no test as `tests/<file>.py::<test>`"
    for path, name, param in refs:
        fn = getattr(_module(path), name, None)
        assert fn is not None and inspect.isfunction(fn) and name.startswith("test_"), (
            f"row {r['#']}: {path}::{name} is not a test"
        )
        if param:
            assert param in _param_ids(fn), f"row {r['#']}: {path}::{name} has no parameter id {param!r}"


def test_every_bad_input_test_is_in_the_table() -> None:
    named = {(p, n) for r in table() for p, n, _ in REF.findall(r["proven by"])}
    for path in BAD_INPUT_MODULES:
        tests = {n for n, f in inspect.getmembers(_module(path), inspect.isfunction) if n.startswith("test_")}
        missing = sorted(t for t in tests if (path, t) not in named)
        assert not missing, f"{path} has tests the table does not name: {missing}"


def test_every_parameter_of_the_append_cases_is_in_the_table() -> None:
    from tests.security.test_bad_inputs import APPEND_CASES  # noqa: PLC0415

    named = {param for r in table() for _, _, param in REF.findall(r["proven by"]) if param}
    assert sorted(set(APPEND_CASES) - named) == []


def test_every_rejection_reason_of_the_ledger_is_in_the_table() -> None:
    outcomes = " ".join(r["outcome"] for r in table())
    assert [reason for reason in LEDGER_REASONS if f"`{reason}`" not in outcomes] == []


def test_every_defect_the_table_cites_is_described() -> None:
    cited = {d for r in table() for d in re.findall(r"\bD\d+\b", " ".join(r.values()))}
    described = set(re.findall(r"^\*\*(D\d+)\. ", _section("Known defects"), re.M))
    assert cited and cited <= described, f"cited but not described: {sorted(cited - described)}"
    assert described <= cited | set(re.findall(r"\bD\d+\b", _section("Bad inputs"))), "a defect no row cites"
