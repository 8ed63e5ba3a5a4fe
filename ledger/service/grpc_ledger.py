"""gRPC LedgerService: Append through the Appender, reads from a connection pool.

The choices the proto leaves open (empty envelopes, stream batches, sizes, proofs, auth, health) are in
docs/ledger.md, "LedgerService: decisions the proto leaves open".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.core.admission import Accepted, Duplicate, Refused
from ledger.core.errors import InvalidArgument, InvalidIdentifier
from ledger.core.ids import parse_uuid7
from ledger.grpckit.auth import LEDGER_METHOD_ROLES, NotPermitted, append_refusal, current_identity, restricted
from ledger.grpckit.server import MAX_DB_INT, ReadPool, serve_on
from ledger.grpckit.service import GrpcServerService, register_servicer
from ledger.grpckit.status import NotCovered, NotFound, TooManyMessages, abort_with
from ledger.store import checkpoints, entries, log
from provault.v1 import ledger_pb2, ledger_pb2_grpc

from .appender import SERVICE_ROLE, Appender
from .rejections import rejection_reason

logger = logging.getLogger("provault.grpc")

SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"]
SERVICE_NAME = SERVICE.full_name
APPEND_BATCH = 500
MAX_REJECTION_MESSAGE_BYTES = 320
RESULT_BYTES_BOUND = 512
"""An upper bound on one serialized AppendResult (with its repeated-field framing)."""
MAX_CHECKED_STREAM_BYTES = 64 * 1_048_576
"""Envelope bytes an AppendStream of a producer-restricted caller may carry (held until all are checked)."""
_S = ledger_pb2.AppendStatus

# --- reads ---------------------------------------------------------------------------


# --- request validation --------------------------------------------------------------


def _db_int(value: int, what: str, *, minimum: int = 0) -> int:
    if not minimum <= value <= MAX_DB_INT:
        raise InvalidArgument(f"{what}: expected an integer in {minimum}..{MAX_DB_INT}, found {value}")
    return value


def _entry_selector(request: Any) -> dict[str, Any]:
    """``{"seq": n}`` or ``{"event_id": text}`` from the request's ``entry`` oneof."""
    which = request.WhichOneof("entry")
    if which is None:
        raise InvalidArgument("entry: expected exactly one of seq or event_id, found neither")
    if which == "seq":
        return {"seq": _db_int(request.seq, "seq")}
    try:
        parse_uuid7(request.event_id)
    except InvalidIdentifier as e:
        raise InvalidArgument(f"event_id: {e.message}", hint=e.hint) from None
    return {"event_id": request.event_id}


def _describe_selector(selector: dict[str, Any]) -> str:
    return f"seq {selector['seq']}" if "seq" in selector else f"event id {selector['event_id']}"


def _envelope(data: bytes, what: str) -> bytes:
    if not data:
        raise InvalidArgument(f"{what}: expected the DSSE envelope JSON bytes, found an empty field")
    return data


# --- conversion to protobuf ---------------------------------------------------------


