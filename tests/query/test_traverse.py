"""Traceback and impact (query.traverse) over a real projection of a worked lineage.

The lineage: alice trains run 1 on dataset v1 (commit A, environment 1, host
gpu-07); dave trains run 2 on dataset v2 and an eval set (commit B,
environment 2, host gpu-09).  Only run 2's model is deployed (by bob, approved
by carol) and serves three predictions.  Every producer signs with its own
key; the admin key registered the keys (and so introduced the people).
:func:`build_lineage` is shared with the service and CLI tests.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from ledger.core.errors import InvalidArgument
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from ledger.core.vocab import (
    deploy_activity_id,
    deployment_id,
    git_id,
    host_id,
    person_id,
    predict_batch_id,
    run_id,
    service_id,
)
from ledger.db import connect
from query import projector
from query.projector import migrate_prov, project
from query.traverse import AsOfNotProjected, NodeNotFound, get_node, resolve_as_of, search, trace
from tests.ledgerkit import Ledger
from tests.query.provstory import at, xsd_time

pytestmark = pytest.mark.postgres

AUDITOR = "provault_auditor"


# --- the lineage ----------------------------------------------------------------------------


def _sha(byte: str) -> str:
    return "sha256:" + byte * 32


@dataclass
class Lineage:
    ledger: Ledger
    trainer1: ProducerChain = field(default_factory=lambda: ProducerChain("trainer@gpu-07", Ed25519Signer.generate()))
    trainer2: ProducerChain = field(default_factory=lambda: ProducerChain("trainer@gpu-09", Ed25519Signer.generate()))
    deployer: ProducerChain = field(default_factory=lambda: ProducerChain("deployer@ci", Ed25519Signer.generate()))
    server: ProducerChain = field(default_factory=lambda: ProducerChain("server@serving-1", Ed25519Signer.generate()))
    ds1: str = _sha("a1")
    ds2: str = _sha("a2")
    eval: str = _sha("a3")
    env1: str = _sha("e1")
    env2: str = _sha("e2")
    model1: str = _sha("b1")
    model2: str = _sha("b2")
    commit1: str = git_id("1111111aaaaaaa")
    commit2: str = git_id("2222222bbbbbbb")
    run1: str = run_id("019cade2-0000-7000-8000-0000000000r1")
    run2: str = run_id("019cade2-0000-7000-8000-0000000000r2")
    alice: str = person_id("alice@example.com")
    dave: str = person_id("dave@example.com")
    bob: str = person_id("bob@example.com")
    carol: str = person_id("carol@example.com")
    host1: str = host_id("gpu-07")
    host2: str = host_id("gpu-09")
    deploy: str = deploy_activity_id("019cade2-0000-7000-8000-0000000000d1")
    deployment: str = deployment_id("sentiment-prod", "019cade2-0000-7000-8000-0000000000d1")
    batch: str = predict_batch_id("019cade2-0000-7000-8000-0000000000p1")
    service: str = service_id("sentiment-server")
    predictions: tuple[str, ...] = ("req-1", "req-2", "req-3")
    seq: dict[str, int] = field(default_factory=dict)

    @property
    def admin_keyid(self) -> str:
        return self.ledger.admin.keyid

    def prediction_ids(self) -> list[str]:
        return [f"provault:prediction/{p}" for p in self.predictions]


def _dataset(chain: ProducerChain, author: str, minute: int, **sets: str) -> Sealed:
    return chain.emit(
        "dataset.registered",
        {
            "entity": {d: {"prov:type": "provault:Dataset", "prov:label": label} for d, label in sets.items()},
            "agent": {author: {}},
            "wasAttributedTo": {f"_:a{i}": {"prov:entity": d, "prov:agent": author} for i, d in enumerate(sets)},
        },
        time=at(minute),
    )


def _run_started(
    chain: ProducerChain, run: str, inputs: list[str], commit: str, env: str, author: str, host: str, minute: int
) -> Sealed:
    used = {f"_:u{i}": {"prov:activity": run, "prov:entity": e} for i, e in enumerate([*inputs, commit, env])}
    return chain.emit(
        "run.started",
        {
            "activity": {run: {"prov:startTime": xsd_time(at(minute)), "provault:name": "train"}},
            "entity": {
                **{d: {} for d in inputs},
                commit: {"provault:remote": "git@example.com:ml/sentiment"},
                env: {"prov:type": "provault:Environment"},
            },
            "agent": {author: {}, host: {}},
            "used": used,
            "wasAssociatedWith": {
                "_:w1": {"prov:activity": run, "prov:agent": author},
                "_:w2": {"prov:activity": run, "prov:agent": host},
            },
        },
        time=at(minute),
    )


def _run_completed(chain: ProducerChain, run: str, model: str, inputs: list[str], minute: int) -> Sealed:
    return chain.emit(
        "run.completed",
        {
            "activity": {run: {"prov:endTime": xsd_time(at(minute))}},
            "entity": {model: {}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": model, "prov:activity": run}},
            "wasDerivedFrom": {
                f"_:d{i}": {"prov:generatedEntity": model, "prov:usedEntity": d, "prov:activity": run}
                for i, d in enumerate(inputs)
            },
        },
        time=at(minute),
    )


def _model(chain: ProducerChain, model: str, run: str, author: str, version: str, minute: int) -> Sealed:
    return chain.emit(
        "model.registered",
        {
            "entity": {model: {"prov:type": "provault:Model", "prov:label": "sentiment", "provault:version": version}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": model, "prov:activity": run}},
            "wasAttributedTo": {"_:a1": {"prov:entity": model, "prov:agent": author}},
        },
        time=at(minute),
    )


def _deployed(li: Lineage, minute: int) -> Sealed:
    return li.deployer.emit(
        "model.deployed",
        {
            "activity": {li.deploy: {"prov:startTime": xsd_time(at(minute))}},
            "entity": {
                li.model2: {},
                li.deployment: {"prov:type": "provault:Deployment", "prov:label": "sentiment-prod"},
            },
            "agent": {li.bob: {}, li.carol: {}},
            "used": {"_:u1": {"prov:activity": li.deploy, "prov:entity": li.model2}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": li.deployment, "prov:activity": li.deploy}},
            "wasDerivedFrom": {"_:d1": {"prov:generatedEntity": li.deployment, "prov:usedEntity": li.model2}},
            "wasAssociatedWith": {
                "_:w1": {"prov:activity": li.deploy, "prov:agent": li.bob},
                "_:w2": {"prov:activity": li.deploy, "prov:agent": li.carol, "prov:role": "provault:approver"},
            },
        },
        time=at(minute),
    )


def predictions(li: Lineage, ids: tuple[str, ...], minute: int, batch: str | None = None) -> Sealed:
    batch = batch or li.batch
    rows = [[pid, xsd_time(at(minute)), _sha(f"{n:02d}"), "pos"] for n, pid in enumerate(ids)]
    return li.server.emit(
        "predictions.logged",
        {
            "activity": {batch: {"prov:startTime": xsd_time(at(minute))}},
            "entity": {li.deployment: {}, li.model2: {}},
            "agent": {li.service: {}},
            "used": {
                "_:u1": {"prov:activity": batch, "prov:entity": li.deployment},
                "_:u2": {"prov:activity": batch, "prov:entity": li.model2},
            },
            "wasAssociatedWith": {"_:w1": {"prov:activity": batch, "prov:agent": li.service}},
        },
        data={
            "deployment": li.deployment,
            "model": li.model2,
            "columns": ["id", "time", "input", "output"],
            "rows": rows,
        },
        time=at(minute),
    )


def build_lineage(ledger: Ledger) -> Lineage:
    """Append the lineage (keys at seqs 0-3, events at 4-13) and project it."""
    migrate_prov(ledger.dsn)
    li = Lineage(ledger=ledger)
    regs = [
        ledger.registration(c.signer, name=n)
        for c, n in (
            (li.trainer1, "alice@example.com"),
            (li.trainer2, "dave@example.com"),
            (li.deployer, "bob@example.com"),
            (li.server, "serving"),
        )
    ]
    events = {
        "ds1": _dataset(li.trainer1, li.alice, 1, **{li.ds1: "reviews v1"}),
        "ds2": _dataset(li.trainer2, li.dave, 2, **{li.ds2: "reviews v2", li.eval: "reviews eval"}),
        "run1.started": _run_started(li.trainer1, li.run1, [li.ds1], li.commit1, li.env1, li.alice, li.host1, 3),
        "run1.completed": _run_completed(li.trainer1, li.run1, li.model1, [li.ds1], 20),
        "model1": _model(li.trainer1, li.model1, li.run1, li.alice, "1", 21),
        "run2.started": _run_started(
            li.trainer2, li.run2, [li.ds2, li.eval], li.commit2, li.env2, li.dave, li.host2, 22
        ),
        "run2.completed": _run_completed(li.trainer2, li.run2, li.model2, [li.ds2, li.eval], 40),
        "model2": _model(li.trainer2, li.model2, li.run2, li.dave, "2", 41),
        "deployed": _deployed(li, 50),
        "predicted": predictions(li, li.predictions, 60),
    }
    append(li, *regs, *events.values())
    li.seq.update({name: 4 + i for i, name in enumerate(events)})
    return li


def append(li: Lineage, *items: Sealed) -> None:
    """Append and project (the log must accept every item)."""
    before = li.ledger.conn.execute("SELECT count(*) FROM ledger.entries").fetchone()[0]
    plan = li.ledger.append(*items)
    assert [a.seq for a in plan.accepted] == list(range(before, before + len(items))), li.ledger.rejections()
    with connect(li.ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as p:
        project(p)


@contextlib.contextmanager
def shared_lineage(pg_admin_dsn: str) -> Iterator[Lineage]:
    """The lineage in a database of its own, for a module of read-only tests (building it takes a second)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    info["dbname"] = name
    ledger = Ledger(psycopg.conninfo.make_conninfo(**info))
    try:
        yield build_lineage(ledger)
    finally:
        ledger.close()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def li(pg_admin_dsn: str) -> Iterator[Lineage]:
    """Shared by the read-only tests of this module; tests that append use ``fresh``."""
    with shared_lineage(pg_admin_dsn) as lineage:
        yield lineage


