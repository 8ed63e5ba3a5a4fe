"""Exports of the projected story: every format read back by independent tooling (rdflib, prov)."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime

import psycopg
import pytest
from prov.model import ProvDocument
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic

from ledger.cli import main
from ledger.core.errors import InvalidArgument
from ledger.core.provjson import validate_prov
from ledger.db import connect
from query import projector
from query.export import (
    CONTENT_TYPES,
    ExportEdge,
    ExportNode,
    ExportPrediction,
    GraphTooLarge,
    export_graph,
    export_stream,
    node_iri,
    nt_line,
    prov_json_document,
    prov_json_from_rows,
    rdflib_triple,
    triples,
    turtle_text,
)
from query.projector import migrate_prov, project
from tests.ledgerkit import Ledger
from tests.query.provstory import Story

PROV = Namespace("http://www.w3.org/ns/prov#")
PV = Namespace("https://provault.dev/ns#")
RDF = Namespace("http://www.w3.org/1999/02/22-rdf-syntax-ns#")
RDFS = Namespace("http://www.w3.org/2000/01/rdf-schema#")
XSD = Namespace("http://www.w3.org/2001/XMLSchema#")
RDF_FORMATS = {"turtle": "turtle", "jsonld": "json-ld", "ntriples": "nt"}


@pytest.fixture
def story(ledger: Ledger, logged_story: Story) -> Story:
    """The story's keys (seqs 0-2) and six events (3-8), projected."""
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        assert project(c) == 9
    return logged_story


def export(conn: psycopg.Connection, fmt: str, **kw) -> bytes:
    return b"".join(export_stream(conn, fmt=fmt, **kw))


def u(node_id: str) -> URIRef:
    return URIRef(node_iri(node_id))


# --- names and values the story does not use (pure) ------------------------------------------------

ACME = "https://ml.acme.example/"
ODD_ROWS = [
    ExportNode("<sha256:not-a-digest>", "entity", {}),
    ExportNode(ACME + "data#set", "entity", {"prov:type": "prov:Collection"}),
    ExportNode(
        ACME + "runs/7",
        "activity",
        {
            "prov:startTime": "2025-01-01T00:00:00Z",
            ACME + "owner": "team a",
            "prov:type": {"$": "acme:Training", "type": "prov:QUALIFIED_NAME"},
            "provault:cost": {"$": "12.5", "type": "acme:Money"},
            "prov:label": [{"$": "Lauf", "lang": "de"}, "run"],
        },
    ),
    ExportNode("provault:influencer", None, {}),
    ExportNode(
        "sha256:" + "aa" * 32,
        "entity",
        {
            "prov:startTime": "2025-01-01T00:00:00Z",
            "provault:n": 3,
            "provault:ok": True,
            "provault:ratio": 0.25,
            "provault:note": 'a "quote", a \\ and a\nnew line',
            "provault:size": {"$": "7", "type": "xsd:long"},
        },
    ),
    ExportEdge(
        3,
        0,
        "wasGeneratedBy",
        "sha256:" + "aa" * 32,
        ACME + "runs/7",
        "prov",
        {"prov:time": "2025-01-02T00:00:00Z"},
        None,
        None,
    ),
    ExportEdge(
        3,
        1,
        "wasDerivedFrom",
        "sha256:" + "aa" * 32,
        "<sha256:not-a-digest>",
        "prov",
        {"prov:activity": ACME + "runs/7", "prov:generation": ACME + "g", "prov:type": "prov:Revision"},
        0,
        None,
    ),
    ExportEdge(3, 2, "hadMember", ACME + "data#set", "sha256:" + "aa" * 32, "prov", {}, None, None),
    ExportEdge(
        4, 0, "wasInfluencedBy", ACME + "runs/7", "provault:influencer", "key", {"provault:seq": 99}, None, None
    ),
    ExportPrediction(
        "provault:prediction/x%20y", 4, ACME + "runs/7", datetime(2025, 1, 3, tzinfo=UTC), {"a": [1, 2]}, 0.5, True
    ),
    ExportPrediction(
        "provault:prediction/x%20y", 5, ACME + "runs/7", datetime(2025, 1, 4, tzinfo=UTC), None, "late", False
    ),
]


