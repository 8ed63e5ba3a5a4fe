"""The ledger position an answer is read at: the projected seq, as-of resolution, one snapshot, nodes as of a seq."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from types import MappingProxyType

import psycopg

from ledger.core.errors import InvalidArgument, expected_found
from ledger.db import translate_errors
from query._mapping import (
    fold_attributes,
    node_kind,
    node_label,
)

from ._answers import AsOfNotProjected, TraceNode

# --- the ledger position ------------------------------------------------------------


def position(conn: psycopg.Connection) -> int:
    """The last seq projected (-1 before the first)."""
    return int(conn.execute("SELECT last_seq FROM prov.position").fetchone()[0])


@translate_errors
def resolve_as_of(conn: psycopg.Connection, *, seq: int | None = None, time: datetime | None = None) -> int | None:
    """The seq an as-of names: ``seq`` itself, or the last seq received at or before ``time``.

    None when neither is given (the projection's position).  A time before the
    first entry gives -1 (nothing existed).  A time the projector has not
    reached yet raises :class:`AsOfNotProjected`.
    """
    if seq is not None and time is not None:
        raise InvalidArgument("as_of: expected a seq or a time, found both")
    if seq is not None:
        return _seq_arg(seq, "as_of seq")
    if time is None:
        return None
    if time.tzinfo is None:
        raise InvalidArgument(expected_found("as_of time", "a time with a UTC offset", time.isoformat()))
    found = conn.execute("SELECT max(seq) FROM prov.entries WHERE received_at <= %s", (time,)).fetchone()[0]
    pos = position(conn)
    nxt = conn.execute("SELECT received_at FROM ledger.entries WHERE seq = %s", (pos + 1,)).fetchone()
    if nxt is not None and nxt[0] <= time:
        raise AsOfNotProjected(
            f"as of {time.isoformat()}: entries received by then are not projected yet (projection at seq {pos})",
            hint="retry shortly; the projector is catching up",
        )
    return -1 if found is None else int(found)


@contextlib.contextmanager
def snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """One read-only REPEATABLE READ snapshot for the queries of one answer.

    Every query of an answer is pinned to a seq, so a projector appending
    meanwhile changes nothing; the snapshot also keeps a concurrent
    ``rebuild`` (which truncates, then replays) from showing half a graph.
    On a connection already inside a transaction, that transaction is used.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _seq_arg(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(expected_found(what, "a seq >= 0", repr(value)))
    return value


@translate_errors
def pin_as_of(conn: psycopg.Connection, as_of_seq: int | None) -> int:
    """The seq an answer is as of: ``as_of_seq`` if the projection has reached it, else its position."""
    pos = position(conn)
    if as_of_seq is None:
        return pos
    if as_of_seq == -1:  # resolve_as_of's "before the first entry"
        return -1
    _seq_arg(as_of_seq, "as_of_seq")
    if as_of_seq > pos:
        raise AsOfNotProjected(
            f"as of seq {as_of_seq}: the projection has reached seq {pos} only",
            hint="retry shortly; the projector is catching up (or the seq is not in the log yet)",
        )
    return as_of_seq


# --- nodes as of a seq -----------------------------------------------------------------

_NODES = "SELECT id, node_type, first_seq FROM prov.nodes WHERE id = ANY(%s) AND first_seq <= %s"
_VERSIONS = (  # the versions that say something (a partial index), without the empty mentions of hubs
    "SELECT node_id, seq, node_type, attributes FROM prov.node_versions"
    " WHERE node_id = ANY(%s) AND seq <= %s AND attributes <> '{}'::jsonb"
)
_FIRST_VERSIONS = (  # plus each node's first mention, by primary key
    "SELECT v.node_id, v.seq, v.node_type, v.attributes FROM prov.node_versions AS v"
    " JOIN unnest(%s::text[], %s::bigint[]) AS f(id, seq) ON v.node_id = f.id AND v.seq = f.seq"
)
_FIRST_TYPES = (
    "SELECT DISTINCT ON (node_id) node_id, node_type FROM prov.node_versions"
    " WHERE node_id = ANY(%s) AND seq <= %s AND node_type IS NOT NULL ORDER BY node_id, seq"
)


def _load_nodes(conn: psycopg.Connection, ids: Sequence[str], seq: int) -> dict[str, TraceNode]:
    """The nodes among ``ids`` that existed at ``seq``, with their attributes as of it (depth 0)."""
    if not ids:
        return {}
    heads = {nid: (ntype, first) for nid, ntype, first in conn.execute(_NODES, (list(ids), seq))}
    rows = {(r[0], r[1]): r for r in conn.execute(_VERSIONS, (list(heads), seq))}
    firsts = list(heads)
    rows.update({(r[0], r[1]): r for r in conn.execute(_FIRST_VERSIONS, (firsts, [heads[n][1] for n in firsts]))})
    versions: dict[str, list[tuple[int, str | None, dict]]] = {}
    for nid, vseq, vtype, attrs in (rows[k] for k in sorted(rows)):
        versions.setdefault(nid, []).append((vseq, vtype, attrs))
    types = {nid: next((t for _, t, _ in versions.get(nid, ()) if t), None) for nid in heads}
    late = [nid for nid, t in types.items() if t is None and heads[nid][0] is not None]
    if late:  # typed only by a version without attributes (rare: first seen in wasInfluencedBy)
        types.update(dict(conn.execute(_FIRST_TYPES, (late, seq)).fetchall()))
    out: dict[str, TraceNode] = {}
    for nid, (_, first) in heads.items():
        vs = versions.get(nid, [])
        attrs = fold_attributes(a for _, _, a in vs)
        out[nid] = TraceNode(
            id=nid,
            type=types[nid],
            label=node_label(attrs),
            kind=node_kind(attrs),
            attributes=MappingProxyType(attrs),
            first_seq=first,
            seqs=tuple(sorted({first, *(s for s, _, _ in vs)})),
        )
    return out


def _with_depth(node: TraceNode, depth: int) -> TraceNode:
    return TraceNode(
        id=node.id,
        type=node.type,
        label=node.label,
        kind=node.kind,
        attributes=node.attributes,
        first_seq=node.first_seq,
        depth=depth,
        seqs=node.seqs,
    )
