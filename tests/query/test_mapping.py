"""The pure mapping from one entry to projection rows (no database)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import query._mapping as mapping
from ledger.core.errors import DecodeError
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, KeyRegistration, KeyRevocation
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.core.vocab import PROVAULT_NS
from query._mapping import (
    UnprojectableEntry,
    canonical_id,
    fold_nodes,
    key_node_id,
    map_entry,
    map_event,
)
from tests.query.provstory import Ids, at, build_story, predictions_logged

IDS = Ids()


def edges(rows: mapping.EntryRows) -> list[tuple[str, str, str]]:
    return [(e.relation, e.src, e.dst) for e in rows.edges]


def nodes(rows: mapping.EntryRows) -> dict[str, mapping.NodeRow]:
    return {n.id: n for n in rows.nodes}


def chain() -> ProducerChain:
    return ProducerChain("test@host", Ed25519Signer.generate())


# --- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iri", "expected"),
    [
        (PROVAULT_NS + "run/1", "provault:run/1"),
        ("urn:provault:sha256:" + "ab" * 32, "sha256:" + "ab" * 32),
        ("http://www.w3.org/ns/prov#Person", "prov:Person"),
        ("https://ml.acme.example/runs/7", "https://ml.acme.example/runs/7"),
        ("sha256:not-our-namespace", "<sha256:not-our-namespace>"),
    ],
)
def test_canonical_ids(iri: str, expected: str) -> None:
    assert canonical_id(iri) == expected


def test_a_foreign_prefix_for_a_fixed_namespace_names_the_same_node() -> None:
    sealed = chain().emit(
        "dataset.registered",
        {
            "prefix": {"pv": PROVAULT_NS, "acme": "https://ml.acme.example/"},
            "entity": {"pv:data/1": {"acme:owner": "ml-team"}, "acme:data/2": {}},
        },
    )
    rows = nodes(map_event(sealed.event, 0))
    assert set(rows) == {"provault:data/1", "https://ml.acme.example/data/2"}
    assert rows["provault:data/1"].iri == PROVAULT_NS + "data/1"
    assert dict(rows["provault:data/1"].attributes) == {"https://ml.acme.example/owner": "ml-team"}


# --- the story's kinds --------------------------------------------------------------------


def test_run_started_points_from_the_run_to_what_it_used_and_who_ran_it() -> None:
    s = build_story()
    rows = map_event(s.started.event, 5)
    assert rows.seq == 5 and rows.kind == "run.started"
    assert edges(rows) == [
        ("used", IDS.run, IDS.dataset),
        ("used", IDS.run, IDS.code),
        ("wasAssociatedWith", IDS.run, IDS.author),
        ("wasAssociatedWith", IDS.run, IDS.host),
    ]
    assert [e.ordinal for e in rows.edges] == [0, 1, 2, 3]
    assert {e.stmt_id for e in rows.edges} == {"_:u1", "_:u2", "_:w1", "_:w2"}
    n = nodes(rows)
    assert (
        n[IDS.run].node_type == "activity"
        and n[IDS.author].node_type == "agent"
        and n[IDS.dataset].node_type == "entity"
    )
    assert dict(n[IDS.run].attributes) == {"prov:startTime": "2025-03-02T09:02:00Z", "provault:name": "train sentiment"}


def test_relation_formals_other_than_the_ends_become_edge_attributes() -> None:
    rows = map_event(build_story().completed.event, 1)
    by_relation = {e.relation: e for e in rows.edges}
    assert dict(by_relation["wasGeneratedBy"].attributes) == {"prov:time": "2025-03-02T09:30:00Z"}
    assert dict(by_relation["wasDerivedFrom"].attributes) == {"prov:activity": IDS.run}
    assert edges(rows) == [("wasGeneratedBy", IDS.model, IDS.run), ("wasDerivedFrom", IDS.model, IDS.dataset)]


def test_kind_and_label_come_from_prov_type_and_label() -> None:
    n = nodes(map_event(build_story().model.event, 0))[IDS.model]
    assert (n.kind, n.label) == ("provault:Model", "sentiment")
    assert (
        mapping.node_kind({"prov:type": ["prov:Plan", {"$": "provault:Model", "type": "prov:QUALIFIED_NAME"}]})
        == "provault:Model"
    )
    assert mapping.node_label({"prov:label": {"$": "modèle", "lang": "fr"}}) == "modèle"
    assert mapping.node_kind({}) is None


def test_predictions_become_index_rows_of_the_batch_activity() -> None:
    rows = map_event(build_story().predicted.event, 9)
    assert [p.id for p in rows.predictions] == [f"provault:prediction/req-{n}" for n in (1, 2, 3)]
    assert {p.activity for p in rows.predictions} == {IDS.batch}
    assert rows.predictions[0].time == at(50) and rows.predictions[1].output == "neg"
    assert not any(n.id.startswith("provault:prediction/") for n in rows.nodes)
    assert ("used", IDS.batch, IDS.deployment) in edges(rows)


def test_prediction_ids_already_in_vocabulary_form_are_kept() -> None:
    rows = map_event(
        predictions_logged(chain(), IDS, [["provault:prediction/x", "2025-03-02T10:00:00Z", None, 1]]).event, 0
    )
    assert rows.predictions[0].id == "provault:prediction/x"
    assert rows.predictions[0].input is None and rows.predictions[0].output == 1


@pytest.mark.parametrize(
    ("bad_rows", "message"),
    [
        ([["req-1", "yesterday", "x", "y"]], "time"),
        ([["req-1", "2025-03-02T10:00:00Z", "x"]], "array of 4 values"),
        ([["", "2025-03-02T10:00:00Z", "x", "y"]], "non-empty string"),
        ([["a", "2025-03-02T10:00:00Z", "x", "y"], ["a", "2025-03-02T10:00:01Z", "x", "y"]], "more than once"),
    ],
)
def test_bad_prediction_rows_make_the_entry_unprojectable(bad_rows: list, message: str) -> None:
    with pytest.raises(UnprojectableEntry, match=message):
        map_event(predictions_logged(chain(), IDS, bad_rows).event, 0)


def test_a_prediction_batch_needs_exactly_one_activity() -> None:
    sealed = chain().emit(
        "predictions.logged",
        {"entity": {IDS.model: {}}},
        data={"columns": ["id", "time"], "rows": [["a", "2025-03-02T10:00:00Z"]]},
    )
    with pytest.raises(UnprojectableEntry, match="exactly one"):
        map_event(sealed.event, 0)
    with pytest.raises(UnprojectableEntry, match="no data"):
        map_event(chain().emit("predictions.logged", {"activity": {IDS.batch: {}}}).event, 0)


# --- relations in general ------------------------------------------------------------------


def test_referenced_nodes_get_the_type_their_role_implies() -> None:
    sealed = chain().emit(
        "run.started",
        {
            "wasInformedBy": {"_:i": {"prov:informed": "provault:run/b", "prov:informant": "provault:run/a"}},
            "actedOnBehalfOf": {
                "_:o": {"prov:delegate": "provault:service/ci", "prov:responsible": "provault:person/p"}
            },
            "wasInfluencedBy": {"_:f": {"prov:influencee": "provault:x", "prov:influencer": "provault:y"}},
        },
    )
    rows = map_event(sealed.event, 0)
    types = {n.id: n.node_type for n in rows.nodes}
    assert types == {
        "provault:run/b": "activity",
        "provault:run/a": "activity",
        "provault:service/ci": "agent",
        "provault:person/p": "agent",
        "provault:x": None,
        "provault:y": None,
    }
    assert ("wasInformedBy", "provault:run/b", "provault:run/a") in edges(rows)
    assert ("actedOnBehalfOf", "provault:service/ci", "provault:person/p") in edges(rows)


def test_had_member_gives_one_edge_per_member_and_a_missing_object_no_edge() -> None:
    sealed = chain().emit(
        "dataset.registered",
        {
            "hadMember": {"_:m": {"prov:collection": "provault:set", "prov:entity": ["provault:a", "provault:b"]}},
            "used": {"_:u": {"prov:activity": "provault:run/x"}},
        },
    )
    rows = map_event(sealed.event, 0)
    assert edges(rows) == [("hadMember", "provault:set", "provault:a"), ("hadMember", "provault:set", "provault:b")]
    assert "provault:run/x" in nodes(rows)


# --- keys ---------------------------------------------------------------------------------


def server_key_registration(key: Ed25519Signer) -> KeyRegistration:
    """The registration of a serving producer's key (shared with test_mapping_admitted.py)."""
    return KeyRegistration(
        keyid=key.keyid,
        public_key=key.public_key,
        role="producer",
        identity={"type": "service", "name": "sentiment-server"},
        kinds=("predictions.*",),
        producers=("*",),
    )


