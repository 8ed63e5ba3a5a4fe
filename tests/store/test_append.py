"""Appending to the log on real PostgreSQL: accepted, duplicate, every refusal."""

from __future__ import annotations

import base64
import json

import pytest

from ledger.core import merkle
from ledger.core.admission import Accepted, Duplicate, Refused
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.store import checkpoints, entries, log
from tests.ledgerkit import Ledger, dataset_prov

pytestmark = pytest.mark.postgres


def _leaves(lg: Ledger) -> list[bytes]:
    return [e.leaf_hash for e in entries.iter_entries(lg.conn)]


def test_happy_path_appends_in_order_with_a_verifiable_tree(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    events = [chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(5)]
    plan = ledger.append(reg, *events)
    assert [type(o) for o in plan.outcomes] == [Accepted] * 6
    assert [o.seq for o in plan.outcomes] == list(range(6))
    assert log.log_size(ledger.conn) == 6
    stored = entries.get_entry(ledger.conn, event_id=events[2].event_id)
    assert stored.envelope == events[2].envelope and stored.seq == 3 and stored.keyid == chain.signer.keyid
    leaves = _leaves(ledger)
    assert leaves == [merkle.leaf_hash(e.envelope) for e in (reg, *events)]
    size, root = log.current_root(ledger.conn)
    assert (size, root) == (6, merkle.root_hash(leaves))
    for i in range(6):
        merkle.verify_inclusion(leaves[i], i, 6, log.inclusion_proof(ledger.conn, i, 6), root)
    for old in range(1, 7):
        proof = log.consistency_proof(ledger.conn, old, 6)
        merkle.verify_consistency(old, 6, merkle.root_hash(leaves[:old]), root, proof)
    assert log.root_at(ledger.conn, 3) == merkle.root_hash(leaves[:3])


def test_checkpoint_signs_the_current_root(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    ledger.append(reg, chain.emit("dataset.registered", dataset_prov()))
    cp = checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, "test.provault/log")
    assert cp is not None and cp.tree_size == 2
    opened = checkpoints.open_stored(cp, checkpoints.checkpoint_verifier(ledger.conn))
    assert opened.root_hash == merkle.root_hash(_leaves(ledger)) and opened.size == 2
    assert checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, "test.provault/log") is None
    assert [c.tree_size for c in checkpoints.iter_all(ledger.conn)] == [0, 2]


