"""The walk: one recursive query per direction, the start node, both halves merged into one answer with its signers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import psycopg
from psycopg import sql

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.vocab import mlflow_node_candidates, openlineage_node_candidates, prediction_id
from ledger.db import translate_errors
from query._mapping import (
    KEY_NODE_PREFIX,
    PREDICTION_KIND,
    PREDICTION_PREFIX,
    RELATION_ENDS,
    key_node_id,
)

from ._answers import (
    _KEYID,
    BOTH,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_NODES,
    DEFAULT_PREDICTIONS_LIMIT,
    DIRECTIONS,
    DOWNSTREAM,
    KEY_KIND,
    RELATIONS,
    SIGNED_BY,
    UPSTREAM,
    NodeNotFound,
    PredictionRef,
    Signer,
    Trace,
    TraceEdge,
    TraceNode,
)
from ._asof import _load_nodes, _with_depth, pin_as_of, snapshot
from ._predictions import _prediction_rows, _PredictionPage, _predictions_of, prediction_edge, prediction_node

# --- the walk ------------------------------------------------------------------------------

_WALK = """
WITH RECURSIVE walk(depth, frontier, visited) AS (
    SELECT %(depth0)s::int, %(frontier)b::text[], %(visited)b::text[]
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
# The edges between the answer's nodes.  For a small answer, each node's edges by index
# (edges_src_idx): given an array, the planner guesses 100 elements and on a small database hashes
# all of prov.edges instead.  For a large one, that hash join is the right plan.
_INDUCED_EDGES_FEW = """
SELECT DISTINCT ON (e.relation, e.src, e.dst) e.relation, e.src, e.dst, e.seq, e.attributes, e.origin
FROM unnest(%(ids)b::text[]) AS s(id)
CROSS JOIN LATERAL (
    SELECT e.relation, e.src, e.dst, e.seq, e.ordinal, e.attributes, e.origin FROM prov.edges AS e
    WHERE e.src = s.id AND e.seq <= %(seq)s {relations} AND e.dst = ANY(%(ids)b::text[])
    OFFSET 0
) AS e
ORDER BY e.relation, e.src, e.dst, e.seq, e.ordinal
"""
_INDUCED_EDGES_MANY = """
SELECT DISTINCT ON (e.relation, e.src, e.dst) e.relation, e.src, e.dst, e.seq, e.attributes, e.origin
FROM unnest(%(ids)b::text[]) AS s(id)
JOIN prov.edges AS e ON e.src = s.id
WHERE e.seq <= %(seq)s {relations} AND e.dst IN (SELECT unnest(%(ids)b::text[]))
ORDER BY e.relation, e.src, e.dst, e.seq, e.ordinal
"""
FEW_NODES = 1000
"""Answers up to this size look their edges up node by node."""
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
    conn: psycopg.Connection,
    *,
    forward: bool,
    depth0: int,
    frontier: Sequence[str],
    visited: Sequence[str],
    budget: int,
    lim: _Limits,
) -> tuple[dict[str, int], bool]:
    """Breadth-first from ``frontier`` (at ``depth0``): new node -> depth, and whether a bound cut the walk."""
    near, far = ("src", "dst") if forward else ("dst", "src")
    query = sql.SQL(_WALK).format(
        near=sql.Identifier(near), far=sql.Identifier(far), relations=_relations_sql(lim.relations)
    )
    params = {
        "depth0": depth0,
        "frontier": list(frontier),
        "visited": list(visited),
        "seq": lim.seq,
        "max_depth": lim.max_depth,
        "budget": budget,
        "relations": list(lim.relations),
    }
    found: list[tuple[int, str]] = []
    # Never prepared: a generic plan cannot see how large the frontier and visited arrays are, and once
    # psycopg prepares the statement (its fifth run on a connection) PostgreSQL may keep one that is ~10x
    # slower on a wide walk (a 2,076-node upstream answer: 1.25 s instead of 0.13 s).
    for depth, ids in conn.execute(query, params, prepare=False):
        found.extend((depth, nid) for nid in ids)
    kept = [(d, nid) for d, nid in found if d <= lim.max_depth][: max(0, budget - len(visited))]
    return {nid: d for d, nid in kept}, len(kept) < len(found)