@pytest.fixture(scope="module")
def conn(li: Lineage) -> Iterator[psycopg.Connection]:
    with connect(li.ledger.dsn, autocommit=True, role=AUDITOR) as c:
        yield c


@pytest.fixture
def fresh(ledger: Ledger) -> Iterator[tuple[Lineage, psycopg.Connection]]:
    li = build_lineage(ledger)
    with connect(ledger.dsn, autocommit=True, role=AUDITOR) as c:
        yield li, c


def ids(t) -> set[str]:
    return {n.id for n in t.nodes}


# --- traceback ------------------------------------------------------------------------------


def test_upstream_from_a_prediction_names_exactly_its_lineage_and_signers(
    li: Lineage, conn: psycopg.Connection
) -> None:
    t = trace(conn, "req-2")
    pid = "provault:prediction/req-2"
    assert t.start == pid and t.direction == "upstream" and not t.truncated and t.as_of_seq == 13
    assert ids(t) == {
        pid,
        li.batch,
        li.service,
        li.deployment,
        li.deploy,
        li.bob,
        li.carol,
        li.model2,
        li.run2,
        li.ds2,
        li.eval,
        li.commit2,
        li.env2,
        li.dave,
        li.host2,
    }
    assert [n.id for n in t.nodes][:2] == [pid, li.batch]
    assert t.node(pid).kind == "provault:Prediction" and t.node(pid).depth == 0
    assert t.node(li.deployment).depth == 2 and t.node(li.run2).depth == 3
    assert t.prediction == {
        "id": pid,
        "seq": 13,
        "activity": li.batch,
        "time": "2025-03-02T10:00:00.000000Z",
        "input": _sha("01"),
        "output": "pos",
    }
    hops = {(e.relation, e.src, e.dst) for e in t.edges}
    assert ("wasGeneratedBy", pid, li.batch) in hops
    assert ("wasAssociatedWith", li.deploy, li.carol) in hops and ("wasAttributedTo", li.model2, li.dave) in hops
    assert ("used", li.run2, li.commit2) in hops and ("wasDerivedFrom", li.model2, li.eval) in hops
    # the model is generated by run 2 twice (run.completed, model.registered): one hop, its first seq
    assert [e.seq for e in t.edges if (e.relation, e.src) == ("wasGeneratedBy", li.model2)] == [
        li.seq["run2.completed"]
    ]
    # the keys behind every step: dave's, bob's and the server's, and the admin that registered dave and bob
    keys = {li.trainer2.signer.keyid, li.deployer.signer.keyid, li.server.signer.keyid, li.admin_keyid}
    assert set(t.signers.values()) == keys and set(t.keys) == keys
    assert t.signers[li.seq["deployed"]] == li.deployer.signer.keyid
    assert t.keys[li.admin_keyid].root_key and t.keys[li.server.signer.keyid].name == "serving"
    assert set(t.seqs) == set(t.signers) == {1, 2, 5, 9, 10, 11, 12, 13}
    assert trace(conn, "provault:prediction/req-2") == t


