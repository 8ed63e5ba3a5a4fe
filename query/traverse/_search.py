"""One node as of a seq, and search over nodes by text, type, kind and attributes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.vocab import prediction_id
from ledger.db import translate_errors
from query._mapping import (
    PREDICTION_PREFIX,
)

from ._answers import TraceNode
from ._asof import _load_nodes, pin_as_of, snapshot
from ._predictions import _prediction_rows, prediction_node
from ._walk import _not_found, openlineage_node

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
        named = openlineage_node(conn, node_id, seq)
        if named is not None:
            return named
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


def _search_conditions(
    text: str | None, node_type: str | None, kind: str | None, attributes: Sequence[tuple[str, str]]
) -> tuple[list[sql.Composable], dict[str, Any]]:
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
        conds.append(
            sql.SQL("jsonb_path_exists(x.attrs -> {}, %(vpath)s::jsonpath, {})").format(
                sql.Placeholder(f"a{i}"), sql.Placeholder(f"v{i}")
            )
        )
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
    return SearchPage(
        nodes=tuple(loaded[i] for i in ids if i in loaded), as_of_seq=seq, next_after=ids[-1] if more else None
    )


def _attribute_filters(attributes: Iterable[tuple[str, str]] | Mapping[str, str]) -> list[tuple[str, str]]:
    items = list(attributes.items()) if isinstance(attributes, Mapping) else list(attributes)
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(v, str) for v in item) and item[0]):
            raise InvalidArgument(
                expected_found(f"attributes[{i}]", "a (name, value) pair of strings with a name", repr(item))
            )
    return items
