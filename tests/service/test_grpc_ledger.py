"""LedgerService over a real gRPC channel, against a real ledger database."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ledger.core import merkle
from ledger.core.checkpoint import open_checkpoint
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from ledger.grpckit.auth import LEDGER_METHOD_ROLES, AuthInterceptor, DevModeAuthenticator, Identity
from ledger.service.appender import Appender
from ledger.service.grpc_ledger import LedgerGrpcService, build_ledger_server
from ledger.store import checkpoints, entries, log
from provault.v1 import ledger_pb2, ledger_pb2_grpc
from tests.ledgerkit import ORIGIN, Ledger, dataset_prov

pytestmark = pytest.mark.postgres

S = ledger_pb2.AppendStatus
TIMEOUT = 10


@dataclass
class Served:
    ledger: Ledger
    appender: Appender
    stub: ledger_pb2_grpc.LedgerServiceStub
    channel: grpc.Channel

    def append(self, item: Sealed | bytes) -> ledger_pb2.AppendResult:
        raw = item.envelope if isinstance(item, Sealed) else item
        return self.stub.Append(ledger_pb2.AppendRequest(envelope_json=raw), timeout=TIMEOUT).result

    def stream(self, items: Sequence[Sealed | bytes]) -> ledger_pb2.AppendStreamResponse:
        reqs = [ledger_pb2.AppendStreamRequest(envelope_json=i.envelope if isinstance(i, Sealed) else i) for i in items]
        return self.stub.AppendStream(iter(reqs), timeout=TIMEOUT)

    def sign(self) -> None:
        checkpoints.sign_latest(self.ledger.conn, self.ledger.checkpoint_key, ORIGIN)

    def opened(self, cp: ledger_pb2.Checkpoint):
        opened = open_checkpoint(cp.signed_note, [checkpoints.checkpoint_verifier(self.ledger.conn)])
        assert (opened.origin, opened.size, opened.root_hash) == (cp.origin, cp.tree_size, cp.root_hash)
        return opened


def _serve(ledger: Ledger, appender: Appender, *, dsn: str | None = None, **kw) -> tuple[grpc.Server, int]:
    kw.setdefault("interceptors", (AuthInterceptor(DevModeAuthenticator(), LEDGER_METHOD_ROLES),))
    server, port = build_ledger_server(
        dsn=dsn or ledger.dsn,
        appender=appender,
        listen="127.0.0.1:0",
        max_message_bytes=kw.pop("max_message_bytes", 4 << 20),
        **kw,
    )
    server.start()
    return server, port


@contextlib.contextmanager
def _running(ledger: Ledger, appender: Appender, **kw) -> Iterator[Served]:
    server, port = _serve(ledger, appender, **kw)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(ledger=ledger, appender=appender, stub=ledger_pb2_grpc.LedgerServiceStub(channel), channel=channel)
    finally:
        channel.close()
        assert server.stop(None).wait(10)


@pytest.fixture
def appender(ledger: Ledger) -> Iterator[Appender]:
    a = Appender(ledger.dsn, limits=ledger.limits)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def served(ledger: Ledger, appender: Appender) -> Iterator[Served]:
    with _running(ledger, appender, append_batch=2) as s:
        yield s


def _code(call, *args) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=TIMEOUT)
    return info.value.code(), info.value.details()


def _registered(s: Served, n: int = 0) -> tuple[ProducerChain, list[Sealed]]:
    """A registered producer (via Append) and ``n`` of its events, not yet sent."""
    chain, reg = s.ledger.producer_with_key()
    assert s.append(reg).status == S.APPEND_STATUS_ACCEPTED
    return chain, [chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(n)]


# --- Append ---------------------------------------------------------------------------


def test_append_accepted_duplicate_and_rejected(served: Served) -> None:
    _, (ev,) = _registered(served, 1)
    first = served.append(ev)
    assert (first.status, first.seq, first.event_id) == (S.APPEND_STATUS_ACCEPTED, 1, ev.event_id)
    assert first.leaf_hash == merkle.leaf_hash(ev.envelope) and first.received_time.seconds > 0
    assert (first.rejection_reason, first.rejection_message) == (ledger_pb2.REJECTION_REASON_UNSPECIFIED, "")

    again = served.append(ev)
    assert (again.status, again.seq, again.leaf_hash) == (S.APPEND_STATUS_DUPLICATE, 1, first.leaf_hash)
    assert again.received_time == first.received_time  # the original receipt

    stranger = ProducerChain("stranger@host", Ed25519Signer.generate()).emit("dataset.registered", dataset_prov())
    refused = served.append(stranger)
    assert (refused.status, refused.seq, refused.leaf_hash) == (S.APPEND_STATUS_REJECTED, 0, b"")
    assert refused.rejection_reason == ledger_pb2.REJECTION_REASON_UNKNOWN_KEY
    assert refused.event_id == stranger.event_id and refused.rejection_message

    garbage = served.append(b"not an envelope")
    assert garbage.rejection_reason == ledger_pb2.REJECTION_REASON_MALFORMED_ENVELOPE and garbage.event_id == ""
    assert [r for r, _ in served.ledger.rejections()] == ["unknown_key", "malformed_envelope"]
    assert log.log_size(served.ledger.conn) == 2


def test_append_stream_answers_in_request_order_across_batches(served: Served) -> None:
    chain, reg = served.ledger.producer_with_key()
    a, b = (chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(2))
    stranger = ProducerChain("stranger@host", Ed25519Signer.generate()).emit("dataset.registered", dataset_prov())
    # batches of 2: [reg, a] [a, garbage] [stranger, b]
    resp = served.stream([reg, a, a, b"{}", stranger, b])
    assert [r.status for r in resp.results] == [
        S.APPEND_STATUS_ACCEPTED,
        S.APPEND_STATUS_ACCEPTED,
        S.APPEND_STATUS_DUPLICATE,
        S.APPEND_STATUS_REJECTED,
        S.APPEND_STATUS_REJECTED,
        S.APPEND_STATUS_ACCEPTED,
    ]
    assert [r.seq for r in resp.results] == [0, 1, 1, 0, 0, 2]
    assert [r.event_id for r in resp.results] == [
        reg.event_id,
        a.event_id,
        a.event_id,
        "",
        stranger.event_id,
        b.event_id,
    ]
    assert [r.rejection_reason for r in resp.results][3:5] == [
        ledger_pb2.REJECTION_REASON_MALFORMED_ENVELOPE,
        ledger_pb2.REJECTION_REASON_UNKNOWN_KEY,
    ]
    assert (resp.accepted_count, resp.duplicate_count, resp.rejected_count) == (3, 1, 2)
    assert len(served.ledger.rejections()) == 2


def test_append_stream_too_long_for_one_response_is_refused(ledger: Ledger, appender: Appender) -> None:
    # 2 KiB responses hold (2048 - 64) // 512 = 3 results
    with _running(ledger, appender, max_message_bytes=2048) as s:
        code, details = _code(s.stub.AppendStream, iter([ledger_pb2.AppendStreamRequest(envelope_json=b"x")] * 4))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "expected at most 3 messages per stream" in details


# --- reads ------------------------------------------------------------------------------


def test_get_entry_by_seq_and_by_id_returns_the_exact_bytes(served: Served) -> None:
    chain, (ev,) = _registered(served, 1)
    served.append(ev)
    for req in (ledger_pb2.GetEntryRequest(seq=1), ledger_pb2.GetEntryRequest(event_id=ev.event_id)):
        entry = served.stub.GetEntry(req, timeout=TIMEOUT).entry
        assert (entry.seq, entry.event_id, entry.envelope_json) == (1, ev.event_id, ev.envelope)
        assert (
            entry.leaf_hash == merkle.leaf_hash(ev.envelope)
            and entry.keyid == chain.signer.keyid
            and entry.received_time.seconds
        )


def test_not_found(served: Served) -> None:
    _registered(served)
    code, details = _code(served.stub.GetEntry, ledger_pb2.GetEntryRequest(seq=7))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no entry with seq 7: the log has 1 entries (seqs 0..0)")
    missing = str(uuid.UUID(int=(1 << 76) * 7 | 2 << 62))  # a well-formed UUIDv7 nobody sent
    code, details = _code(served.stub.GetEntry, ledger_pb2.GetEntryRequest(event_id=missing))
    assert code == grpc.StatusCode.NOT_FOUND and missing in details
    code, details = _code(served.stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest(tree_size=1))
    assert code == grpc.StatusCode.NOT_FOUND and "no checkpoint at tree size 1: the latest is at tree size 0" in details
    code, _ = _code(served.stub.GetInclusionProof, ledger_pb2.GetInclusionProofRequest(seq=0, tree_size=1))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(served.stub.GetConsistencyProof, ledger_pb2.GetConsistencyProofRequest(old_size=1, new_size=1))
    assert code == grpc.StatusCode.NOT_FOUND


def test_get_checkpoint_latest_and_by_size(served: Served) -> None:
    empty = served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=TIMEOUT).checkpoint
    assert empty.tree_size == 0 and served.opened(empty).root_hash == merkle.root_hash([])
    _, events = _registered(served, 1)
    served.append(events[0])
    served.sign()
    latest = served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=TIMEOUT).checkpoint
    assert (latest.tree_size, latest.origin) == (2, ORIGIN) and latest.signed_time.seconds
    assert served.opened(latest).root_hash == log.root_at(served.ledger.conn, 2)
    assert served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(tree_size=0), timeout=TIMEOUT).checkpoint == empty
    assert served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(tree_size=2), timeout=TIMEOUT).checkpoint == latest


def test_inclusion_proofs_verify_against_the_signed_checkpoint(served: Served) -> None:
    _, events = _registered(served, 3)
    for ev in events[:2]:
        served.append(ev)
    code, details = _code(served.stub.GetInclusionProof, ledger_pb2.GetInclusionProofRequest(seq=1))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "newer than the latest checkpoint (tree size 0)" in details and "retry" in details
    served.sign()  # tree size 3
    served.append(events[2])
    served.sign()  # tree size 4
    for req in [ledger_pb2.GetInclusionProofRequest(seq=i) for i in range(4)] + [
        ledger_pb2.GetInclusionProofRequest(event_id=events[0].event_id, tree_size=3),
    ]:
        resp = served.stub.GetInclusionProof(req, timeout=TIMEOUT)
        p, cp = resp.proof, resp.checkpoint
        root = served.opened(cp).root_hash
        assert p.tree_size == cp.tree_size == (req.tree_size if req.HasField("tree_size") else 4)
        merkle.verify_inclusion(p.leaf_hash, p.leaf_index, p.tree_size, list(p.hashes), root)
        assert p.leaf_hash == entries.get_entry(served.ledger.conn, seq=p.seq).leaf_hash and p.leaf_index == p.seq
    code, details = _code(served.stub.GetInclusionProof, ledger_pb2.GetInclusionProofRequest(seq=3, tree_size=3))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and "tree_size: expected at least 4 to cover entry seq 3, found 3" in details
    )


def test_consistency_proofs_verify(served: Served) -> None:
    _, events = _registered(served, 4)
    served.append(events[0])
    served.sign()  # 2
    for ev in events[1:]:
        served.append(ev)
    served.sign()  # 5
    old_cp = served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(tree_size=2), timeout=TIMEOUT).checkpoint
    for old, new, old_root in [
        (2, None, old_cp.root_hash),
        (3, 5, log.root_at(served.ledger.conn, 3)),
        (2, 2, old_cp.root_hash),
    ]:
        req = ledger_pb2.GetConsistencyProofRequest(old_size=old, new_size=new)
        resp = served.stub.GetConsistencyProof(req, timeout=TIMEOUT)
        assert (resp.old_size, resp.new_size) == (old, new or 5) and resp.checkpoint.tree_size == resp.new_size
        merkle.verify_consistency(
            old, resp.new_size, old_root, served.opened(resp.checkpoint).root_hash, list(resp.hashes)
        )
    assert not resp.hashes  # old == new
    code, details = _code(served.stub.GetConsistencyProof, ledger_pb2.GetConsistencyProofRequest(old_size=6))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT and "old_size: expected at most the log's size (5), found 6" in details
    )
    code, _ = _code(served.stub.GetConsistencyProof, ledger_pb2.GetConsistencyProofRequest(old_size=2, new_size=4))
    assert code == grpc.StatusCode.NOT_FOUND


def test_bad_requests_are_invalid_argument_with_expected_and_found(served: Served) -> None:
    stub = served.stub
    cases = [
        (stub.Append, ledger_pb2.AppendRequest(), "envelope_json: expected"),
        (stub.GetEntry, ledger_pb2.GetEntryRequest(), "entry: expected exactly one of seq or event_id, found neither"),
        (stub.GetEntry, ledger_pb2.GetEntryRequest(event_id="not-a-uuid"), "event_id: UUIDv7: expected"),
        (stub.GetEntry, ledger_pb2.GetEntryRequest(event_id=str(uuid.uuid4())), "expected 7, found 4"),
        (
            stub.GetEntry,
            ledger_pb2.GetEntryRequest(seq=2**63),
            f"seq: expected an integer in 0..{2**63 - 1}, found {2**63}",
        ),
        (stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest(tree_size=2**64 - 1), "tree_size: expected"),
        (stub.GetInclusionProof, ledger_pb2.GetInclusionProofRequest(tree_size=1), "entry: expected exactly one"),
        (
            stub.GetInclusionProof,
            ledger_pb2.GetInclusionProofRequest(seq=0, tree_size=0),
            "tree_size: expected an integer in 1..",
        ),
        (stub.GetConsistencyProof, ledger_pb2.GetConsistencyProofRequest(), "old_size: expected an integer in 1.."),
        (
            stub.GetConsistencyProof,
            ledger_pb2.GetConsistencyProofRequest(old_size=3, new_size=2),
            "old_size: expected at most new_size (2), found 3",
        ),
    ]
    for call, request, message in cases:
        code, details = _code(call, request)
        assert (code, message in details) == (grpc.StatusCode.INVALID_ARGUMENT, True), (request, details)
    reqs = iter([ledger_pb2.AppendStreamRequest(envelope_json=b"x"), ledger_pb2.AppendStreamRequest()])
    code, details = _code(stub.AppendStream, reqs)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "stream message 1: envelope_json: expected" in details
    assert served.ledger.rejections() == []  # nothing of a refused stream's unfinished batch was recorded


# --- health, reflection, auth, lifecycle ---------------------------------------------------


def test_health_serving_and_reflection_lists_the_service(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    for name in ("", "provault.v1.LedgerService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    (resp,) = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )
    assert "provault.v1.LedgerService" in {s.name for s in resp.list_services_response.service}


class _TokenAuth:
    """Test authenticator: the token is the role."""

    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Identity | None:
        role = dict(metadata).get("x-test-role")
        return Identity(subject=f"tester-{role}", roles=frozenset({role})) if role else None


def test_auth_interceptor_enforces_the_method_roles(ledger: Ledger, appender: Appender) -> None:
    interceptors = (AuthInterceptor(_TokenAuth(), LEDGER_METHOD_ROLES),)
    with _running(ledger, appender, interceptors=interceptors) as s:
        code, _ = _code(s.stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest())
        assert code == grpc.StatusCode.UNAUTHENTICATED
        auditor = (("x-test-role", "auditor"),)
        assert s.stub.GetCheckpoint(
            ledger_pb2.GetCheckpointRequest(), metadata=auditor, timeout=TIMEOUT
        ).checkpoint.origin
        with pytest.raises(grpc.RpcError) as info:
            s.stub.Append(ledger_pb2.AppendRequest(envelope_json=b"x"), metadata=auditor, timeout=TIMEOUT)
        assert (
            info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            and "needs role admin or producer" in info.value.details()
        )
        producer = (("x-test-role", "producer"),)
        result = s.stub.Append(ledger_pb2.AppendRequest(envelope_json=b"x"), metadata=producer, timeout=TIMEOUT).result
        assert result.status == S.APPEND_STATUS_REJECTED
        health = health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # public


def _closed_port_dsn() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"host=127.0.0.1 port={port} dbname=provault user=provault password=hunter2 connect_timeout=2"


def test_database_unreachable_is_unavailable_without_driver_text(ledger: Ledger, appender: Appender) -> None:
    dead = _closed_port_dsn()
    appender.close()
    appender.dsn = dead  # the appender reconnects to the dead DSN on its next append
    with _running(ledger, appender, dsn=dead, read_timeout_s=0.5) as s:
        for call, request in [
            (s.stub.Append, ledger_pb2.AppendRequest(envelope_json=b"x")),
            (s.stub.GetEntry, ledger_pb2.GetEntryRequest(seq=0)),
            (s.stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest()),
        ]:
            code, details = _code(call, request)
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "retry" in details
            for leak in ("refused", "psycopg", "hunter2", "127.0.0.1", "port", "connection", "Pool"):
                assert leak not in details, details


def test_service_handle_starts_and_stops(ledger: Ledger, appender: Appender) -> None:
    svc = LedgerGrpcService(dsn=ledger.dsn, appender=appender, listen="127.0.0.1:0", max_message_bytes=1 << 20)
    assert not svc.running() and svc.address is None
    svc.start()
    try:
        assert svc.running() and svc.name == "ledger-grpc" and svc.log
        with grpc.insecure_channel(svc.address) as channel:
            stub = ledger_pb2_grpc.LedgerServiceStub(channel)
            assert stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=TIMEOUT).checkpoint.origin == ORIGIN
    finally:
        svc.stop(grace=1)
    assert not svc.running()
