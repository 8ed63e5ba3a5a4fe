"""What the projection tables give an export: node, edge and prediction rows in one read-only snapshot."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from ledger.core.errors import InvalidArgument, StorageUnavailable

from ._names import FETCH_ROWS

# --- rows (what the projection tables give an export) -------------------------------------


class ExportNode(NamedTuple):
    id: str
    node_type: str | None
    attributes: dict[str, Any]


class ExportEdge(NamedTuple):
    seq: int
    ordinal: int
    relation: str
    src: str
    dst: str
    origin: str
    attributes: dict[str, Any]
    generation: int | None
    """Ordinal of the same entry's generation named by ``prov:generation`` (derivations)."""
    usage: int | None


class ExportPrediction(NamedTuple):
    id: str
    seq: int
    activity: str
    time: datetime
    input: Any
    output: Any
    linked: bool
    """Whether the batch activity is in the export (always, for the whole graph)."""


ExportRow = ExportNode | ExportEdge | ExportPrediction


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """What to export: every node (``node_ids`` None) or those nodes; as of a seq or now."""

    node_ids: tuple[str, ...] | None = None
    as_of_seq: int | None = None

    @classmethod
    def of(cls, node_ids: Sequence[str] | None, as_of_seq: int | None) -> Scope:
        if isinstance(node_ids, str):
            raise InvalidArgument("node_ids: expected a sequence of node ids, found one string")
        if as_of_seq is not None and (isinstance(as_of_seq, bool) or not isinstance(as_of_seq, int) or as_of_seq < 0):
            raise InvalidArgument(f"as_of_seq: expected a seq >= 0, found {as_of_seq!r}")
        return cls(node_ids=None if node_ids is None else tuple(dict.fromkeys(node_ids)), as_of_seq=as_of_seq)


_NODES_NOW = sql.SQL("SELECT n.id, n.node_type, n.attributes FROM prov.nodes n WHERE true")
_NODES_AS_OF = sql.SQL(
    "SELECT n.id,"
    " CASE WHEN n.last_seq <= %(seq)s THEN n.node_type ELSE ("
    "  SELECT v.node_type FROM prov.node_versions v"
    "  WHERE v.node_id = n.id AND v.seq <= %(seq)s AND v.node_type IS NOT NULL ORDER BY v.seq LIMIT 1) END,"
    " CASE WHEN n.last_seq <= %(seq)s THEN n.attributes ELSE ("
    "  SELECT coalesce(jsonb_object_agg(l.key, l.value), '{}') FROM ("
    "   SELECT DISTINCT ON (a.key) a.key, a.value FROM prov.node_versions v, jsonb_each(v.attributes) a"
    "   WHERE v.node_id = n.id AND v.seq <= %(seq)s ORDER BY a.key, v.seq DESC) l) END"
    " FROM prov.nodes n WHERE n.first_seq <= %(seq)s"
)
_EDGES = sql.SQL(
    "SELECT e.seq, e.ordinal, e.relation, e.src, e.dst, e.origin, e.attributes,"
    " CASE WHEN e.attributes ? 'prov:generation' THEN (SELECT min(x.ordinal) FROM prov.edges x"
    "  WHERE x.seq = e.seq AND x.relation = 'wasGeneratedBy' AND x.stmt_id = e.attributes ->> 'prov:generation') END,"
    " CASE WHEN e.attributes ? 'prov:usage' THEN (SELECT min(x.ordinal) FROM prov.edges x"
    "  WHERE x.seq = e.seq AND x.relation = 'used' AND x.stmt_id = e.attributes ->> 'prov:usage') END"
    " FROM prov.edges e WHERE true"
)
_PREDICTIONS = sql.SQL(
    "SELECT p.id, p.seq, p.activity, p.time, p.input, p.output, {} FROM prov.predictions p WHERE true"
)


def _queries(scope: Scope) -> tuple[tuple[sql.Composed, type], ...]:
    subset, as_of = scope.node_ids is not None, scope.as_of_seq is not None
    nodes = sql.Composed([_NODES_AS_OF if as_of else _NODES_NOW])
    edges = sql.Composed([_EDGES])
    linked = sql.SQL("p.activity = ANY(%(ids)s)") if subset else sql.SQL("true")
    predictions = sql.Composed([_PREDICTIONS.format(linked)])
    if subset:
        nodes += sql.SQL(" AND n.id = ANY(%(ids)s)")
        edges += sql.SQL(" AND e.src = ANY(%(ids)s) AND e.dst = ANY(%(ids)s)")
        predictions += sql.SQL(" AND p.id = ANY(%(ids)s)")
    if as_of:
        edges += sql.SQL(" AND e.seq <= %(seq)s")
        predictions += sql.SQL(" AND p.seq <= %(seq)s")
    return (
        (nodes + sql.SQL(" ORDER BY n.id"), ExportNode),
        (edges + sql.SQL(" ORDER BY e.seq, e.ordinal"), ExportEdge),
        (predictions + sql.SQL(" ORDER BY p.id, p.seq"), ExportPrediction),
    )


def read_rows(
    conn: psycopg.Connection, scope: Scope, *, statement_timeout_ms: int | None = None
) -> Iterator[ExportRow]:
    """Nodes (by id), then edges (by seq, ordinal), then predictions (by id, seq) in ``scope``.

    One read-only REPEATABLE READ snapshot when ``conn`` has no transaction
    open (pass autocommit connections); rows come through server-side cursors
    :data:`FETCH_ROWS` at a time.  Driver errors become StorageUnavailable, except
    the QueryCanceled of ``statement_timeout_ms`` (each fetch's limit), which is
    left to the caller.
    """
    params = {"ids": list(scope.node_ids or ()), "seq": scope.as_of_seq}
    try:
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with conn.transaction():
            if idle:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if statement_timeout_ms is not None:
                conn.execute(
                    sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(max(1, statement_timeout_ms)))
                )
            for n, (query, row) in enumerate(_queries(scope)):
                with conn.cursor(name=f"provault_export_{n}") as cur:
                    cur.itersize = FETCH_ROWS
                    cur.execute(query, params)
                    for r in cur:
                        yield row(*r)
    except psycopg.Error as e:
        if statement_timeout_ms is not None and isinstance(e, psycopg.errors.QueryCanceled):
            raise  # the caller's time limit: it reports the timeout
        diag = getattr(e, "diag", None)
        text = (diag.message_primary if diag else None) or type(e).__name__
        raise StorageUnavailable(
            f"PostgreSQL error during export: {text}",
            hint="check the server and that `provault db migrate` applied the prov schema",
        ) from e