def test_upstream_node_attributes_are_folded_and_carry_their_seqs(li: Lineage, conn: psycopg.Connection) -> None:
    t = trace(conn, li.model2)
    run = t.node(li.run2)
    assert set(run.attributes) == {"prov:startTime", "provault:name", "prov:endTime"}
    assert run.seqs == (li.seq["run2.started"], li.seq["run2.completed"]) and run.type == "activity"
    model = t.node(li.model2)
    assert (model.kind, model.label, model.first_seq) == ("provault:Model", "sentiment", li.seq["run2.completed"])
    assert t.node(li.dave).first_seq == 1  # introduced by its key's registration


# --- impact --------------------------------------------------------------------------------


def test_downstream_from_dataset_v1_reaches_only_run1_and_its_model(li: Lineage, conn: psycopg.Connection) -> None:
    t = trace(conn, li.ds1, direction="downstream")
    assert ids(t) == {li.ds1, li.run1, li.model1}
    assert t.predictions == () and t.predictions_total == 0 and not t.truncated


def test_downstream_from_dataset_v2_lists_exactly_the_predictions(li: Lineage, conn: psycopg.Connection) -> None:
    t = trace(conn, li.ds2, direction="downstream")
    assert ids(t) == {li.ds2, li.run2, li.model2, li.deploy, li.deployment, li.batch}
    assert t.predictions == tuple(li.prediction_ids()) and t.predictions_total == 3
    assert {r.activity for r in t.prediction_rows} == {li.batch} and li.seq["predicted"] in t.seqs


