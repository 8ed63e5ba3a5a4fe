"""docs/security.md's bad-input table, write side: every bad input against the real ledger.

Envelopes go through gRPC ``LedgerService.Append`` on a real server (the path
tools use) or through JetStream into the real ingest; each test states what
comes back, what is recorded, and that nothing already accepted changed
(``securitykit.accepted_state``).  The defects these inputs found are fixed and
tested again in ``test_fixed_defects.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from agents.spool import HEADER, Spool
from agents.transport import NatsTransport
from ledger.config import Settings
from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, sign_envelope
from ledger.core.events import Producer
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, KeyRevocation
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.service.ingest import IngestService
from ledger.service.rejections import rejection_reason
from ledger.store import entries
from provault.v1 import ledger_pb2
from tests.ledgerkit import Ledger, dataset_prov
from tests.security.securitykit import (
    GRPC_MAX_MESSAGE,
    REENCODINGS,
    TIMEOUT,
    Seeded,
    Served,
    accepted_state,
    anomalies,
    assert_extends,
    last_rejection,
    reencodable,
    registration_data,
    rejection_count,
    seed,
    with_doc,
)
from tests.service.natskit import publish_raw, wait_for

pytestmark = pytest.mark.postgres

S = ledger_pb2.AppendStatus


# --- bad envelopes over gRPC Append: one table row each -------------------------------------------


def _signed(signer: Ed25519Signer, payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    return encode_envelope(sign_envelope(payload_type, payload, [signer]))


def _payload_edit(raw: bytes, edit: Callable[[dict], None]) -> bytes:
    """The envelope with its payload JSON edited and the signature kept (so it no longer verifies)."""
    return with_doc(
        raw, lambda d: d.update(payload=base64.b64encode(_edited(base64.b64decode(d["payload"]), edit)).decode())
    )


def _edited(payload: bytes, edit: Callable[[dict], None]) -> bytes:
    doc = json.loads(payload)
    edit(doc)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _resigned(s: Seeded, edit: Callable[[dict], None]) -> bytes:
    """A fresh trainer event whose payload JSON was edited, then signed correctly by the trainer's key."""
    return _signed(s.trainer.signer, _edited(s.event().payload, edit))


