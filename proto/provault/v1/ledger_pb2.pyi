import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPEND_STATUS_UNSPECIFIED: _ClassVar[AppendStatus]
    APPEND_STATUS_ACCEPTED: _ClassVar[AppendStatus]
    APPEND_STATUS_DUPLICATE: _ClassVar[AppendStatus]
    APPEND_STATUS_REJECTED: _ClassVar[AppendStatus]

class RejectionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECTION_REASON_UNSPECIFIED: _ClassVar[RejectionReason]
    REJECTION_REASON_MALFORMED_ENVELOPE: _ClassVar[RejectionReason]
    REJECTION_REASON_UNSUPPORTED_PAYLOAD_TYPE: _ClassVar[RejectionReason]
    REJECTION_REASON_INVALID_EVENT: _ClassVar[RejectionReason]
    REJECTION_REASON_INVALID_PROV: _ClassVar[RejectionReason]
    REJECTION_REASON_UNKNOWN_KEY: _ClassVar[RejectionReason]
    REJECTION_REASON_BAD_SIGNATURE: _ClassVar[RejectionReason]
    REJECTION_REASON_KEY_REVOKED: _ClassVar[RejectionReason]
    REJECTION_REASON_KEY_NOT_PERMITTED: _ClassVar[RejectionReason]
    REJECTION_REASON_EVENT_ID_CONFLICT: _ClassVar[RejectionReason]
    REJECTION_REASON_PRODUCER_CHAIN_BROKEN: _ClassVar[RejectionReason]
    REJECTION_REASON_TOO_LARGE: _ClassVar[RejectionReason]
    REJECTION_REASON_CANNOT_VERIFY: _ClassVar[RejectionReason]
    REJECTION_REASON_CLOCK_SKEW: _ClassVar[RejectionReason]
    REJECTION_REASON_WRONG_SUBJECT: _ClassVar[RejectionReason]
APPEND_STATUS_UNSPECIFIED: AppendStatus
APPEND_STATUS_ACCEPTED: AppendStatus
APPEND_STATUS_DUPLICATE: AppendStatus
APPEND_STATUS_REJECTED: AppendStatus
REJECTION_REASON_UNSPECIFIED: RejectionReason
REJECTION_REASON_MALFORMED_ENVELOPE: RejectionReason
REJECTION_REASON_UNSUPPORTED_PAYLOAD_TYPE: RejectionReason
REJECTION_REASON_INVALID_EVENT: RejectionReason
REJECTION_REASON_INVALID_PROV: RejectionReason
REJECTION_REASON_UNKNOWN_KEY: RejectionReason
REJECTION_REASON_BAD_SIGNATURE: RejectionReason
REJECTION_REASON_KEY_REVOKED: RejectionReason
REJECTION_REASON_KEY_NOT_PERMITTED: RejectionReason
REJECTION_REASON_EVENT_ID_CONFLICT: RejectionReason
REJECTION_REASON_PRODUCER_CHAIN_BROKEN: RejectionReason
REJECTION_REASON_TOO_LARGE: RejectionReason
REJECTION_REASON_CANNOT_VERIFY: RejectionReason
REJECTION_REASON_CLOCK_SKEW: RejectionReason
REJECTION_REASON_WRONG_SUBJECT: RejectionReason

class AppendRequest(_message.Message):
    __slots__ = ("envelope_json",)
    ENVELOPE_JSON_FIELD_NUMBER: _ClassVar[int]
    envelope_json: bytes
    def __init__(self, envelope_json: _Optional[bytes] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: AppendResult
    def __init__(self, result: _Optional[_Union[AppendResult, _Mapping]] = ...) -> None: ...

class AppendStreamRequest(_message.Message):
    __slots__ = ("envelope_json",)
    ENVELOPE_JSON_FIELD_NUMBER: _ClassVar[int]
    envelope_json: bytes
    def __init__(self, envelope_json: _Optional[bytes] = ...) -> None: ...

class AppendStreamResponse(_message.Message):
    __slots__ = ("results", "accepted_count", "duplicate_count", "rejected_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AppendResult]
    accepted_count: int
    duplicate_count: int
    rejected_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[AppendResult, _Mapping]]] = ..., accepted_count: _Optional[int] = ..., duplicate_count: _Optional[int] = ..., rejected_count: _Optional[int] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ("status", "seq", "event_id", "leaf_hash", "received_time", "rejection_reason", "rejection_message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    REJECTION_REASON_FIELD_NUMBER: _ClassVar[int]
    REJECTION_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: AppendStatus
    seq: int
    event_id: str
    leaf_hash: bytes
    received_time: _timestamp_pb2.Timestamp
    rejection_reason: RejectionReason
    rejection_message: str
    def __init__(self, status: _Optional[_Union[AppendStatus, str]] = ..., seq: _Optional[int] = ..., event_id: _Optional[str] = ..., leaf_hash: _Optional[bytes] = ..., received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rejection_reason: _Optional[_Union[RejectionReason, str]] = ..., rejection_message: _Optional[str] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("seq", "event_id", "keyid", "envelope_json", "leaf_hash", "received_time")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEYID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_JSON_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event_id: str
    keyid: str
    envelope_json: bytes
    leaf_hash: bytes
    received_time: _timestamp_pb2.Timestamp
    def __init__(self, seq: _Optional[int] = ..., event_id: _Optional[str] = ..., keyid: _Optional[str] = ..., envelope_json: _Optional[bytes] = ..., leaf_hash: _Optional[bytes] = ..., received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("signed_note", "origin", "tree_size", "root_hash", "signed_time")
    SIGNED_NOTE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNED_TIME_FIELD_NUMBER: _ClassVar[int]
    signed_note: str
    origin: str
    tree_size: int
    root_hash: bytes
    signed_time: _timestamp_pb2.Timestamp
    def __init__(self, signed_note: _Optional[str] = ..., origin: _Optional[str] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., signed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("seq", "leaf_index", "tree_size", "leaf_hash", "hashes")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, seq: _Optional[int] = ..., leaf_index: _Optional[int] = ..., tree_size: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetEntryRequest(_message.Message):
    __slots__ = ("seq", "event_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event_id: str
    def __init__(self, seq: _Optional[int] = ..., event_id: _Optional[str] = ...) -> None: ...

class GetEntryResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: Entry
    def __init__(self, entry: _Optional[_Union[Entry, _Mapping]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("tree_size",)
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    def __init__(self, tree_size: _Optional[int] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("seq", "event_id", "tree_size")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event_id: str
    tree_size: int
    def __init__(self, seq: _Optional[int] = ..., event_id: _Optional[str] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("proof", "checkpoint")
    PROOF_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    proof: InclusionProof
    checkpoint: Checkpoint
    def __init__(self, proof: _Optional[_Union[InclusionProof, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("old_size", "new_size")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("old_size", "new_size", "hashes", "checkpoint")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    checkpoint: Checkpoint
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...
