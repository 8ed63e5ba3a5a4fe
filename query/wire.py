"""The wire form of answers, one place for QueryService and audit bundles: the tables between the proto
enums and the names the traversal uses, the checks that turn request enums into those names, and the
builders of ``Node`` and ``Edge`` messages.  Pure: the generated messages and the core's errors only."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.core.errors import InvalidArgument, expected_found
from provault.v1 import query_pb2

DIRECTIONS: Mapping[int, str] = {
    query_pb2.DIRECTION_UPSTREAM: "upstream",
    query_pb2.DIRECTION_DOWNSTREAM: "downstream",
    query_pb2.DIRECTION_BOTH: "both",
}
DIRECTION_VALUES: Mapping[str, int] = {name: value for value, name in DIRECTIONS.items()}
NODE_TYPES: Mapping[str | None, int] = {
    None: query_pb2.NODE_TYPE_UNSPECIFIED,
    "entity": query_pb2.NODE_TYPE_ENTITY,
    "activity": query_pb2.NODE_TYPE_ACTIVITY,
    "agent": query_pb2.NODE_TYPE_AGENT,
}
RELATIONS: Mapping[str, int] = {
    "used": query_pb2.RELATION_USED,
    "wasGeneratedBy": query_pb2.RELATION_WAS_GENERATED_BY,
    "wasAssociatedWith": query_pb2.RELATION_WAS_ASSOCIATED_WITH,
    "wasAttributedTo": query_pb2.RELATION_WAS_ATTRIBUTED_TO,
    "wasDerivedFrom": query_pb2.RELATION_WAS_DERIVED_FROM,
    "wasInformedBy": query_pb2.RELATION_WAS_INFORMED_BY,
    "actedOnBehalfOf": query_pb2.RELATION_ACTED_ON_BEHALF_OF,
    "wasStartedBy": query_pb2.RELATION_WAS_STARTED_BY,
    "wasEndedBy": query_pb2.RELATION_WAS_ENDED_BY,
    "wasInvalidatedBy": query_pb2.RELATION_WAS_INVALIDATED_BY,
    "wasInfluencedBy": query_pb2.RELATION_WAS_INFLUENCED_BY,
    "specializationOf": query_pb2.RELATION_SPECIALIZATION_OF,
    "alternateOf": query_pb2.RELATION_ALTERNATE_OF,
    "hadMember": query_pb2.RELATION_HAD_MEMBER,
}
RELATION_NAMES: Mapping[int, str] = {v: k for k, v in RELATIONS.items()}


def enum_name(enum: Any, value: int) -> str:
    """The proto name of ``value`` in ``enum``, or the number when the enum has no such value."""
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


def direction_name(value: int, what: str = "direction") -> str:
    """The traversal's name for a ``Direction`` value; ``InvalidArgument`` for UNSPECIFIED or unknown values."""
    if value not in DIRECTIONS:
        names = ", ".join(query_pb2.Direction.Name(v) for v in DIRECTIONS)
        raise InvalidArgument(expected_found(what, f"one of {names}", enum_name(query_pb2.Direction, value)))
    return DIRECTIONS[value]


def relation_names(values: Sequence[int], what: str = "relations") -> tuple[str, ...]:
    """The PROV relation names of ``Relation`` values, sorted and once each; ``InvalidArgument`` naming the first
    value that is not a relation."""
    out = []
    for i, v in enumerate(values):
        if v not in RELATION_NAMES:
            raise InvalidArgument(expected_found(f"{what}[{i}]", "a PROV relation", enum_name(query_pb2.Relation, v)))
        out.append(RELATION_NAMES[v])
    return tuple(sorted(set(out)))


def attributes_json(attributes: Mapping[str, Any]) -> str:
    """The canonical JSON of a node's or edge's attributes, as QueryService and bundles carry it."""
    return json.dumps(dict(attributes), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def node_message(
    *,
    id: str,
    node_type: str | None,
    kind: str | None,
    label: str | None,
    attributes: Mapping[str, Any],
    introduced_seq: int,
) -> query_pb2.Node:
    return query_pb2.Node(
        id=id,
        type=NODE_TYPES.get(node_type, query_pb2.NODE_TYPE_UNSPECIFIED),
        kind=kind or "",
        label=label or "",
        attributes_json=attributes_json(attributes),
        introduced_seq=max(0, introduced_seq),
    )


def edge_message(*, relation: str, src: str, dst: str, seq: int, attributes: Mapping[str, Any]) -> query_pb2.Edge:
    return query_pb2.Edge(
        relation=RELATIONS[relation], from_id=src, to_id=dst, seq=seq, attributes_json=attributes_json(attributes)
    )


__all__ = [
    "DIRECTIONS",
    "DIRECTION_VALUES",
    "NODE_TYPES",
    "RELATIONS",
    "RELATION_NAMES",
    "attributes_json",
    "direction_name",
    "edge_message",
    "enum_name",
    "node_message",
    "relation_names",
]