def test_predictions_page_by_id_and_a_relogged_id_counts_once(fresh: tuple[Lineage, psycopg.Connection]) -> None:
    li, conn = fresh
    append(li, predictions(li, ("req-0", "req-2"), 70, batch=predict_batch_id("019cade2-0000-7000-8000-0000000000p2")))
    first = trace(conn, li.commit2, direction="downstream", predictions_limit=2)
    assert first.predictions == ("provault:prediction/req-0", "provault:prediction/req-1")
    assert first.predictions_total == 4 and first.predictions_next == "provault:prediction/req-1"
    rest = trace(
        conn, li.commit2, direction="downstream", predictions_limit=2, predictions_after=first.predictions_next
    )
    assert (
        rest.predictions == ("provault:prediction/req-2", "provault:prediction/req-3") and rest.predictions_next is None
    )
    assert [r.seq for r in rest.prediction_rows if r.id.endswith("req-2")] == [13, 14]


def test_as_of_before_the_deployment_has_no_deployment(li: Lineage, conn: psycopg.Connection) -> None:
    before = li.seq["deployed"] - 1
    t = trace(conn, li.ds2, direction="downstream", as_of_seq=before)
    assert ids(t) == {li.ds2, li.run2, li.model2} and t.predictions_total == 0 and t.as_of_seq == before
    model = get_node(conn, li.model2, as_of_seq=li.seq["run2.completed"])
    assert (model.label, model.kind) == (None, None)  # registered one seq later
    with pytest.raises(NodeNotFound, match="first recorded at seq 12"):
        trace(conn, li.deployment, as_of_seq=before)
    with pytest.raises(AsOfNotProjected):
        trace(conn, li.ds2, as_of_seq=99)


