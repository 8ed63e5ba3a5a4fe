import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from provault.v1 import ledger_pb2 as _ledger_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_UPSTREAM: _ClassVar[Direction]
    DIRECTION_DOWNSTREAM: _ClassVar[Direction]
    DIRECTION_BOTH: _ClassVar[Direction]

class NodeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_TYPE_UNSPECIFIED: _ClassVar[NodeType]
    NODE_TYPE_ENTITY: _ClassVar[NodeType]
    NODE_TYPE_ACTIVITY: _ClassVar[NodeType]
    NODE_TYPE_AGENT: _ClassVar[NodeType]

class Relation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELATION_UNSPECIFIED: _ClassVar[Relation]
    RELATION_USED: _ClassVar[Relation]
    RELATION_WAS_GENERATED_BY: _ClassVar[Relation]
    RELATION_WAS_ASSOCIATED_WITH: _ClassVar[Relation]
    RELATION_WAS_ATTRIBUTED_TO: _ClassVar[Relation]
    RELATION_WAS_DERIVED_FROM: _ClassVar[Relation]
    RELATION_WAS_INFORMED_BY: _ClassVar[Relation]
    RELATION_ACTED_ON_BEHALF_OF: _ClassVar[Relation]
    RELATION_WAS_STARTED_BY: _ClassVar[Relation]
    RELATION_WAS_ENDED_BY: _ClassVar[Relation]
    RELATION_WAS_INVALIDATED_BY: _ClassVar[Relation]
    RELATION_WAS_INFLUENCED_BY: _ClassVar[Relation]
    RELATION_SPECIALIZATION_OF: _ClassVar[Relation]
    RELATION_ALTERNATE_OF: _ClassVar[Relation]
    RELATION_HAD_MEMBER: _ClassVar[Relation]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_TURTLE: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSONLD: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PROV_JSON: _ClassVar[ExportFormat]
    EXPORT_FORMAT_NTRIPLES: _ClassVar[ExportFormat]

class RdfTermType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RDF_TERM_TYPE_UNSPECIFIED: _ClassVar[RdfTermType]
    RDF_TERM_TYPE_IRI: _ClassVar[RdfTermType]
    RDF_TERM_TYPE_LITERAL: _ClassVar[RdfTermType]
    RDF_TERM_TYPE_BLANK_NODE: _ClassVar[RdfTermType]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_UPSTREAM: Direction
DIRECTION_DOWNSTREAM: Direction
DIRECTION_BOTH: Direction
NODE_TYPE_UNSPECIFIED: NodeType
NODE_TYPE_ENTITY: NodeType
NODE_TYPE_ACTIVITY: NodeType
NODE_TYPE_AGENT: NodeType
RELATION_UNSPECIFIED: Relation
RELATION_USED: Relation
RELATION_WAS_GENERATED_BY: Relation
RELATION_WAS_ASSOCIATED_WITH: Relation
RELATION_WAS_ATTRIBUTED_TO: Relation
RELATION_WAS_DERIVED_FROM: Relation
RELATION_WAS_INFORMED_BY: Relation
RELATION_ACTED_ON_BEHALF_OF: Relation
RELATION_WAS_STARTED_BY: Relation
RELATION_WAS_ENDED_BY: Relation
RELATION_WAS_INVALIDATED_BY: Relation
RELATION_WAS_INFLUENCED_BY: Relation
RELATION_SPECIALIZATION_OF: Relation
RELATION_ALTERNATE_OF: Relation
RELATION_HAD_MEMBER: Relation
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_TURTLE: ExportFormat
EXPORT_FORMAT_JSONLD: ExportFormat
EXPORT_FORMAT_PROV_JSON: ExportFormat
EXPORT_FORMAT_NTRIPLES: ExportFormat
RDF_TERM_TYPE_UNSPECIFIED: RdfTermType
RDF_TERM_TYPE_IRI: RdfTermType
RDF_TERM_TYPE_LITERAL: RdfTermType
RDF_TERM_TYPE_BLANK_NODE: RdfTermType

class AsOf(_message.Message):
    __slots__ = ("seq", "time")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "type", "kind", "label", "attributes_json", "introduced_seq")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    INTRODUCED_SEQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: NodeType
    kind: str
    label: str
    attributes_json: str
    introduced_seq: int
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[NodeType, str]] = ..., kind: _Optional[str] = ..., label: _Optional[str] = ..., attributes_json: _Optional[str] = ..., introduced_seq: _Optional[int] = ...) -> None: ...

class Edge(_message.Message):
    __slots__ = ("relation", "from_id", "to_id", "seq", "attributes_json")
    RELATION_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    relation: Relation
    from_id: str
    to_id: str
    seq: int
    attributes_json: str
    def __init__(self, relation: _Optional[_Union[Relation, str]] = ..., from_id: _Optional[str] = ..., to_id: _Optional[str] = ..., seq: _Optional[int] = ..., attributes_json: _Optional[str] = ...) -> None: ...

