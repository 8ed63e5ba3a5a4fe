"""Defects D1-D4 and D6 of docs/security.md, fixed: each input is refused and recorded, nothing stalls."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import grpc
import pytest
from provault.v1 import query_pb2, query_pb2_grpc

from ledger.core import admission
from ledger.core.admission import Refused, check_submission
from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, sign_envelope
from ledger.core.keyring import KEY_REGISTERED
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.store import log
from query import projector
from query.service import QueryGrpcService
from tests.ledgerkit import Ledger, dataset_prov

pytestmark = pytest.mark.postgres


def _signed_with(chain: ProducerChain, kind: str, prov: dict, data: dict | None = None) -> bytes:
    """An envelope whose payload says what a hostile producer wants (the SDK itself refuses U+0000)."""
    template = ProducerChain(chain.producer_id, chain.signer, position=chain.position).emit(kind, {})
    doc = json.loads(template.payload)
    doc["prov"] = {**doc["prov"], **prov}
    if data is not None:
        doc["data"] = data
    payload = json.dumps(doc).encode()
    chain.position = chain.position.next(payload)
    return encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [chain.signer]))


def _key_registered(chain: ProducerChain, data: dict) -> bytes:
    return _signed_with(chain, KEY_REGISTERED, {"agent": {"provault:k": {}}}, data)


def _registration(**overrides: object) -> dict:
    k = Ed25519Signer.generate()
    data = {"keyid": k.keyid, "public_key": base64.b64encode(k.public_key).decode(), "role": "producer",
            "identity": {"type": "person", "name": "x"}, "kinds": ["*"], "producers": ["*"]}  # fmt: skip
    data.update(overrides)
    return data


def _state(lg: Ledger) -> tuple[int, bytes]:
    return log.current_root(lg.conn)


def test_d1_a_non_ascii_public_key_is_refused_and_recorded(ledger: Ledger) -> None:
    before = _state(ledger)
    plan = ledger.append(_key_registered(ledger.admin_chain, _registration(public_key="é" * 44)))
    out = plan.outcomes[0]
    assert isinstance(out, Refused) and out.reason == "invalid_event" and "public_key" in out.message
    assert _state(ledger) == before
    assert [r for r, _ in ledger.rejections()] == ["invalid_event"]


@pytest.mark.parametrize(
    "data",
    [_registration(identity={"type": "person", "name": "ev\x00il"}),
     _registration(keyid="a" * 30 + "\x00" + "a" * 33)],
    ids=["nul-in-identity", "nul-in-keyid"],
)
def test_d3_d6_a_nul_character_in_key_data_is_refused_alone(ledger: Ledger, data: dict) -> None:
    chain, reg = ledger.producer_with_key()
    before_ok = chain.emit("dataset.registered", dataset_prov())
    plan = ledger.append(reg, before_ok, _key_registered(ledger.admin_chain, data))
    assert [type(o).__name__ for o in plan.outcomes] == ["Accepted", "Accepted", "Refused"]
    assert plan.outcomes[2].reason == "invalid_event" and "U+0000" in plan.outcomes[2].message
    assert [r for r, _ in ledger.rejections()] == ["invalid_event"]


def test_d2_an_event_with_a_nul_in_prov_is_refused_so_the_projector_never_sees_it(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    bad = _signed_with(chain, "dataset.registered", {"entity": {"provault:x": {"prov:label": "nul\x00here"}}})
    plan = ledger.append(reg, bad)
    assert plan.outcomes[1].reason == "invalid_event"
    projector.migrate_prov(ledger.dsn)
    with __import__("ledger.store._db", fromlist=["connect"]).connect(ledger.dsn, autocommit=True) as conn:
        assert projector.project(conn) == 1  # only the registration; nothing stalls


def test_a_checker_bug_refuses_the_input_instead_of_stopping_ingest(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519Signer.generate()
    raw = encode_envelope(sign_envelope(PAYLOAD_TYPE, ProducerChain("p", key).emit("run.started", {}).payload, [key]))

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated checker bug")

    monkeypatch.setattr(admission, "parse_event", boom)
    out = check_submission(raw, {key.keyid: key.public_key}, now=datetime.now(UTC))
    assert isinstance(out, Refused) and out.reason == "cannot_verify" and "RuntimeError" in out.message


def test_d4_a_nul_in_a_query_request_is_invalid_argument(ledger: Ledger) -> None:
    projector.migrate_prov(ledger.dsn)
    svc = QueryGrpcService(dsn=ledger.dsn, listen="127.0.0.1:0", max_message_bytes=4 << 20)
    svc.start()
    try:
        with grpc.insecure_channel(svc.address) as ch:
            stub = query_pb2_grpc.QueryServiceStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.GetNode(query_pb2.GetNodeRequest(node_id="sha256:\x00"), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "U+0000" in err.value.details()
    finally:
        svc.stop()
