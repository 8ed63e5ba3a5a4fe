"""Read-only SPARQL over the projected story: answers, refusals, row and time limits, the CLI."""

from __future__ import annotations

import json
import time

import pytest

from ledger.cli import main
from ledger.core.errors import InvalidArgument
from ledger.db import connect
from query import projector
from query.export import GraphTooLarge, node_iri
from query.projector import project
from query.sparql import QueryTimeout, RdfValue, check_query, run_sparql
from tests.ledgerkit import Ledger
from tests.query.provstory import Story

XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
DATASETS_BEHIND = """
SELECT ?dataset ?label WHERE {
    <%s> prov:wasGeneratedBy ?run .
    ?run prov:used ?dataset .
    ?dataset a provault:Dataset ; rdfs:label ?label .
}"""
UPDATES = {
    "INSERT DATA": "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
    "DELETE DATA": "DELETE DATA { <urn:a> <urn:b> <urn:c> }",
    "DELETE WHERE": "DELETE WHERE { ?s ?p ?o }",
    "DELETE/INSERT": "DELETE { ?s ?p ?o } INSERT { ?s ?p 1 } WHERE { ?s ?p ?o }",
    "INSERT": "INSERT { ?s <urn:x> 1 } WHERE { ?s ?p ?o }",
    "LOAD": "LOAD <http://example.org/graph.ttl>",
    "CLEAR": "CLEAR ALL",
    "DROP": "DROP GRAPH <urn:g>",
    "CREATE": "CREATE GRAPH <urn:g>",
    "ADD": "ADD <urn:g> TO <urn:h>",
    "MOVE": "MOVE DEFAULT TO <urn:g>",
    "COPY": "COPY <urn:g> TO DEFAULT",
}


# --- refusals: decided by parsing, before any database work -------------------------------------


@pytest.mark.parametrize("form", sorted(UPDATES))
def test_every_update_form_is_refused_by_name(form: str) -> None:
    with pytest.raises(InvalidArgument, match=f"updates are refused: the request is {form}[;,]"):
        check_query(UPDATES[form])
    with pytest.raises(InvalidArgument, match="updates are refused"):
        run_sparql(None, "PREFIX ex: <urn:ex:>\n" + UPDATES[form])  # type: ignore[arg-type] - refused before use


@pytest.mark.parametrize(
    ("query", "refusal"),
    [
        ("SELECT * WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o } }", "SERVICE clauses are refused"),
        (
            "SELECT * WHERE { ?s ?p ?o OPTIONAL { SERVICE SILENT <http://x/> { ?s ?q ?r } } }",
            "SERVICE clauses are refused",
        ),
        ("SELECT * FROM <http://example.org/g.ttl> WHERE { ?s ?p ?o }", "FROM / FROM NAMED are refused"),
        ("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }", "CONSTRUCT queries are refused"),
        ("DESCRIBE <urn:x>", "DESCRIBE queries are refused"),
        ("SELECT ?s WHERE { ?s ?p }", "not valid SPARQL"),
        ("SELECT ?s WHERE { ?s nope:p ?o }", "cannot be prepared"),
        ("", "empty"),
    ],
)
def test_other_forms_and_broken_queries_are_refused(query: str, refusal: str) -> None:
    with pytest.raises(InvalidArgument, match=refusal):
        check_query(query)


def test_select_and_ask_pass_the_check() -> None:
    assert check_query("SELECT ?s WHERE { ?s a prov:Entity }") == "select"
    assert check_query("ASK { ?s prov:used ?o }") == "ask"


# --- against the projected story ------------------------------------------------------------------


@pytest.fixture
def story(ledger: Ledger, logged_story: Story) -> Story:
    """The story's keys (seqs 0-2) and six events (3-8), projected."""
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        assert project(c) == 9
    return logged_story


