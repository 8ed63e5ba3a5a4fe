"""Traceback and impact over the PROV projection (docs/query.md, DESIGN contract 7).

:func:`trace` walks the ``prov`` graph from one node, **upstream** (follow
edges ``src -> dst``: what produced it) or **downstream** (``dst -> src``:
what it touched), as the ledger stood at a seq.  Decisions:

* **The walk** is one recursive query that moves a whole breadth-first level
  per step: each level is the far ends of the edges leaving the previous
  level (an index lookup on ``edges (src|dst, relation, seq)`` per node),
  minus every node visited so far.  It cannot loop on a cycle, gives every
  node its smallest depth, and orders each level by id, so the same question
  at the same seq always gets the same answer.  ``max_depth`` bounds the hops
  and ``max_nodes`` the nodes (start included); the walk probes one level or
  node beyond either bound to tell whether it cut something (``truncated``).
* **Edges** of the answer are the relation statements between two nodes of
  the answer, one per ``(relation, src, dst)`` with its smallest seq (when the
  hop became known).
* **As of seq N**: edges with ``seq <= N``, nodes with ``first_seq <= N``,
  attributes folded from ``node_versions`` up to N, predictions up to N.
  Without a seq the answer is as of the projection's position; a seq beyond
  it raises :class:`AsOfNotProjected` (retry later).
* **Predictions** are rows, not nodes.  A start that is a prediction id (raw
  ``req-42`` or ``provault:prediction/req-42``) is presented as an entity of
  kind ``provault:Prediction`` that ``wasGeneratedBy`` its batch activity at
  the row's seq; the walk goes on from the batch.  Downstream, the
  predictions of every batch activity reached at a depth below
  ``max_depth`` (a prediction is one hop beyond its batch) are listed in
  :attr:`Trace.predictions`, ordered by id and paged with
  ``predictions_limit`` / ``predictions_after``; they do not count against
  ``max_nodes``, which bounds the graph walk.
* **Consistency**: each answer reads one REPEATABLE READ snapshot
  (:func:`snapshot`), so even a concurrent ``rebuild`` cannot show half a
  graph.
* **Keys**: downstream from a key (``provault:key/<keyid>`` or a bare keyid,
  root keys included) also follows its signatures: every node that an entry
  signed by the key asserted something about (the dependent end of an edge it
  stated, or a node it gave attributes) is one hop away, through an edge
  ``wasInfluencedBy`` of type ``provault:SignedBy`` (``origin`` ``signature``).
* **Evidence**: :attr:`Trace.seqs` are the log entries behind the answer:
  each node's first mention and every version that gave it attributes, each
  edge's seq, each prediction row's seq.  :attr:`Trace.signers` gives the key
  that signed each of them and :attr:`Trace.keys` who holds it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ledger.core.errors import InvalidArgument, ProvaultError, expected_found
from ledger.core.events import format_time
from ledger.core.vocab import prediction_id
from ledger.db import translate_errors

from ._mapping import KEY_NODE_PREFIX, PREDICTION_PREFIX, RELATION_ENDS, fold_attributes, key_node_id, node_kind, node_label

UPSTREAM, DOWNSTREAM, BOTH = "upstream", "downstream", "both"
DIRECTIONS = (UPSTREAM, DOWNSTREAM, BOTH)
RELATIONS = tuple(RELATION_ENDS)
DEFAULT_MAX_DEPTH = 20
DEFAULT_MAX_NODES = 10_000
DEFAULT_PREDICTIONS_LIMIT = 1000
PREDICTION_KIND = "provault:Prediction"
KEY_KIND = "provault:Key"
SIGNED_BY = "provault:SignedBy"
"""``prov:type`` of the edge from a node to the key that signed an assertion about it."""

_KEYID = re.compile(r"[0-9a-f]{64}")

# --- errors ------------------------------------------------------------------------------


class NodeNotFound(ProvaultError):
    """The start node (or prediction) does not exist as of the requested seq."""

    reason = "not_found"


class AsOfNotProjected(ProvaultError):
    """The requested as-of lies beyond what the projector has reached (retry later)."""

    reason = "not_projected"


# --- answers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceNode:
    """A node as of the answer's seq, ``depth`` hops from the start."""

    id: str
    type: str | None
    label: str | None
    kind: str | None
    attributes: Mapping[str, Any] = field(hash=False)
    first_seq: int
    depth: int = 0
    seqs: tuple[int, ...] = ()
    """The entries behind the node: its first mention and the versions that gave it attributes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceEdge:
    """``src -[relation]-> dst`` in PROV's direction, introduced at ``seq``."""

    relation: str
    src: str
    dst: str
    seq: int
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False)
    origin: str = "prov"
    """``prov`` / ``key`` (projected edges), ``prediction`` or ``signature`` (made by the walk)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionRef:
    """One row of the prediction index."""

    id: str
    seq: int
    activity: str
    time: datetime
    input: Any = field(default=None, hash=False)
    output: Any = field(default=None, hash=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "seq": self.seq, "activity": self.activity, "time": format_time(self.time),
            "input": self.input, "output": self.output,
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """A key that signed entries behind an answer, and who holds it."""

    keyid: str
    key_node: str | None
    name: str | None
    role: str
    root_key: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    start: str
    """The resolved start: a node id, or ``provault:prediction/<id>``."""
    direction: str
    as_of_seq: int
    nodes: tuple[TraceNode, ...]
    """Breadth-first: by depth, then id; the start first."""
    edges: tuple[TraceEdge, ...]
    seqs: tuple[int, ...]
    truncated: bool
    prediction: dict[str, Any] | None = None
    """When the start was a prediction: its (first) index row."""
    signers: dict[int, str] = field(default_factory=dict, hash=False)
    """seq -> keyid of every entry in :attr:`seqs`."""
    keys: dict[str, Signer] = field(default_factory=dict, hash=False)
    """keyid -> the key's holder, for every key in :attr:`signers`."""
    predictions: tuple[str, ...] = ()
    """Downstream: one page of the prediction ids reached, ordered by id."""
    prediction_rows: tuple[PredictionRef, ...] = ()
    """The index rows of :attr:`predictions` (several when an id was logged again)."""
    predictions_total: int = 0
    """How many distinct prediction ids were reached, over all pages."""
    predictions_next: str | None = None
    """Pass as ``predictions_after`` for the next page; None on the last."""
    prediction_activities: tuple[str, ...] = ()
    """The nodes reached downstream whose predictions the answer lists (for :func:`predictions_page`)."""

    def node(self, node_id: str) -> TraceNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)


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