def test_key_registration_adds_the_key_attributed_to_its_identity() -> None:
    admin, key = chain(), Ed25519Signer.generate()
    reg = server_key_registration(key)
    rows = map_event(admin.emit(KEY_REGISTERED, {"agent": {"provault:admin": {}}}, data=reg.to_data()).event, 3)
    n = nodes(rows)
    assert n[key_node_id(key.keyid)].kind == "provault:Key"
    assert n[key_node_id(key.keyid)].attributes["provault:kinds"] == ["predictions.*"]
    assert n[IDS.server].node_type == "agent" and n[IDS.server].kind == "prov:SoftwareAgent"
    assert [(e.relation, e.src, e.dst, e.origin) for e in rows.edges] == [
        ("wasAttributedTo", key_node_id(key.keyid), IDS.server, "key")
    ]
    rev = KeyRevocation(keyid=key.keyid, effective_from=at(0), reason="leaked")
    rows = map_event(admin.emit(KEY_REVOKED, {"agent": {"provault:admin": {}}}, data=rev.to_data()).event, 4)
    attrs = nodes(rows)[key_node_id(key.keyid)].attributes
    assert attrs["provault:revocationReason"] == "leaked"
    assert attrs["provault:revokedFrom"] == {"$": "2025-03-02T09:00:00.000000Z", "type": "xsd:dateTime"}


