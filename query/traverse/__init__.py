"""Traceback and impact over the PROV projection: walk the graph upstream or downstream from one node,
as the ledger stood at a seq, and name the log entries and keys behind the answer.

The rules (walk order, limits and truncation, as-of, predictions as rows, keys downstream, evidence)
are in docs/query.md, "Traceback and impact". Modules: ``_answers`` (the answer types), ``_asof``
(positions, snapshots, nodes as of a seq), ``_predictions``, ``_walk`` (the walk and the answer),
``_search`` (one node, search).
"""

from __future__ import annotations

from query._mapping import PREDICTION_KIND

from ._answers import (
    BOTH,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_NODES,
    DEFAULT_PREDICTIONS_LIMIT,
    DIRECTIONS,
    DOWNSTREAM,
    RELATIONS,
    SIGNED_BY,
    UPSTREAM,
    AsOfNotProjected,
    NodeNotFound,
    PredictionRef,
    Signer,
    Trace,
    TraceEdge,
    TraceNode,
)
from ._asof import pin_as_of, position, resolve_as_of, snapshot
from ._predictions import prediction_edge, prediction_node, predictions_page
from ._search import SearchPage, get_node, search
from ._walk import trace

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
