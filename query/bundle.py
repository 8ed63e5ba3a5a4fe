"""Audit bundles and inclusion proofs for the entries behind an answer (docs/auditors.md).

* :func:`proofs_for` -- one signed checkpoint that covers a set of seqs and an
  inclusion proof (O(log n) stored nodes) for each; seqs newer than the
  checkpoint are listed apart as not yet provable.  ``Proofs.to_pb()`` is the
  ``EntryProofs`` of a Trace page.
* :func:`build_bundle` -- a ``provault.v1.AuditBundle`` for the entries at
  some seqs: their exact envelopes with proofs, the key history behind every
  signing key, and the nodes and edges the entries state.
* :func:`bundle_trace` -- what ``QueryService.Bundle`` and ``provault bundle``
  answer: trace from a node (``query.traverse.trace``), then :func:`build_bundle`.

What a bundle holds, and why (the verifier is ``query.bundle_verify``):

* ``as_of_seq`` defaults to the last seq of the latest checkpoint, so every
  entry is provable; an as-of beyond it is ``NotCovered``.
* ``entries``: the seqs asked for, plus, for every node of the bundle, the
  entries the projection folds into it (its first mention, every mention
  with attributes, its first typed mention).  So the nodes recompute from the
  bundle exactly as the projection holds them.
* ``key_entries``: for every key that signed an entry (key entries included,
  recursively), its ``key.registered`` entry and, when the checkpoint covers
  one, its ``key.revoked`` entry.  ``root_keyids`` lists exactly the admin
  keys that sign something in the bundle.
* Unsigned clocks (``Entry.received_time``, ``Checkpoint.signed_time``,
  ``created_time``) are left out: nothing in a bundle is unverifiable, so a
  change to any byte of a bundle file is detected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ledger.core.envelope import parse_envelope
from ledger.core.errors import InvalidArgument, LedgerCorrupted, expected_found
from ledger.core.events import parse_event
from ledger.grpckit.status import NotCovered, NotFound
from ledger.store import checkpoints as stored_checkpoints
from ledger.store import log
from ledger.store.checkpoints import StoredCheckpoint
from ledger.store.entries import StoredEntry, entries_at
from provault.v1 import ledger_pb2, query_pb2
from query.bundle_verify import (
    BUNDLE_FORMAT,
    Graph,
    decode_bundle,
    edge_pb,
    encode_bundle,
    node_pb,
    read_bundle,
    recompute_graph,
    write_bundle,
)
from query.wire import DIRECTION_VALUES

# --- proofs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SeqProof:
    """The inclusion proof of the entry at ``seq`` (its leaf index) in a tree of ``tree_size``."""

    seq: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]

    def to_pb(self) -> ledger_pb2.InclusionProof:
        return ledger_pb2.InclusionProof(
            seq=self.seq,
            leaf_index=self.seq,
            tree_size=self.tree_size,
            leaf_hash=self.leaf_hash,
            hashes=list(self.hashes),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Proofs:
    """Proofs for a set of seqs against one signed checkpoint, and the seqs it does not cover yet."""

    checkpoint: StoredCheckpoint
    proofs: tuple[SeqProof, ...]
    unproven_seqs: tuple[int, ...]

    def to_pb(self) -> query_pb2.EntryProofs:
        return query_pb2.EntryProofs(
            checkpoint=checkpoint_pb(self.checkpoint, signed_time=True),
            inclusion_proofs=[p.to_pb() for p in self.proofs],
            unproven_seqs=list(self.unproven_seqs),
        )


def checkpoint_pb(cp: StoredCheckpoint, *, signed_time: bool = False) -> ledger_pb2.Checkpoint:
    """The checkpoint message; ``signed_time`` (unsigned, ledger clock) only when asked for."""
    msg = ledger_pb2.Checkpoint(
        signed_note=cp.note, origin=cp.note.split("\n", 1)[0], tree_size=cp.tree_size, root_hash=cp.root_hash
    )
    if signed_time:
        msg.signed_time.FromDatetime(cp.signed_at)
    return msg


def _checkpoint(conn: psycopg.Connection, tree_size: int | None) -> StoredCheckpoint:
    cp = stored_checkpoints.latest(conn) if tree_size is None else stored_checkpoints.at_size(conn, tree_size)
    if cp is None:
        if tree_size is None:
            raise NotFound("the ledger has signed no checkpoint yet", hint="run `provault ledger init`")
        raise NotFound(
            f"no checkpoint at tree size {tree_size}", hint="ask for a size you saw in a checkpoint, or for the latest"
        )
    return cp


def _check_seqs(seqs: Iterable[int]) -> list[int]:
    out = sorted(set(seqs))
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise InvalidArgument(f"seqs must be integers >= 0, found {bad[:5]}")
    return out


@log.translate_errors
def _leaf_hashes(conn: psycopg.Connection, seqs: Sequence[int]) -> dict[int, bytes]:
    rows = conn.execute("SELECT seq, leaf_hash FROM ledger.entries WHERE seq = ANY(%s)", (list(seqs),))
    found = {int(s): bytes(h) for s, h in rows}
    missing = [s for s in seqs if s not in found]
    if missing:
        raise InvalidArgument(f"no log entries at seqs {missing[:10]}", hint="the log has fewer entries than that")
    return found


def proofs_for(conn: psycopg.Connection, seqs: Iterable[int], *, tree_size: int | None = None) -> Proofs:
    """One checkpoint (the latest, or the one at ``tree_size``) and an inclusion proof per covered seq."""
    wanted = _check_seqs(seqs)
    cp = _checkpoint(conn, tree_size)
    leaves = _leaf_hashes(conn, wanted)
    covered = [s for s in wanted if s < cp.tree_size]
    proofs = tuple(
        SeqProof(
            seq=s, tree_size=cp.tree_size, leaf_hash=leaves[s], hashes=tuple(log.inclusion_proof(conn, s, cp.tree_size))
        )
        for s in covered
    )
    return Proofs(checkpoint=cp, proofs=proofs, unproven_seqs=tuple(s for s in wanted if s >= cp.tree_size))


# --- reading what a bundle needs -------------------------------------------------------------


@log.translate_errors
def _node_seqs(conn: psycopg.Connection, node_ids: Sequence[str], as_of: int) -> set[int]:
    """The entries the projection folds into these nodes up to ``as_of`` (see the module docstring)."""
    position = conn.execute("SELECT last_seq FROM prov.position").fetchone()[0]
    if position < as_of:
        raise NotCovered(
            f"the projection has reached seq {position}, not yet the bundle's as-of seq {as_of}",
            hint="the projector catches up within about a second; retry shortly",
        )
    rows = conn.execute(
        "SELECT DISTINCT seq FROM ("
        " SELECT seq, attributes, node_type,"
        "  row_number() OVER (PARTITION BY node_id ORDER BY seq) AS n,"
        "  row_number() OVER (PARTITION BY node_id, node_type IS NULL ORDER BY seq) AS t"
        " FROM prov.node_versions WHERE node_id = ANY(%(ids)s) AND seq <= %(seq)s) v"
        " WHERE n = 1 OR attributes <> '{}'::jsonb OR (node_type IS NOT NULL AND t = 1)"
        " UNION SELECT seq FROM prov.predictions WHERE id = ANY(%(ids)s) AND seq <= %(seq)s",
        {"ids": list(node_ids), "seq": as_of},
    )
    return {int(r[0]) for r in rows}


@log.translate_errors
def _key_rows(conn: psycopg.Connection) -> tuple[set[str], dict[str, tuple[int, int | None]]]:
    roots = {r[0] for r in conn.execute("SELECT keyid FROM ledger.trust_root WHERE purpose = 'admin'")}
    keys = {r[0]: (int(r[1]), r[2]) for r in conn.execute("SELECT keyid, registered_seq, revoked_seq FROM ledger.keys")}
    return roots, keys


def _key_history(conn: psycopg.Connection, signers: set[str], tree_size: int) -> tuple[list[int], list[str]]:
    """Seqs of the key entries behind ``signers`` (recursively) and the root keyids they rest on."""
    roots, keys = _key_rows(conn)
    seqs: set[int] = set()
    used_roots: set[str] = set()
    todo = sorted(signers)
    seen: set[str] = set()
    while todo:
        kid = todo.pop()
        if kid in seen:
            continue
        seen.add(kid)
        if kid in roots:
            used_roots.add(kid)
            continue
        if kid not in keys:
            raise LedgerCorrupted(
                f"entries are signed by key {kid}, which is neither a root key nor in ledger.keys",
                hint="run `provault verify`",
            )
        registered, revoked = keys[kid]
        new = [registered] + ([revoked] if revoked is not None and revoked < tree_size else [])
        for row in entries_at(conn, [s for s in new if s not in seqs]).values():
            todo.append(row.keyid)
        seqs.update(new)
    return sorted(seqs), sorted(used_roots)


# --- building --------------------------------------------------------------------------


def _direction(direction: str) -> int:
    if direction not in DIRECTION_VALUES:
        raise InvalidArgument(expected_found("direction", f"one of {sorted(DIRECTION_VALUES)}", repr(direction)))
    return DIRECTION_VALUES[direction]


def _graph(rows: dict[int, StoredEntry]) -> Graph:
    events = []
    for seq, row in sorted(rows.items()):
        events.append(
            (seq, parse_event(parse_envelope(row.envelope, max_size=len(row.envelope)).payload, max_size=1 << 30))
        )
    return recompute_graph(events)


def _proven(row: StoredEntry, proof: SeqProof) -> query_pb2.ProvenEntry:
    entry = ledger_pb2.Entry(
        seq=row.seq, event_id=row.event_id, keyid=row.keyid, envelope_json=row.envelope, leaf_hash=row.leaf_hash
    )
    return query_pb2.ProvenEntry(entry=entry, inclusion_proof=proof.to_pb())


def _as_of(cp: StoredCheckpoint, as_of_seq: int | None) -> int:
    if cp.tree_size == 0:
        raise NotCovered("the latest checkpoint covers no entry yet", hint="retry after the next checkpoint")
    if as_of_seq is None:
        return cp.tree_size - 1
    if as_of_seq >= cp.tree_size:
        raise NotCovered(
            f"as-of seq {as_of_seq} is newer than the latest checkpoint (tree size {cp.tree_size}), so it is not provable yet",
            hint="retry after the next checkpoint, about a second later",
        )
    return as_of_seq


def build_bundle(
    conn: psycopg.Connection,
    seqs: Iterable[int],
    *,
    subject: str,
    direction: str,
    as_of_seq: int | None = None,
    node_ids: Sequence[str] | None = None,
    relations: Sequence[str] = (),
    truncated: bool = False,
    extra_keys: Sequence[str] = (),
) -> query_pb2.AuditBundle:
    """The audit bundle for the entries at ``seqs``, about ``subject``, against the latest checkpoint.

    ``node_ids`` are the traced nodes (in the trace's order); without them the
    bundle's nodes are every node the entries at ``seqs`` mention.  Edges are
    the edges the bundle's entries state between its nodes, of ``relations``
    only when given.  ``extra_keys`` are keyids whose key history the bundle
    carries although they sign none of its entries (an attestation's
    signer).  Raises ``NotCovered`` when a seq or ``as_of_seq`` is
    newer than the latest checkpoint, naming the seqs.
    """
    cp = _checkpoint(conn, None)
    as_of = _as_of(cp, as_of_seq)
    wanted = _check_seqs(seqs)
    unproven = [s for s in wanted if s >= cp.tree_size]
    if unproven:
        raise NotCovered(
            f"seqs {unproven[:10]} are newer than the latest checkpoint (tree size {cp.tree_size}): not provable yet",
            hint="retry after the next checkpoint, about a second later",
        )
    if wanted and wanted[-1] > as_of:
        raise InvalidArgument(f"seqs {[s for s in wanted if s > as_of][:10]} lie after the bundle's as-of seq {as_of}")
    base = entries_at(conn, wanted)
    nodes = list(node_ids) if node_ids is not None else sorted(_graph(base).nodes)
    if subject not in nodes:
        raise InvalidArgument(
            f"the subject {subject!r} is not among the bundle's nodes", hint="trace from it, or include its entries"
        )
    rows = {**base, **entries_at(conn, sorted(_node_seqs(conn, nodes, as_of) - set(base)))}
    graph = _graph(rows)
    key_seqs, roots = _key_history(conn, {r.keyid for r in rows.values()} | set(extra_keys), cp.tree_size)
    key_rows = entries_at(conn, key_seqs)
    proofs = {p.seq: p for p in proofs_for(conn, set(rows) | set(key_rows), tree_size=cp.tree_size).proofs}
    bundle = query_pb2.AuditBundle(
        format=BUNDLE_FORMAT,
        node_id=subject,
        direction=_direction(direction),
        as_of_seq=as_of,
        checkpoint=checkpoint_pb(cp),
        checkpoint_verifier_key=stored_checkpoints.checkpoint_verifier(conn).vkey(),
        root_keyids=roots,
        truncated=truncated,
        entries=[_proven(rows[s], proofs[s]) for s in sorted(rows)],
        key_entries=[_proven(key_rows[s], proofs[s]) for s in key_seqs],
    )
    _add_graph(bundle, graph, subject, nodes, relations)
    return bundle


def _add_graph(
    bundle: query_pb2.AuditBundle, graph: Graph, subject: str, nodes: Sequence[str], relations: Sequence[str]
) -> None:
    """The nodes the entries state (a root key is not in the log: it is left out), and their edges."""
    if subject not in graph.nodes:
        raise InvalidArgument(
            f"no entry of the log states the subject {subject!r}, so a bundle cannot prove it",
            hint="root (admin) keys come from the trust root, not the log; bundle a node the log mentions",
        )
    order = [subject] + [n for n in dict.fromkeys(nodes) if n != subject and n in graph.nodes]
    bundle.nodes.extend(node_pb(graph.nodes[n]) for n in order)
    members = set(order)
    for key, stated in sorted(graph.edges.items(), key=lambda kv: (kv[0][3], kv[0][0], kv[0][1], kv[0][2])):
        relation, src, dst, _ = key
        if src in members and dst in members and (not relations or relation in relations):
            seen: list[dict[str, Any]] = []
            for attributes in stated:
                if attributes not in seen:
                    seen.append(attributes)
                    bundle.edges.append(edge_pb(key, attributes))


# --- the RPC ------------------------------------------------------------------------------


@log.translate_errors
def _seq_at_time(conn: psycopg.Connection, when: datetime) -> int:
    row = conn.execute("SELECT max(seq) FROM prov.entries WHERE received_at <= %s", (when,)).fetchone()
    if row is None or row[0] is None:
        raise NotFound(f"no entry was received at or before {when.isoformat()}")
    return int(row[0])


def _trace_node_ids(trace: Any) -> list[str] | None:
    """The traced nodes, then the predictions a downstream walk reached (one page of them)."""
    nodes = getattr(trace, "nodes", None)
    if nodes is None:
        return None
    return [n if isinstance(n, str) else n.id for n in nodes] + list(getattr(trace, "predictions", ()))


def bundle_trace(
    conn: psycopg.Connection,
    node_id: str,
    *,
    direction: str,
    relations: Sequence[str] = (),
    max_depth: int | None = None,
    max_nodes: int | None = None,
    as_of_seq: int | None = None,
    as_of_time: datetime | None = None,
) -> query_pb2.AuditBundle:
    """Trace from ``node_id`` (``query.traverse.trace``), then bundle the entries behind the trace.

    The arguments are already checked (QueryService's ``Bundle`` checks the request once, the CLI builds
    them); the point in history is ``as_of_seq``, else the last entry received at ``as_of_time``, else the
    latest checkpoint's, and must be covered by the latest checkpoint.
    """
    from query.traverse import trace  # noqa: PLC0415 - the traversal is optional for the builder

    as_of = as_of_seq if as_of_seq is not None else _seq_at_time(conn, as_of_time) if as_of_time else None
    as_of = _as_of(_checkpoint(conn, None), as_of)
    limits = {k: v for k, v in (("max_depth", max_depth), ("max_nodes", max_nodes)) if v}
    t = trace(conn, node_id, direction=direction, relations=tuple(relations), as_of_seq=as_of, **limits)
    return build_bundle(
        conn,
        t.seqs,
        subject=getattr(t, "start", node_id),
        direction=direction,
        as_of_seq=as_of,
        node_ids=_trace_node_ids(t),
        relations=tuple(relations),
        truncated=bool(getattr(t, "truncated", False)),
    )


__all__ = [
    "Proofs",
    "SeqProof",
    "build_bundle",
    "bundle_trace",
    "checkpoint_pb",
    "decode_bundle",
    "encode_bundle",
    "proofs_for",
    "read_bundle",
    "write_bundle",
]