# --- entries ------------------------------------------------------------------------------


def test_map_entry_reads_envelope_bytes_and_checks_the_ledger_row() -> None:
    sealed = build_story().dataset
    assert map_entry(sealed.envelope, 0, event_id=sealed.event_id, kind="dataset.registered") == map_event(
        sealed.event, 0
    )
    with pytest.raises(UnprojectableEntry, match="kind"):
        map_entry(sealed.envelope, 0, event_id=sealed.event_id, kind="run.started")
    with pytest.raises(DecodeError):
        map_entry(b"not an envelope", 0)


def test_folding_nodes_does_not_depend_on_chunk_boundaries() -> None:
    s = build_story()
    entries = [map_event(e.event, seq) for seq, e in enumerate(s.events)]
    whole = fold_nodes(entries)
    first, second = fold_nodes(entries[:2]), fold_nodes(entries[2:])
    for node_id, change in whole.items():
        a, b = first.get(node_id), second.get(node_id)
        merged = {**(a.attributes if a else {}), **(b.attributes if b else {})}
        assert change.attributes == merged
        assert change.first_seq == (a or b).first_seq and change.last_seq == (b or a).last_seq
    run = whole[IDS.run]
    assert (run.first_seq, run.last_seq) == (1, 3)
    assert set(run.attributes) == {"prov:startTime", "prov:endTime", "provault:name", "provault:metrics"}


def test_the_mapping_imports_no_io_library() -> None:
    tree = ast.parse(Path(mapping.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in imported if m and m.split(".")[0] in {"psycopg", "grpc", "nats", "provault", "rdflib"}}
    assert {m for m in imported if m and m.startswith("ledger.")} <= {
        f"ledger.core.{m}" for m in ("envelope", "errors", "events", "fastjson", "keyring", "provjson", "vocab")
    }