def test_duplicate_delivery_appends_nothing(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    ev = chain.emit("dataset.registered", dataset_prov())
    ledger.append(reg, ev)
    plan = ledger.append(ev, ev)
    assert [type(o) for o in plan.outcomes] == [Duplicate, Duplicate]
    assert plan.outcomes[0].seq == 1
    assert log.log_size(ledger.conn) == 2 and ledger.rejections() == []


def test_duplicate_inside_one_batch(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    ev = chain.emit("dataset.registered", dataset_prov())
    plan = ledger.append(reg, ev, ev)
    assert [type(o) for o in plan.outcomes] == [Accepted, Accepted, Duplicate]
    assert log.log_size(ledger.conn) == 2


def test_same_event_id_with_other_bytes_is_refused_and_the_first_stands(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    first = chain.emit("dataset.registered", dataset_prov("11" * 32))
    ledger.append(reg, first)
    replay = ProducerChain(chain.producer_id, chain.signer, position=first.event.producer)
    forged = replay.emit("dataset.registered", dataset_prov("22" * 32), event_id=first.event_id)
    plan = ledger.append(forged)
    assert isinstance(plan.outcomes[0], Refused) and plan.outcomes[0].reason == "event_id_conflict"
    assert entries.get_entry(ledger.conn, event_id=first.event_id).envelope == first.envelope


def test_key_registered_earlier_in_the_same_batch_is_known(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    plan = ledger.append(reg, chain.emit("run.started", {"activity": {"provault:run1": {}}}))
    assert [type(o) for o in plan.outcomes] == [Accepted, Accepted]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda lg, ch: b"not json at all", "malformed_envelope"),
        (
            lambda lg, ch: (
                b'{"payload": "e30=", "payloadType": "text/plain", "signatures": [{"keyid": "'
                + b"a" * 64
                + b'", "sig": "AA=="}]}'
            ),
            "unsupported_payload_type",
        ),
        (lambda lg, ch: ProducerChain("x", Ed25519Signer.generate()).emit("run.started", {}).envelope, "unknown_key"),
        (lambda lg, ch: _flip_payload(ch.emit("dataset.registered", dataset_prov()).envelope), "bad_signature"),
        (lambda lg, ch: _sign_raw(ch.signer, b'{"id": 1}'), "invalid_event"),
        (lambda lg, ch: _sign_raw(ch.signer, _payload_with(ch, prov={"entity": {"undeclared:x": {}}})), "invalid_prov"),
        (
            lambda lg, ch: (
                ch.emit(
                    "run.started",
                    {},
                    time=__import__("datetime").datetime(2999, 1, 1, tzinfo=__import__("datetime").UTC),
                ).envelope
            ),
            "clock_skew",
        ),
        (lambda lg, ch: ch.emit("key.registered", {}, data={"keyid": "x"}).envelope, "invalid_event"),
    ],
    ids=[
        "garbage",
        "payload-type",
        "unknown-key",
        "bad-signature",
        "invalid-event",
        "invalid-prov",
        "clock-skew",
        "bad-key-data",
    ],
)
def test_each_refusal_lands_in_rejections_and_not_in_the_log(ledger: Ledger, make, reason: str) -> None:
    chain, reg = ledger.producer_with_key()
    ledger.append(reg)
    plan = ledger.append(make(ledger, chain))
    out = plan.outcomes[0]
    assert isinstance(out, Refused), out
    assert out.reason == reason, out.message
    assert log.log_size(ledger.conn) == 1
    assert [r for r, _ in ledger.rejections()] == [reason]


def test_oversized_envelope_is_refused(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    ledger.append(reg)
    big = chain.emit("dataset.registered", {"entity": {"provault:x": {"provault:blob": "y" * 900_000}}})
    ledger.limits = type(ledger.limits)(max_envelope_bytes=500_000)
    plan = ledger.append(big)
    assert plan.outcomes[0].reason == "envelope_too_large"


def test_key_permissions_are_enforced(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key("trainer@host-1", kinds=["run.*"], producers=["trainer@*"])
    other = ProducerChain("server@host-9", chain.signer)
    plan = ledger.append(
        reg,
        chain.emit("run.started", {}),
        chain.emit("dataset.registered", dataset_prov()),
        other.emit("run.started", {}),
        chain.emit("key.registered", {}, data=_registration_data(Ed25519Signer.generate())),
    )
    assert [getattr(o, "reason", "ok") for o in plan.outcomes] == [
        "ok",
        "ok",
        "key_not_permitted",
        "key_not_permitted",
        "key_not_permitted",
    ]
    assert "allowed kinds ['run.*']" in plan.outcomes[2].message
    assert "admin-only" in plan.outcomes[4].message


def test_revoked_key_signs_nothing_more(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    ledger.append(reg, chain.emit("run.started", {}))
    revoke = ledger.revocation(chain.signer)
    plan = ledger.append(revoke, chain.emit("run.completed", {}))
    assert isinstance(plan.outcomes[0], Accepted)
    assert plan.outcomes[1].reason == "key_revoked"
    row = ledger.conn.execute(
        "SELECT revoked_seq, revoked_reason FROM ledger.keys WHERE keyid = %s", (chain.signer.keyid,)
    ).fetchone()
    assert row == (2, "leaked")


def test_producer_gap_late_fill_and_fork(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    e1, e2, e3 = (chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(3))
    fork_chain = ProducerChain(chain.producer_id, chain.signer, position=e3.event.producer)
    e3_fork = fork_chain.emit("dataset.registered", dataset_prov("ff" * 32))
    plan = ledger.append(reg, e1, e3, e2, e3_fork)
    kinds = [getattr(o, "reason", type(o).__name__) for o in plan.outcomes]
    assert kinds == ["Accepted", "Accepted", "Accepted", "Accepted", "producer_chain_broken"]
    anomalies = ledger.conn.execute(
        "SELECT kind, expected_seq, found_seq FROM ledger.producer_anomalies ORDER BY id"
    ).fetchall()
    assert anomalies == [("gap", 2, 3), ("late", None, 2), ("fork", 4, 3)]
    last = ledger.conn.execute(
        "SELECT last_seq, entries FROM ledger.producers WHERE producer_id = %s", (chain.producer_id,)
    ).fetchone()
    assert last == (3, 3)


def test_broken_prev_at_the_next_seq_is_a_fork(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    e1 = chain.emit("dataset.registered", dataset_prov())
    ledger.append(reg, e1)
    from ledger.core.events import Producer  # noqa: PLC0415

    bad = ProducerChain(
        chain.producer_id, chain.signer, position=Producer(id=chain.producer_id, seq=2, prev="sha256:" + "1" * 64)
    )
    plan = ledger.append(bad.emit("dataset.registered", dataset_prov("33" * 32)))
    assert plan.outcomes[0].reason == "producer_chain_broken"


def test_nats_redelivery_of_a_rejection_is_recorded_once(ledger: Ledger) -> None:
    ledger.append(b"garbage", source="nats", stream_seqs=[7])
    ledger.append(b"garbage", source="nats", stream_seqs=[7])
    assert len(ledger.rejections()) == 1


# --- helpers ---


def _flip_payload(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    payload = bytearray(base64.b64decode(doc["payload"]))
    payload[-3] ^= 0x01
    doc["payload"] = base64.b64encode(bytes(payload)).decode()
    return json.dumps(doc).encode()


def _sign_raw(signer, payload: bytes) -> bytes:
    from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, sign_envelope  # noqa: PLC0415

    return encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [signer]))


def _payload_with(chain: ProducerChain, **overrides) -> bytes:
    sealed = ProducerChain(chain.producer_id, chain.signer, position=chain.position).emit("run.started", {})
    doc = json.loads(sealed.payload)
    doc.update(overrides)
    return json.dumps(doc).encode()


def _registration_data(key: Ed25519Signer) -> dict:
    from ledger.core.keyring import KeyRegistration  # noqa: PLC0415

    return KeyRegistration(
        keyid=key.keyid,
        public_key=key.public_key,
        role="producer",
        identity={"type": "person", "name": "mallory"},
        kinds=("*",),
        producers=("*",),
    ).to_data()
