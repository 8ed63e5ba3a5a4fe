"""Query benchmark: traceback latency, impact cost, inclusion proofs, export and projector rebuild rates.

    python -m bench.query [--predictions 100000] [--edges 1000000] [--leaves 1000000] [--full]
                          [--requests 300] [--small 0.1] [--batch-rows 100] [--rebuild-events 6000] [--json]

``--full`` is the issue's scale: 1M predictions, 10M edges, 10M Merkle leaves
(expect tens of minutes and ~10 GB of disk).  The defaults are a tenth of it.

The graph is **generated directly, not ingested** (``bench.ingest`` measures
ingest): a synthetic ML history -- teams registering sharded datasets,
pipeline steps deriving datasets from datasets (chains up to 8 deep),
training runs (some fine-tuning earlier models), deployments, and
prediction batches -- is written as PROV documents of the kinds the agents
emit, mapped to rows by a fast mapper that is checked against the
projector's own ``query._mapping.map_event`` on a sample of entries, and
bulk-COPYed as superuser into ``prov.entries``, ``prov.nodes``,
``prov.node_versions``, ``prov.edges``, ``prov.predictions`` and
``prov.position`` (foreign-key triggers off during the load, secondary
indexes built after it, then VACUUM ANALYZE).  The Merkle tree is random
leaf hashes folded by ``ledger.core.frontier.append_leaves`` in chunks and
COPYed into ``ledger.merkle_nodes`` / ``ledger.log_state``;
``ledger.entries`` stays empty.  Hub nodes are real: ten popular datasets,
and a fixed staff (50 people, 20 hosts, 10 servers) whatever the scale, so
they accumulate mentions as the ledger grows.

Two databases are built in the same run, one at ``--small`` (a tenth) of
the size and one at the full size, on one embedded PostgreSQL (fsync on)
that the benchmark starts and stops.  Each figure comes with a baseline
measured in the same run:

a. **traceback** -- ``QueryService.Trace`` upstream from random prediction
   ids over a real gRPC channel to a ``QueryGrpcService`` on 127.0.0.1:0 per
   database, requests to the two alternating (p50 / p99; target p99 <= 10 ms
   and flat between the scales).  Baseline: a gRPC health check round trip.
b. **impact** -- ``query.traverse.trace`` downstream from datasets (the
   hubs, random raw and random derived ones): time per node returned; and
   every page of the largest hub's answer through gRPC.
c. **inclusion proofs** -- ``ledger.store.log.inclusion_proof`` of random
   leaves at both leaf counts.  Baseline: a one-row primary-key SELECT of a
   Merkle node.
d. **export** -- N-Triples of the whole small graph through
   ``query.export.export_stream``.  Baseline: ``COPY prov.edges TO STDOUT``.
e. **rebuild** -- real signed events (``tests/query/provstory.py``'s
   shapes) appended with ``ledger.store.log.append_batch``, then
   ``query.projector.rebuild``.  Baseline: ``ledger.store.log.iter_entries``
   over the same entries.

Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql
from psycopg.types.json import Jsonb
from provault.v1 import query_pb2, query_pb2_grpc

from ledger.config import Settings
from ledger.core.events import Event, Producer, format_time
from ledger.core.frontier import append_leaves
from ledger.core.ids import new_event_id
from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, with_prefixes
from ledger.core.provjson import ELEMENT_SECTIONS, RELATIONS, TIME_ATTRIBUTES
from ledger.core.vocab import (
    PREFIXES,
    deploy_activity_id,
    deployment_id,
    git_id,
    host_id,
    person_id,
    predict_batch_id,
    run_id,
    service_id,
)
from ledger.embedded import EmbeddedPostgres
from ledger.store import log
from ledger.db import connect
from ledger.store.migrate import migrate
from query import traverse
from query._mapping import RELATION_ENDS, map_event, node_kind, node_label
from query.export import export_stream
from query.projector import PROJECTOR_ROLE, migrate_prov, project, rebuild
from query.service import QueryGrpcService

PEOPLE, HOSTS, SERVERS, HUBS = 50, 20, 10, 10
MAX_CHAIN = 8
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z: entry k happens T0 + k seconds
AUDITOR = "provault_auditor"
FULL = {"predictions": 1_000_000, "edges": 10_000_000, "leaves": 10_000_000}
COPY_FLUSH = 5000
NULL = "\\N"
_IMPLIED = {
    "prov:entity": "entity", "prov:activity": "activity", "prov:agent": "agent", "prov:informed": "activity",
    "prov:informant": "activity", "prov:generatedEntity": "entity", "prov:usedEntity": "entity",
    "prov:collection": "entity",
}  # fmt: skip
_FORMALS = {rel: tuple(a for a in req + opt if a not in TIME_ATTRIBUTES) for rel, (req, opt) in RELATIONS.items()}


def _pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(int(len(samples) * q), len(samples) - 1)]


def _stamp(seq: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + seq))


# --- the synthetic history -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One log entry of the synthetic history: a PROV document of one of the agents' kinds."""

    seq: int
    kind: str
    producer: str
    doc: dict[str, Any]
    data: dict[str, Any] | None = None