_NODES = (
    "SELECT id, node_type, first_seq FROM prov.nodes WHERE id = ANY(%s) AND first_seq <= %s"
)
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
            id=nid, type=types[nid], label=node_label(attrs), kind=node_kind(attrs),
            attributes=MappingProxyType(attrs), first_seq=first, seqs=tuple(sorted({first, *(s for s, _, _ in vs)})),
        )  # fmt: skip
    return out


def _with_depth(node: TraceNode, depth: int) -> TraceNode:
    return TraceNode(
        id=node.id, type=node.type, label=node.label, kind=node.kind, attributes=node.attributes,
        first_seq=node.first_seq, depth=depth, seqs=node.seqs,
    )  # fmt: skip


# --- predictions ---------------------------------------------------------------------------

_PREDICTION_ROWS = "SELECT id, seq, activity, time, input, output FROM prov.predictions WHERE id = %s AND seq <= %s ORDER BY seq"


def _ref(row: Sequence[Any]) -> PredictionRef:
    return PredictionRef(id=row[0], seq=row[1], activity=row[2], time=row[3], input=row[4], output=row[5])


def prediction_node(rows: Sequence[PredictionRef], depth: int = 0) -> TraceNode:
    """A prediction presented as an entity (kind ``provault:Prediction``) from its index rows.

    The same attributes an offline verifier recomputes from the batch's event
    (``query.bundle_verify``): ``prov:type``, ``prov:generatedAtTime`` and the
    row's ``provault:input`` / ``provault:output`` when present.
    """
    first = rows[0]
    attrs: dict[str, Any] = {"prov:type": PREDICTION_KIND, "prov:generatedAtTime": format_time(first.time)}
    attrs.update({f"provault:{k}": v for k, v in (("input", first.input), ("output", first.output)) if v is not None})
    return TraceNode(
        id=first.id, type="entity", label=None, kind=PREDICTION_KIND, attributes=MappingProxyType(attrs),
        first_seq=first.seq, depth=depth, seqs=tuple(sorted({r.seq for r in rows})),
    )  # fmt: skip