def test_a_prediction_as_of_before_it_was_logged_names_the_seq_it_first_appeared(
    li: Lineage, conn: psycopg.Connection
) -> None:
    """Issue 19.5: said only "no node, prediction or key 'req-1' as of seq N", unlike nodes."""
    logged = li.seq["predicted"]
    pid = "provault:prediction/req-1"
    for start in ("req-1", pid):
        with pytest.raises(NodeNotFound) as e:
            trace(conn, start, as_of_seq=logged - 1)
        assert str(e.value).startswith(
            f"prediction {pid!r} did not exist as of seq {logged - 1}: it was first logged at seq {logged}"
        )
    with pytest.raises(NodeNotFound, match=r"no node, prediction or key 'req-never' as of seq"):
        trace(conn, "req-never", as_of_seq=logged)


def test_as_of_a_time_is_the_last_entry_received_by_then(li: Lineage, conn: psycopg.Connection) -> None:
    received = dict(conn.execute("SELECT seq, received_at FROM prov.entries").fetchall())
    assert resolve_as_of(conn, time=received[7]) >= 7
    assert resolve_as_of(conn, time=received[0] - timedelta(seconds=1)) == -1
    assert resolve_as_of(conn, time=datetime.now(UTC)) == 13 and resolve_as_of(conn) is None
    assert resolve_as_of(conn, seq=5) == 5


# --- keys ------------------------------------------------------------------------------------


def test_downstream_from_a_key_follows_what_it_signed(li: Lineage, conn: psycopg.Connection) -> None:
    t = trace(conn, li.trainer1.signer.keyid, direction="downstream")
    assert t.start == f"provault:key/{li.trainer1.signer.keyid}"
    assert ids(t) == {t.start, li.ds1, li.run1, li.model1, li.commit1, li.env1}
    signed = [e for e in t.edges if e.origin == "signature"]
    assert {e.src for e in signed} == {li.ds1, li.run1, li.model1, li.commit1, li.env1}
    assert all(e.relation == "wasInfluencedBy" and e.dst == t.start for e in signed) and t.predictions_total == 0
    served = trace(conn, f"provault:key/{li.server.signer.keyid}", direction="downstream")
    assert ids(served) == {served.start, li.batch} and served.predictions == tuple(li.prediction_ids())


def test_a_root_key_reaches_everything_its_registrations_introduced(li: Lineage, conn: psycopg.Connection) -> None:
    t = trace(conn, li.admin_keyid, direction="downstream")
    assert t.node(t.start).kind == "provault:Key" and t.node(t.start).type == "entity"
    assert {li.dave, li.bob, li.model2, li.deployment} <= ids(t) and t.predictions_total == 3


# --- limits, cycles, relations ---------------------------------------------------------------


def test_depth_and_node_limits_are_flagged(li: Lineage, conn: psycopg.Connection) -> None:
    t = trace(conn, "req-2", max_depth=2)
    assert t.truncated and ids(t) == {"provault:prediction/req-2", li.batch, li.deployment, li.model2, li.service}
    t = trace(conn, "req-2", max_nodes=3)
    assert t.truncated and len(t.nodes) == 3 and [n.depth for n in t.nodes] == [0, 1, 2]
    assert all(e.src in ids(t) and e.dst in ids(t) for e in t.edges)
    exact = trace(conn, li.ds1, direction="downstream", max_nodes=3)
    assert not exact.truncated and len(exact.nodes) == 3
    assert trace(conn, li.ds2, direction="downstream", max_depth=1).truncated
    assert trace(conn, li.batch, direction="downstream", max_depth=0).truncated  # its predictions are one hop away