def _timestamp(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def _checkpoint_pb(cp: checkpoints.StoredCheckpoint) -> ledger_pb2.Checkpoint:
    return ledger_pb2.Checkpoint(
        signed_note=cp.note,
        origin=cp.note.split("\n", 1)[0],
        tree_size=cp.tree_size,
        root_hash=cp.root_hash,
        signed_time=_timestamp(cp.signed_at),
    )


def _entry_pb(e: entries.StoredEntry) -> ledger_pb2.Entry:
    return ledger_pb2.Entry(
        seq=e.seq,
        event_id=e.event_id,
        keyid=e.keyid,
        envelope_json=e.envelope,
        leaf_hash=e.leaf_hash,
        received_time=_timestamp(e.received_at),
    )


def _clip(text: str, limit: int = MAX_REJECTION_MESSAGE_BYTES) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"


def _result_pb(
    outcome: Accepted | Duplicate | Refused, receipts: dict[str, tuple[int, datetime]], refused_at: datetime
) -> ledger_pb2.AppendResult:
    if isinstance(outcome, Refused):
        return ledger_pb2.AppendResult(
            status=_S.APPEND_STATUS_REJECTED,
            event_id=outcome.event_id or "",
            received_time=_timestamp(refused_at),
            rejection_reason=rejection_reason(outcome.reason),
            rejection_message=_clip(outcome.message),
        )
    seq, received = receipts[outcome.item.event_id]
    status = _S.APPEND_STATUS_ACCEPTED if isinstance(outcome, Accepted) else _S.APPEND_STATUS_DUPLICATE
    return ledger_pb2.AppendResult(
        status=status,
        seq=seq,
        event_id=outcome.item.event_id,
        leaf_hash=outcome.item.leaf_hash,
        received_time=_timestamp(received),
    )


# --- the servicer ----------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def _rpc(fn: F) -> F:
    """Turn any error of a handler into a status via the one table in status.py."""

    @functools.wraps(fn)
    def handler(self: LedgerServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except NotPermitted as e:
            logger.info("%s: refused with PERMISSION_DENIED: %s", fn.__name__, e.message)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, e.diagnostics())
        except Exception as e:
            if not context.is_active():
                logger.info("%s: the client went away (%s)", fn.__name__, type(e).__name__)
                raise
            abort_with(context, e)

    return handler  # type: ignore[return-value]


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(
        self, *, reads: ReadPool, appender: Appender, max_message_bytes: int, batch_size: int = APPEND_BATCH
    ) -> None:
        self.reads = reads
        self.appender = appender
        self.batch_size = batch_size
        self.max_stream_messages = max(1, (max_message_bytes - 64) // RESULT_BYTES_BOUND)

    # -- appends --

    @_rpc
    def Append(self, request: ledger_pb2.AppendRequest, context: grpc.ServicerContext) -> ledger_pb2.AppendResponse:
        raw = _envelope(request.envelope_json, "envelope_json")
        _authorize(raw, "envelope_json")
        (result,) = self._append([raw])
        return ledger_pb2.AppendResponse(result=result)

    @_rpc
    def AppendStream(
        self, request_iterator: Iterable[ledger_pb2.AppendStreamRequest], context: grpc.ServicerContext
    ) -> ledger_pb2.AppendStreamResponse:
        results: list[ledger_pb2.AppendResult] = []
        batch: list[bytes] = []
        if restricted(current_identity()):
            request_iterator = self._checked_stream(request_iterator)
        for i, request in enumerate(request_iterator):
            if i >= self.max_stream_messages:
                raise TooManyMessages(
                    f"stream message {i}: expected at most {self.max_stream_messages} messages per stream, found more; "
                    f"the first {len(results)} were appended",
                    hint="split the events over several streams; resending is safe (duplicates come back DUPLICATE)",
                )
            batch.append(_envelope(request.envelope_json, f"stream message {i}: envelope_json"))
            if len(batch) >= self.batch_size:
                results.extend(self._append(batch))
                batch = []
        if batch:
            results.extend(self._append(batch))
        counts = {s: sum(1 for r in results if r.status == s) for s in _S.values()}
        return ledger_pb2.AppendStreamResponse(
            results=results,
            accepted_count=counts[_S.APPEND_STATUS_ACCEPTED],
            duplicate_count=counts[_S.APPEND_STATUS_DUPLICATE],
            rejected_count=counts[_S.APPEND_STATUS_REJECTED],
        )

    def _checked_stream(
        self, requests: Iterable[ledger_pb2.AppendStreamRequest]
    ) -> list[ledger_pb2.AppendStreamRequest]:
        """The whole stream, once every message is known to be the caller's to append; nothing is appended before."""
        held: list[ledger_pb2.AppendStreamRequest] = []
        size = 0
        for i, request in enumerate(requests):
            if i >= self.max_stream_messages or size + len(request.envelope_json) > MAX_CHECKED_STREAM_BYTES:
                raise TooManyMessages(
                    f"stream message {i}: expected at most {self.max_stream_messages} messages and "
                    f"{MAX_CHECKED_STREAM_BYTES} envelope bytes per stream, found more; nothing was appended",
                    hint="split the events over several streams",
                )
            _authorize(
                _envelope(request.envelope_json, f"stream message {i}: envelope_json"),
                f"stream message {i}",
                suffix="; nothing of this stream was appended",
            )
            size += len(request.envelope_json)
            held.append(request)
        return held

    def _append(self, raws: Sequence[bytes]) -> list[ledger_pb2.AppendResult]:
        plan = self.appender.append(raws, source="grpc")
        refused_at = datetime.now(UTC)
        receipts = self._receipts([o.item.event_id for o in plan.outcomes if not isinstance(o, Refused)])
        return [_result_pb(o, receipts, refused_at) for o in plan.outcomes]

    def _receipts(self, event_ids: list[str]) -> dict[str, tuple[int, datetime]]:
        """event id -> (seq, received time) as stored: the original receipt for duplicates."""
        if not event_ids:
            return {}
        with self.reads.connection() as conn:
            rows = conn.execute(
                "SELECT event_id::text, seq, received_at FROM ledger.entries WHERE event_id = ANY(%s::uuid[])",
                (sorted(set(event_ids)),),
            ).fetchall()
        return {eid: (seq, received) for eid, seq, received in rows}

    # -- reads --

    @_rpc
    def GetEntry(
        self, request: ledger_pb2.GetEntryRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetEntryResponse:
        selector = _entry_selector(request)
        with self.reads.connection() as conn:
            entry = self._entry(conn, selector)
        return ledger_pb2.GetEntryResponse(entry=_entry_pb(entry))

    @_rpc
    def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetCheckpointResponse:
        size = _db_int(request.tree_size, "tree_size") if request.HasField("tree_size") else None
        with self.reads.connection() as conn:
            cp = self._checkpoint(conn, size)
        return ledger_pb2.GetCheckpointResponse(checkpoint=_checkpoint_pb(cp))

    @_rpc
    def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetInclusionProofResponse:
        selector = _entry_selector(request)
        size = _db_int(request.tree_size, "tree_size", minimum=1) if request.HasField("tree_size") else None
        if size is not None and "seq" in selector:
            _require_covers(size, selector["seq"])  # an argument error, before any lookup
        with self.reads.connection() as conn:
            entry = self._entry(conn, selector)
            if size is not None:
                _require_covers(size, entry.seq)  # the same once an event id names the seq
            cp = self._checkpoint(conn, size)
            if entry.seq >= cp.tree_size:
                raise NotCovered(_not_covered(entry.seq, cp.tree_size))  # only for the latest: checked above otherwise
            hashes = log.inclusion_proof(conn, entry.seq, cp.tree_size)
        proof = ledger_pb2.InclusionProof(
            seq=entry.seq, leaf_index=entry.seq, tree_size=cp.tree_size, leaf_hash=entry.leaf_hash, hashes=hashes
        )
        return ledger_pb2.GetInclusionProofResponse(proof=proof, checkpoint=_checkpoint_pb(cp))

    @_rpc
    def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetConsistencyProofResponse:
        old = _db_int(request.old_size, "old_size", minimum=1)
        new = _db_int(request.new_size, "new_size", minimum=1) if request.HasField("new_size") else None
        if new is not None and old > new:
            raise InvalidArgument(f"old_size: expected at most new_size ({new}), found {old}")
        with self.reads.connection() as conn:
            cp = self._checkpoint(conn, new)
            if old > cp.tree_size:
                if old > (size := log.log_size(conn)):
                    raise InvalidArgument(
                        f"old_size: expected at most the log's size ({size}), found {old}: no tree of that size exists",
                        hint="pass the tree_size of a checkpoint you hold",
                    )
                raise NotCovered(
                    f"old_size {old} is beyond the latest checkpoint (tree size {cp.tree_size}); "
                    "retry after the next checkpoint, or pass new_size"
                )
            hashes = [] if old == cp.tree_size else log.consistency_proof(conn, old, cp.tree_size)
        return ledger_pb2.GetConsistencyProofResponse(
            old_size=old, new_size=cp.tree_size, hashes=hashes, checkpoint=_checkpoint_pb(cp)
        )

    # -- shared lookups (NOT_FOUND with a message that says what exists) --

    @staticmethod
    def _entry(conn: psycopg.Connection, selector: dict[str, Any]) -> entries.StoredEntry:
        entry = entries.get_entry(conn, **selector)
        if entry is not None:
            return entry
        if "seq" in selector:
            size = log.log_size(conn)
            have = f"seqs 0..{size - 1}" if size else "no entries yet"
            raise NotFound(f"no entry with seq {selector['seq']}: the log has {size} entries ({have})")
        raise NotFound(
            f"no entry with {_describe_selector(selector)}",
            hint="the event was not appended yet, or it was rejected (Append answers REJECTED with the reason)",
        )

    @staticmethod
    def _checkpoint(conn: psycopg.Connection, size: int | None) -> checkpoints.StoredCheckpoint:
        cp = checkpoints.latest(conn) if size is None else checkpoints.at_size(conn, size)
        if cp is not None:
            return cp
        if size is None:
            raise NotFound("the ledger has signed no checkpoint yet", hint="run `provault ledger init`")
        latest = checkpoints.latest(conn)
        where = f"the latest is at tree size {latest.tree_size}" if latest else "none is signed yet"
        raise NotFound(
            f"no checkpoint at tree size {size}: {where}",
            hint="ask for a size you saw in a checkpoint, or omit the size for the latest",
        )


def _authorize(raw: bytes, what: str, *, suffix: str = "") -> None:
    """NotPermitted when the caller may not append ``raw`` (see :func:`~.auth.append_refusal`)."""
    refusal = append_refusal(current_identity(), raw)
    if refusal:
        raise NotPermitted(
            f"{what}: {refusal}{suffix}", hint="ask an admin for a credential that covers this producer id"
        )


def _require_covers(tree_size: int, seq: int) -> None:
    """InvalidArgument unless a tree of ``tree_size`` entries holds entry ``seq``: no checkpoint of that size ever will."""
    if seq >= tree_size:
        raise InvalidArgument(
            f"tree_size: expected at least {seq + 1} to cover entry seq {seq}, found {tree_size} "
            f"(a tree of size {tree_size} holds seqs 0..{tree_size - 1})",
            hint="ask for a later checkpoint, or omit tree_size for the latest",
        )


def _not_covered(seq: int, tree_size: int) -> str:
    return (
        f"entry seq {seq} is newer than the latest checkpoint (tree size {tree_size}); "
        "it is covered by the next checkpoint, retry shortly"
    )


# --- the server ------------------------------------------------------------------------


def build_ledger_server(
    *,
    dsn: str,
    appender: Appender,
    listen: str,
    max_message_bytes: int,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    max_workers: int = 16,
    read_timeout_s: float = 5.0,
    append_batch: int = APPEND_BATCH,
    server_credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """A LedgerService server with health and reflection, bound to ``listen``; not started.

    With ``server_credentials`` it speaks TLS, else plaintext.  Returns the
    server and the bound port (useful with port 0).
    """
    reads = ReadPool(dsn, timeout_s=read_timeout_s, max_size=max_workers, role=SERVICE_ROLE)
    servicer = LedgerServicer(
        reads=reads, appender=appender, max_message_bytes=max_message_bytes, batch_size=append_batch
    )
    return serve_on(
        listen,
        reads=reads,
        service_name=SERVICE_NAME,
        add_servicer=lambda server: register_servicer(server, SERVICE, servicer),
        interceptors=interceptors,
        max_workers=max_workers,
        max_message_bytes=max_message_bytes,
        server_credentials=server_credentials,
        thread_prefix="provault-grpc",
        listen_key="grpc.ledger_listen",
    )


class LedgerGrpcService(GrpcServerService):
    """The LedgerService server as a stack service (``provault up`` / ``ledger serve``)."""

    name = "ledger-grpc"
    service_label = "LedgerService"
    service_name = SERVICE_NAME
    method_roles = LEDGER_METHOD_ROLES

    def __init__(self, *, appender: Appender, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.appender = appender

    def _build(self, interceptors: Sequence[grpc.ServerInterceptor]) -> tuple[grpc.Server, int]:
        return build_ledger_server(
            dsn=self.dsn,
            appender=self.appender,
            listen=self.listen,
            max_message_bytes=self.max_message_bytes,
            interceptors=interceptors,
            server_credentials=self.server_credentials,
        )