def prediction_edge(row: PredictionRef) -> TraceEdge:
    """The prediction ``wasGeneratedBy`` its batch activity, at the row's seq (no attributes)."""
    return TraceEdge(
        relation="wasGeneratedBy", src=row.id, dst=row.activity, seq=row.seq, origin="prediction",
        attributes=MappingProxyType({}),
    )  # fmt: skip


def _prediction_rows(conn: psycopg.Connection, pid: str, seq: int) -> list[PredictionRef]:
    return [_ref(r) for r in conn.execute(_PREDICTION_ROWS, (pid, seq))]


@dataclass(frozen=True, slots=True, kw_only=True)
class _PredictionPage:
    ids: tuple[str, ...] = ()
    rows: tuple[PredictionRef, ...] = ()
    total: int = 0
    seqs: tuple[int, ...] = ()
    next: str | None = None


def _predictions_of(
    conn: psycopg.Connection, activities: Sequence[str], seq: int, *, limit: int, after: str | None
) -> _PredictionPage:
    """One page (by id) of the predictions of ``activities`` up to ``seq``, with the total and batch seqs."""
    if not activities:
        return _PredictionPage()
    acts = list(activities)
    total, seqs = conn.execute(
        "SELECT count(DISTINCT id), coalesce(array_agg(DISTINCT seq), '{}') FROM prov.predictions"
        " WHERE activity = ANY(%s) AND seq <= %s",
        (acts, seq),
    ).fetchone()
    ids: list[str] = []
    if limit > 0 and total:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM (SELECT DISTINCT id FROM prov.predictions"
            " WHERE activity = ANY(%s) AND seq <= %s AND (%s::text IS NULL OR id > %s)) AS p ORDER BY id LIMIT %s",
            (acts, seq, after, after, limit + 1),
        )]  # fmt: skip
    more = len(ids) > limit
    ids = ids[:limit]
    rows = [_ref(r) for r in conn.execute(
        "SELECT id, seq, activity, time, input, output FROM prov.predictions"
        " WHERE id = ANY(%s) AND activity = ANY(%s) AND seq <= %s ORDER BY id, seq",
        (ids, acts, seq),
    )] if ids else []  # fmt: skip
    return _PredictionPage(
        ids=tuple(ids), rows=tuple(rows), total=int(total), seqs=tuple(sorted(seqs)), next=ids[-1] if more else None
    )


def predictions_page(
    conn: psycopg.Connection, activities: Sequence[str], as_of_seq: int, *, limit: int, after: str | None = None
) -> tuple[tuple[PredictionRef, ...], str | None]:
    """The index rows of one page of the predictions of ``activities`` (for services that page them)."""
    page = _predictions_of(conn, activities, as_of_seq, limit=limit, after=after)
    return page.rows, page.next


# --- the walk ------------------------------------------------------------------------------

_WALK = """
WITH RECURSIVE walk(depth, frontier, visited) AS (
    SELECT %(depth0)s::int, %(frontier)s::text[], %(visited)s::text[]
  UNION ALL
    SELECT w.depth + 1, nxt.ids, w.visited || nxt.ids
    FROM walk AS w
    CROSS JOIN LATERAL (
        SELECT array_agg(x.id ORDER BY x.id) AS ids
        FROM (
            SELECT DISTINCT e.{far} AS id
            FROM unnest(w.frontier) AS f(id)
            JOIN prov.edges AS e ON e.{near} = f.id
            WHERE e.seq <= %(seq)s {relations}
              AND NOT EXISTS (SELECT 1 FROM unnest(w.visited) AS v(id) WHERE v.id = e.{far})
            ORDER BY 1
            LIMIT CASE WHEN w.depth >= %(max_depth)s THEN 1 ELSE %(budget)s + 1 - cardinality(w.visited) END
        ) AS x
    ) AS nxt
    WHERE w.depth <= %(max_depth)s AND cardinality(w.visited) <= %(budget)s AND nxt.ids IS NOT NULL
)
SELECT depth, frontier FROM walk WHERE depth > %(depth0)s ORDER BY depth
"""
_INDUCED_EDGES = """
SELECT DISTINCT ON (e.relation, e.src, e.dst) e.relation, e.src, e.dst, e.seq, e.attributes, e.origin
FROM unnest(%(ids)s::text[]) AS s(id)
JOIN prov.edges AS e ON e.src = s.id
WHERE e.seq <= %(seq)s {relations} AND e.dst IN (SELECT unnest(%(ids)s::text[]))
ORDER BY e.relation, e.src, e.dst, e.seq, e.ordinal
"""
_RELATION_FILTER = sql.SQL("AND e.relation = ANY(%(relations)s)")


