"""Bulk loading a workload into a fresh database: PROV rows and a Merkle tree COPYed in, indexes after."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.query.rows import Rows, fast_rows, projector_rows
from bench.query.workload import Item, Workload, stamp
from ledger.core.frontier import append_leaves
from ledger.core.keyring import KEY_REGISTERED
from ledger.core.vocab import PREFIXES
from ledger.embedded import EmbeddedPostgres
from ledger.store.migrate import migrate
from query._mapping import changed_attributes, node_kind, node_label
from query.projector import migrate_prov

COPY_FLUSH = 5000
NULL = "\\N"
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
    state: dict[str, dict[str, str]] = {}  # what the projector keeps of each version: what it changed
    with contextlib.ExitStack() as stack:
        sink = _Sink(stack, target.dsn)
        for item in w:
            rows = projector_rows(item) if item.kind == KEY_REGISTERED else fast_rows(item)
            if item.kind != KEY_REGISTERED and (item.seq % check_every == 0 or item.seq < 200):
                if projector_rows(item) != rows:
                    raise RuntimeError(
                        f"bench generator disagrees with query._mapping.map_event at entry {item.seq} ({item.kind})"
                    )
                target.checked += 1
            _write_entry(sink, item, rows, keyids.get(item.producer, admin_keyid), nodes, state)
            target.edges += len(rows.edges)
            target.predictions += len(rows.predictions)
            target.versions += len(rows.nodes)
        for table in sink.buffers:
            sink.flush(table)
    target.entries, target.nodes = w.seq, len(nodes)
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        with conn.cursor().copy(
            "COPY prov.nodes (id, iri, node_type, label, kind, attributes, first_seq, last_seq) FROM STDIN"
        ) as cp:
            for nid, (ntype, attrs, first, last) in nodes.items():
                cp.write_row((nid, _iri(nid), ntype, node_label(attrs), node_kind(attrs), Jsonb(attrs), first, last))
        conn.execute("UPDATE prov.position SET last_seq = %s", (w.seq - 1,))
        _register_keys(conn, w, admin_keyid)


def _write_entry(
    sink: _Sink, item: Item, rows: Rows, keyid: str, nodes: dict[str, list[Any]], state: dict[str, dict[str, str]]
) -> None:
    seq, when = item.seq, stamp(item.seq)
    sink.add(
        "entries",
        f"{seq}\t{uuid.UUID(int=random.getrandbits(128))}\t{item.kind}\t{keyid}\t{item.producer}\t{seq}\t{when}\t{when}\n",
    )
    for nid, (ntype, attrs) in rows.nodes.items():
        changed = changed_attributes(state, nid, attrs)
        sink.add("versions", f"{nid}\t{seq}\t{ntype or NULL}\t{_json(changed) if changed else '{}'}\n")
        node = nodes.get(nid)
        if node is None:
            nodes[nid] = [ntype, dict(attrs), seq, seq]
            continue
        if node[0] is None:
            node[0] = ntype
        node[1].update(attrs)
        node[3] = seq
    for ordinal, (rel, src, dst, sid, origin, attrs) in enumerate(rows.edges):
        sink.add(
            "edges", f"{seq}\t{ordinal}\t{rel}\t{src}\t{dst}\t{sid}\t{origin}\t{_json(attrs) if attrs else '{}'}\n"
        )
    for pid, activity, t, inp, out in rows.predictions:
        sink.add("predictions", f"{pid}\t{seq}\t{activity}\t{t}\t{_json(inp)}\t{_json(out)}\n")


def _register_keys(conn: psycopg.Connection, w: Workload, admin_keyid: str) -> None:
    """The producer keys in ledger.keys and an admin key in the trust root, for prov.entry_signers."""
    conn.execute(
        "INSERT INTO ledger.trust_root (keyid, public_key, purpose, name) VALUES (%s, %s, 'admin', 'bench-admin')",
        (admin_keyid, bytes(32)),
    )
    for seq, (producer, key) in enumerate(w.keys.items()):
        conn.execute(
            "INSERT INTO ledger.keys (keyid, public_key, role, identity, kinds, producers, registered_seq, changed_seq)"
            " VALUES (%s, %s, 'producer', %s, %s, %s, %s, %s)",
            (
                key.keyid,
                key.public_key,
                Jsonb({"type": "service", "name": producer.split("@")[0]}),
                ["*"],
                [producer],
                seq,
                seq,
            ),
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
