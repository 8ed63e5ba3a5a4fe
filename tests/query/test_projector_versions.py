"""Node versions keep what an entry changed: restated hubs add mentions, and every as-of state stays exact."""

from __future__ import annotations

import random

import pytest

from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.db import connect
from query import projector, traverse
from query._mapping import changed_attributes, fold_attributes, json_key, map_event
from query.projector import checksum, migrate_prov, project, rebuild
from tests.ledgerkit import Ledger
from tests.query.test_projector import AS_OF_ATTRIBUTES as AS_OF


def test_only_what_changes_is_kept_and_json_types_are_told_apart() -> None:
    state: dict[str, dict[str, str]] = {}
    said = {"prov:label": "gpu-1", "provault:cores": 8, "provault:ok": 1}
    assert changed_attributes(state, "h", said) == said  # first mention: everything
    assert changed_attributes(state, "h", dict(said)) == {}  # restated: nothing
    assert changed_attributes(state, "h", {"provault:ok": True, "provault:cores": 8.0}) == {
        "provault:ok": True,  # true is not 1
        "provault:cores": 8.0,  # and 8.0 is not 8: JSON keeps them apart, so must the versions
    }
    assert changed_attributes(state, "h", {"prov:label": ["gpu-1"]}) == {"prov:label": ["gpu-1"]}
    assert changed_attributes(state, "h", {"x": {"b": 1, "a": 2}}) == {"x": {"b": 1, "a": 2}}
    assert changed_attributes(state, "h", {"x": {"a": 2, "b": 1}}) == {}  # key order is not a change
    assert json_key({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


VALUES = ["gpu-1", "gpu-2", 1, True, 1.0, 0, False, ["a"], {"$": "x", "lang": "en"}]
NODES = ["provault:host/h1", "provault:host/h2", "provault:person/p1"]


def _random_statement(rng: random.Random) -> dict:
    agents = {}
    for node in rng.sample(NODES, rng.randint(1, len(NODES))):
        names = rng.sample(["prov:label", "provault:a", "provault:b"], rng.randint(0, 3))
        agents[node] = {name: rng.choice(VALUES) for name in names}
    return {"agent": agents}


@pytest.mark.postgres
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_every_as_of_state_equals_the_fold_of_everything_said(ledger: Ledger, chunk: int) -> None:
    """Random restatements of three agents, projected in chunks of 1, 3 and all: each node at each seq."""
    migrate_prov(ledger.dsn)
    key = Ed25519Signer.generate()
    chain = ProducerChain("hosts@test", key)
    rng = random.Random(chunk)
    sealed = [ledger.registration(key, name="hosts")]
    sealed += [chain.emit("dataset.registered", _random_statement(rng)) for _ in range(40)]
    ledger.append(*sealed)
    said: dict[str, list[tuple[int, dict]]] = {n: [] for n in NODES}
    for seq, s in enumerate(sealed):
        for row in map_event(s.event, seq).nodes:
            if row.id in said:
                said[row.id].append((seq, dict(row.attributes)))
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        assert project(c, batch=chunk) == len(sealed)
        for node in NODES:
            for seq in range(len(sealed)):
                expected = fold_attributes(a for s, a in said[node] if s <= seq)
                assert json_key(c.execute(AS_OF, (node, seq)).fetchone()[0]) == json_key(expected), (node, seq)
            assert json_key(c.execute("SELECT attributes FROM prov.nodes WHERE id = %s", (node,)).fetchone()[0]) == (
                json_key(fold_attributes(a for _, a in said[node]))
            )
        kept = c.execute(
            "SELECT sum((SELECT count(*) FROM jsonb_object_keys(attributes))) FROM prov.node_versions"
            " WHERE node_id = ANY(%s)",
            (NODES,),
        ).fetchone()[0]
        stated = sum(len(a) for versions in said.values() for _, a in versions)
        assert 0 < kept < stated  # restated values were dropped (the seeds make plenty)
        before = checksum(c)
        rebuild(c, batch=7)
        assert checksum(c) == before  # the versions are a function of the log, whatever the chunking


@pytest.mark.postgres
def test_a_host_restated_by_every_run_is_evidence_once(ledger: Ledger) -> None:
    migrate_prov(ledger.dsn)
    key = Ed25519Signer.generate()
    chain = ProducerChain("trainer@test", key)
    host = {"prov:type": {"$": "provault:Host", "type": "prov:QUALIFIED_NAME"}, "prov:label": "gpu-1"}
    runs = [
        chain.emit(
            "run.started",
            {
                "activity": {f"provault:run/{n}": {"provault:name": f"run {n}"}},
                "agent": {"provault:host/h1": host},
                "wasAssociatedWith": {"_:w": {"prov:activity": f"provault:run/{n}", "prov:agent": "provault:host/h1"}},
            },
        )
        for n in range(5)
    ]
    renamed = chain.emit("run.started", {"agent": {"provault:host/h1": {**host, "prov:label": "gpu-1b"}}})
    ledger.append(ledger.registration(key, name="trainer"), *runs, renamed)
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        project(c)
        versions = c.execute(
            "SELECT seq, attributes FROM prov.node_versions WHERE node_id = 'provault:host/h1' ORDER BY seq"
        ).fetchall()
        assert versions == [(1, host), (2, {}), (3, {}), (4, {}), (5, {}), (6, {"prov:label": "gpu-1b"})]
        at_3 = traverse.trace(c, "provault:run/2", as_of_seq=3)
        (h,) = [n for n in at_3.nodes if n.id == "provault:host/h1"]
        assert (h.label, h.seqs) == ("gpu-1", (1,))  # the first mention is the evidence, not each restatement
        now = traverse.trace(c, "provault:run/2")
        (h,) = [n for n in now.nodes if n.id == "provault:host/h1"]
        assert (h.label, h.seqs) == ("gpu-1b", (1, 6))
