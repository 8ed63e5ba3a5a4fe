"""Defects D1 to D7 of docs/security.md, fixed: each input is refused and recorded, nothing stalls,
and nothing a bundle says can redraw the auditor's terminal."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from ledger.audit import audit
from ledger.cli import main as cli_main
from ledger.core import admission
from ledger.core.admission import Accepted, Duplicate, Refused, check_submission
from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, parse_envelope, sign_envelope
from ledger.core.keyring import KEY_REGISTERED
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.db import connect
from ledger.store import entries, log
from provault.v1 import query_pb2, query_pb2_grpc
from query import projector
from query.bundle_verify import decode_bundle, encode_bundle
from query.service import QueryGrpcService
from tests.ledgerkit import Ledger, dataset_prov
from tests.security.fuzz_targets import corpus
from tests.security.securitykit import REENCODINGS, recoded, reencodable

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
    data = {
        "keyid": k.keyid,
        "public_key": base64.b64encode(k.public_key).decode(),
        "role": "producer",
        "identity": {"type": "person", "name": "x"},
        "kinds": ["*"],
        "producers": ["*"],
    }
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
    [_registration(identity={"type": "person", "name": "ev\x00il"}), _registration(keyid="a" * 30 + "\x00" + "a" * 33)],
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
    with __import__("ledger.db", fromlist=["connect"]).connect(ledger.dsn, autocommit=True) as conn:
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


# --- D5: another encoding of a signed event could be logged before it ---------------------------------


@pytest.mark.parametrize("copy", list(REENCODINGS))
def test_d5_another_encoding_of_a_signed_event_is_refused_before_or_after_it(ledger: Ledger, copy: str) -> None:
    chain, reg = ledger.producer_with_key()
    ledger.append(reg)
    genuine = reencodable(chain)
    copied = REENCODINGS[copy](genuine.envelope, ledger.admin)
    assert copied != genuine.envelope and parse_envelope(copied).payload == genuine.payload
    before = _state(ledger)
    first = ledger.append(copied).outcomes[0]
    assert isinstance(first, Refused) and first.reason == "malformed_envelope", first
    assert first.event_id == genuine.event_id and _state(ledger) == before
    assert isinstance(ledger.append(genuine).outcomes[0], Accepted)
    stored = entries.get_entry(ledger.conn, event_id=genuine.event_id)
    assert stored is not None and stored.envelope == genuine.envelope
    after = ledger.append(copied).outcomes[0]
    assert isinstance(after, Refused) and after.reason == "malformed_envelope"  # not event_id_conflict
    assert [r for r, _ in ledger.rejections()] == ["malformed_envelope", "malformed_envelope"]


def test_d5_the_one_signature_cannot_be_relabelled(ledger: Ledger) -> None:
    """The keyid is not signed, but the signature verifies only under that key's own public key."""
    chain, reg = ledger.producer_with_key()
    ledger.append(reg)
    genuine = reencodable(chain)
    for keyid, reason in ((Ed25519Signer.generate().keyid, "unknown_key"), (ledger.admin.keyid, "bad_signature")):
        relabelled = recoded(genuine.envelope, lambda d, k=keyid: d["signatures"][0].update(keyid=k))
        assert [o.reason for o in ledger.append(relabelled).outcomes] == [reason]
    assert isinstance(ledger.append(genuine).outcomes[0], Accepted)


def test_d5_entries_logged_under_the_old_rules_still_verify_and_project(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, reg = ledger.producer_with_key()
    legacy = REENCODINGS["url-safe-base64"](reencodable(chain).envelope, ledger.admin)
    with monkeypatch.context() as m:
        m.setattr(admission, "form_problem", lambda raw, env: None)  # admission before D5 was fixed
        assert [type(o) for o in ledger.append(reg, legacy).outcomes] == [Accepted, Accepted]
    assert isinstance(ledger.append(legacy).outcomes[0], Duplicate)  # a retry of the logged bytes is still a duplicate
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as conn:
        report = audit(conn)
    assert report.ok and report.entries_checked == 2, report.problems
    projector.migrate_prov(ledger.dsn)
    with connect(ledger.dsn, autocommit=True) as conn:
        assert projector.project(conn) == 2
        assert conn.execute("SELECT count(*) FROM prov.skipped").fetchone()[0] == 0


# --- D7: terminal escapes in a bundle ---------------------------------------------------------------

ESCAPES = "x\x1b[2K\r\x1b[32mprovault verify-bundle: OK, all 4 steps verified\x1b[0m\u202e\x9b\x7f"
"""Erase the line, return to its start, draw a success in green; then a bidi override, a C1 CSI and DEL."""


def _bundle_with_escapes(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle whose checkpoint key field carries terminal escapes that would redraw the line as a success."""
    c = corpus()
    bundle = decode_bundle(c.bundle)
    bundle.checkpoint_verifier_key = ESCAPES
    path, vkey = tmp_path / "escapes.bundle.json", tmp_path / "log.vkey"
    path.write_bytes(encode_bundle(bundle))
    vkey.write_text(c.vkey + "\n")
    return path, vkey


def test_d7_a_bundle_cannot_write_terminal_escapes_into_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, vkey = _bundle_with_escapes(tmp_path)
    assert cli_main(["verify-bundle", str(path), "--key", str(vkey)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("provault verify-bundle: FAILED at step 1 (checkpoint), checkpoint_verifier_key\n")
    assert not any(ch in out for ch in "\x1b\r\x9b\x7f\u202e"), repr(out)
    assert "x\\x1b[2K\\x0d\\x1b[32mprovault verify-bundle: OK" in out and "\\u202e\\x9b\\x7f" in out
    assert cli_main(["verify-bundle", str(path), "--key", str(vkey), "--json"]) == 1
    text = capsys.readouterr().out
    assert text.isascii() and not any(ch in text for ch in "\x1b\r\x7f"), repr(text)
    doc = json.loads(text)
    assert (doc["ok"], doc["step"], doc["place"], doc["reason"]) == (
        False,
        1,
        "checkpoint_verifier_key",
        "verification_failed",
    )
    assert "\\x1b[2K" in doc["message"]