def test_foreign_names_and_odd_values_export_validly() -> None:
    doc = prov_json_from_rows(ODD_ROWS)
    validate_prov(doc)
    read = ProvDocument.deserialize(content=json.dumps(doc), format="json")
    assert len(list(read.get_records())) == 5 + 4 + 2 - 1  # the None-typed node is only referred to
    prefixes = doc["prefix"]
    run = doc["activity"][next(q for q in doc["activity"] if prefixes[q.split(":")[0]] == ACME + "runs/")]
    assert run["prov:type"] == "acme:Training" and run[next(k for k in run if k.endswith(":cost"))] == "12.5"
    assert "prov:startTime" not in doc["entity"]["sha256:" + "aa" * 32]  # not an entity attribute
    derivation = doc["wasDerivedFrom"]["provault:edge/3/1"]
    assert derivation["prov:generation"] == "provault:edge/3/0" and derivation["provault:seq"] == 3
    assert doc["wasInfluencedBy"]["provault:edge/4/0"]["provault:seq"] == 4
    assert doc["entity"]["provault:prediction/x%20y"]["provault:output"] == "late"  # the later row wins
    assert list(doc["wasGeneratedBy"]) == ["provault:edge/3/0", "provault:generation/4/x%20y"]

    expected = Graph()
    for t in triples(ODD_ROWS):
        expected.add(rdflib_triple(t))
    nt = "".join(nt_line(t) for t in triples(ODD_ROWS))
    g = Graph().parse(data=nt, format="nt")
    assert set(g) == set(expected)
    assert set(Graph().parse(data="".join(turtle_text(triples(ODD_ROWS))), format="turtle")) == set(expected)
    assert g.value(URIRef(node_iri("sha256:" + "aa" * 32)), PV.note).value == 'a "quote", a \\ and a\nnew line'
    member = URIRef(PV + "edge/3/2")
    assert (member, RDF.type, RDF.Statement) in g and g.value(member, RDF.subject) == URIRef(ACME + "data#set")
    assert (URIRef(ACME + "runs/7"), RDFS.label, Literal("Lauf", lang="de")) in g
    assert (URIRef(ACME + "runs/7"), PROV.type, Literal("acme:Training")) in g
    assert g.value(URIRef(PV + "edge/3/1"), PROV.hadGeneration) == URIRef(PV + "edge/3/0")
    assert set(g.objects(URIRef(PV + "edge/4/0"), PV.seq)) == {Literal(4)}
    assert (URIRef("sha256:not-a-digest"), RDF.type, PROV.Entity) in g
    assert g.value(URIRef(PV + "prediction/x%20y"), PV.input) == Literal('{"a":[1,2]}')


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")  # rdflib's own JSON-LD parser
def test_rdf_exports_read_back_with_rdflib_as_the_same_graph_in_chunks(story: Story, aconn) -> None:
    expected = export_graph(aconn)
    assert len(expected) > 100
    for fmt, parser in RDF_FORMATS.items():
        g = Graph().parse(data=export(aconn, fmt), format=parser)
        assert len(g) == len(expected), fmt
        assert isomorphic(g, expected), fmt
    assert not any(isinstance(t, Literal) and t.datatype == XSD.string for t in expected.objects())
    chunks = list(export_stream(aconn, fmt="turtle", chunk_bytes=1000))
    assert len(chunks) > 3 and all(len(c) == 1000 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 1000
    assert b"".join(chunks) == export(aconn, "turtle")
    assert set(CONTENT_TYPES) == {"turtle", "jsonld", "provjson", "ntriples"}


@pytest.mark.postgres
def test_prov_o_says_who_did_what_with_the_ledger_seqs(story: Story, aconn) -> None:
    i = story.ids
    g = export_graph(aconn)
    dataset, model, run = u(i.dataset), u(i.model), u(i.run)
    assert str(dataset) == "urn:provault:sha256:" + "11" * 32
    assert {PROV.Entity, PV.Dataset} <= set(g.objects(dataset, RDF.type))
    assert g.value(dataset, RDFS.label) == Literal("reviews v1")
    assert g.value(dataset, PV.uri) == Literal("s3://data/reviews.csv")
    assert (run, RDF.type, PROV.Activity) in g and (u(i.author), RDF.type, PROV.Person) in g
    assert g.value(run, PROV.startedAtTime) == Literal("2025-03-02T09:02:00Z", datatype=XSD.dateTime)
    assert (run, PROV.used, dataset) in g and (model, PROV.wasDerivedFrom, dataset) in g
    # every edge carries its seq on a qualified influence: the model's two generations are seqs 5 and 6
    generations = {
        (g.value(q, PROV.activity), g.value(q, PV.seq).toPython()) for q in g.objects(model, PROV.qualifiedGeneration)
    }
    assert generations == {(run, 5), (run, 6)}
    usage = g.value(run, PROV.qualifiedUsage, any=True)
    assert (usage, RDF.type, PROV.Usage) in g
    derivation = next(g.objects(model, PROV.qualifiedDerivation))
    assert g.value(derivation, PROV.hadActivity) == run and g.value(derivation, PV.seq).toPython() == 5
    approval = [q for q in g.objects(u(i.deploy), PROV.qualifiedAssociation) if g.value(q, PROV.agent) == u(i.approver)]
    assert g.value(approval[0], PROV.hadRole) == PV.approver
    prediction = u("provault:prediction/req-2")
    assert (prediction, RDF.type, PV.Prediction) in g and (prediction, PROV.wasGeneratedBy, u(i.batch)) in g
    assert g.value(prediction, PV.output) == Literal("neg")
    gen = g.value(prediction, PROV.qualifiedGeneration)
    assert g.value(gen, PV.seq).toPython() == 8 and g.value(gen, PROV.atTime) is not None
    key_edge = next(g.subjects(PV.origin, Literal("key")))
    assert (key_edge, RDF.type, PROV.Attribution) in g


@pytest.mark.postgres
def test_prov_json_is_valid_and_reads_with_the_prov_package(story: Story, aconn) -> None:
    data = export(aconn, "provjson", chunk_bytes=100)
    doc = json.loads(data)
    validate_prov(doc)
    i = story.ids
    assert doc["entity"][i.dataset]["prov:type"] == "provault:Dataset"
    assert doc["activity"][i.run]["prov:endTime"] == "2025-03-02T09:30:00Z"
    derived = [r for r in doc["wasDerivedFrom"].values() if r["prov:generatedEntity"] == i.model]
    assert derived == [
        {"prov:generatedEntity": i.model, "prov:usedEntity": i.dataset, "prov:activity": i.run, "provault:seq": 5}
    ]
    assert doc["wasGeneratedBy"]["provault:generation/8/req-1"]["prov:activity"] == i.batch
    read = ProvDocument.deserialize(content=data.decode(), format="json")
    relations = [r for r in read.get_records() if r.is_relation()]
    assert len(relations) == sum(len(doc[s]) for s in doc if s not in ("prefix", "entity", "activity", "agent"))
    assert read.get_record(i.model)
    assert "wasDerivedFrom(" in read.get_provn()


@pytest.mark.postgres
def test_as_of_export_is_the_graph_as_it_stood(story: Story, aconn) -> None:
    i = story.ids
    g = export_graph(aconn, as_of_seq=5)  # after run.completed, before model.registered
    subjects = set(g.subjects())
    assert u(i.model) in subjects and u(i.deployment) not in subjects and u(i.batch) not in subjects
    assert g.value(u(i.model), RDFS.label) is None  # the label came with seq 6
    assert g.value(u(i.run), PROV.endedAtTime) is not None
    assert not list(g.subjects(RDF.type, PV.Prediction))
    assert max(v.toPython() for v in g.objects(None, PV.seq)) == 5
    at_4 = export_graph(aconn, as_of_seq=4)
    assert g.value(u(i.run), PROV.endedAtTime) and at_4.value(u(i.run), PROV.endedAtTime) is None
    doc = prov_json_document(aconn, as_of_seq=4)
    validate_prov(doc)
    assert set(doc["activity"][i.run]) == {"prov:startTime", "provault:name"}
    assert i.model not in doc.get("entity", {})
    assert set(export_graph(aconn, as_of_seq=8)) == set(export_graph(aconn))


@pytest.mark.postgres
def test_a_subgraph_has_its_nodes_and_the_edges_among_them_and_limits_hold(story: Story, aconn) -> None:
    i = story.ids
    ids = [i.model, i.run, i.dataset, "provault:prediction/req-1", "no:such-node"]
    g = export_graph(aconn, node_ids=ids)
    nodes = {u(n) for n in (i.model, i.run, i.dataset, "provault:prediction/req-1")}
    assert set(g.subjects(RDF.type, PROV.Entity)) | set(g.subjects(RDF.type, PROV.Activity)) == nodes
    assert (u(i.model), PROV.wasDerivedFrom, u(i.dataset)) in g and (u(i.run), PROV.used, u(i.dataset)) in g
    assert not list(g.objects(None, PROV.wasAssociatedWith)) and not list(g.objects(None, PROV.wasAttributedTo))
    assert not list(g.objects(u("provault:prediction/req-1"), PROV.wasGeneratedBy))  # its batch is not in the set
    doc = prov_json_document(aconn, node_ids=ids)
    validate_prov(doc)
    assert set(doc) == {"prefix", "entity", "activity", "used", "wasGeneratedBy", "wasDerivedFrom"}
    assert len(export_graph(aconn, node_ids=[])) == 0
    with pytest.raises(InvalidArgument, match="format"):
        export_stream(aconn, fmt="rdfxml")
    with pytest.raises(InvalidArgument, match="as_of_seq"):
        export_stream(aconn, fmt="turtle", as_of_seq=-1)
    with pytest.raises(GraphTooLarge, match="N-Triples"):
        export_graph(aconn, max_triples=10)
    with pytest.raises(GraphTooLarge, match="N-Triples"):
        prov_json_document(aconn, max_statements=10)


# --- a large generated projection ---------------------------------------------------------------

N_NODES, N_EDGES = 5_000, 20_000
GENERATE = [
    "INSERT INTO prov.entries (seq, event_id, kind, keyid, producer_id, producer_seq, event_time, received_at)"
    " SELECT s, gen_random_uuid(), 'run.started', 'k', 'p', s, now(), now() FROM generate_series(0, 9) s",
    "INSERT INTO prov.nodes (id, iri, node_type, attributes, first_seq, last_seq)"
    " SELECT 'provault:n/' || i, 'https://provault.dev/ns#n/' || i, 'entity',"
    "  jsonb_build_object('prov:label', 'node number ' || i, 'provault:size', i), 0, 0"
    " FROM generate_series(0, %(nodes)s - 1) i",
    "INSERT INTO prov.edges (seq, ordinal, relation, src, dst, stmt_id, origin, attributes)"
    " SELECT 1 + i %% 9, i, 'wasDerivedFrom', 'provault:n/' || i %% %(nodes)s,"
    "  'provault:n/' || ((i * 7 + 1) %% %(nodes)s), '_:d', 'prov', '{}' FROM generate_series(0, %(edges)s - 1) i",
    "UPDATE prov.position SET last_seq = 9",
]


@pytest.fixture
def big(ledger: Ledger) -> int:
    """A projection of 5k nodes and 20k edges written straight into the tables; returns its triple count."""
    migrate_prov(ledger.dsn)
    with psycopg.connect(ledger.dsn, autocommit=True) as c:
        for statement in GENERATE:
            c.execute(statement, {"nodes": N_NODES, "edges": N_EDGES})
    return N_NODES * 3 + N_EDGES * 5  # node: type, label, size; edge: unqualified, 3 qualified, seq


@pytest.mark.postgres
def test_ntriples_streams_a_large_graph_in_bounded_memory(big: int, aconn) -> None:
    tracemalloc.start()
    try:
        lines = total = 0
        head = b""
        for chunk in export_stream(aconn, fmt="ntriples"):
            lines += chunk.count(b"\n")
            total += len(chunk)
            head = head or chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == big
    # The whole graph in rdflib would take hundreds of MB; the stream holds a cursor fetch and a chunk.
    assert total > 10_000_000 and peak < total / 3, (peak, total)
    sample = head[: head.rindex(b"\n") + 1]
    assert len(Graph().parse(data=sample, format="nt")) == sample.count(b"\n")


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_provault_export_writes_each_format(story: Story, ledger: Ledger, tmp_path, monkeypatch, capsysbinary) -> None:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", ledger.dsn)
    out = tmp_path / "graph.nt"
    base = ["--data-dir", str(tmp_path / "state")]
    assert main(["export", "--format", "ntriples", "--out", str(out), *base]) == 0
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as c:
        assert isomorphic(Graph().parse(out, format="nt"), export_graph(c))
    assert main(["export", "--format", "provjson", "--as-of", "5", "--node", story.ids.model, *base]) == 0
    doc = json.loads(capsysbinary.readouterr().out)
    assert list(doc["entity"]) == [story.ids.model]
    assert main(["export", "--as-of", "99", *base]) == 1
    assert "only reached seq 8" in capsysbinary.readouterr().err.decode()
