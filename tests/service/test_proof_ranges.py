"""Every out-of-range case of GetInclusionProof and GetConsistencyProof, with the exact code ledger.proto promises.

The ledger here: seqs 0..4 (log size 5), signed checkpoints at tree sizes 0
(``ledger init``), 2 and 4; entry 4 is newer than the latest checkpoint.

* INVALID_ARGUMENT: the request can never be answered (a size 0 or above
  2^63-1, ``old_size`` above ``new_size`` or above the log's size, a
  ``tree_size`` that cannot hold the entry).
* FAILED_PRECONDITION: the size or entry is in the log but no checkpoint
  covers it yet; retrying after the next checkpoint works.
* NOT_FOUND: no such entry, or no checkpoint at the size asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
import pytest

from ledger.core import merkle
from ledger.core.producing import Sealed
from ledger.grpckit.auth import LEDGER_METHOD_ROLES, AuthInterceptor, DevModeAuthenticator
from ledger.service.appender import Appender
from ledger.service.grpc_ledger import build_ledger_server
from ledger.store import checkpoints, log
from provault.v1 import ledger_pb2, ledger_pb2_grpc
from tests.ledgerkit import ORIGIN, Ledger, dataset_prov

pytestmark = pytest.mark.postgres

TIMEOUT = 10
MAX = 2**63 - 1
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN_ID = "01890a5d-ac96-774b-bcce-b302099a8057"
"""A well-formed UUIDv7 nobody appended."""


@pytest.fixture
def ledger_log(ledger: Ledger) -> Iterator[tuple[ledger_pb2_grpc.LedgerServiceStub, list[Sealed]]]:
    """A stub of a server over the log described above, and the events at seqs 1..4."""
    chain, reg = ledger.producer_with_key()
    events = [chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(4)]
    ledger.append(reg, events[0])
    checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, ORIGIN)  # 2
    ledger.append(*events[1:3])
    checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, ORIGIN)  # 4
    ledger.append(events[3])
    assert log.log_size(ledger.conn) == 5
    with _serving(ledger) as stub:
        yield stub, events


@contextlib.contextmanager
def _serving(ledger: Ledger) -> Iterator[ledger_pb2_grpc.LedgerServiceStub]:
    appender = Appender(ledger.dsn, limits=ledger.limits)
    interceptors = (AuthInterceptor(DevModeAuthenticator(), LEDGER_METHOD_ROLES),)
    server, port = build_ledger_server(
        dsn=ledger.dsn, appender=appender, listen="127.0.0.1:0", max_message_bytes=1 << 20, interceptors=interceptors
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ledger_pb2_grpc.LedgerServiceStub(channel)
    finally:
        channel.close()
        assert server.stop(None).wait(10)
        appender.close()


def _covers(seq: int, size: int) -> str:
    held = f"a tree of size {size} holds seqs 0..{size - 1}"
    return f"tree_size: expected at least {seq + 1} to cover entry seq {seq}, found {size} ({held})"


def _no_checkpoint(size: int) -> str:
    return f"no checkpoint at tree size {size}: the latest is at tree size 4"


def _range(what: str, value: int, low: int = 1) -> str:
    return f"{what}: expected an integer in {low}..{MAX}, found {value}"


BEYOND_LOG = "old_size: expected at most the log's size (5), found {}: no tree of that size exists"
RETRY_OLD = (
    "old_size 5 is beyond the latest checkpoint (tree size 4); retry after the next checkpoint, or pass new_size"
)
NEWER = (
    "entry seq 4 is newer than the latest checkpoint (tree size 4); it is covered by the next checkpoint, retry shortly"
)
NO_SEQ_5 = "no entry with seq 5: the log has 5 entries (seqs 0..4)"


def _answer(call, request) -> tuple[grpc.StatusCode, str]:
    """The code and the first line of details (OK, "" on success)."""
    try:
        call(request, timeout=TIMEOUT)
    except grpc.RpcError as e:
        return e.code(), (e.details() or "").split("\n")[0]
    return OK, ""


_CONSISTENCY = [
    # Arguments that can never be answered.
    ({"old_size": 0}, INVALID, _range("old_size", 0)),
    ({"old_size": 0, "new_size": 4}, INVALID, _range("old_size", 0)),
    ({"old_size": MAX + 1}, INVALID, _range("old_size", MAX + 1)),
    ({"old_size": 1, "new_size": 0}, INVALID, _range("new_size", 0)),
    ({"old_size": 3, "new_size": 2}, INVALID, "old_size: expected at most new_size (2), found 3"),
    ({"old_size": 9, "new_size": 4}, INVALID, "old_size: expected at most new_size (4), found 9"),
    ({"old_size": 6}, INVALID, BEYOND_LOG.format(6)),
    ({"old_size": MAX}, INVALID, BEYOND_LOG.format(MAX)),
    # In the log, beyond the latest checkpoint: retry after the next one.
    ({"old_size": 5}, PRECONDITION, RETRY_OLD),
    # No checkpoint at new_size (within the log or beyond it).
    ({"old_size": 1, "new_size": 3}, NOT_FOUND, _no_checkpoint(3)),
    ({"old_size": 1, "new_size": 5}, NOT_FOUND, _no_checkpoint(5)),
    ({"old_size": 6, "new_size": 9}, NOT_FOUND, _no_checkpoint(9)),
    # The edges that work.
    ({"old_size": 4}, OK, ""),
    ({"old_size": 1, "new_size": 2}, OK, ""),
    ({"old_size": 2, "new_size": 2}, OK, ""),
]


def test_consistency_proof_sizes(ledger_log) -> None:
    stub, _ = ledger_log
    for fields, code, message in _CONSISTENCY:
        request = ledger_pb2.GetConsistencyProofRequest(**fields)
        assert _answer(stub.GetConsistencyProof, request) == (code, message), fields


def test_inclusion_proof_ranges(ledger_log) -> None:
    stub, events = ledger_log
    cases = [
        # Arguments that can never be answered.
        ({}, INVALID, "entry: expected exactly one of seq or event_id, found neither"),
        ({"seq": MAX + 1}, INVALID, _range("seq", MAX + 1, low=0)),
        ({"seq": 0, "tree_size": 0}, INVALID, _range("tree_size", 0)),
        ({"seq": 0, "tree_size": MAX + 1}, INVALID, _range("tree_size", MAX + 1)),
        ({"seq": 2, "tree_size": 2}, INVALID, _covers(2, 2)),
        ({"seq": 4, "tree_size": 4}, INVALID, _covers(4, 4)),
        # A seq beyond the log with a tree_size below it: the argument error, before any lookup.
        ({"seq": 9, "tree_size": 4}, INVALID, _covers(9, 4)),
        # By event id the seq is known once the entry is found: the same rule.
        ({"event_id": events[3].event_id, "tree_size": 2}, INVALID, _covers(4, 2)),
        # In the log, newer than the latest checkpoint: retry shortly.
        ({"seq": 4}, PRECONDITION, NEWER),
        ({"event_id": events[3].event_id}, PRECONDITION, NEWER),
        # No such entry, or no checkpoint at tree_size.
        ({"seq": 5}, NOT_FOUND, NO_SEQ_5),
        ({"seq": 5, "tree_size": 9}, NOT_FOUND, NO_SEQ_5),
        ({"event_id": UNKNOWN_ID, "tree_size": 4}, NOT_FOUND, f"no entry with event id {UNKNOWN_ID}"),
        ({"seq": 1, "tree_size": 3}, NOT_FOUND, _no_checkpoint(3)),
        ({"seq": 1, "tree_size": 5}, NOT_FOUND, _no_checkpoint(5)),
        # The edges that work.
        ({"seq": 1, "tree_size": 2}, OK, ""),
        ({"seq": 3}, OK, ""),
        ({"event_id": events[2].event_id, "tree_size": 4}, OK, ""),
    ]
    for fields, code, message in cases:
        request = ledger_pb2.GetInclusionProofRequest(**fields)
        assert _answer(stub.GetInclusionProof, request) == (code, message), fields


def test_the_edges_that_work_give_proofs_that_verify(ledger_log, ledger: Ledger) -> None:
    stub, _ = ledger_log
    resp = stub.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(seq=1, tree_size=2), timeout=TIMEOUT)
    p = resp.proof
    merkle.verify_inclusion(p.leaf_hash, p.leaf_index, p.tree_size, list(p.hashes), resp.checkpoint.root_hash)
    resp = stub.GetConsistencyProof(ledger_pb2.GetConsistencyProofRequest(old_size=1, new_size=2), timeout=TIMEOUT)
    old_root = log.root_at(ledger.conn, 1)
    merkle.verify_consistency(1, resp.new_size, old_root, resp.checkpoint.root_hash, list(resp.hashes))