@pytest.mark.postgres
def test_select_finds_the_datasets_behind_a_model(story: Story, aconn) -> None:
    r = run_sparql(aconn, DATASETS_BEHIND % node_iri(story.ids.model))
    assert r.kind == "select" and r.variables == ("dataset", "label") and not r.truncated
    assert r.rows == (
        (
            RdfValue(type="iri", value=node_iri(story.ids.dataset)),
            RdfValue(type="literal", value="reviews v1", datatype=XSD_STRING),
        ),
    )
    assert r.graph_triples > 100
    seqs = run_sparql(
        aconn, "SELECT ?seq WHERE { ?m prov:qualifiedGeneration ?g . ?g provault:seq ?seq } ORDER BY ?seq"
    )
    assert [row[0].value for row in seqs.rows] == ["5", "6", "7", "8", "8", "8"]
    path = "SELECT DISTINCT ?up WHERE { <%s> (prov:wasDerivedFrom|prov:used)+ ?up }"
    upstream = run_sparql(aconn, path % node_iri(story.ids.deploy))
    assert {row[0].value for row in upstream.rows} == {node_iri(story.ids.model), node_iri(story.ids.dataset)}
    unbound = run_sparql(aconn, "SELECT ?s ?label WHERE { ?s a prov:Activity OPTIONAL { ?s rdfs:label ?label } }")
    assert len(unbound.rows) == 3 and all(row[1] is None for row in unbound.rows)


@pytest.mark.postgres
def test_ask_and_as_of(story: Story, aconn) -> None:
    deployed = "ASK { ?d a provault:Deployment }"
    assert run_sparql(aconn, deployed).boolean is True
    assert run_sparql(aconn, deployed, as_of_seq=6).boolean is False
    scoped = run_sparql(aconn, "SELECT ?s WHERE { ?s a prov:Entity }", node_ids=[story.ids.model, story.ids.dataset])
    assert {row[0].value for row in scoped.rows} == {node_iri(story.ids.model), node_iri(story.ids.dataset)}


@pytest.mark.postgres
def test_row_limit_truncates_and_the_graph_size_is_capped(story: Story, aconn) -> None:
    r = run_sparql(aconn, "SELECT ?s ?p ?o WHERE { ?s ?p ?o }", max_rows=5)
    assert len(r.rows) == 5 and r.truncated
    assert not run_sparql(aconn, "SELECT ?s WHERE { ?s a provault:Model }", max_rows=1).truncated
    with pytest.raises(GraphTooLarge, match="more than 50 triples"):
        run_sparql(aconn, "ASK { ?s ?p ?o }", max_triples=50)
    with pytest.raises(InvalidArgument, match="max_rows"):
        run_sparql(aconn, "ASK { ?s ?p ?o }", max_rows=0)


@pytest.mark.postgres
def test_a_runaway_query_is_stopped_at_the_time_limit(story: Story, aconn) -> None:
    runaway = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }"
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="did not finish within 1.5 s") as e:
        run_sparql(aconn, runaway, timeout_s=1.5)
    assert e.value.reason == "query_timeout"
    assert time.monotonic() - started < 10
    assert run_sparql(aconn, "ASK { ?s ?p ?o }", timeout_s=5).boolean  # the endpoint still answers


@pytest.mark.postgres
def test_provault_sparql_prints_a_table_or_json(story: Story, ledger: Ledger, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", ledger.dsn)
    base = ["--data-dir", str(tmp_path / "state")]
    query_file = tmp_path / "q.rq"
    query_file.write_text(DATASETS_BEHIND % node_iri(story.ids.model))
    assert main(["sparql", f"@{query_file}", *base]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["dataset", "label"]
    assert out[2].split(None, 1) == ["sha256:" + "11" * 32, "reviews v1"] and out[-1] == "(1 row)"
    assert main(["sparql", "SELECT ?s WHERE { ?s ?p ?o }", "--limit", "2", "--json", *base]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["head"]["vars"] == ["s"] and len(doc["results"]["bindings"]) == 2 and doc["truncated"]
    assert doc["results"]["bindings"][0]["s"]["type"] == "uri"
    assert "only the first 2 solutions" in captured.err
    assert main(["sparql", "ASK { ?x a provault:Model }", "--as-of", "5", *base]) == 0
    assert capsys.readouterr().out.strip() == "false"
    assert main(["sparql", "CLEAR ALL", *base]) == 1
    assert "updates are refused" in capsys.readouterr().err