def _induced_edges(conn: psycopg.Connection, ids: Sequence[str], lim: _Limits) -> list[TraceEdge]:
    if not ids:
        return []
    shape = _INDUCED_EDGES_FEW if len(ids) <= FEW_NODES else _INDUCED_EDGES_MANY
    query = sql.SQL(shape).format(relations=_relations_sql(lim.relations))
    # Never prepared: a generic plan cannot hash the ids array and tests each edge's dst against it
    # one element at a time (2.7x slower on a 350-node answer); planned with the ids, it hashes them.
    params = {"ids": list(ids), "seq": lim.seq, "relations": list(lim.relations)}
    rows = conn.execute(query, params, prepare=False)
    return [
        TraceEdge(relation=r, src=s, dst=d, seq=q, attributes=MappingProxyType(a), origin=o)
        for r, s, d, q, a, o in rows
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
    named = openlineage_node(conn, start, seq)
    if named is not None:
        return _Start(id=named.id, node=named)
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
        first = conn.execute(
            "SELECT min(seq) FROM prov.entries WHERE keyid = %s AND seq <= %s", (keyid, seq)
        ).fetchone()[0]
        if first is not None:
            return _Start(id=kid, keyid=keyid, synthetic=_root_key_node(keyid, first))
    raise _not_found(conn, start, seq)


def openlineage_node(conn: psycopg.Connection, name: str, seq: int) -> TraceNode | None:
    """The node another tool's name means, if any: Marquez-style (``dataset:<ns>:<name>``, ``job:<ns>:<name>``,
    ``run:<uuid>``) or MLflow's (``runs:/<run id>``, ``models:/<model id>``, ``models:/<name>/<version>``)."""
    candidates = mlflow_node_candidates(name) or openlineage_node_candidates(name)
    if not candidates:
        return None
    found = _load_nodes(conn, candidates, seq)
    return next((found[c] for c in candidates if c in found), None)


def _root_key_node(keyid: str, first_signed: int) -> TraceNode:
    """A key the log never registered (a root key of the trust root), introduced by the first entry it signed."""
    attrs = {"prov:type": KEY_KIND, "provault:keyid": keyid, "provault:role": "admin"}
    return TraceNode(
        id=key_node_id(keyid),
        type="entity",
        label=None,
        kind=KEY_KIND,
        attributes=MappingProxyType(attrs),
        first_seq=first_signed,
        seqs=(first_signed,),
    )


def _not_found(conn: psycopg.Connection, start: str, seq: int) -> NodeNotFound:
    later = conn.execute("SELECT first_seq FROM prov.nodes WHERE id = %s", (start,)).fetchone()
    if later is not None:
        return NodeNotFound(
            f"node {start!r} did not exist as of seq {seq}: it was first recorded at seq {later[0]}",
            hint="ask as of a later seq, or without an as-of",
        )
    pid = start if start.startswith(PREDICTION_PREFIX) else prediction_id(start)
    logged = conn.execute("SELECT min(seq) FROM prov.predictions WHERE id = %s", (pid,)).fetchone()[0]
    if logged is not None:
        return NodeNotFound(
            f"prediction {pid!r} did not exist as of seq {seq}: it was first logged at seq {logged}",
            hint="ask as of a later seq, or without an as-of",
        )
    return NodeNotFound(
        f"no node, prediction or key {start!r} as of seq {seq}",
        hint="node ids are written as the projection stores them (e.g. sha256:<hex>, provault:run/<uuid>); "
        "prediction ids raw (req-42) or as provault:prediction/<id>; OpenLineage names as dataset:<namespace>:<name>, "
        "job:<namespace>:<name> or run:<runId>; search finds nodes by label",
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
    found, cut = _walk(
        conn, forward=forward, depth0=1, frontier=level, visited=list(half.depths), budget=budget, lim=lim
    )
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
        found, _ = _walk(
            conn,
            forward=forward,
            depth0=0,
            frontier=[origin.id],
            visited=[origin.id],
            budget=lim.max_nodes + 1,
            lim=one,
        )
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
            half.extra_edges.append(
                TraceEdge(
                    relation="wasInfluencedBy",
                    src=nid,
                    dst=origin.id,
                    seq=seq,
                    origin="signature",
                    attributes=MappingProxyType({"prov:type": SIGNED_BY}),
                )
            )
    return sorted(level)


# --- the answer ----------------------------------------------------------------------------


def _check(
    direction: str, max_depth: int, max_nodes: int, relations: Sequence[str], predictions_limit: int
) -> tuple[str, ...]:
    if direction not in DIRECTIONS:
        raise InvalidArgument(expected_found("direction", " or ".join(DIRECTIONS), repr(direction)))
    for what, value, low in (
        ("max_depth", max_depth, 0),
        ("max_nodes", max_nodes, 1),
        ("predictions_limit", predictions_limit, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InvalidArgument(expected_found(what, f"an integer >= {low}", repr(value)))
    if isinstance(relations, str):
        relations = (relations,)
    unknown = [r for r in relations if r not in RELATION_ENDS]
    if unknown:
        raise InvalidArgument(
            expected_found("relations", f"PROV relations among {', '.join(RELATIONS)}", ", ".join(map(repr, unknown)))
        )
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
        return _trace(
            conn, start, direction, max_depth, max_nodes, rels, as_of_seq, predictions_limit, predictions_after
        )


def _trace(
    conn: psycopg.Connection,
    start: str,
    direction: str,
    max_depth: int,
    max_nodes: int,
    rels: tuple[str, ...],
    as_of_seq: int | None,
    predictions_limit: int,
    predictions_after: str | None,
) -> Trace:
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
        start=origin.id,
        direction=direction,
        as_of_seq=seq,
        nodes=tuple(nodes),
        edges=tuple(edges),
        seqs=tuple(seqs),
        truncated=truncated,
        prediction=origin.prediction[0].as_dict() if origin.prediction else None,
        signers=signers,
        keys=keys,
        predictions=page.ids,
        prediction_rows=page.rows,
        predictions_total=page.total,
        predictions_next=page.next,
        prediction_activities=sources,
    )


def _merge(
    conn: psycopg.Connection, origin: _Start, halves: Sequence[_Half], lim: _Limits
) -> tuple[list[TraceNode], list[TraceEdge], bool]:
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
    return bool(
        conn.execute(
            "SELECT EXISTS (SELECT 1 FROM prov.predictions WHERE activity = ANY(%s) AND seq <= %s)", (edge, seq)
        ).fetchone()[0]
    )


def _signers(conn: psycopg.Connection, seqs: Sequence[int]) -> tuple[dict[int, str], dict[str, Signer]]:
    if not seqs:
        return {}, {}
    signers: dict[int, str] = {}
    keys: dict[str, Signer] = {}
    for seq, keyid, key_node, name, role, root in conn.execute(
        "SELECT seq, keyid, key_node, identity ->> 'name', role, root_key FROM prov.entry_signers"
        " WHERE seq = ANY(%b) ORDER BY seq",
        (list(seqs),),
    ):
        signers[seq] = keyid
        if keyid not in keys:  # a key's identity is the same on every entry it signed
            keys[keyid] = Signer(keyid=keyid, key_node=key_node, name=name, role=role, root_key=bool(root))
    return signers, keys