class EntryProofs(_message.Message):
    __slots__ = ("checkpoint", "inclusion_proofs", "unproven_seqs")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOFS_FIELD_NUMBER: _ClassVar[int]
    UNPROVEN_SEQS_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _ledger_pb2.Checkpoint
    inclusion_proofs: _containers.RepeatedCompositeFieldContainer[_ledger_pb2.InclusionProof]
    unproven_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, checkpoint: _Optional[_Union[_ledger_pb2.Checkpoint, _Mapping]] = ..., inclusion_proofs: _Optional[_Iterable[_Union[_ledger_pb2.InclusionProof, _Mapping]]] = ..., unproven_seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class TraceRequest(_message.Message):
    __slots__ = ("start_node_id", "direction", "max_depth", "max_nodes", "relations", "as_of", "page_size", "page_token", "include_proofs")
    START_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROOFS_FIELD_NUMBER: _ClassVar[int]
    start_node_id: str
    direction: Direction
    max_depth: int
    max_nodes: int
    relations: _containers.RepeatedScalarFieldContainer[Relation]
    as_of: AsOf
    page_size: int
    page_token: str
    include_proofs: bool
    def __init__(self, start_node_id: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., max_depth: _Optional[int] = ..., max_nodes: _Optional[int] = ..., relations: _Optional[_Iterable[_Union[Relation, str]]] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_proofs: _Optional[bool] = ...) -> None: ...

class TraceResponse(_message.Message):
    __slots__ = ("nodes", "edges", "next_page_token", "truncated", "as_of_seq", "proofs")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    PROOFS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    next_page_token: str
    truncated: bool
    as_of_seq: int
    proofs: EntryProofs
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., truncated: _Optional[bool] = ..., as_of_seq: _Optional[int] = ..., proofs: _Optional[_Union[EntryProofs, _Mapping]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id", "as_of")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    as_of: AsOf
    def __init__(self, node_id: _Optional[str] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node", "as_of_seq")
    NODE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    node: Node
    as_of_seq: int
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ..., as_of_seq: _Optional[int] = ...) -> None: ...

class AttributeFilter(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("text", "type", "kind", "attributes", "as_of", "page_size", "page_token")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    text: str
    type: NodeType
    kind: str
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeFilter]
    as_of: AsOf
    page_size: int
    page_token: str
    def __init__(self, text: _Optional[str] = ..., type: _Optional[_Union[NodeType, str]] = ..., kind: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[AttributeFilter, _Mapping]]] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token", "as_of_seq")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    next_page_token: str
    as_of_seq: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., as_of_seq: _Optional[int] = ...) -> None: ...

class ExportSubgraph(_message.Message):
    __slots__ = ("start_node_id", "direction", "max_depth", "relations")
    START_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    start_node_id: str
    direction: Direction
    max_depth: int
    relations: _containers.RepeatedScalarFieldContainer[Relation]
    def __init__(self, start_node_id: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., max_depth: _Optional[int] = ..., relations: _Optional[_Iterable[_Union[Relation, str]]] = ...) -> None: ...

