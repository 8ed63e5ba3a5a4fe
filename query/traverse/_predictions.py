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


# Each batch's predictions by index (predictions_activity_idx), one activity at a time: given an
# array, the planner either plans it anew on every call or, once the statement is prepared, falls
# back to a generic plan that walks the whole primary key in id order (twice as slow at 20,000
# predictions, and growing with the table).  This shape costs what the answer holds either way.
_PAGE_TOTAL = """
SELECT count(DISTINCT p.id), coalesce(array_agg(DISTINCT p.seq), '{}')
FROM unnest(%(acts)b::text[]) AS a(activity)
CROSS JOIN LATERAL (
    SELECT id, seq FROM prov.predictions WHERE activity = a.activity AND seq <= %(seq)s OFFSET 0
) AS p
"""
# The index rows of the first ``limit`` + 1 prediction ids after ``after`` (one more id than the page
# tells whether another page follows).  The rows of those ids in other batches are dropped by the
# caller.
_PAGE_ROWS = """
SELECT x.id, x.seq, x.activity, x.time, x.input, x.output
FROM (
    SELECT DISTINCT p.id FROM unnest(%(acts)b::text[]) AS a(activity)
    CROSS JOIN LATERAL (
        SELECT id FROM prov.predictions
        WHERE activity = a.activity AND seq <= %(seq)s AND (%(after)s::text IS NULL OR id > %(after)s) OFFSET 0
    ) AS p
    ORDER BY p.id LIMIT %(limit)s
) AS page
CROSS JOIN LATERAL (
    SELECT p.id, p.seq, p.activity, p.time, p.input, p.output FROM prov.predictions AS p
    WHERE p.id = page.id AND p.seq <= %(seq)s
) AS x
ORDER BY x.id, x.seq
"""


def _predictions_of(
    conn: psycopg.Connection, activities: Sequence[str], seq: int, *, limit: int, after: str | None
) -> _PredictionPage:
    """One page (by id) of the predictions of ``activities`` up to ``seq``, with the total and batch seqs."""
    if not activities:
        return _PredictionPage()
    params = {"acts": list(activities), "seq": seq, "after": after, "limit": limit + 1}
    total, seqs = conn.execute(_PAGE_TOTAL, params).fetchone()
    found = conn.execute(_PAGE_ROWS, params).fetchall() if limit > 0 and total else []
    acts = set(activities)
    rows = [_ref(r) for r in found if r[2] in acts]
    ids = list(dict.fromkeys(r.id for r in rows))
    more = len(ids) > limit
    ids = ids[:limit]
    if more:
        page = set(ids)
        rows = [r for r in rows if r.id in page]
    return _PredictionPage(
        ids=tuple(ids), rows=tuple(rows), total=int(total), seqs=tuple(sorted(seqs)), next=ids[-1] if more else None
    )


def predictions_page(
    conn: psycopg.Connection, activities: Sequence[str], as_of_seq: int, *, limit: int, after: str | None = None
) -> tuple[tuple[PredictionRef, ...], str | None]:
    """The index rows of one page of the predictions of ``activities`` (for services that page them)."""
    page = _predictions_of(conn, activities, as_of_seq, limit=limit, after=after)
    return page.rows, page.next
