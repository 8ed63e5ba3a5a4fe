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
    saved = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True  # one BEGIN says both
    try:
        with conn.transaction():
            yield
    finally:
        conn.isolation_level, conn.read_only = saved


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

# The nodes with the versions that say something (a partial index, without the empty mentions of
# hubs) and each one's first mention (by primary key), in one statement.  At or after a node's
# last version its merged attributes are read as stored, not folded.
_NODES = """
SELECT n.id, n.node_type, n.first_seq, CASE WHEN n.last_seq <= %(seq)s THEN n.attributes END,
       v.seq, v.node_type, CASE WHEN n.last_seq > %(seq)s THEN v.attributes END
FROM prov.nodes AS n
CROSS JOIN LATERAL (
    SELECT x.seq, x.node_type, x.attributes FROM prov.node_versions AS x
    WHERE x.node_id = n.id AND x.seq <= %(seq)s AND x.attributes <> '{}'::jsonb
  UNION ALL
    SELECT x.seq, x.node_type, x.attributes FROM prov.node_versions AS x
    WHERE x.node_id = n.id AND x.seq = n.first_seq AND x.attributes = '{}'::jsonb
) AS v
WHERE n.id = ANY(%(ids)b) AND n.first_seq <= %(seq)s
ORDER BY n.id, v.seq
"""
_FIRST_TYPES = (
    "SELECT DISTINCT ON (node_id) node_id, node_type FROM prov.node_versions"
    " WHERE node_id = ANY(%s) AND seq <= %s AND node_type IS NOT NULL ORDER BY node_id, seq"
)


def _load_nodes(conn: psycopg.Connection, ids: Sequence[str], seq: int) -> dict[str, TraceNode]:
    """The nodes among ``ids`` that existed at ``seq``, with their attributes as of it (depth 0)."""
    if not ids:
        return {}
    heads: dict[str, tuple[str | None, int, dict | None]] = {}
    versions: dict[str, list[tuple[int, str | None, dict | None]]] = {}
    for nid, ntype, first, merged, vseq, vtype, attrs in conn.execute(_NODES, {"ids": list(ids), "seq": seq}):
        heads.setdefault(nid, (ntype, first, merged))
        versions.setdefault(nid, []).append((vseq, vtype, attrs))
    types = {nid: next((t for _, t, _ in versions[nid] if t), None) for nid in heads}
    late = [nid for nid, t in types.items() if t is None and heads[nid][0] is not None]
    if late:  # typed only by a version without attributes (rare: first seen in wasInfluencedBy)
        types.update(dict(conn.execute(_FIRST_TYPES, (late, seq)).fetchall()))
    out: dict[str, TraceNode] = {}
    for nid, (_, first, merged) in heads.items():
        vs = versions[nid]
        attrs = merged if merged is not None else fold_attributes(a for _, _, a in vs if a)
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