class ExportFullGraph(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("format", "subgraph", "full_graph", "as_of")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SUBGRAPH_FIELD_NUMBER: _ClassVar[int]
    FULL_GRAPH_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    format: ExportFormat
    subgraph: ExportSubgraph
    full_graph: ExportFullGraph
    as_of: AsOf
    def __init__(self, format: _Optional[_Union[ExportFormat, str]] = ..., subgraph: _Optional[_Union[ExportSubgraph, _Mapping]] = ..., full_graph: _Optional[_Union[ExportFullGraph, _Mapping]] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("data", "content_type", "as_of_seq")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    as_of_seq: int
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., as_of_seq: _Optional[int] = ...) -> None: ...

class SparqlRequest(_message.Message):
    __slots__ = ("query", "max_rows", "as_of")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    query: str
    max_rows: int
    as_of: AsOf
    def __init__(self, query: _Optional[str] = ..., max_rows: _Optional[int] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ...) -> None: ...

class SparqlResponse(_message.Message):
    __slots__ = ("bindings", "boolean", "as_of_seq")
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    bindings: SparqlBindings
    boolean: bool
    as_of_seq: int
    def __init__(self, bindings: _Optional[_Union[SparqlBindings, _Mapping]] = ..., boolean: _Optional[bool] = ..., as_of_seq: _Optional[int] = ...) -> None: ...

class SparqlBindings(_message.Message):
    __slots__ = ("variables", "rows", "truncated")
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[SparqlRow]
    truncated: bool
    def __init__(self, variables: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[SparqlRow, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class SparqlRow(_message.Message):
    __slots__ = ("bindings",)
    class BindingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: RdfTerm
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[RdfTerm, _Mapping]] = ...) -> None: ...
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    bindings: _containers.MessageMap[str, RdfTerm]
    def __init__(self, bindings: _Optional[_Mapping[str, RdfTerm]] = ...) -> None: ...

class RdfTerm(_message.Message):
    __slots__ = ("type", "value", "datatype", "language")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    type: RdfTermType
    value: str
    datatype: str
    language: str
    def __init__(self, type: _Optional[_Union[RdfTermType, str]] = ..., value: _Optional[str] = ..., datatype: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class BundleRequest(_message.Message):
    __slots__ = ("node_id", "direction", "as_of", "max_depth", "max_nodes", "relations")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    direction: Direction
    as_of: AsOf
    max_depth: int
    max_nodes: int
    relations: _containers.RepeatedScalarFieldContainer[Relation]
    def __init__(self, node_id: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ..., max_depth: _Optional[int] = ..., max_nodes: _Optional[int] = ..., relations: _Optional[_Iterable[_Union[Relation, str]]] = ...) -> None: ...

class BundleResponse(_message.Message):
    __slots__ = ("bundle",)
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    bundle: AuditBundle
    def __init__(self, bundle: _Optional[_Union[AuditBundle, _Mapping]] = ...) -> None: ...

class ProvenEntry(_message.Message):
    __slots__ = ("entry", "inclusion_proof")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    entry: _ledger_pb2.Entry
    inclusion_proof: _ledger_pb2.InclusionProof
    def __init__(self, entry: _Optional[_Union[_ledger_pb2.Entry, _Mapping]] = ..., inclusion_proof: _Optional[_Union[_ledger_pb2.InclusionProof, _Mapping]] = ...) -> None: ...

class AuditBundle(_message.Message):
    __slots__ = ("format", "node_id", "direction", "as_of_seq", "checkpoint", "checkpoint_verifier_key", "root_keyids", "entries", "key_entries", "nodes", "edges", "truncated", "created_time")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    ROOT_KEYIDS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    KEY_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    format: str
    node_id: str
    direction: Direction
    as_of_seq: int
    checkpoint: _ledger_pb2.Checkpoint
    checkpoint_verifier_key: str
    root_keyids: _containers.RepeatedScalarFieldContainer[str]
    entries: _containers.RepeatedCompositeFieldContainer[ProvenEntry]
    key_entries: _containers.RepeatedCompositeFieldContainer[ProvenEntry]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    truncated: bool
    created_time: _timestamp_pb2.Timestamp
    def __init__(self, format: _Optional[str] = ..., node_id: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., as_of_seq: _Optional[int] = ..., checkpoint: _Optional[_Union[_ledger_pb2.Checkpoint, _Mapping]] = ..., checkpoint_verifier_key: _Optional[str] = ..., root_keyids: _Optional[_Iterable[str]] = ..., entries: _Optional[_Iterable[_Union[ProvenEntry, _Mapping]]] = ..., key_entries: _Optional[_Iterable[_Union[ProvenEntry, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., truncated: _Optional[bool] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GateRequest(_message.Message):
    __slots__ = ("model", "policy_toml", "as_of", "dry_run")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    model: str
    policy_toml: str
    as_of: AsOf
    dry_run: bool
    def __init__(self, model: _Optional[str] = ..., policy_toml: _Optional[str] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RuleVerdict(_message.Message):
    __slots__ = ("rule", "passed", "reason", "evidence_seqs")
    RULE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_SEQS_FIELD_NUMBER: _ClassVar[int]
    rule: str
    passed: bool
    reason: str
    evidence_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, rule: _Optional[str] = ..., passed: _Optional[bool] = ..., reason: _Optional[str] = ..., evidence_seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class GateResponse(_message.Message):
    __slots__ = ("model_id", "allowed", "rules", "policy_digest", "as_of_seq", "decision_event_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    POLICY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    DECISION_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    allowed: bool
    rules: _containers.RepeatedCompositeFieldContainer[RuleVerdict]
    policy_digest: str
    as_of_seq: int
    decision_event_id: str
    def __init__(self, model_id: _Optional[str] = ..., allowed: _Optional[bool] = ..., rules: _Optional[_Iterable[_Union[RuleVerdict, _Mapping]]] = ..., policy_digest: _Optional[str] = ..., as_of_seq: _Optional[int] = ..., decision_event_id: _Optional[str] = ...) -> None: ...

class AttestRequest(_message.Message):
    __slots__ = ("model", "as_of", "dry_run")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    model: str
    as_of: AsOf
    dry_run: bool
    def __init__(self, model: _Optional[str] = ..., as_of: _Optional[_Union[AsOf, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class AttestResponse(_message.Message):
    __slots__ = ("envelope_json", "bundle", "model_id", "statement_digest", "event_id")
    ENVELOPE_JSON_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    envelope_json: bytes
    bundle: AuditBundle
    model_id: str
    statement_digest: str
    event_id: str
    def __init__(self, envelope_json: _Optional[bytes] = ..., bundle: _Optional[_Union[AuditBundle, _Mapping]] = ..., model_id: _Optional[str] = ..., statement_digest: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...
