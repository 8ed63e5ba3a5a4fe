"""``provault trace`` and ``provault impact`` in-process, against a real projection of the worked lineage."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.cli import main
from tests.ledgerkit import Ledger, dataset_prov
from tests.query.test_traverse import Lineage, build_lineage, shared_lineage

pytestmark = pytest.mark.postgres

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def li(pg_admin_dsn: str) -> Iterator[Lineage]:
    with shared_lineage(pg_admin_dsn) as lineage:
        yield lineage


@pytest.fixture
def cli(li: Lineage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", li.ledger.dsn)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_trace_table_names_every_step_and_signer(cli, li: Lineage) -> None:
    code, out, _ = cli("trace", "req-2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "projected up to seq 13 of 13 (caught up)"
    assert lines[1].startswith("upstream trace from provault:prediction/req-2 as of seq 13: 15 nodes")
    for section in ("ENTITIES (", "ACTIVITIES (", "AGENTS (", "EDGES (", "SIGNED BY (4 keys)"):
        assert any(line.startswith(section) for line in lines), section
    assert "sha256:b2b2b2b2b2b2…" in out and "b2" * 32 not in out  # digests shortened
    assert "sentiment-prod" in out and "serving (" in out and "dave@example.com" in out and "(root key)" in out


def test_trace_json_dot_and_svg(cli, li: Lineage, tmp_path: Path) -> None:
    code, out, _ = cli("trace", li.ds2, "--down", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["projection"] == {"projected_seq": 13, "log_size": 14}
    assert doc["predictions"]["ids"] == li.prediction_ids() and doc["direction"] == "downstream"
    assert {n["id"] for n in doc["nodes"]} == {li.ds2, li.run2, li.model2, li.deploy, li.deployment, li.batch}

    code, out, err = cli("trace", li.model2, "--format", "dot")
    assert code == 0 and out.startswith("digraph provenance {") and "projected up to seq 13" in err
    assert f'"{li.model2}" -> "{li.run2}"' in out and "shape=house" in out

    svg = tmp_path / "trace.svg"
    code, out, _ = cli("trace", "req-1", "--format", "svg", "--out", str(svg))
    assert code == 0 and out == ""
    root = ET.fromstring(svg.read_text(encoding="utf-8"))
    assert root.tag == f"{SVG}svg"
    shapes = {tag: len(root.findall(f".//{SVG}{tag}")) for tag in ("ellipse", "rect", "polygon")}
    assert shapes == {"ellipse": 7, "polygon": 5, "rect": 3 + 1}  # entities, agents, activities (+ the background)
    assert len(root.findall(f".//{SVG}path")) >= 15


def test_trace_options(cli, li: Lineage) -> None:
    code, out, _ = cli("trace", li.model2, "--relation", "wasGeneratedBy", "--json")
    assert {n["id"] for n in json.loads(out)["nodes"]} == {li.model2, li.run2}
    code, out, _ = cli("trace", li.ds2, "--down", "--as-of", "11", "--json")
    assert json.loads(out)["as_of_seq"] == 11 and json.loads(out)["predictions"]["total"] == 0
    code, out, _ = cli("trace", "req-2", "--depth", "1", "--json")
    assert json.loads(out)["truncated"] and len(json.loads(out)["nodes"]) == 2
    now = datetime.now(UTC).isoformat()
    code, out, _ = cli("trace", "req-2", "--max-nodes", "2", "--as-of", now, "--json")
    assert json.loads(out)["as_of_seq"] == 13 and len(json.loads(out)["nodes"]) == 2


def test_impact_summarises_and_pages_predictions(cli, li: Lineage) -> None:
    code, out, _ = cli("impact", li.ds2, "--limit", "2")
    assert code == 0
    assert "models affected: 1" in out and "deployments affected: 1" in out and "runs affected: 1" in out
    assert "predictions affected: 3 (listing 2)" in out and "more: add --after provault:prediction/req-2" in out
    code, out, _ = cli("impact", li.ds2, "--after", "provault:prediction/req-2", "--json")
    doc = json.loads(out)
    assert doc["predictions"] == {"total": 3, "ids": ["provault:prediction/req-3"], "next_after": None}
    assert [m["id"] for m in doc["models"]] == [li.model2] and [d["id"] for d in doc["deployments"]] == [li.deployment]
    code, out, _ = cli("impact", li.ds1)
    assert "models affected: 1" in out and "deployments affected: 0" in out and "predictions affected: 0" in out
    code, out, _ = cli("impact", li.server.signer.keyid)
    assert "predictions affected: 3" in out


def test_errors_exit_1_and_bad_options_exit_2(cli) -> None:
    code, _, err = cli("trace", "provault:run/none")
    assert code == 1 and "provault:run/none" in err and "[not_found]" in err
    code, _, err = cli("trace", "req-1", "--as-of", "99")
    assert code == 1 and "seq 99" in err
    for argv in (
        ["trace", "req-1", "--format", "png"],
        ["trace", "req-1", "--as-of", "yesterday"],
        ["impact", "req-1", "--format", "dot"],
        ["trace", "req-1", "--relation", "caused"],
    ):
        with pytest.raises(SystemExit) as info:
            cli(*argv)
        assert info.value.code == 2


def test_the_header_says_how_far_the_projection_got(ledger: Ledger, monkeypatch, capsys) -> None:
    li = build_lineage(ledger)
    li.ledger.append(li.trainer1.emit("dataset.registered", dataset_prov("cd" * 32)))  # logged, not projected
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", ledger.dsn)
    assert main(["trace", li.ds1]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "projected up to seq 13 of 14 (1 newer entries not projected yet)"
