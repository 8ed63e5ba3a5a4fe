"""QueryService.Gate over a real gRPC channel against a real ledger: answers and status codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ledger.config import Settings
from ledger.db import connect
from ledger.grpckit.auth import AuthInterceptor, DevModeAuthenticator
from provault.v1 import query_pb2, query_pb2_grpc
from query import projector
from query.service import QUERY_METHOD_ROLES, build_query_server
from tests.ledgerkit import Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story, at
from tests.query.supply.gatekit import POLICY, RULES, append, approved, logged, register_attestor, with_attestor
from tests.service.natskit import wait_for

pytestmark = pytest.mark.postgres

Q = query_pb2
TIMEOUT = 30


@contextlib.contextmanager
def serving(ledger: Ledger, settings: Settings | None) -> Iterator[query_pb2_grpc.QueryServiceStub]:
    interceptors = (AuthInterceptor(DevModeAuthenticator(), QUERY_METHOD_ROLES),)
    server, port = build_query_server(
        dsn=ledger.dsn, listen="127.0.0.1:0", max_message_bytes=4 << 20, interceptors=interceptors, settings=settings
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield query_pb2_grpc.QueryServiceStub(channel)
    finally:
        channel.close()
        assert server.stop(None).wait(10)


def status_of(stub: query_pb2_grpc.QueryServiceStub, request: Q.GateRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        stub.Gate(request, timeout=TIMEOUT)
    return info.value.code(), info.value.details()


def test_gate_answers_and_refuses_with_exact_status_codes(ledger: Ledger, story: Story, tmp_path: Path) -> None:
    approved(ledger, story, approvers=("carol",))
    s = with_attestor(Settings(data_dir=tmp_path / "data"), tmp_path)  # the key file does not exist
    with serving(ledger, s) as stub:
        allowed = stub.Gate(
            Q.GateRequest(model="sentiment", policy_toml=POLICY.replace("count = 2", "count = 1"), dry_run=True),
            timeout=TIMEOUT,
        )
        assert (allowed.model_id, allowed.allowed, allowed.as_of_seq) == (story.ids.model, True, 15)
        assert [r.rule for r in allowed.rules] == RULES and all(r.passed for r in allowed.rules)
        assert list(allowed.rules[2].evidence_seqs) == [15] and allowed.decision_event_id == ""
        assert allowed.policy_digest.startswith("sha256:")

        denied = stub.Gate(Q.GateRequest(model=story.ids.model, policy_toml=POLICY, dry_run=True), timeout=TIMEOUT)
        assert not denied.allowed and [r.rule for r in denied.rules if not r.passed] == ["approvals"]
        assert denied.rules[2].reason.startswith("1 distinct approver with role ml-lead, 2 needed")
        earlier = stub.Gate(
            Q.GateRequest(model="sentiment", policy_toml=POLICY, dry_run=True, as_of=Q.AsOf(seq=8)), timeout=TIMEOUT
        )
        assert earlier.as_of_seq == 8 and [r.rule for r in earlier.rules if not r.passed] == ["provenance", "approvals"]
        by_time = Q.AsOf()
        by_time.time.FromDatetime(at(0).replace(year=2100))
        assert (
            stub.Gate(Q.GateRequest(model="sentiment", policy_toml=POLICY, dry_run=True, as_of=by_time)).as_of_seq == 15
        )

        code, details = status_of(
            stub, Q.GateRequest(model="sentiment", policy_toml=POLICY.replace("count = 2", "count = 0"))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "policy_toml line 10, rules.approvals.count: expected an integer >= 1, found 0"
        code, details = status_of(stub, Q.GateRequest(model="sentiment", dry_run=True))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(
            "policy_toml: expected the policy's TOML"
        )
        code, details = status_of(stub, Q.GateRequest(policy_toml=POLICY, dry_run=True))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "model" in details

        code, details = status_of(stub, Q.GateRequest(model="no-such-model", policy_toml=POLICY, dry_run=True))
        assert code == grpc.StatusCode.NOT_FOUND and "no model labelled 'no-such-model'" in details
        code, details = status_of(stub, Q.GateRequest(model="sha256:" + "ab" * 32, policy_toml=POLICY, dry_run=True))
        assert code == grpc.StatusCode.NOT_FOUND

        code, details = status_of(stub, Q.GateRequest(model="sentiment", policy_toml=POLICY))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.startswith("the server has no usable attestation key")
        assert str(tmp_path) not in details, "the server's paths go to its log, not to the client"

        code, details = status_of(
            stub, Q.GateRequest(model="sentiment", policy_toml=POLICY, dry_run=True, as_of=Q.AsOf(seq=40))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "newer than the latest checkpoint" in details

        # a model registered after the latest checkpoint: projected, not yet provable
        later = story.trainer.emit(
            "model.registered",
            {"entity": {"sha256:" + "44" * 32: {"prov:type": "provault:Model", "prov:label": "sentiment-next"}}},
        )
        append(ledger, later)
        sign_and_project(ledger)
        append(
            ledger,
            story.trainer.emit(
                "model.registered",
                {"entity": {"sha256:" + "55" * 32: {"prov:type": "provault:Model", "prov:label": "sentiment-last"}}},
            ),
        )
        with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
            projector.project(c)
        code, details = status_of(stub, Q.GateRequest(model="sentiment-last", policy_toml=POLICY, dry_run=True))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no checkpoint covers it yet" in details
        assert stub.Gate(Q.GateRequest(model="sentiment-next", policy_toml=POLICY, dry_run=True)).allowed is False


@pytest.mark.nats
def test_gate_records_its_decision_with_the_servers_attestation_key(
    ledger: Ledger, story: Story, ingest, settings: Settings, tmp_path: Path
) -> None:
    approved(ledger, story)
    s = with_attestor(settings, tmp_path)
    key = register_attestor(ledger, s)
    sign_and_project(ledger)
    with serving(ledger, s) as stub:
        answer = stub.Gate(Q.GateRequest(model="sentiment", policy_toml=POLICY), timeout=TIMEOUT)
    assert answer.allowed and answer.decision_event_id and answer.as_of_seq == 17
    wait_for(lambda: len(logged(ledger, "gate.decided")) == 1, what="the recorded decision")
    [(_, keyid, data)] = logged(ledger, "gate.decided")
    assert keyid == key.keyid and data["verdict"] == "allow" and data["policy_digest"] == answer.policy_digest
    assert ledger.conn is not None
    (event_id,) = ledger.conn.execute(
        "SELECT event_id::text FROM ledger.entries WHERE kind = 'gate.decided'"
    ).fetchone()
    assert event_id == answer.decision_event_id
