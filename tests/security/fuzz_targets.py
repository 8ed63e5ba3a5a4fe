"""Fuzz targets shared by the default suite (``test_fuzz.py``) and ``bench/fuzz/harness.py``.

Each target takes one ``bytes`` input and either returns (the input was
handled as the contract says) or raises ``AssertionError`` (a property broke);
any other exception escaping a target is a crash.  The seed corpus is built
here, in memory, from fixed keys and fixed times, so a failing input
reproduces on any machine.

Properties checked:

* ``envelope``: any bytes as a received envelope -> ``check_submission``
  returns ``Checked`` or ``Refused`` with a stage-1 reason; a ``Checked``
  one carries a payload the corpus signed (no forgery) and is marked for
  refusal in stage 2 unless its bytes are the one admitted encoding (the
  canonical bytes, one signature), and a refusal's text can be stored in the
  rejections table;
* ``payload``: any bytes as a payload, *validly signed* by a known key (so
  the event decoder, not the signature, is what gets fuzzed) -> the same,
  then stage 2 (``plan_batch``) decides it without raising, and the
  projection maps every accepted event to rows or a ``DecodeError``;
* ``proof``: bytes decoded into inclusion / consistency proof requests ->
  the verifiers raise only provault errors, and accept only true proofs;
* ``note``: mutated signed checkpoint notes -> ``parse_note`` /
  ``open_checkpoint`` raise only provault errors, and any note that opens
  states the original checkpoint;
* ``bundle``: mutated audit bundle files -> ``decode_bundle`` /
  ``verify_bundle`` raise only provault errors whose text carries no
  control character or bidi control, and only the original bytes verify;
* ``token``: bytes as a QueryService page token -> ``decode_token`` raises
  only ``InvalidArgument``.

Every broken property is a failure: the defects fuzzing found (docs/security.md,
D1, D2, D6, D7) are fixed, so their properties fail like any other.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from ledger.core import merkle
from ledger.core.admission import (
    CLOCK_SKEW,
    TOO_LARGE,
    Checked,
    Limits,
    Refused,
    TailState,
    check_submission,
    plan_batch,
)
from ledger.core.checkpoint import Checkpoint, format_vkey, open_checkpoint, parse_note, parse_vkey, sign_checkpoint
from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, parse_envelope, sign_envelope
from ledger.core.errors import DecodeError, InvalidArgument, ProvaultError
from ledger.core.events import Producer, parse_event
from ledger.core.ids import parse_uuid7
from ledger.core.keyring import KeyRegistration, KeyRegistry, root_key
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed

ORIGIN = "fuzz.provault/log"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LIMITS = Limits()
STAGE1_REASONS = frozenset(
    {
        TOO_LARGE,
        "malformed_envelope",
        "unsupported_payload_type",
        "unknown_key",
        "bad_signature",
        "invalid_event",
        "invalid_prov",
        CLOCK_SKEW,
    }
)
"""The reasons docs/events.md lists for stage 1; any other one is a contract violation."""
MAX_MESSAGE_CHARS = 4096
"""A refusal message longer than this floods the rejections table; the longest legitimate ones are ~700."""


# --- the seed corpus ------------------------------------------------------------------------


def _id(n: int) -> str:
    return f"019cade2-c400-7000-8000-{n:012x}"


@dataclass(frozen=True, slots=True)
class Corpus:
    admin: Ed25519Signer
    trainer: Ed25519Signer
    checkpoint_key: Ed25519Signer
    log: tuple[Sealed, ...]
    """The log in seq order: the trainer's registration, then the trainer's events."""
    note: str
    """The signed checkpoint over the whole log."""
    bundle: bytes
    """A canonical audit bundle (JSON) about the dataset, verifiable offline."""

    @property
    def public_keys(self) -> dict[str, bytes]:
        return {self.admin.keyid: self.admin.public_key, self.trainer.keyid: self.trainer.public_key}

    @property
    def signed_payloads(self) -> frozenset[bytes]:
        return frozenset(s.payload for s in self.log)

    @property
    def vkey(self) -> str:
        return format_vkey(ORIGIN, self.checkpoint_key.public_key)

    def registry(self) -> KeyRegistry:
        """The registry after the log: the admin a root key, the trainer registered at seq 0."""
        registry = KeyRegistry([root_key(self.admin.public_key, "fuzz-admin")])
        registry.apply(parse_event(self.log[0].payload), 0)
        return registry

    def seeds(self, target: str) -> list[bytes]:
        return list(_SEEDS[target](self))


DATASET = "sha256:" + "11" * 32
RUN = "provault:run/019cade2-0000-7000-8000-000000000001"
MODEL = "sha256:" + "22" * 32


def _events(admin: Ed25519Signer, trainer: Ed25519Signer) -> tuple[Sealed, ...]:
    ops = ProducerChain("ops@console", admin)
    reg = KeyRegistration(
        keyid=trainer.keyid,
        public_key=trainer.public_key,
        role="producer",
        identity={"type": "host", "name": "gpu-07"},
        kinds=("run.*", "dataset.*", "model.*"),
        producers=("trainer@*",),
    ).to_data()
    chain = ProducerChain("trainer@gpu-07", trainer)
    t = T0
    return (
        ops.emit("key.registered", {"agent": {"provault:ops": {}}}, data=reg, time=t, event_id=_id(1)),
        chain.emit(
            "dataset.registered",
            {
                "entity": {DATASET: {"prov:type": "provault:Dataset", "prov:label": "reviews v1"}},
            },
            time=t + timedelta(minutes=1),
            event_id=_id(2),
        ),
        chain.emit(
            "run.started",
            {
                "activity": {RUN: {"prov:startTime": "2026-03-02T09:02:00Z"}},
                "entity": {DATASET: {}},
                "agent": {"provault:person/alice": {"prov:type": {"$": "prov:Person", "type": "prov:QUALIFIED_NAME"}}},
                "used": {"_:u1": {"prov:activity": RUN, "prov:entity": DATASET}},
                "wasAssociatedWith": {"_:a1": {"prov:activity": RUN, "prov:agent": "provault:person/alice"}},
            },
            data={"hyperparameters": {"epochs": 3, "lr": 0.0003}},
            time=t + timedelta(minutes=2),
            event_id=_id(3),
        ),
        chain.emit(
            "model.registered",
            {
                "entity": {MODEL: {"prov:type": "provault:Model", "prov:label": "sentiment"}, DATASET: {}},
                "activity": {RUN: {}},
                "wasGeneratedBy": {"_:g1": {"prov:entity": MODEL, "prov:activity": RUN}},
                "wasDerivedFrom": {"_:d1": {"prov:generatedEntity": MODEL, "prov:usedEntity": DATASET}},
            },
            time=t + timedelta(minutes=3),
            event_id=_id(4),
        ),
    )


def _bundle(log: tuple[Sealed, ...], admin: Ed25519Signer, cp_key: Ed25519Signer, note: str) -> bytes:
    from provault.v1 import ledger_pb2, query_pb2  # noqa: PLC0415 - generated messages, only for bundles
    from query.bundle_verify import BUNDLE_FORMAT, edge_pb, encode_bundle, node_pb, recompute_graph  # noqa: PLC0415

    leaves = [merkle.leaf_hash(s.envelope) for s in log]
    root = merkle.root_hash(leaves)

    def proven(seq: int) -> query_pb2.ProvenEntry:
        s = log[seq]
        entry = ledger_pb2.Entry(
            seq=seq,
            event_id=s.event_id,
            keyid=parse_envelope(s.envelope).keyids()[0],
            envelope_json=s.envelope,
            leaf_hash=leaves[seq],
        )
        proof = ledger_pb2.InclusionProof(
            seq=seq,
            leaf_index=seq,
            tree_size=len(log),
            leaf_hash=leaves[seq],
            hashes=merkle.inclusion_proof(leaves, seq),
        )
        return query_pb2.ProvenEntry(entry=entry, inclusion_proof=proof)

    entries = range(1, len(log))
    graph = recompute_graph([(seq, log[seq].event) for seq in entries])
    bundle = query_pb2.AuditBundle(
        format=BUNDLE_FORMAT,
        node_id=MODEL,
        direction=1,
        as_of_seq=len(log) - 1,
        checkpoint=ledger_pb2.Checkpoint(signed_note=note, origin=ORIGIN, tree_size=len(log), root_hash=root),
        checkpoint_verifier_key=format_vkey(ORIGIN, cp_key.public_key),
        root_keyids=[admin.keyid],
        entries=[proven(s) for s in entries],
        key_entries=[proven(0)],
    )
    order = [MODEL] + sorted(n for n in graph.nodes if n != MODEL)
    bundle.nodes.extend(node_pb(graph.nodes[n]) for n in order)
    for key, stated in sorted(graph.edges.items(), key=lambda kv: (kv[0][3], kv[0][0], kv[0][1], kv[0][2])):
        for attributes in {json.dumps(a, sort_keys=True): a for a in stated}.values():
            bundle.edges.append(edge_pb(key, attributes))
    return encode_bundle(bundle)


@cache
def corpus() -> Corpus:
    admin = Ed25519Signer.from_seed(b"\x01" * 32)
    trainer = Ed25519Signer.from_seed(b"\x02" * 32)
    cp_key = Ed25519Signer.from_seed(b"\x03" * 32)
    log = _events(admin, trainer)
    root = merkle.root_hash([merkle.leaf_hash(s.envelope) for s in log])
    note = sign_checkpoint(Checkpoint(origin=ORIGIN, size=len(log), root_hash=root), ORIGIN, cp_key)
    return Corpus(
        admin=admin,
        trainer=trainer,
        checkpoint_key=cp_key,
        log=log,
        note=note,
        bundle=_bundle(log, admin, cp_key, note),
    )


def crafted_bundle_with_non_ascii_key() -> bytes:
    """A bundle someone built with their own checkpoint key, whose key registration has a non-ASCII public_key.

    Every step before 3 passes when the auditor trusts the key the bundle names
    (``verify-bundle`` without ``--key``); step 3 then parses the registration.
    """
    c = corpus()
    forger = Ed25519Signer.from_seed(b"\x09" * 32)
    log = list(c.log)
    data = {**json.loads(c.log[0].payload)["data"], "public_key": "gTl3\u00e9Dqh9F19Wo1Rmw0x+zMuNipG0="}
    log[0] = ProducerChain("ops@console", c.admin).emit(
        "key.registered", {"agent": {"provault:ops": {}}}, data=data, time=T0, event_id=_id(1)
    )
    root = merkle.root_hash([merkle.leaf_hash(s.envelope) for s in log])
    note = sign_checkpoint(Checkpoint(origin=ORIGIN, size=len(log), root_hash=root), ORIGIN, forger)
    return _bundle(tuple(log), c.admin, forger, note)


# --- proof inputs: bytes -> a verifier call ----------------------------------------------------


def encode_proof_case(kind: int, a: int, b: int, hashes: Iterable[bytes], roots: tuple[bytes, bytes]) -> bytes:
    """The byte form the ``proof`` target decodes: a seed or a reproduction."""
    hs = list(hashes)
    return struct.pack(">BqqB", kind, a, b, len(hs)) + roots[0] + roots[1] + b"".join(hs)


def _proof_seeds(c: Corpus) -> Iterable[bytes]:
    leaves = [merkle.leaf_hash(s.envelope) for s in c.log]
    n = len(leaves)
    for i in range(n):
        yield encode_proof_case(0, i, n, merkle.inclusion_proof(leaves, i), (leaves[i], merkle.root_hash(leaves)))
    for old in range(1, n):
        proof = merkle.consistency_proof(leaves, old)
        yield encode_proof_case(1, old, n, proof, (merkle.root_hash(leaves[:old]), merkle.root_hash(leaves)))


def _decode_proof(data: bytes) -> tuple[int, int, int, list[bytes], bytes, bytes] | None:
    head = struct.calcsize(">BqqB")
    if len(data) < head + 64:
        return None
    kind, a, b, count = struct.unpack_from(">BqqB", data)
    r1, r2 = data[head : head + 32], data[head + 32 : head + 64]
    rest = data[head + 64 :]
    size = 32 if kind & 0x80 == 0 else (kind & 0x3F)  # the high bit asks for oddly sized hashes
    hashes = [rest[i : i + size] for i in range(0, min(len(rest), count * max(size, 1)), max(size, 1))]
    return kind & 1, a, b, hashes, r1, r2


# --- targets -------------------------------------------------------------------------------


def _storable(text: object, what: str) -> None:
    """PostgreSQL text cannot hold U+0000; a refusal that cannot be stored fails its whole batch (docs/security.md D6)."""
    assert not (isinstance(text, str) and "\x00" in text), (
        f"{what} quotes U+0000, which PostgreSQL text cannot store: {text[:200]!r}"
    )


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
"""C0 (newlines too), DEL, C1, bidi controls and lone surrogates: what a bundle must not get onto a terminal."""


def _printable(error: ProvaultError, what: str) -> None:
    """A bundle error quotes the bundle; its text must not carry control characters or bidi controls (docs/security.md D7)."""
    parts = {
        "message": getattr(error, "detail", error.message),
        "place": getattr(error, "place", ""),
        "hint": error.hint or "",
    }
    for name, text in parts.items():
        assert not _UNPRINTABLE.search(text), f"{what} {name} quotes control characters from its input: {text[:200]!r}"
    lines = error.diagnostics().split("\n")  # the one newline is the hint's, written by diagnostics()
    assert not any(_UNPRINTABLE.search(line) for line in lines), f"{what} prints control characters: {lines!r}"[:400]


def check_outcome(
    raw: bytes, result: Checked | Refused, c: Corpus, *, reasons: frozenset[str] = STAGE1_REASONS
) -> bytes | None:
    """Check a stage-1 outcome; return the verified payload of a ``Checked`` one."""
    if isinstance(result, Checked):
        env = parse_envelope(raw, max_size=LIMITS.max_envelope_bytes)
        assert result.raw == raw and result.leaf_hash == merkle.leaf_hash(raw)
        assert set(result.signer_keyids) <= set(c.public_keys), result.signer_keyids
        admitted = (
            raw == encode_envelope(env) and len(env.signatures) == 1
        )  # docs/security.md D5: one encoding per event
        assert (result.form_problem is None) == admitted, (
            f"form {'admitted' if admitted else 'not admitted'}: {result.form_problem}"
        )
        if result.form_problem is not None:
            assert len(result.form_problem) <= MAX_MESSAGE_CHARS, f"form problem of {len(result.form_problem)} chars"
            _storable(result.form_problem, "form problem")
        return env.payload
    assert isinstance(result, Refused), type(result)
    assert result.raw == raw
    assert result.reason in reasons, f"reason {result.reason!r} is not a documented stage-1 reason: {result.message}"
    assert isinstance(result.message, str) and result.message, "a refusal must say why"
    assert len(result.message) <= MAX_MESSAGE_CHARS, f"refusal message of {len(result.message)} chars"
    _storable(result.message, "refusal message")
    for value, what in ((result.event_id, "event_id"), (result.producer_id, "producer_id"), (result.keyid, "keyid")):
        assert value is None or isinstance(value, str), what
        _storable(value, f"refusal {what}")
    if result.event_id is not None:
        parse_uuid7(result.event_id)
    return None


def _stage1(raw: bytes, c: Corpus) -> Checked | Refused:
    """check_submission: any exception escaping it is a crash (it raised ValueError before D1 was fixed)."""
    return check_submission(raw, c.public_keys, now=NOW, limits=LIMITS)


def _label(result: Checked | Refused) -> str:
    return "checked" if isinstance(result, Checked) else f"refused:{result.reason}"


def envelope_target(data: bytes) -> str:
    """Any bytes as a received envelope."""
    c = corpus()
    result = _stage1(data, c)
    payload = check_outcome(data, result, c)
    if payload is not None:
        assert payload in c.signed_payloads, "a signature verified over a payload nobody signed"
    return _label(result)


def payload_target(data: bytes) -> str:
    """Any bytes as a payload, validly signed (admin or trainer, by the first byte), through both stages."""
    c = corpus()
    signer, data = (c.admin, data[1:]) if data[:1] == b"A" else (c.trainer, data)
    raw = encode_envelope(sign_envelope(PAYLOAD_TYPE, data, [signer]))
    result = _stage1(raw, c)
    check_outcome(raw, result, c)
    if not isinstance(result, Checked):
        assert result.reason not in ("unknown_key", "bad_signature", "malformed_envelope"), result.message
        return _label(result)
    event = parse_event(data)
    assert event.id == result.event_id and event.time <= NOW + LIMITS.max_clock_skew
    tail = TailState(size=len(c.log), existing={}, producers={}, chain={}, registry=c.registry())
    plan = plan_batch([result], tail, now=NOW, limits=LIMITS)
    (outcome,) = plan.outcomes
    if isinstance(outcome, Refused):
        assert outcome.reason in {"key_not_permitted", "invalid_event", "key_revoked", "unknown_key"}, outcome.reason
        _storable(outcome.message, "stage-2 refusal message")
        return f"stage2:{outcome.reason}"
    for change in plan.key_changes:  # written to ledger.keys (jsonb identity, text reason); D3
        for value in (*change.identity.values(), change.revoked_reason):
            assert not (isinstance(value, str) and "\x00" in value), (
                f"an accepted key event carries U+0000 into ledger.keys: {value!r}"
            )
    return "accepted:" + project_target_event(raw, len(c.log))


def project_target_event(raw: bytes, seq: int) -> str:
    """The projector maps an accepted entry to rows PostgreSQL can store, or skips it with a DecodeError."""
    from query._mapping import map_entry  # noqa: PLC0415 - pure, but only needed here

    try:
        rows = map_entry(raw, seq)
    except DecodeError as e:
        return f"skipped:{e.reason}"
    texts: list[str] = []
    for n in rows.nodes:
        texts += [n.id, n.iri, n.node_type or "", json.dumps(dict(n.attributes), ensure_ascii=False)]
    for e in rows.edges:
        texts += [e.relation, e.src, e.dst, e.stmt_id, json.dumps(dict(e.attributes), ensure_ascii=False)]
    for p in rows.predictions:
        texts += [p.id, p.activity, json.dumps([p.input, p.output], ensure_ascii=False)]
    bad = [t for t in texts if "\x00" in t]
    assert not bad, f"an accepted event projects U+0000 into prov.* (stalls the projector, D2): {bad[:1]!r}"[:300]
    return "projected"


def proof_target(data: bytes) -> str:
    """Random proofs: only provault errors, and only true proofs verify."""
    case = _decode_proof(data)
    if case is None:
        return "short"
    kind, a, b, hashes, r1, r2 = case
    try:
        if kind == 0:
            merkle.verify_inclusion(r1, a, b, hashes, r2)
        else:
            merkle.verify_consistency(a, b, r1, r2, hashes)
    except ProvaultError as e:
        return f"error:{e.reason}"
    if kind == 0:  # it verified: recomputing the root from the proof must give the root
        assert 0 <= a < b, (a, b)
    else:
        assert 0 <= a <= b, (a, b)
    return "verified"


def note_target(data: bytes) -> str:
    """Mutated checkpoint notes: only provault errors; whatever opens is the signed checkpoint."""
    c = corpus()
    verifier = parse_vkey(c.vkey)
    original = open_checkpoint(c.note, [verifier])
    try:
        parse_note(data)
    except ProvaultError:
        pass
    try:
        opened = open_checkpoint(data, [verifier])
    except ProvaultError as e:
        return f"error:{e.reason}"
    assert opened == original, f"a mutated note opened as another checkpoint: {opened}"
    return "opened"


def bundle_target(data: bytes) -> str:
    """Mutated bundle files: only provault errors; only the original bytes verify."""
    from query.bundle_verify import decode_bundle, verify_bundle  # noqa: PLC0415

    c = corpus()
    try:
        bundle = decode_bundle(data)
    except ProvaultError as e:
        _printable(e, "bundle decode error")
        return f"step{getattr(e, 'step', '?')}:{e.reason}"
    outcomes = []
    for pins in ({"vkey": c.vkey, "admin_keys": [c.admin.public_key]}, {}):  # pinned, and trusting the bundle's own key
        try:
            verify_bundle(bundle, **pins)
        except ProvaultError as e:
            _printable(e, "bundle error")
            outcomes.append(f"step{getattr(e, 'step', '?')}:{e.reason}")
            continue
        assert data == c.bundle, "a bundle other than the original verified"
        outcomes.append("verified")
    return outcomes[0]


def token_target(data: bytes) -> str:
    """Bytes as a page token: INVALID_ARGUMENT (InvalidArgument), never anything else."""
    from query.service import decode_token  # noqa: PLC0415 - imports grpc, fine for tests

    text = data.decode("utf-8", errors="replace")
    label = "refused"
    for token in (text, "pv1." + base64.urlsafe_b64encode(data).decode().rstrip("=")):
        try:
            fields = decode_token(token, "trace", "f" * 24)
        except InvalidArgument:
            continue
        assert isinstance(fields, dict) and isinstance(fields.get("s"), int) and fields["s"] >= 0
        label = "decoded"
    return label


# --- seeds ---------------------------------------------------------------------------------


def _envelope_seeds(c: Corpus) -> Iterable[bytes]:
    for s in c.log:
        yield s.envelope
        doc = json.loads(s.envelope)
        doc["payload"] = base64.urlsafe_b64encode(base64.b64decode(doc["payload"])).decode().rstrip("=")
        yield json.dumps(doc, indent=1).encode()


def _payload_seeds(c: Corpus) -> Iterable[bytes]:
    for s in c.log:
        yield (b"A" if s.event.kind.startswith("key.") else b"") + s.payload
    yield Producer.first("x").id.encode()  # not an event at all


def _token_seed() -> bytes:
    from query.service import encode_token  # noqa: PLC0415

    return encode_token("trace", "f" * 24, s=1, o=2, a=None).encode()


_SEEDS: Mapping[str, Callable[[Corpus], Iterable[bytes]]] = {
    "envelope": _envelope_seeds,
    "payload": _payload_seeds,
    "proof": _proof_seeds,
    "note": lambda c: [c.note.encode()],
    "bundle": lambda c: [c.bundle],
    "token": lambda c: [_token_seed()],
}

TARGETS: Mapping[str, Callable[[bytes], str]] = {
    "envelope": envelope_target,
    "payload": payload_target,
    "proof": proof_target,
    "note": note_target,
    "bundle": bundle_target,
    "token": token_target,
}


def run_target(name: str, data: bytes) -> str:
    """Run one target and return its outcome label; a stray exception becomes an AssertionError naming it."""
    try:
        return TARGETS[name](data)
    except AssertionError:
        raise
    except Exception as e:
        raise AssertionError(f"{name}: {type(e).__name__} escaped: {e!r}"[:2000]) from e


__all__ = [
    "NOW",
    "ORIGIN",
    "TARGETS",
    "Corpus",
    "corpus",
    "crafted_bundle_with_non_ascii_key",
    "encode_proof_case",
    "run_target",
]