def _relations_sql(relations: Sequence[str]) -> sql.Composable:
    return _RELATION_FILTER if relations else sql.SQL("")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Limits:
    seq: int
    max_depth: int
    max_nodes: int
    relations: tuple[str, ...]


def _walk(
    conn: psycopg.Connection, *, forward: bool, depth0: int, frontier: Sequence[str], visited: Sequence[str],
    budget: int, lim: _Limits,
) -> tuple[dict[str, int], bool]:  # fmt: skip
    """Breadth-first from ``frontier`` (at ``depth0``): new node -> depth, and whether a bound cut the walk."""
    near, far = ("src", "dst") if forward else ("dst", "src")
    query = sql.SQL(_WALK).format(near=sql.Identifier(near), far=sql.Identifier(far), relations=_relations_sql(lim.relations))
    params = {
        "depth0": depth0, "frontier": list(frontier), "visited": list(visited), "seq": lim.seq,
        "max_depth": lim.max_depth, "budget": budget, "relations": list(lim.relations),
    }  # fmt: skip
    found: list[tuple[int, str]] = []
    for depth, ids in conn.execute(query, params):
        found.extend((depth, nid) for nid in ids)
    kept = [(d, nid) for d, nid in found if d <= lim.max_depth][: max(0, budget - len(visited))]
    return {nid: d for d, nid in kept}, len(kept) < len(found)


def _induced_edges(conn: psycopg.Connection, ids: Sequence[str], lim: _Limits) -> list[TraceEdge]:
    if not ids:
        return []
    query = sql.SQL(_INDUCED_EDGES).format(relations=_relations_sql(lim.relations))
    rows = conn.execute(query, {"ids": list(ids), "seq": lim.seq, "relations": list(lim.relations)})
    return [
        TraceEdge(relation=r, src=s, dst=d, seq=q, attributes=MappingProxyType(a), origin=o) for r, s, d, q, a, o in rows
    ]


_SIGNED_SEEDS = """
SELECT x.id, min(x.seq) FROM (
    SELECT e.src AS id, e.seq FROM prov.entries AS k JOIN prov.edges AS e ON e.seq = k.seq
    WHERE k.keyid = %(keyid)s AND k.seq <= %(seq)s
  UNION ALL
    SELECT v.node_id, v.seq FROM prov.entries AS k JOIN prov.node_versions AS v ON v.seq = k.seq
    WHERE k.keyid = %(keyid)s AND k.seq <= %(seq)s AND v.attributes <> '{}'::jsonb
) AS x GROUP BY x.id ORDER BY x.id
"""


def _signed_seeds(conn: psycopg.Connection, keyid: str, seq: int) -> dict[str, int]:
    """Nodes that entries signed by ``keyid`` asserted something about -> the first such seq."""
    return dict(conn.execute(_SIGNED_SEEDS, {"keyid": keyid, "seq": seq}).fetchall())


# --- the start ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Start:
    id: str
    node: TraceNode | None = None
    """The start as a graph node (None for a prediction or a root key)."""
    prediction: tuple[PredictionRef, ...] = ()
    keyid: str | None = None
    synthetic: TraceNode | None = None


def _resolve_start(conn: psycopg.Connection, start: str, seq: int) -> _Start:
    if not isinstance(start, str) or not start:
        raise InvalidArgument(expected_found("start", "a node id or a prediction id", repr(start)))
    node = _load_nodes(conn, [start], seq).get(start)
    if node is not None:
        keyid = start.removeprefix(KEY_NODE_PREFIX) if start.startswith(KEY_NODE_PREFIX) else None
        return _Start(id=start, node=node, keyid=keyid)
    pid = start if start.startswith(PREDICTION_PREFIX) else prediction_id(start)
    rows = _prediction_rows(conn, pid, seq)
    if rows:
        return _Start(id=pid, prediction=tuple(rows), synthetic=prediction_node(rows))
    keyid = start.removeprefix(KEY_NODE_PREFIX)
    if _KEYID.fullmatch(keyid):
        kid = key_node_id(keyid)
        node = _load_nodes(conn, [kid], seq).get(kid)
        if node is not None:
            return _Start(id=kid, node=node, keyid=keyid)
        first = conn.execute("SELECT min(seq) FROM prov.entries WHERE keyid = %s AND seq <= %s", (keyid, seq)).fetchone()[0]
        if first is not None:
            return _Start(id=kid, keyid=keyid, synthetic=_root_key_node(keyid, first))
    raise _not_found(conn, start, seq)