def _flip_sig(raw: bytes) -> bytes:
    def edit(d: dict) -> None:
        sig = bytearray(base64.b64decode(d["signatures"][0]["sig"]))
        sig[10] ^= 0x01
        d["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()

    return with_doc(raw, edit)


def _oversized_envelope(s: Seeded) -> bytes:
    big = s.trainer.emit("dataset.registered", {"entity": {"provault:x": {"provault:blob": "y" * 1_100_000}}})
    assert 1 << 20 < len(big.envelope) < GRPC_MAX_MESSAGE
    return big.envelope


def _oversized_payload(s: Seeded) -> bytes:
    raw = _signed(s.trainer.signer, b"x" * 785_500)  # over 784,384 bytes, its envelope under 1 MiB
    assert len(raw) < 1 << 20
    return raw


def _replayed_id(s: Seeded) -> bytes:
    first = s.events[0]
    again = ProducerChain(first.event.producer.id, s.trainer.signer, position=first.event.producer)
    return again.emit(
        "dataset.registered", dataset_prov("99" * 32), event_id=first.event_id, time=first.event.time
    ).envelope


def _reencoded(s: Seeded) -> bytes:
    """A logged event's signed payload and signature in other envelope bytes: unknown member, URL-safe base64."""
    return with_doc(
        s.events[1].envelope,
        lambda d: d.update(
            note="hi", payload=base64.urlsafe_b64encode(base64.b64decode(d["payload"])).decode().rstrip("=")
        ),
    )


def _reencoded_fresh(how: str) -> Callable[[Seeded], bytes]:
    """A fresh, valid event of the trainer in another encoding (docs/security.md D5): never the bytes the ledger admits."""
    return lambda s: REENCODINGS[how](reencodable(s.trainer).envelope, s.lg.admin)


def _admin_event(s: Seeded, kind: str, data: dict) -> bytes:
    return s.lg.admin_chain.emit(kind, {"agent": {"provault:alice": {}}}, data=data).envelope


@dataclass(frozen=True)
class Case:
    make: Callable[[Seeded], bytes]
    reason: str


APPEND_CASES: dict[str, Case] = {
    "malformed-json": Case(lambda s: b'{"payload": "e30=", "payloadType": ', "malformed_envelope"),
    "not-an-object": Case(lambda s: b"[1, 2]", "malformed_envelope"),
    "not-utf8": Case(lambda s: b"\xff\xfe{}", "malformed_envelope"),
    "duplicate-member": Case(
        lambda s: s.event().envelope.replace(b'{"payload":', b'{"payload":"e30=","payload":', 1), "malformed_envelope"
    ),
    "truncated-1-byte": Case(lambda s: s.event().envelope[:-1], "malformed_envelope"),
    "truncated-half": Case(lambda s: (e := s.event().envelope)[: len(e) // 2], "malformed_envelope"),
    "truncated-to-1-byte": Case(lambda s: s.event().envelope[:1], "malformed_envelope"),
    "truncated-payload-base64": Case(
        lambda s: with_doc(s.event().envelope, lambda d: d.update(payload=d["payload"][:-8])), "bad_signature"
    ),
    "no-signatures": Case(
        lambda s: with_doc(s.event().envelope, lambda d: d.update(signatures=[])), "malformed_envelope"
    ),
    "bad-signature-payload-edited": Case(
        lambda s: _payload_edit(s.event().envelope, lambda d: d.update(kind="run.started")), "bad_signature"
    ),
    "bad-signature-sig-edited": Case(lambda s: _flip_sig(s.event().envelope), "bad_signature"),
    "unsupported-payload-type": Case(
        lambda s: _signed(s.trainer.signer, s.event().payload, "application/json"), "unsupported_payload_type"
    ),
    "unknown-key": Case(
        lambda s: s.event(chain=ProducerChain("trainer@host-1", Ed25519Signer.generate())).envelope, "unknown_key"
    ),
    "revoked-key-earlier-batch": Case(lambda s: s.event(chain=s.mallory).envelope, "key_revoked"),
    "out-of-scope-kind": Case(lambda s: s.event(kind="model.deployed").envelope, "key_not_permitted"),
    "out-of-scope-producer-id": Case(
        lambda s: s.event(chain=ProducerChain("server@host-9", s.trainer.signer)).envelope, "key_not_permitted"
    ),
    "producer-key-signs-key-event": Case(
        lambda s: s.trainer.emit(KEY_REGISTERED, {}, data=registration_data(Ed25519Signer.generate())).envelope,
        "key_not_permitted",
    ),
    "replayed-id-other-content": Case(_replayed_id, "event_id_conflict"),
    "replayed-id-reencoded-envelope": Case(_reencoded, "malformed_envelope"),
    **{f"reencoded-{how}": Case(_reencoded_fresh(how), "malformed_envelope") for how in REENCODINGS},
    "oversized-envelope": Case(_oversized_envelope, "envelope_too_large"),
    "oversized-payload": Case(_oversized_payload, "envelope_too_large"),
    "invalid-prov": Case(
        lambda s: _resigned(s, lambda d: d["prov"].update(used={"_:u1": {"prov:entity": "provault:x"}})), "invalid_prov"
    ),
    "invalid-event-unknown-member": Case(lambda s: _resigned(s, lambda d: d.update(extra=1)), "invalid_event"),
    "bad-uuid-v4-event-id": Case(
        lambda s: _resigned(s, lambda d: d.update(id="0190c8a2-7b1e-4c3d-9a4f-1b2c3d4e5f60")), "invalid_event"
    ),
    "bad-content-id-prev": Case(
        lambda s: _resigned(s, lambda d: d["producer"].update(prev="sha256:" + "AB" * 32)), "invalid_event"
    ),
    "clock-far-in-the-future": Case(lambda s: s.event(time=datetime(2999, 1, 1, tzinfo=UTC)).envelope, "clock_skew"),
    "clock-just-over-the-skew": Case(
        lambda s: s.event(time=datetime.now(UTC) + timedelta(minutes=6)).envelope, "clock_skew"
    ),
    "key-event-bad-data": Case(lambda s: _admin_event(s, KEY_REGISTERED, {"keyid": "x"}), "invalid_event"),
    "key-registered-twice": Case(
        lambda s: _admin_event(s, KEY_REGISTERED, registration_data(s.trainer.signer)), "invalid_event"
    ),
    "revoke-a-trust-root-key": Case(
        lambda s: _admin_event(
            s,
            KEY_REVOKED,
            KeyRevocation(keyid=s.lg.admin.keyid, effective_from=datetime.now(UTC), reason="x").to_data(),
        ),
        "invalid_event",
    ),
}


@pytest.mark.parametrize("name", list(APPEND_CASES))
def test_bad_envelope_over_grpc_is_rejected_recorded_and_changes_nothing(shared: Served, name: str) -> None:
    case, conn = APPEND_CASES[name], shared.seeded.conn
    raw = case.make(shared.seeded)
    before, recorded = accepted_state(conn), rejection_count(conn)
    result = shared.append(raw)
    assert result.status == S.APPEND_STATUS_REJECTED, result
    assert result.rejection_reason == rejection_reason(case.reason), (case.reason, result.rejection_message)
    assert (result.seq, result.leaf_hash) == (0, b"") and result.rejection_message
    assert len(result.rejection_message.encode()) <= 320
    row = last_rejection(conn)
    assert rejection_count(conn) == recorded + 1
    assert (row.source, row.reason, row.raw_sha256, row.raw_size) == (
        "grpc",
        case.reason,
        hashlib.sha256(raw).digest(),
        len(raw),
    )
    assert accepted_state(conn) == before


def test_a_revoked_keys_later_events_are_refused_and_findable_by_keyid(shared: Served) -> None:
    """After the revocation entry, whatever time the event claims: key_revoked, recorded under the key's id."""
    s = shared.seeded
    for when in (
        datetime.now(UTC) - timedelta(seconds=1),
        datetime(2020, 1, 1, tzinfo=UTC),
    ):  # back-dating does not help
        result = shared.append(s.event(chain=s.mallory, time=when))
        assert result.rejection_reason == rejection_reason("key_revoked"), result.rejection_message
        row = last_rejection(s.conn)
        assert (row.reason, row.keyid, row.producer_id) == ("key_revoked", s.mallory.signer.keyid, "mallory@host-6")


def test_revoked_in_the_same_batch_is_key_revoked(served: Served) -> None:
    s = served.seeded
    victim, reg = s.lg.producer_with_key("victim@host-7")
    assert served.append(reg).status == S.APPEND_STATUS_ACCEPTED
    before = accepted_state(s.conn)
    revoke, late = s.lg.revocation(victim.signer), victim.emit("dataset.registered", dataset_prov())
    reqs = [ledger_pb2.AppendStreamRequest(envelope_json=e.envelope) for e in (revoke, late)]
    resp = served.stub.AppendStream(iter(reqs), timeout=TIMEOUT)
    assert [r.status for r in resp.results] == [S.APPEND_STATUS_ACCEPTED, S.APPEND_STATUS_REJECTED]
    assert resp.results[1].rejection_reason == rejection_reason("key_revoked")
    assert last_rejection(s.conn).reason == "key_revoked"
    assert assert_extends(s.conn, before).size == before.size + 1


# --- replays and producer chains -------------------------------------------------------------------


def test_a_reencoded_copy_sent_first_is_refused_and_the_original_is_logged(served: Served) -> None:
    """D5, fixed: whoever sees an envelope in flight cannot log other bytes for it, before the original or after."""
    s = served.seeded
    genuine = reencodable(s.trainer)
    copies = {how: make(genuine.envelope, s.lg.admin) for how, make in REENCODINGS.items()}
    malformed = (S.APPEND_STATUS_REJECTED, rejection_reason("malformed_envelope"))
    before = accepted_state(s.conn)
    for how, copy in copies.items():
        result = served.append(copy)
        assert (result.status, result.rejection_reason) == malformed, (how, result.rejection_message)
        row = last_rejection(s.conn)
        assert (row.reason, row.event_id, row.raw_sha256) == (
            "malformed_envelope",
            genuine.event_id,
            hashlib.sha256(copy).digest(),
        )
    assert accepted_state(s.conn) == before
    assert served.append(genuine).status == S.APPEND_STATUS_ACCEPTED
    assert entries.get_entry(s.conn, event_id=genuine.event_id).envelope == genuine.envelope
    after = assert_extends(s.conn, before)
    for how, copy in copies.items():  # after the original: the same refusal, not event_id_conflict
        result = served.append(copy)
        assert (result.status, result.rejection_reason) == malformed, (how, result.rejection_message)
    assert accepted_state(s.conn) == after


def test_an_exact_replay_is_a_duplicate_and_records_nothing(shared: Served) -> None:
    s = shared.seeded
    before, recorded = accepted_state(s.conn), rejection_count(s.conn)
    for _ in range(3):
        result = shared.append(s.events[1])
        assert (result.status, result.seq) == (S.APPEND_STATUS_DUPLICATE, 2)
    assert accepted_state(s.conn) == before and rejection_count(s.conn) == recorded


def test_gaps_and_late_events_are_accepted_recorded_and_only_extend_the_log(served: Served) -> None:
    s = served.seeded
    skipped = s.event(1)  # seq 4 of the trainer, held back
    ahead = s.event(2)  # seq 5: arrives first, leaving a gap
    before = accepted_state(s.conn)
    assert served.append(ahead).status == S.APPEND_STATUS_ACCEPTED
    middle = assert_extends(s.conn, before)
    assert served.append(skipped).status == S.APPEND_STATUS_ACCEPTED
    assert_extends(s.conn, middle)
    assert anomalies(s.conn)[-2:] == [("gap", 4, 5), ("late", None, 4)]


def test_a_fork_is_refused_recorded_and_changes_nothing(shared: Served) -> None:
    s = shared.seeded
    at_three = s.events[2].event.producer  # the position of the trainer's third event, already in the log
    forked = ProducerChain(at_three.id, s.trainer.signer, position=at_three).emit(
        "dataset.registered", dataset_prov("f0" * 32)
    )
    wrong_prev = ProducerChain(
        at_three.id, s.trainer.signer, position=Producer(id=at_three.id, seq=4, prev="sha256:" + "1" * 64)
    )
    for raw in (forked, wrong_prev.emit("dataset.registered", dataset_prov("f1" * 32))):
        before = accepted_state(s.conn)
        result = shared.append(raw)
        assert result.rejection_reason == rejection_reason("producer_chain_broken")
        assert last_rejection(s.conn).reason == "producer_chain_broken" and anomalies(s.conn)[-1][0] == "fork"
        assert accepted_state(s.conn) == before


# --- requests that never become envelopes -------------------------------------------------------------


def test_malformed_protobuf_is_invalid_argument_and_records_nothing(shared: Served) -> None:
    conn, raw_append = shared.seeded.conn, shared.channel.unary_unary("/provault.v1.LedgerService/Append")
    before, recorded = accepted_state(conn), rejection_count(conn)
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x08" + b"\xff" * 11, b"\x0a\xff\xff\xff\xff\x0f"):
        with pytest.raises(grpc.RpcError) as info:
            raw_append(garbage, timeout=TIMEOUT)
        assert (info.value.code(), info.value.details().split("\n")[0]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "/provault.v1.LedgerService/Append: the request bytes are not a valid provault.v1.AppendRequest (wire format was corrupt)",
        ), garbage
    assert accepted_state(conn) == before and rejection_count(conn) == recorded


def test_a_grpc_message_over_the_limit_is_resource_exhausted_and_records_nothing(shared: Served) -> None:
    conn = shared.seeded.conn
    before, recorded = accepted_state(conn), rejection_count(conn)
    with pytest.raises(grpc.RpcError) as info:
        shared.append(b"{" + b" " * GRPC_MAX_MESSAGE + b"}")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        shared.stub.Append(ledger_pb2.AppendRequest(), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert accepted_state(conn) == before and rejection_count(conn) == recorded


# --- over NATS JetStream, and from an agent's spool ------------------------------------------------------


@pytest.mark.nats
def test_bad_envelopes_over_nats_are_recorded_acked_and_change_nothing(
    ledger: Ledger, ingest: IngestService, settings: Settings, nats_target
) -> None:
    s = seed(ledger)
    before = accepted_state(s.conn)
    bad = {
        "malformed_envelope": s.event().envelope[:-5],
        "bad_signature": _flip_sig(s.event().envelope),
        "unknown_key": s.event(chain=ProducerChain("trainer@host-1", Ed25519Signer.generate())).envelope,
        "event_id_conflict": _replayed_id(s),
        "clock_skew": s.event(time=datetime(2999, 1, 1, tzinfo=UTC)).envelope,
    }
    # On the seeded producer's own subject, as its agent would publish them (another subject is `wrong_subject`).
    publish_raw(nats_target.url, settings.nats, list(bad.values()), producer_id="trainer@host-1")
    wait_for(lambda: len(ledger.rejections()) == len(bad), what="every bad message recorded")
    rows = s.conn.execute("SELECT source, reason, raw_sha256 FROM ledger.rejections ORDER BY id").fetchall()
    assert [(src, r, bytes(h)) for src, r, h in rows] == [
        ("nats", r, hashlib.sha256(b).digest()) for r, b in bad.items()
    ]
    assert accepted_state(s.conn) == before
    assert ingest.ingest.stats.rejected == len(bad)


def _tamper_spool_record(spool_dir: Path) -> None:
    """Change one byte of the first record's envelope and fix its CRC: what someone with the host's disk can do."""
    seg = next(spool_dir.glob("seg-*.log"))
    data = bytearray(seg.read_bytes())
    length, _ = HEADER.unpack_from(data, 8)
    body = bytearray(data[16 : 16 + length])
    at = body.index(b'"payload":"') + 40
    body[at] = ord("A") if body[at] != ord("A") else ord("B")
    data[8:16] = HEADER.pack(length, zlib.crc32(bytes(body)))
    data[16 : 16 + length] = body
    seg.write_bytes(bytes(data))


@pytest.mark.nats
def test_a_spool_record_edited_with_a_valid_crc_is_refused_by_the_ledger(
    ledger: Ledger, ingest: IngestService, settings: Settings, nats_target, tmp_path: Path
) -> None:
    s = seed(ledger)
    before = accepted_state(s.conn)
    spool_dir = tmp_path / "spool"
    sp = Spool(spool_dir)
    ev = s.event()
    sp.append(ev.event_id, ev.envelope)
    sp.close()
    _tamper_spool_record(spool_dir)
    sp = Spool(spool_dir)  # the CRC matches: the spool cannot tell
    (record,) = sp.take(10)
    assert record.envelope != ev.envelope
    transport = NatsTransport(nats_target.url, settings.nats, "trainer@host-1", timeout_s=10)

    async def send() -> int:
        try:
            return await transport.send([record])
        finally:
            await transport.close()

    assert asyncio.run(send()) == 1
    sp.close()
    wait_for(lambda: len(ledger.rejections()) == 1, what="the tampered record's rejection")
    row = last_rejection(s.conn)
    assert (row.source, row.reason, row.keyid) == ("nats", "bad_signature", s.trainer.signer.keyid)
    assert row.event_id in (None, ev.event_id)  # labelled only when the altered payload still parses
    assert accepted_state(s.conn) == before
