"""Predictions are rows, not nodes: a prediction presented as an entity, and the predictions of batch activities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import psycopg

from query._mapping import PREDICTION_KIND, prediction_attributes

from ._answers import PredictionRef, TraceEdge, TraceNode

# --- predictions ---------------------------------------------------------------------------

_PREDICTION_ROWS = (
    "SELECT id, seq, activity, time, input, output FROM prov.predictions WHERE id = %s AND seq <= %s ORDER BY seq"
)


def _ref(row: Sequence[Any]) -> PredictionRef:
    return PredictionRef(id=row[0], seq=row[1], activity=row[2], time=row[3], input=row[4], output=row[5])


def prediction_node(rows: Sequence[PredictionRef], depth: int = 0) -> TraceNode:
    """A prediction presented as an entity (kind ``provault:Prediction``) from its index rows.

    Its attributes are ``query._mapping.prediction_attributes``, as an offline
    verifier recomputes them from the batch's event.
    """
    first = rows[0]
    attrs = prediction_attributes(first.time, first.input, first.output)
    return TraceNode(
        id=first.id,
        type="entity",
        label=None,
        kind=PREDICTION_KIND,
        attributes=MappingProxyType(attrs),
        first_seq=first.seq,
        depth=depth,
        seqs=tuple(sorted({r.seq for r in rows})),
    )


def prediction_edge(row: PredictionRef) -> TraceEdge:
    """The prediction ``wasGeneratedBy`` its batch activity, at the row's seq (no attributes)."""
    return TraceEdge(
        relation="wasGeneratedBy",
        src=row.id,
        dst=row.activity,
        seq=row.seq,
        origin="prediction",
        attributes=MappingProxyType({}),
    )


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
        " WHERE activity = ANY(%b) AND seq <= %s",
        (acts, seq),
    ).fetchone()
    ids: list[str] = []
    if limit > 0 and total:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM (SELECT DISTINCT id FROM prov.predictions"
                " WHERE activity = ANY(%b) AND seq <= %s AND (%s::text IS NULL OR id > %s)) AS p ORDER BY id LIMIT %s",
                (acts, seq, after, after, limit + 1),
            )
        ]
    more = len(ids) > limit
    ids = ids[:limit]
    rows = (
        [
            _ref(r)
            for r in conn.execute(
                "SELECT id, seq, activity, time, input, output FROM prov.predictions"
                " WHERE id = ANY(%b) AND activity = ANY(%b) AND seq <= %s ORDER BY id, seq",
                (ids, acts, seq),
            )
        ]
        if ids
        else []
    )
    return _PredictionPage(
        ids=tuple(ids), rows=tuple(rows), total=int(total), seqs=tuple(sorted(seqs)), next=ids[-1] if more else None
    )


def predictions_page(
    conn: psycopg.Connection, activities: Sequence[str], as_of_seq: int, *, limit: int, after: str | None = None
) -> tuple[tuple[PredictionRef, ...], str | None]:
    """The index rows of one page of the predictions of ``activities`` (for services that page them)."""
    page = _predictions_of(conn, activities, as_of_seq, limit=limit, after=after)
    return page.rows, page.next