def _root_key_node(keyid: str, first_signed: int) -> TraceNode:
    """A key the log never registered (a root key of the trust root), introduced by the first entry it signed."""
    attrs = {"prov:type": KEY_KIND, "provault:keyid": keyid, "provault:role": "admin"}
    return TraceNode(
        id=key_node_id(keyid), type="entity", label=None, kind=KEY_KIND, attributes=MappingProxyType(attrs),
        first_seq=first_signed, seqs=(first_signed,),
    )  # fmt: skip


def _not_found(conn: psycopg.Connection, start: str, seq: int) -> NodeNotFound:
    later = conn.execute("SELECT first_seq FROM prov.nodes WHERE id = %s", (start,)).fetchone()
    if later is not None:
        return NodeNotFound(
            f"node {start!r} did not exist as of seq {seq}: it was first recorded at seq {later[0]}",
            hint="ask as of a later seq, or without an as-of",
        )
    return NodeNotFound(
        f"no node, prediction or key {start!r} as of seq {seq}",
        hint="node ids are written as the projection stores them (e.g. sha256:<hex>, provault:run/<uuid>); "
        "prediction ids raw (req-42) or as provault:prediction/<id>; search finds nodes by label",
    )


# --- one direction -----------------------------------------------------------------------


@dataclass(slots=True)
class _Half:
    depths: dict[str, int] = field(default_factory=dict)
    """Graph node -> depth."""
    synthetic: dict[str, TraceNode] = field(default_factory=dict)
    extra_edges: list[TraceEdge] = field(default_factory=list)
    truncated: bool = False


def _half(conn: psycopg.Connection, origin: _Start, *, forward: bool, lim: _Limits) -> _Half:
    half = _Half()
    if origin.synthetic is not None:
        half.synthetic[origin.id] = origin.synthetic
    else:
        half.depths[origin.id] = 0
    level = _first_level(conn, origin, forward=forward, lim=lim, half=half)
    if not level:
        return half
    if lim.max_depth < 1:
        half.truncated = True
        return half
    budget = lim.max_nodes - len(half.synthetic)
    room = budget - len(half.depths)
    if len(level) > room:
        half.truncated = True
        level = level[: max(0, room)]
    half.depths.update((nid, 1) for nid in level)
    if not level:
        return half
    found, cut = _walk(conn, forward=forward, depth0=1, frontier=level, visited=list(half.depths), budget=budget, lim=lim)
    half.depths.update(found)
    half.truncated = half.truncated or cut
    return half


def _first_level(conn: psycopg.Connection, origin: _Start, *, forward: bool, lim: _Limits, half: _Half) -> list[str]:
    """The nodes one hop from the start, sorted; the walk goes on from them.

    A graph node's neighbours come from the walk itself; a prediction's from
    its index rows (upstream); a key's downstream also from its signatures.
    """
    level: dict[str, None] = {}
    if origin.node is not None:
        one = _Limits(seq=lim.seq, max_depth=1, max_nodes=lim.max_nodes, relations=lim.relations)
        found, _ = _walk(conn, forward=forward, depth0=0, frontier=[origin.id], visited=[origin.id],
                         budget=lim.max_nodes + 1, lim=one)  # fmt: skip
        level.update(dict.fromkeys(nid for nid, d in found.items() if d == 1))
    if origin.prediction and forward:
        for row in origin.prediction:
            level[row.activity] = None
            half.extra_edges.append(prediction_edge(row))
    if origin.keyid is not None and not forward:
        for nid, seq in _signed_seeds(conn, origin.keyid, lim.seq).items():
            if nid == origin.id:
                continue
            level[nid] = None
            half.extra_edges.append(TraceEdge(
                relation="wasInfluencedBy", src=nid, dst=origin.id, seq=seq, origin="signature",
                attributes=MappingProxyType({"prov:type": SIGNED_BY}),
            ))  # fmt: skip
    return sorted(level)