@dataclass(slots=True)
class Workload:
    """An ML organisation's history in log order, until ``edges`` edges and ``predictions`` predictions."""

    edges: int
    predictions: int
    batch_rows: int
    seed: int
    rng: random.Random = field(init=False)
    made_edges: int = 0
    seq: int = 0
    batches: int = 0
    raw: list[str] = field(default_factory=list)
    derived: list[tuple[str, int, str]] = field(default_factory=list)
    """(dataset, chain depth, the run that made it)"""
    models: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    deployments: list[tuple[str, str]] = field(default_factory=list)
    keys: dict[str, Ed25519Signer] = field(default_factory=dict)
    """producer id -> its key"""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.keys = {p: Ed25519Signer.generate() for p in _producers()}

    # -- helpers --
    def _hex(self, bits: int = 256) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _uuid(self) -> str:
        h = self._hex(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}"

    def _recent(self, pool: list, window: int = 200) -> Any:
        return pool[-self.rng.randint(1, min(len(pool), window))]

    def _item(self, kind: str, producer: str, doc: dict, data: dict | None = None) -> Item:
        self.made_edges += sum(len(doc[r]) for r in RELATION_ENDS if r in doc)
        item = Item(seq=self.seq, kind=kind, producer=producer, doc=doc, data=data)
        self.seq += 1
        return item

    # -- the history --
    def __iter__(self) -> Iterator[Item]:
        admin = ProducerChain("admin/bench", Ed25519Signer.generate())
        for producer, key in self.keys.items():
            yield self._registration(admin, producer, key)
        steps: tuple[tuple[Callable[[], Iterator[Item]], float], ...] = (
            (self._raw_dataset, 1.0), (self._pipeline_step, 4.0), (self._training, 3.0), (self._deployment, 0.6),
        )  # fmt: skip
        makers, weights = zip(*steps, strict=True)
        while self.made_edges < self.edges or self.batches * self.batch_rows < self.predictions:
            owed = self.batches * self.batch_rows < self.predictions
            if owed and self.deployments and self.batches * self.batch_rows * self.edges <= self.predictions * self.made_edges:
                yield self._batch()
                continue
            if self.made_edges >= self.edges:  # predictions still owed, but nothing deployed yet
                yield from self._deployment()
                continue
            yield from self.rng.choices(makers, weights)[0]()

    def _registration(self, admin: ProducerChain, producer: str, key: Ed25519Signer) -> Item:
        name = producer.split("@")[0]
        reg = KeyRegistration(keyid=key.keyid, public_key=key.public_key, role="producer",
                              identity={"type": "service", "name": name}, kinds=("*",), producers=(producer,))  # fmt: skip
        return self._item(KEY_REGISTERED, admin.producer_id, {"agent": {service_id(name): {}}}, reg.to_data())

    def _person(self) -> str:
        return person_id(f"user{self.rng.randrange(PEOPLE)}@example.com")

    def _raw_dataset(self) -> Iterator[Item]:
        ds, n = "sha256:" + self._hex(), len(self.raw)
        shards = {"sha256:" + self._hex(): {"provault:bytes": self.rng.randrange(1 << 20, 1 << 30)}
                  for _ in range(self.rng.randint(4, 24))}  # fmt: skip
        doc = {
            "entity": {ds: {"prov:type": "provault:Dataset", "prov:label": f"raw-{n}", "provault:uri": f"s3://lake/raw/{n}/"},
                       **shards},
            "wasAttributedTo": {"_:a1": {"prov:entity": ds, "prov:agent": self._person()}},
            "hadMember": {f"_:m{j}": {"prov:collection": ds, "prov:entity": s} for j, s in enumerate(shards)},
        }  # fmt: skip
        self.raw.append(ds)
        yield self._item("dataset.registered", "registrar@data-1", doc)

    def _dataset_input(self, derived_share: float) -> tuple[str, int, str | None]:
        r = self.rng.random()
        if r < 0.15:
            return self.raw[self.rng.randrange(min(HUBS, len(self.raw)))], 0, None
        if self.derived and r < 0.15 + derived_share:
            ds, depth, run = self._recent(self.derived)
            if depth < MAX_CHAIN:
                return ds, depth, run
        return self._recent(self.raw), 0, None

    def _run_start(self, run: str, host: str, inputs: list[str], informant: str | None) -> dict:
        doc: dict[str, Any] = {
            "activity": {run: {"prov:startTime": _stamp(self.seq), "provault:name": f"step-{self.seq}"}},
            "used": {f"_:u{j}": {"prov:activity": run, "prov:entity": e} for j, e in enumerate(inputs)},
            "wasAssociatedWith": {"_:w1": {"prov:activity": run, "prov:agent": self._person()},
                                  "_:w2": {"prov:activity": run, "prov:agent": host}},
        }  # fmt: skip
        if informant:
            doc["wasInformedBy"] = {"_:i1": {"prov:informed": run, "prov:informant": informant}}
        return doc

    def _pipeline_step(self) -> Iterator[Item]:
        if not self.raw:
            yield from self._raw_dataset()
            return
        parents = {self._dataset_input(0.6) for _ in range(1 if self.rng.random() < 0.8 else 2)}
        run, out, h = run_id(self._uuid()), "sha256:" + self._hex(), self.rng.randrange(HOSTS)
        depth = 1 + max(d for _, d, _ in parents)
        informant = next((r for _, _, r in parents if r), None)
        yield self._item("run.started", f"trainer@gpu-{h:02d}", self._run_start(run, host_id(f"gpu-{h:02d}"), sorted(p for p, _, _ in parents), informant))
        doc = {
            "activity": {run: {"prov:endTime": _stamp(self.seq)}},
            "entity": {out: {"prov:type": "provault:Dataset", "prov:label": f"derived-{len(self.derived)}"}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": out, "prov:activity": run, "prov:time": _stamp(self.seq)}},
            "wasDerivedFrom": {f"_:d{j}": {"prov:generatedEntity": out, "prov:usedEntity": p, "prov:activity": run}
                               for j, (p, _, _) in enumerate(sorted(parents))},
        }  # fmt: skip
        self.derived.append((out, depth, run))
        yield self._item("run.completed", f"trainer@gpu-{h:02d}", doc)

    def _training(self) -> Iterator[Item]:
        if not self.raw:
            yield from self._raw_dataset()
            return
        data = sorted({self._dataset_input(0.8)[0] for _ in range(self.rng.randint(1, 3))})
        if not self.commits or self.rng.random() < 0.3:
            self.commits.append(git_id(self._hex(160)))
        base = self._recent(self.models, 50) if self.models and self.rng.random() < 0.15 else None
        run, model, h = run_id(self._uuid()), "sha256:" + self._hex(), self.rng.randrange(HOSTS)
        producer, inputs = f"trainer@gpu-{h:02d}", [*data, self._recent(self.commits, 20), *([base] if base else [])]
        yield self._item("run.started", producer, self._run_start(run, host_id(f"gpu-{h:02d}"), inputs, None))
        sources = [*data, *([base] if base else [])]
        done = {
            "activity": {run: {"prov:endTime": _stamp(self.seq), "provault:metrics": '{"f1": 0.9}'}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": model, "prov:activity": run, "prov:time": _stamp(self.seq)}},
            "wasDerivedFrom": {f"_:d{j}": {"prov:generatedEntity": model, "prov:usedEntity": s, "prov:activity": run}
                               for j, s in enumerate(sources)},
        }  # fmt: skip
        yield self._item("run.completed", producer, done)
        reg = {
            "entity": {model: {"prov:type": "provault:Model", "prov:label": f"model-{len(self.models)}", "provault:version": "1"}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": model, "prov:activity": run}},
            "wasAttributedTo": {"_:a1": {"prov:entity": model, "prov:agent": self._person()}},
        }  # fmt: skip
        self.models.append(model)
        yield self._item("model.registered", producer, reg)

    def _deployment(self) -> Iterator[Item]:
        if not self.models:
            yield from self._training()
            return
        model, u = self._recent(self.models, 50), self._uuid()
        deploy, deployment = deploy_activity_id(u), deployment_id(f"svc-{len(self.deployments) % 40}", u)
        doc = {
            "activity": {deploy: {"prov:startTime": _stamp(self.seq)}},
            "entity": {deployment: {"prov:type": "provault:Deployment", "prov:label": f"svc-{len(self.deployments) % 40}"}},
            "used": {"_:u1": {"prov:activity": deploy, "prov:entity": model}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": deployment, "prov:activity": deploy}},
            "wasDerivedFrom": {"_:d1": {"prov:generatedEntity": deployment, "prov:usedEntity": model}},
            "wasAssociatedWith": {"_:w1": {"prov:activity": deploy, "prov:agent": self._person()},
                                  "_:w2": {"prov:activity": deploy, "prov:agent": self._person(), "prov:role": "provault:approver"}},
        }  # fmt: skip
        self.deployments.append((deployment, model))
        yield self._item("model.deployed", "deployer@ci", doc)

    def _batch(self) -> Item:
        deployment, model = self._recent(self.deployments, 20)
        batch, s, b, when = predict_batch_id(self._uuid()), self.rng.randrange(SERVERS), self.batches, _stamp(self.seq)
        doc = {
            "activity": {batch: {"prov:startTime": when, "prov:endTime": when}},
            "used": {"_:u1": {"prov:activity": batch, "prov:entity": deployment}, "_:u2": {"prov:activity": batch, "prov:entity": model}},
            "wasAssociatedWith": {"_:w1": {"prov:activity": batch, "prov:agent": service_id(f"serving-{s}")}},
        }  # fmt: skip
        stamp = when[:-1] + ".000000Z"  # format_time's spelling, so rows compare equal with the projector's
        rows = [[f"req-{b}-{j}", stamp, f"sha256:{b * self.batch_rows + j:064x}", "pos" if j & 1 else "neg"] for j in range(self.batch_rows)]
        self.batches += 1
        data = {"deployment": deployment, "model": model, "columns": ["id", "time", "input", "output"], "rows": rows}
        return self._item("predictions.logged", f"server@serving-{s}", doc, data)

    def prediction_ids(self, n: int) -> list[str]:
        """``n`` random prediction ids (raw, as a client would pass them)."""
        return [f"req-{self.rng.randrange(self.batches)}-{self.rng.randrange(self.batch_rows)}" for _ in range(n)]


def _producers() -> list[str]:
    return ["registrar@data-1", "deployer@ci", *(f"trainer@gpu-{h:02d}" for h in range(HOSTS)),
            *(f"server@serving-{s}" for s in range(SERVERS))]  # fmt: skip


# --- rows, as the projector would write them ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rows:
    nodes: dict[str, tuple[str | None, dict[str, Any]]]
    """id -> (type, attributes) as this entry mentions it"""
    edges: list[tuple[str, str, str, str, str, dict[str, Any]]]
    """(relation, src, dst, statement id, origin, attributes) in ordinal order"""
    predictions: list[tuple[str, str, str, Any, Any]]
    """(id, activity, time, input, output)"""


def fast_rows(item: Item) -> Rows:
    """The rows ``query._mapping.map_event`` makes of the item's document, for the names this workload uses."""
    doc, nodes = item.doc, {}
    for section in ELEMENT_SECTIONS:
        for nid, attrs in doc.get(section, {}).items():
            nodes[nid] = (section, dict(attrs))
    edges = []
    for rel in RELATIONS:
        src_attr, dst_attr = RELATION_ENDS[rel]
        for sid in sorted(doc.get(rel, ())):
            st = doc[rel][sid]
            for attr in _FORMALS[rel]:
                if attr in st and (st[attr] not in nodes or nodes[st[attr]][0] is None):
                    nodes[st[attr]] = (_IMPLIED[attr], nodes.get(st[attr], (None, {}))[1])
            edges.append((rel, st[src_attr], st[dst_attr], sid, "prov", {k: v for k, v in st.items() if k not in (src_attr, dst_attr)}))
    preds = []
    if item.kind == "predictions.logged":
        batch = next(iter(doc["activity"]))
        preds = [("provault:prediction/" + r[0], batch, r[1], r[2], r[3]) for r in item.data["rows"]]
    return Rows(nodes=nodes, edges=edges, predictions=preds)


def _event(item: Item) -> Event:
    when = datetime.fromtimestamp(T0 + item.seq, UTC)
    return Event(id=new_event_id(), time=when, kind=item.kind, producer=Producer.first(item.producer),
                 prov=with_prefixes(item.doc), data=item.data)  # fmt: skip


def projector_rows(item: Item) -> Rows:
    """The same rows from the projector's own mapping (slow: validates the document)."""
    r = map_event(_event(item), item.seq)
    return Rows(
        nodes={n.id: (n.node_type, dict(n.attributes)) for n in r.nodes},
        edges=[(e.relation, e.src, e.dst, e.stmt_id, e.origin, dict(e.attributes)) for e in r.edges],
        predictions=[(p.id, p.activity, format_time(p.time), p.input, p.output) for p in r.predictions],
    )  # fmt: skip


# --- bulk loading ------------------------------------------------------------------------------------

_COPIES = {
    "entries": "COPY prov.entries (seq, event_id, kind, keyid, producer_id, producer_seq, event_time, received_at) FROM STDIN",
    "versions": "COPY prov.node_versions (node_id, seq, node_type, attributes) FROM STDIN",
    "edges": "COPY prov.edges (seq, ordinal, relation, src, dst, stmt_id, origin, attributes) FROM STDIN",
    "predictions": "COPY prov.predictions (id, seq, activity, time, input, output) FROM STDIN",
}
_IRIS = {"provault": PREFIXES["provault"], "sha256": PREFIXES["sha256"]}


def _json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("\\", "\\\\") if "\\" in text else text


def _iri(node_id: str) -> str:
    prefix, _, local = node_id.partition(":")
    return _IRIS[prefix] + local


@dataclass(slots=True)
class Loaded:
    name: str
    dsn: str
    workload: Workload
    entries: int = 0
    nodes: int = 0
    versions: int = 0
    edges: int = 0
    predictions: int = 0
    leaves: int = 0
    checked: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class _Sink:
    """One COPY per table, each on its own connection, fed in blocks."""

    def __init__(self, stack: contextlib.ExitStack, dsn: str) -> None:
        self.copies, self.buffers = {}, {}
        for table, statement in _COPIES.items():
            conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
            conn.execute("SET session_replication_role = replica")  # no foreign-key triggers during the load
            self.copies[table] = stack.enter_context(conn.cursor().copy(statement))
            self.buffers[table] = []

    def add(self, table: str, line: str) -> None:
        buf = self.buffers[table]
        buf.append(line)
        if len(buf) >= COPY_FLUSH:
            self.flush(table)

    def flush(self, table: str) -> None:
        self.copies[table].write("".join(self.buffers[table]))
        self.buffers[table].clear()


def _secondary_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, definition) of the prov indexes that back no constraint."""
    return conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'prov'"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY 1"
    ).fetchall()


def load_graph(target: Loaded, check_every: int) -> None:
    """Generate the workload's history and COPY its rows; nodes last, folded in memory."""
    w, keyids = target.workload, {p: k.keyid for p, k in target.workload.keys.items()}
    admin_keyid = "0" * 64
    nodes: dict[str, list[Any]] = {}
    with contextlib.ExitStack() as stack:
        sink = _Sink(stack, target.dsn)
        for item in w:
            rows = projector_rows(item) if item.kind == KEY_REGISTERED else fast_rows(item)
            if item.kind != KEY_REGISTERED and (item.seq % check_every == 0 or item.seq < 200):
                if projector_rows(item) != rows:
                    raise RuntimeError(f"bench generator disagrees with query._mapping.map_event at entry {item.seq} ({item.kind})")
                target.checked += 1
            _write_entry(sink, item, rows, keyids.get(item.producer, admin_keyid), nodes)
            target.edges += len(rows.edges)
            target.predictions += len(rows.predictions)
            target.versions += len(rows.nodes)
        for table in sink.buffers:
            sink.flush(table)
    target.entries, target.nodes = w.seq, len(nodes)
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        with conn.cursor().copy("COPY prov.nodes (id, iri, node_type, label, kind, attributes, first_seq, last_seq) FROM STDIN") as cp:
            for nid, (ntype, attrs, first, last) in nodes.items():
                cp.write_row((nid, _iri(nid), ntype, node_label(attrs), node_kind(attrs), Jsonb(attrs), first, last))
        conn.execute("UPDATE prov.position SET last_seq = %s", (w.seq - 1,))
        _register_keys(conn, w, admin_keyid)


def _write_entry(sink: _Sink, item: Item, rows: Rows, keyid: str, nodes: dict[str, list[Any]]) -> None:
    seq, when = item.seq, _stamp(item.seq)
    sink.add("entries", f"{seq}\t{uuid.UUID(int=random.getrandbits(128))}\t{item.kind}\t{keyid}\t{item.producer}\t{seq}\t{when}\t{when}\n")
    for nid, (ntype, attrs) in rows.nodes.items():
        sink.add("versions", f"{nid}\t{seq}\t{ntype or NULL}\t{_json(attrs) if attrs else '{}'}\n")
        node = nodes.get(nid)
        if node is None:
            nodes[nid] = [ntype, dict(attrs), seq, seq]
            continue
        if node[0] is None:
            node[0] = ntype
        node[1].update(attrs)
        node[3] = seq
    for ordinal, (rel, src, dst, sid, origin, attrs) in enumerate(rows.edges):
        sink.add("edges", f"{seq}\t{ordinal}\t{rel}\t{src}\t{dst}\t{sid}\t{origin}\t{_json(attrs) if attrs else '{}'}\n")
    for pid, activity, t, inp, out in rows.predictions:
        sink.add("predictions", f"{pid}\t{seq}\t{activity}\t{t}\t{_json(inp)}\t{_json(out)}\n")


def _register_keys(conn: psycopg.Connection, w: Workload, admin_keyid: str) -> None:
    """The producer keys in ledger.keys and an admin key in the trust root, for prov.entry_signers."""
    conn.execute("INSERT INTO ledger.trust_root (keyid, public_key, purpose, name) VALUES (%s, %s, 'admin', 'bench-admin')",
                 (admin_keyid, bytes(32)))  # fmt: skip
    for seq, (producer, key) in enumerate(w.keys.items()):
        conn.execute(
            "INSERT INTO ledger.keys (keyid, public_key, role, identity, kinds, producers, registered_seq, changed_seq)"
            " VALUES (%s, %s, 'producer', %s, %s, %s, %s, %s)",
            (key.keyid, key.public_key, Jsonb({"type": "service", "name": producer.split("@")[0]}), ["*"], [producer], seq, seq),
        )


def load_merkle(dsn: str, leaves: int, chunk: int = 1 << 16) -> None:
    """Random leaf hashes folded into every stored node of the tree, COPYed, and the log state set."""
    size, frontier = 0, []
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor().copy("COPY ledger.merkle_nodes (level, idx, hash) FROM STDIN") as cp:
            while size < leaves:
                n = min(chunk, leaves - size)
                blob = os.urandom(32 * n)
                frontier, made = append_leaves(size, frontier, [blob[i : i + 32] for i in range(0, 32 * n, 32)])
                cp.write("".join(f"{m.level}\t{m.index}\t\\\\x{m.hash.hex()}\n" for m in made))
                size += n
        conn.execute("UPDATE ledger.log_state SET size = %s, frontier = %s", (size, frontier))


def build(pg: EmbeddedPostgres, name: str, workload: Workload, leaves: int, check_every: int) -> Loaded:
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = Loaded(name=name, dsn=pg.dsn(name), workload=workload, leaves=leaves)
    migrate(target.dsn)
    migrate_prov(target.dsn)
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        indexes = _secondary_indexes(conn)
        for index, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier("prov", index)))
    t0 = time.perf_counter()
    load_graph(target, check_every)
    t1 = time.perf_counter()
    load_merkle(target.dsn, leaves)
    t2 = time.perf_counter()
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            conn.execute(sql.SQL(definition))  # type: ignore[arg-type] - the server's own definitions, read above
        conn.execute("VACUUM ANALYZE")
    target.seconds = {"graph": t1 - t0, "merkle": t2 - t1, "indexes_vacuum": time.perf_counter() - t2}
    return target


# --- (a) traceback over gRPC, (b) impact ----------------------------------------------------------------


@dataclass(slots=True)
class Served:
    db: Loaded
    service: QueryGrpcService
    channel: grpc.Channel
    stub: query_pb2_grpc.QueryServiceStub
    health: health_pb2_grpc.HealthStub


def serve(db: Loaded, stack: contextlib.ExitStack) -> Served:
    service = QueryGrpcService(dsn=db.dsn, listen="127.0.0.1:0", max_message_bytes=Settings().grpc.max_message_bytes)
    service.start()
    stack.callback(service.stop)
    channel = grpc.insecure_channel(service.address)
    stack.callback(channel.close)
    return Served(db=db, service=service, channel=channel, stub=query_pb2_grpc.QueryServiceStub(channel),
                  health=health_pb2_grpc.HealthStub(channel))  # fmt: skip


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = call()
    return time.perf_counter() - t0, out


def trace_latency(servers: list[Served], requests: int) -> dict[str, Any]:
    """Upstream Trace from random prediction ids, the servers taken in turn; health checks between."""
    ids = {s.db.name: s.db.workload.prediction_ids(requests + 30) for s in servers}
    ping = health_pb2.HealthCheckRequest(service="")
    samples: dict[str, list[float]] = {s.db.name: [] for s in servers}
    sizes: dict[str, list[int]] = {s.db.name: [] for s in servers}
    health: list[float] = []
    for i in range(requests + 30):
        for s in servers:
            req = query_pb2.TraceRequest(start_node_id=ids[s.db.name][i], direction=query_pb2.DIRECTION_UPSTREAM)
            dt, resp = _timed(lambda s=s, req=req: s.stub.Trace(req))
            dh, _ = _timed(lambda s=s: s.health.Check(ping))
            if i >= 30:  # the first 30 warm the pools and caches
                samples[s.db.name].append(dt)
                sizes[s.db.name].append(len(resp.nodes))
                health.append(dh)
    out: dict[str, Any] = {"requests": requests, "health": _stats(health)}
    for name, xs in samples.items():
        out[name] = {**_stats(xs), "nodes_mean": statistics.mean(sizes[name]), "nodes_max": max(sizes[name])}
    return out


def _stats(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(xs, 0.5) * 1e3, "p99_ms": _pct(xs, 0.99) * 1e3, "max_ms": max(xs) * 1e3}


def _timing_cursor(calls: list[tuple[Any, Any, float]]) -> type[psycopg.Cursor]:
    class Timed(psycopg.Cursor):
        def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super().execute(query, params, **kw)
            finally:
                calls.append((query, params, time.perf_counter() - t0))

    return Timed


def _text(query: Any, conn: psycopg.Connection) -> str:
    return " ".join((query.as_string(conn) if isinstance(query, sql.Composable) else str(query)).split())


def where_time_goes(db: Loaded, n: int) -> dict[str, Any]:
    """The same upstream traces in process, statement by statement; EXPLAIN ANALYZE of the costliest statement's slowest call."""
    ids = db.workload.prediction_ids(n + 10)
    calls: list[tuple[Any, Any, float]] = []
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        for pid in ids[:10]:
            traverse.trace(conn, pid)
        conn.cursor_factory = _timing_cursor(calls)
        walls = [_timed(lambda pid=pid: traverse.trace(conn, pid))[0] for pid in ids[10:]]
        conn.cursor_factory = psycopg.Cursor
        by: dict[str, list[tuple[Any, Any, float]]] = {}
        for q, p, dt in calls:
            by.setdefault(_text(q, conn)[:100], []).append((q, p, dt))
        top = sorted(by.items(), key=lambda kv: -sum(c[2] for c in kv[1]))
        q, p, _ = max(top[0][1], key=lambda c: c[2])
        plan = [r[0] for r in conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ") + (q if isinstance(q, sql.Composable) else sql.SQL(q)), p)]
    statements = [{"sql": k, "calls": len(v), "ms_per_trace": sum(c[2] for c in v) / n * 1e3} for k, v in top[:4]]
    plan = [re.sub(r"'\{[^']{80,}\}'", "'{…}'", line) for line in plan]
    return {"traces": n, "wall_p50_ms": _pct(walls, 0.5) * 1e3, "statements": statements, "plan": plan}


def _starts(w: Workload, n: int) -> dict[str, list[str]]:
    rng = random.Random(w.seed + 1)
    return {
        "hub": w.raw[:HUBS],
        "raw": rng.sample(w.raw[HUBS:], min(n, len(w.raw) - HUBS)),
        "derived": [d for d, _, _ in rng.sample(w.derived, min(n, len(w.derived)))],
    }


def impact(db: Loaded, per_group: int) -> dict[str, Any]:
    """Downstream from datasets, in process: time per node returned (predictions counted apart)."""
    out: dict[str, Any] = {}
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        traverse.trace(conn, db.workload.raw[0], direction=traverse.DOWNSTREAM)  # warm
        for group, starts in _starts(db.workload, per_group).items():
            runs = []
            for start in starts:
                dt, ans = _timed(lambda start=start: traverse.trace(conn, start, direction=traverse.DOWNSTREAM))
                runs.append((dt, len(ans.nodes), ans.predictions_total, ans.truncated))
            out[group] = {
                "starts": len(runs), "nodes_total": sum(r[1] for r in runs), "nodes_max": max(r[1] for r in runs),
                "predictions_total": sum(r[2] for r in runs), "truncated": sum(r[3] for r in runs),
                "seconds_total": sum(r[0] for r in runs), "seconds_max": max(r[0] for r in runs),
                "us_per_node_median": statistics.median(r[0] / r[1] * 1e6 for r in runs),
                "us_per_node_overall": sum(r[0] for r in runs) / sum(r[1] for r in runs) * 1e6,
            }  # fmt: skip
    return out


def impact_pages(served: Served, page_size: int = 5000, max_pages: int = 10) -> dict[str, Any]:
    """Every page of the largest hub's downstream answer through gRPC (each page re-walks the graph)."""
    start = served.db.workload.raw[0]
    req = query_pb2.TraceRequest(start_node_id=start, direction=query_pb2.DIRECTION_DOWNSTREAM, page_size=page_size)
    pages, items, per_page = 0, 0, []
    t0 = time.perf_counter()
    while pages < max_pages:
        dt, resp = _timed(lambda: served.stub.Trace(req))
        pages, items = pages + 1, items + len(resp.nodes)
        per_page.append(dt)
        if not resp.next_page_token:
            break
        req.page_token = resp.next_page_token
    total = time.perf_counter() - t0
    return {"start": start, "pages": pages, "items": items, "seconds": total, "complete": not resp.next_page_token,
            "page_p50_ms": _pct(per_page, 0.5) * 1e3, "us_per_item": total / max(items, 1) * 1e6}  # fmt: skip


# --- (c) inclusion proofs, (d) export -------------------------------------------------------------------------


def proofs(db: Loaded, samples: int) -> dict[str, Any]:
    rng = random.Random(db.workload.seed + 2)
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        point = "SELECT hash FROM ledger.merkle_nodes WHERE level = 0 AND idx = %s"
        proof, base, lengths = [], [], []
        for i in range(samples + 50):
            leaf = rng.randrange(db.leaves)
            dp, hashes = _timed(lambda leaf=leaf: log.inclusion_proof(conn, leaf, db.leaves))
            dq, _ = _timed(lambda leaf=leaf: conn.execute(point, (leaf,)).fetchone())
            if i >= 50:
                proof.append(dp)
                base.append(dq)
                lengths.append(len(hashes))
    return {"leaves": db.leaves, "samples": samples, "proof": _stats(proof), "pk_select": _stats(base),
            "hashes_mean": statistics.mean(lengths)}  # fmt: skip


def export(db: Loaded) -> dict[str, Any]:
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        t0 = time.perf_counter()
        triples = size = 0
        for chunk in export_stream(conn, fmt="ntriples"):
            triples += chunk.count(b"\n")
            size += len(chunk)
        t1 = time.perf_counter()
        rows = 0
        with conn.cursor().copy("COPY prov.edges TO STDOUT") as cp:
            for block in cp:
                rows += bytes(block).count(b"\n")
        t2 = time.perf_counter()
    graph_rows = db.nodes + db.edges + db.predictions
    return {
        "db": db.name, "triples": triples, "bytes": size, "seconds": t1 - t0, "triples_per_s": triples / (t1 - t0),
        "rows_per_s": graph_rows / (t1 - t0), "copy_rows": rows, "copy_seconds": t2 - t1, "copy_rows_per_s": rows / (t2 - t1),
    }  # fmt: skip


# --- (e) projector rebuild --------------------------------------------------------------------------------------


def story_events(n: int, rows: int) -> tuple[list, list]:
    """Registrations, then ~``n`` events: provstory's six-event story over and over, fresh ids each time."""
    from tests.query import provstory as ps  # noqa: PLC0415 - the test helpers, used as event factories

    chains = {r: ProducerChain(f"{r}@bench", Ed25519Signer.generate()) for r in ("trainer", "deployer", "server")}
    events = []
    for k in range(-(-n // 6)):
        u = [str(uuid.uuid4()) for _ in range(3)]
        i = ps.Ids(dataset="sha256:" + os.urandom(32).hex(), model="sha256:" + os.urandom(32).hex(), run=run_id(u[0]),
                   deploy=deploy_activity_id(u[1]), deployment=deployment_id("svc", u[1]), batch=predict_batch_id(u[2]),
                   code=git_id(os.urandom(20).hex()), predictions=tuple(f"req-{k}-{j}" for j in range(rows)))  # fmt: skip
        tr, de, se = chains["trainer"], chains["deployer"], chains["server"]
        events += [ps.dataset_registered(tr, i), ps.run_started(tr, i), ps.run_completed(tr, i), ps.model_registered(tr, i),
                   ps.model_deployed(de, i), ps.predictions_logged(se, i)]  # fmt: skip
    return list(chains.values()), events


def rebuild_rate(pg: EmbeddedPostgres, n: int, rows: int, repeats: int = 3) -> dict[str, Any]:
    from tests.ledgerkit import Ledger  # noqa: PLC0415

    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_rebuild")
    ledger = Ledger(pg.dsn("bench_rebuild"))
    try:
        migrate_prov(ledger.dsn)
        chains, events = story_events(n, rows)
        ledger.append(*[ledger.registration(c.signer, name=c.producer_id.split("@")[0]) for c in chains])
        for a in range(0, len(events), 500):
            plan = ledger.append(*events[a : a + 500])
            if len(plan.accepted) != len(events[a : a + 500]):
                raise RuntimeError(f"the ledger refused story events: {ledger.rejections()[:3]}")
    finally:
        ledger.close()
    with connect(ledger.dsn, autocommit=True, role=PROJECTOR_ROLE) as conn:
        total = project(conn)
        rebuilds, scans = [], []
        for _ in range(repeats):
            dt, done = _timed(lambda: rebuild(conn))
            rebuilds.append(dt)
            ds, seen = _timed(lambda: sum(1 for _ in log.iter_entries(conn)))
            scans.append(ds)
        envelope = conn.execute("SELECT avg(length(envelope))::int FROM ledger.entries").fetchone()[0]
    r, s = statistics.median(rebuilds), statistics.median(scans)
    return {"events": total, "rows_per_batch": rows, "envelope_bytes_mean": envelope, "rebuild_seconds": r,
            "rebuild_per_s": done / r, "scan_seconds": s, "scan_per_s": seen / s, "repeats": repeats}  # fmt: skip


# --- report ------------------------------------------------------------------------------------------------------


def _db_line(d: dict) -> str:
    s = d["seconds"]
    return (f"    {d['name']}: {d['entries']:,} entries, {d['nodes']:,} nodes, {d['versions']:,} node versions, "
            f"{d['edges']:,} edges, {d['predictions']:,} predictions, {d['leaves']:,} Merkle leaves; "
            f"generated+COPY {s['graph']:.0f} s, Merkle {s['merkle']:.0f} s, indexes+VACUUM {s['indexes_vacuum']:.0f} s; "
            f"generator checked against map_event on {d['checked']:,} entries")  # fmt: skip


def report(r: dict) -> None:
    small, large = r["dbs"]
    print(f"provault query benchmark: {r['cores']} cores, Python {sys.version.split()[0]}, load average before {r['loadavg']}")
    print(f"  {r['command']}")
    print("  data GENERATED DIRECTLY (bulk COPY into prov.* and ledger.merkle_nodes/log_state), not through ingest:")
    print(_db_line(small))
    print(_db_line(large))
    a = r["traceback"]
    h = a["health"]
    print(f"(a) Trace upstream from a random prediction over gRPC, {a['requests']} requests per database, interleaved:")
    for d in (small, large):
        x = a[d["name"]]
        print(f"    {d['name']} ({d['edges']:,} edges): p50 {x['p50_ms']:.2f} ms  p99 {x['p99_ms']:.2f} ms  max {x['max_ms']:.1f} ms "
              f"({x['nodes_mean']:.0f} nodes per answer, max {x['nodes_max']})")  # fmt: skip
    print(f"    baseline gRPC health check: p50 {h['p50_ms']:.2f} ms  p99 {h['p99_ms']:.2f} ms")
    big, sm = a[large["name"]], a[small["name"]]
    print(f"    p99 large/small {big['p99_ms'] / sm['p99_ms']:.2f}; p50 / health p50 {big['p50_ms'] / h['p50_ms']:.1f} "
          f"(target p99 <= 10 ms, flat with size)")  # fmt: skip
    for d in (small, large):
        x = r["breakdown"][d["name"]]
        print(f"    where the time goes on {d['name']} (the same traces in process, p50 {x['wall_p50_ms']:.1f} ms), per trace:")
        for st in x["statements"]:
            print(f"      {st['ms_per_trace']:8.2f} ms  {st['calls'] / x['traces']:.0f}x  {st['sql'][:90]}")
        print("      EXPLAIN (ANALYZE, BUFFERS) of the first statement's slowest call:")
        print("\n".join(f"        {line}" for line in x["plan"]))
    print("(b) impact: traverse.trace downstream from datasets, in process (default max_nodes 10,000):")
    for d in (small, large):
        for group, x in r["impact"][d["name"]].items():
            print(f"    {d['name']} {group:7s}: {x['starts']} starts, {x['nodes_total']:,} nodes (max {x['nodes_max']:,}, "
                  f"{x['truncated']} truncated), {x['predictions_total']:,} predictions reached; "
                  f"{x['us_per_node_median']:.0f} µs/node median, {x['us_per_node_overall']:.0f} µs/node overall, "
                  f"slowest {x['seconds_max'] * 1e3:.0f} ms")  # fmt: skip
    p = r["impact_pages"]
    print(f"    gRPC, every page (5,000 items) of {p['start'][:20]}… on {large['name']}: {p['pages']} pages, {p['items']:,} items "
          f"in {p['seconds']:.2f} s = {p['us_per_item']:.0f} µs/item (page p50 {p['page_p50_ms']:.0f} ms; "
          f"{'complete' if p['complete'] else 'stopped at the page cap'})")  # fmt: skip
    print("(c) inclusion_proof of a random leaf (2 round trips: log size, nodes):")
    for d in (small, large):
        x = r["proofs"][d["name"]]
        print(f"    {x['leaves']:,} leaves: p50 {x['proof']['p50_ms']:.3f} ms  p99 {x['proof']['p99_ms']:.3f} ms "
              f"({x['hashes_mean']:.1f} hashes); baseline PK SELECT p50 {x['pk_select']['p50_ms']:.3f} ms "
              f"p99 {x['pk_select']['p99_ms']:.3f} ms; ratio p50 {x['proof']['p50_ms'] / x['pk_select']['p50_ms']:.1f}")  # fmt: skip
    e = r["export"]
    print(f"(d) N-Triples export of the whole {e['db']} graph: {e['triples']:,} triples ({e['bytes'] / 1e6:.0f} MB) in "
          f"{e['seconds']:.1f} s = {e['triples_per_s']:,.0f} triples/s, {e['rows_per_s']:,.0f} graph rows/s")  # fmt: skip
    print(f"    baseline COPY prov.edges TO STDOUT: {e['copy_rows']:,} rows in {e['copy_seconds']:.2f} s = "
          f"{e['copy_rows_per_s']:,.0f} rows/s; ratio rows/s {e['rows_per_s'] / e['copy_rows_per_s']:.3f}")  # fmt: skip
    b = r["rebuild"]
    print(f"(e) rebuild of {b['events']:,} real signed events (provstory shapes, {b['rows_per_batch']} predictions per batch, "
          f"{b['envelope_bytes_mean']:,} B envelopes on average), median of {b['repeats']}: {b['rebuild_seconds']:.2f} s = "
          f"{b['rebuild_per_s']:,.0f} events/s")  # fmt: skip
    print(f"    baseline iter_entries over the same entries: {b['scan_per_s']:,.0f} entries/s; ratio {b['rebuild_per_s'] / b['scan_per_s']:.2f}")


# --- main ----------------------------------------------------------------------------------------------------------


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.query", description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", type=int, default=100_000, help="prediction rows in the large graph")
    ap.add_argument("--edges", type=int, default=1_000_000, help="edges in the large graph")
    ap.add_argument("--leaves", type=int, default=1_000_000, help="Merkle leaves for the inclusion proofs")
    ap.add_argument("--full", action="store_true", help="the issue's scale: 1M predictions, 10M edges, 10M leaves")
    ap.add_argument("--small", type=float, default=0.1, help="size of the second database, as a fraction")
    ap.add_argument("--requests", type=int, default=300, help="Trace requests timed per database")
    ap.add_argument("--batch-rows", type=int, default=100, help="predictions per prediction batch")
    ap.add_argument("--impact-starts", type=int, default=10, help="random raw and derived datasets for (b)")
    ap.add_argument("--proofs", type=int, default=1000, help="inclusion proofs timed per leaf count")
    ap.add_argument("--rebuild-events", type=int, default=6000, help="signed events for (e)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.full:
        args.predictions, args.edges, args.leaves = FULL["predictions"], FULL["edges"], FULL["leaves"]
    return args


def _command(args: argparse.Namespace) -> str:
    return (f"python -m bench.query --predictions {args.predictions} --edges {args.edges} --leaves {args.leaves} "
            f"--small {args.small} --requests {args.requests} --batch-rows {args.batch_rows} "
            f"--impact-starts {args.impact_starts} --proofs {args.proofs} --rebuild-events {args.rebuild_events} "
            f"--seed {args.seed}")  # fmt: skip


def _public(d: Loaded) -> dict[str, Any]:
    return {k: getattr(d, k) for k in ("name", "entries", "nodes", "versions", "edges", "predictions", "leaves", "checked", "seconds")}


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"cores": os.cpu_count() or 1, "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                              "command": _command(args)}  # fmt: skip
    with EmbeddedPostgres(root / "pg", database="postgres") as pg:
        dbs = []
        for name, f in (("small", args.small), ("large", 1.0)):
            w = Workload(edges=int(args.edges * f), predictions=int(args.predictions * f), batch_rows=args.batch_rows, seed=args.seed)
            print(f"building {name}: {w.edges:,} edges, {w.predictions:,} predictions ...", file=sys.stderr, flush=True)
            dbs.append(build(pg, name, w, max(1, int(args.leaves * f)), check_every=max(1, w.edges // 2000)))
        result["dbs"] = [_public(d) for d in dbs]
        with contextlib.ExitStack() as stack:
            servers = [serve(d, stack) for d in dbs]
            print("(a) traceback ...", file=sys.stderr, flush=True)
            result["traceback"] = trace_latency(servers, args.requests)
            result["breakdown"] = {d.name: where_time_goes(d, 50) for d in dbs}
            print("(b) impact ...", file=sys.stderr, flush=True)
            result["impact"] = {d.name: impact(d, args.impact_starts) for d in dbs}
            result["impact_pages"] = impact_pages(servers[-1])
        print("(c) proofs, (d) export ...", file=sys.stderr, flush=True)
        result["proofs"] = {d.name: proofs(d, args.proofs) for d in dbs}
        result["export"] = export(dbs[0])
        print("(e) rebuild ...", file=sys.stderr, flush=True)
        result["rebuild"] = rebuild_rate(pg, args.rebuild_events, args.batch_rows)
    return result


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    root = Path(tempfile.mkdtemp(prefix="provault-bench-query-"))
    try:
        result = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
