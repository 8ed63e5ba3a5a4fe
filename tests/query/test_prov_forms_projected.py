"""PROV-JSON's other value and statement forms, through the ledger, the projection and the exports.

A language-tagged string keeps its language whichever way it was written
(``{"$", "lang"}`` or ProvToolbox's ``{"$", "type": "prov:InternationalizedString",
"lang"}``); several statements sharing an id merge their attributes on the node
(PROV's reading) and each relation statement stays an edge.
"""

from __future__ import annotations

import json

import pytest
from rdflib import Graph, Literal, Namespace, URIRef

from ledger.core.admission import Accepted
from ledger.core.vocab import PROVAULT_NS
from ledger.db import connect
from query import projector
from query._mapping import map_event
from query.export import export_stream
from query.projector import migrate_prov, project
from tests.ledgerkit import Ledger

ACME = "https://ml.acme.example/"
PROV = Namespace("http://www.w3.org/ns/prov#")
RDFS = Namespace("http://www.w3.org/2000/01/rdf-schema#")
DOC = {
    "prefix": {"acme": ACME, "pv": PROVAULT_NS},
    "entity": {
        "acme:data/1": [
            {
                "prov:label": [
                    "reviews",
                    {"$": "Rezensionen", "type": "prov:InternationalizedString", "lang": "de"},
                ],
                "acme:owner": {"$": "ml-team"},
            },
            {"prov:label": {"$": "avis", "lang": "fr"}, "acme:rows": 1200},
            {"prov:label": "reviews", "acme:note": {"$": "kept", "type": "prov:InternationalizedString"}},
        ],
        "acme:data/0": {},
    },
    "activity": {"acme:run/1": {}},
    "used": {
        "acme:u": [
            {"prov:activity": "acme:run/1", "prov:entity": "acme:data/1"},
            {"prov:activity": "acme:run/1", "prov:entity": "acme:data/0", "prov:role": "acme:baseline"},
        ]
    },
}
DATA = "https://ml.acme.example/data/1"
LABELS = ["reviews", {"$": "Rezensionen", "lang": "de"}, {"$": "avis", "lang": "fr"}]


def test_the_projection_keeps_one_spelling_and_merges_statements_that_share_an_id(ledger: Ledger) -> None:
    chain, _ = ledger.producer_with_key()
    rows = map_event(chain.emit("dataset.registered", DOC).event, 7)
    node = {n.id: n for n in rows.nodes}[DATA]
    assert dict(node.attributes) == {
        "prov:label": LABELS,
        ACME + "owner": "ml-team",
        ACME + "rows": 1200,
        ACME + "note": "kept",
    }
    assert [(e.relation, e.dst, e.stmt_id) for e in rows.edges] == [
        ("used", DATA, ACME + "u"),
        ("used", ACME + "data/0", ACME + "u"),
    ]
    assert dict(rows.edges[1].attributes) == {"prov:role": "acme:baseline"}


@pytest.mark.postgres
def test_logged_projected_and_exported_with_their_languages(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    plan = ledger.append(reg, chain.emit("dataset.registered", DOC))
    assert [type(o) for o in plan.outcomes] == [Accepted, Accepted]
    migrate_prov(ledger.dsn)
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        assert project(c) == 2  # the key registration and the event
    with connect(ledger.dsn, autocommit=True) as c:
        turtle = b"".join(export_stream(c, fmt="turtle")).decode()
        provjson = json.loads(b"".join(export_stream(c, fmt="provjson")))
    g = Graph().parse(data=turtle, format="turtle")
    assert set(g.objects(URIRef(DATA), RDFS.label)) == {
        Literal("reviews"),
        Literal("Rezensionen", lang="de"),
        Literal("avis", lang="fr"),
    }
    assert len(set(g.subjects(PROV.entity, None)) & set(g.subjects(None, PROV.Usage))) == 2
    prefixes = provjson["prefix"]
    entity = next(v for k, v in provjson["entity"].items() if prefixes[k.split(":")[0]] + k.split(":")[1] == DATA)
    assert entity["prov:label"] == LABELS