# --- the answer ----------------------------------------------------------------------------


def _check(direction: str, max_depth: int, max_nodes: int, relations: Sequence[str], predictions_limit: int) -> tuple[str, ...]:
    if direction not in DIRECTIONS:
        raise InvalidArgument(expected_found("direction", " or ".join(DIRECTIONS), repr(direction)))
    for what, value, low in (("max_depth", max_depth, 0), ("max_nodes", max_nodes, 1), ("predictions_limit", predictions_limit, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InvalidArgument(expected_found(what, f"an integer >= {low}", repr(value)))
    if isinstance(relations, str):
        relations = (relations,)
    unknown = [r for r in relations if r not in RELATION_ENDS]
    if unknown:
        raise InvalidArgument(expected_found("relations", f"PROV relations among {', '.join(RELATIONS)}", ", ".join(map(repr, unknown))))
    return tuple(sorted(set(relations)))


@translate_errors
def trace(
    conn: psycopg.Connection,
    start: str,
    *,
    direction: str = UPSTREAM,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
    relations: Sequence[str] = (),
    as_of_seq: int | None = None,
    predictions_limit: int = DEFAULT_PREDICTIONS_LIMIT,
    predictions_after: str | None = None,
) -> Trace:
    """Walk from ``start`` (a node id, a prediction id or a key) as of ``as_of_seq`` (see the module doc)."""
    rels = _check(direction, max_depth, max_nodes, relations, predictions_limit)
    with snapshot(conn):
        return _trace(conn, start, direction, max_depth, max_nodes, rels, as_of_seq, predictions_limit, predictions_after)


def _trace(
    conn: psycopg.Connection, start: str, direction: str, max_depth: int, max_nodes: int, rels: tuple[str, ...],
    as_of_seq: int | None, predictions_limit: int, predictions_after: str | None,
) -> Trace:  # fmt: skip
    seq = pin_as_of(conn, as_of_seq)
    origin = _resolve_start(conn, start, seq)
    lim = _Limits(seq=seq, max_depth=max_depth, max_nodes=max_nodes, relations=rels)
    forwards = {UPSTREAM: (True,), DOWNSTREAM: (False,), BOTH: (True, False)}[direction]
    halves = [_half(conn, origin, forward=f, lim=lim) for f in forwards]
    nodes, edges, truncated = _merge(conn, origin, halves, lim)
    page, sources = _PredictionPage(), ()
    if direction != UPSTREAM:  # the downstream half is the last; upstream nodes' predictions are not consequences
        reached = halves[-1].depths
        sources = tuple(_prediction_sources([n for n in nodes if n.id in reached], max_depth))
        page = _predictions_of(conn, sources, seq, limit=predictions_limit, after=predictions_after)
        truncated = truncated or _predictions_beyond(conn, [n for n in nodes if n.id in reached], max_depth, seq)
    seqs = sorted({s for n in nodes for s in n.seqs} | {e.seq for e in edges} | set(page.seqs))
    signers, keys = _signers(conn, seqs)
    return Trace(
        start=origin.id, direction=direction, as_of_seq=seq, nodes=tuple(nodes), edges=tuple(edges), seqs=tuple(seqs),
        truncated=truncated, prediction=origin.prediction[0].as_dict() if origin.prediction else None,
        signers=signers, keys=keys, predictions=page.ids,
        prediction_rows=page.rows, predictions_total=page.total, predictions_next=page.next,
        prediction_activities=sources,
    )  # fmt: skip


def _merge(conn: psycopg.Connection, origin: _Start, halves: Sequence[_Half], lim: _Limits) -> tuple[list[TraceNode], list[TraceEdge], bool]:
    depths: dict[str, int] = {}
    synthetic: dict[str, TraceNode] = {}
    for h in halves:
        synthetic.update(h.synthetic)
        for nid, d in h.depths.items():
            depths[nid] = min(d, depths.get(nid, d))
    loaded = _load_nodes(conn, list(depths), lim.seq)
    nodes = [_with_depth(n, depths[nid]) for nid, n in loaded.items()] + list(synthetic.values())
    nodes.sort(key=lambda n: (n.depth, n.id != origin.id, n.id))
    truncated = any(h.truncated for h in halves) or len(nodes) > lim.max_nodes
    nodes = nodes[: lim.max_nodes]
    kept = {n.id for n in nodes}
    hops: dict[tuple[str, str, str], TraceEdge] = {}
    for h in halves:
        ids = [nid for nid in h.depths if nid in kept]
        for e in [*_induced_edges(conn, ids, lim), *h.extra_edges]:
            if e.src in kept and e.dst in kept:
                key = (e.relation, e.src, e.dst)
                if key not in hops or e.seq < hops[key].seq:
                    hops[key] = e
    edges = sorted(hops.values(), key=lambda e: (e.seq, e.relation, e.src, e.dst))
    return nodes, edges, truncated


def _prediction_sources(nodes: Iterable[TraceNode], max_depth: int) -> list[str]:
    """The nodes of a downstream answer whose predictions it lists: batch candidates above ``max_depth``."""
    return [n.id for n in nodes if n.depth < max_depth and n.type != "agent" and n.kind != PREDICTION_KIND]


def _predictions_beyond(conn: psycopg.Connection, nodes: Sequence[TraceNode], max_depth: int, seq: int) -> bool:
    """Whether batch activities at the depth bound have predictions the answer leaves out."""
    edge = [n.id for n in nodes if n.depth >= max_depth and n.type == "activity"]
    if not edge:
        return False
    return bool(conn.execute(
        "SELECT EXISTS (SELECT 1 FROM prov.predictions WHERE activity = ANY(%s) AND seq <= %s)", (edge, seq)
    ).fetchone()[0])  # fmt: skip


def _signers(conn: psycopg.Connection, seqs: Sequence[int]) -> tuple[dict[int, str], dict[str, Signer]]:
    if not seqs:
        return {}, {}
    signers = dict(conn.execute("SELECT seq, keyid FROM prov.entries WHERE seq = ANY(%s) ORDER BY seq", (list(seqs),)).fetchall())
    keys: dict[str, Signer] = {}
    for keyid, key_node, name, role, root in conn.execute(
        "SELECT DISTINCT ON (keyid) keyid, key_node, identity ->> 'name', role, root_key FROM prov.entry_signers"
        " WHERE seq = ANY(%s) ORDER BY keyid, seq",
        (list(seqs),),
    ):
        keys[keyid] = Signer(keyid=keyid, key_node=key_node, name=name, role=role, root_key=bool(root))
    return signers, keys


# --- one node, search ---------------------------------------------------------------------


@translate_errors
def get_node(conn: psycopg.Connection, node_id: str, *, as_of_seq: int | None = None) -> TraceNode:
    """One node (or a prediction, as an entity) as of ``as_of_seq``; :class:`NodeNotFound` otherwise."""
    if not isinstance(node_id, str) or not node_id:
        raise InvalidArgument(expected_found("node_id", "a node id", repr(node_id)))
    with snapshot(conn):
        seq = pin_as_of(conn, as_of_seq)
        node = _load_nodes(conn, [node_id], seq).get(node_id)
        if node is not None:
            return node
        pid = node_id if node_id.startswith(PREDICTION_PREFIX) else prediction_id(node_id)
        rows = _prediction_rows(conn, pid, seq)
        if rows:
            return prediction_node(rows)
        raise _not_found(conn, node_id, seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    nodes: tuple[TraceNode, ...]
    """Ordered by id."""
    as_of_seq: int
    next_after: str | None
    """Pass as ``after`` for the next page; None on the last."""


_SEARCH = """
SELECT n.id FROM prov.nodes AS n
CROSS JOIN LATERAL (
    SELECT CASE WHEN n.last_seq <= %(seq)s THEN n.attributes ELSE (
        SELECT coalesce(jsonb_object_agg(l.key, l.value), '{{}}'::jsonb) FROM (
            SELECT DISTINCT ON (a.key) a.key, a.value
            FROM prov.node_versions AS v, jsonb_each(v.attributes) AS a
            WHERE v.node_id = n.id AND v.seq <= %(seq)s
            ORDER BY a.key, v.seq DESC
        ) AS l) END AS attrs
) AS x
WHERE n.first_seq <= %(seq)s AND (%(after)s::text IS NULL OR n.id > %(after)s) {conditions}
ORDER BY n.id
LIMIT %(limit)s
"""
_VALUE_PATH = '$[*] ? (@ == $v || @."$" == $v)'
_TEXT_CONDITION = """(strpos(lower(n.id), lower(%(text)s)) > 0 OR EXISTS (
    SELECT 1 FROM jsonb_path_query(jsonb_build_array(x.attrs -> 'prov:label', x.attrs -> 'prov:type'), 'lax $[*][*]') AS j(v)
    WHERE strpos(lower(CASE jsonb_typeof(j.v) WHEN 'object' THEN j.v ->> '$' ELSE j.v #>> '{}' END), lower(%(text)s)) > 0))"""


def _search_conditions(text: str | None, node_type: str | None, kind: str | None, attributes: Sequence[tuple[str, str]]) -> tuple[list[sql.Composable], dict[str, Any]]:
    conds: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if text:
        params["text"] = text
        conds.append(sql.SQL(_TEXT_CONDITION))
    if node_type:
        params["node_type"] = node_type
        conds.append(sql.SQL("n.node_type = %(node_type)s"))
    filters = ([("prov:type", kind)] if kind else []) + list(attributes)
    for i, (name, value) in enumerate(filters):
        params[f"a{i}"], params[f"v{i}"], params["vpath"] = name, Jsonb({"v": value}), _VALUE_PATH
        conds.append(sql.SQL("jsonb_path_exists(x.attrs -> {}, %(vpath)s::jsonpath, {})").format(
            sql.Placeholder(f"a{i}"), sql.Placeholder(f"v{i}")
        ))  # fmt: skip
    return conds, params


@translate_errors
def search(
    conn: psycopg.Connection,
    *,
    text: str | None = None,
    node_type: str | None = None,
    kind: str | None = None,
    attributes: Sequence[tuple[str, str]] = (),
    as_of_seq: int | None = None,
    limit: int = 50,
    after: str | None = None,
) -> SearchPage:
    """Nodes matching every condition given, as of ``as_of_seq``, ordered by id, one page.

    ``text``: case-insensitive substring of the id, a ``prov:label`` or a
    ``prov:type``; ``node_type``: entity / activity / agent; ``kind``: one of
    the node's ``prov:type`` values exactly; ``attributes``: (name, value)
    pairs matched against the attribute's lexical value(s).
    """
    attributes = _attribute_filters(attributes)
    if not (text or node_type or kind or attributes):
        raise InvalidArgument("search: expected at least one of text, type, kind or attributes, found none")
    if node_type is not None and node_type not in ("entity", "activity", "agent"):
        raise InvalidArgument(expected_found("type", "entity, activity or agent", repr(node_type)))
    if not isinstance(limit, int) or limit < 1:
        raise InvalidArgument(expected_found("limit", "an integer >= 1", repr(limit)))
    conds, params = _search_conditions(text, node_type, kind, attributes)
    query = sql.SQL(_SEARCH).format(conditions=sql.SQL("").join(sql.SQL(" AND ") + c for c in conds))
    with snapshot(conn):
        seq = pin_as_of(conn, as_of_seq)
        params.update(seq=seq, after=after, limit=limit + 1)
        ids = [r[0] for r in conn.execute(query, params)]
        more = len(ids) > limit
        ids = ids[:limit]
        loaded = _load_nodes(conn, ids, seq)
    return SearchPage(nodes=tuple(loaded[i] for i in ids if i in loaded), as_of_seq=seq, next_after=ids[-1] if more else None)


def _attribute_filters(attributes: Iterable[tuple[str, str]] | Mapping[str, str]) -> list[tuple[str, str]]:
    items = list(attributes.items()) if isinstance(attributes, Mapping) else list(attributes)
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(v, str) for v in item) and item[0]):
            raise InvalidArgument(expected_found(f"attributes[{i}]", "a (name, value) pair of strings with a name", repr(item)))
    return items


__all__ = [
    "BOTH",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "DEFAULT_PREDICTIONS_LIMIT",
    "DIRECTIONS",
    "DOWNSTREAM",
    "PREDICTION_KIND",
    "RELATIONS",
    "SIGNED_BY",
    "UPSTREAM",
    "AsOfNotProjected",
    "NodeNotFound",
    "PredictionRef",
    "SearchPage",
    "Signer",
    "Trace",
    "TraceEdge",
    "TraceNode",
    "get_node",
    "pin_as_of",
    "position",
    "prediction_edge",
    "prediction_node",
    "predictions_page",
    "resolve_as_of",
    "search",
    "snapshot",
    "trace",
]