def test_a_cycle_terminates(fresh: tuple[Lineage, psycopg.Connection]) -> None:
    li, conn = fresh
    a, b = run_id("019cade2-0000-7000-8000-0000000000c1"), run_id("019cade2-0000-7000-8000-0000000000c2")
    append(
        li,
        li.trainer1.emit(
            "run.started",
            {
                "activity": {a: {}, b: {}},
                "wasInformedBy": {
                    "_:i1": {"prov:informed": a, "prov:informant": b},
                    "_:i2": {"prov:informed": b, "prov:informant": a},
                    "_:i3": {"prov:informed": a, "prov:informant": a},
                },
            },
            time=at(80),
        ),
    )
    for direction in ("upstream", "downstream", "both"):
        t = trace(conn, a, direction=direction)
        assert [n.id for n in t.nodes] == [a, b] and not t.truncated
        assert {(e.src, e.dst) for e in t.edges} == {(a, b), (b, a), (a, a)}


def test_the_relation_filter(li: Lineage, conn: psycopg.Connection) -> None:
    assert ids(trace(conn, li.model2, relations=["wasGeneratedBy"])) == {li.model2, li.run2}
    t = trace(conn, li.model2, relations=("wasGeneratedBy", "used"))
    assert ids(t) == {li.model2, li.run2, li.ds2, li.eval, li.commit2, li.env2}
    assert {e.relation for e in t.edges} == {"wasGeneratedBy", "used"}
    with pytest.raises(InvalidArgument, match="relations"):
        trace(conn, li.model2, relations=["caused"])


def test_both_directions_are_the_union(li: Lineage, conn: psycopg.Connection) -> None:
    both = trace(conn, li.model2, direction="both")
    up, down = trace(conn, li.model2), trace(conn, li.model2, direction="downstream")
    assert ids(both) == ids(up) | ids(down) and both.predictions_total == 3
    assert {(e.relation, e.src, e.dst) for e in both.edges} == {
        (e.relation, e.src, e.dst) for e in [*up.edges, *down.edges]
    }
    around = trace(conn, "req-1", direction="both")  # its batch is upstream: the batch's other predictions are not
    assert ids(around) == ids(trace(conn, "req-1")) and around.predictions_total == 0


def test_unknown_starts_and_bad_arguments(li: Lineage, conn: psycopg.Connection) -> None:
    with pytest.raises(NodeNotFound, match="no node, prediction or key"):
        trace(conn, "provault:run/nope")
    with pytest.raises(NodeNotFound):
        trace(conn, "f" * 64)  # a keyid that signed nothing
    with pytest.raises(InvalidArgument, match="direction"):
        trace(conn, li.ds1, direction="sideways")
    with pytest.raises(InvalidArgument, match="max_nodes"):
        trace(conn, li.ds1, max_nodes=0)


# --- lookup and search -------------------------------------------------------------------------


def test_get_node_and_search(li: Lineage, conn: psycopg.Connection) -> None:
    assert get_node(conn, li.ds2).label == "reviews v2"
    assert get_node(conn, "req-1").kind == "provault:Prediction"
    assert [n.id for n in search(conn, text="REVIEWS V").nodes] == sorted([li.ds1, li.ds2])
    assert [n.id for n in search(conn, kind="provault:Model").nodes] == sorted([li.model1, li.model2])
    assert [n.id for n in search(conn, attributes=[("provault:version", "2")]).nodes] == [li.model2]
    assert search(conn, kind="provault:Model", as_of_seq=li.seq["model1"]).nodes[0].id == li.model1
    assert len(search(conn, kind="provault:Model", as_of_seq=li.seq["model1"]).nodes) == 1
    page = search(conn, node_type="agent", limit=2)
    rest = search(conn, node_type="agent", limit=50, after=page.next_after)
    agents = [n.id for n in page.nodes + rest.nodes]
    assert agents == sorted(agents) and li.carol in agents and li.service in agents and rest.next_after is None
    with pytest.raises(InvalidArgument, match="at least one"):
        search(conn)
