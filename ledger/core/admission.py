"""Admission: from received bytes to a checked submission or a refusal.

Two stages, both pure:

1. :func:`check_submission` -- stateless and expensive (parsing, Ed25519).
   Runs on any worker process with a snapshot of the public keys.
2. :func:`plan_batch` -- stateful and cheap: the admitted envelope form
   (one encoding per signed event), dedupe by event id, key status
   and permissions, the producer's seq / prev-hash chain, seq assignment and
   key-registry changes.  Runs in the one sequencer that owns the log's tail.

The storage adapter loads the state ``plan_batch`` needs, calls it, and
writes the plan in one transaction.  Nothing here waits on anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .envelope import PAYLOAD_TYPE, Envelope, parse_envelope, require_canonical, verify_envelope
from .errors import CannotVerify, MalformedEnvelope, ProvaultError, UnknownKey, expected_found
from .events import Event, Producer, chain_hash, event_to_json, parse_event
from .keyring import ADMIN_ONLY_KINDS, KeyRecord, KeyRegistry, check_key_event
from .keys import Ed25519Verifier
from .merkle import leaf_hash

# Reasons that are not errors raised by the parsers / verifiers.
EVENT_ID_CONFLICT = "event_id_conflict"
PRODUCER_CHAIN_BROKEN = "producer_chain_broken"
CLOCK_SKEW = "clock_skew"
TOO_LARGE = "envelope_too_large"


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_envelope_bytes: int = 1_048_576
    max_payload_bytes: int = 784_384
    """Base64 makes the envelope about 4/3 of the payload, plus signatures."""
    max_clock_skew: timedelta = timedelta(minutes=5)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True, kw_only=True)
class EventHead:
    """What sequencing needs of a checked event: small and picklable.

    Verification may run in worker processes; the full :class:`Event` (deep
    frozen, with its PROV document) stays there.  ``data`` is kept, as plain
    JSON values, only for the key events the registry interprets.
    """

    id: str
    time: datetime
    kind: str
    producer: Producer
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: Event) -> EventHead:
        data = event_to_json(event).get("data") if event.kind in ADMIN_ONLY_KINDS else None
        return cls(id=event.id, time=event.time, kind=event.kind, producer=event.producer, data=data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """A submission whose bytes, signature and event contract are valid."""

    raw: bytes
    event: EventHead
    signer_keyids: tuple[str, ...]
    leaf_hash: bytes
    chain_hash: str
    form_problem: str | None = None
    """Why the ledger will not admit these bytes although they verify (:func:`form_problem`); None when it will."""

    @property
    def event_id(self) -> str:
        return self.event.id

    @property
    def keyid(self) -> str:
        return self.signer_keyids[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A submission that must go to the rejections table, with its reason."""

    raw: bytes
    reason: str
    message: str
    event_id: str | None = None
    keyid: str | None = None
    producer_id: str | None = None


def _peek_ids(payload: bytes | None) -> dict[str, Any]:
    """Best-effort ids from an unverified payload, only to label a refusal."""
    if not payload:
        return {}
    try:
        ev = parse_event(payload)
    except ProvaultError:
        return {}
    return {"event_id": ev.id, "producer_id": ev.producer.id}


def check_submission(
    raw: bytes, public_keys: Mapping[str, bytes], *, now: datetime, limits: Limits = DEFAULT_LIMITS
) -> Checked | Refused:
    """Stateless checks of one received envelope, in this order:

    1. size within limits;
    2. DSSE envelope well-formed, payload type is provault's event type;
    3. a signature by a known key (``public_keys`` snapshot) verifies over PAE;
    4. the payload follows the event contract (including key-event data);
    5. the producer clock is not too far in the future.

    A submission that passes all five but is not in the form the ledger
    admits (:func:`form_problem`) is ``Checked`` with ``form_problem`` set:
    stage 2 refuses it, while the audit, which re-runs this function over
    entries admitted under earlier rules, does not.
    """
    if len(raw) > limits.max_envelope_bytes:
        return Refused(
            raw=raw,
            reason=TOO_LARGE,
            message=f"envelope is {len(raw)} bytes, expected at most {limits.max_envelope_bytes}",
        )
    env = None
    try:
        env = parse_envelope(raw, max_size=limits.max_envelope_bytes, payload_type=PAYLOAD_TYPE)
        if len(env.payload) > limits.max_payload_bytes:
            return Refused(
                raw=raw,
                reason=TOO_LARGE,
                message=f"payload is {len(env.payload)} bytes, expected at most {limits.max_payload_bytes}",
                keyid=env.signatures[0].keyid,
            )
        keyring = {k: Ed25519Verifier(public_keys[k]) for k in env.keyids() if k in public_keys}
        signers = verify_envelope(env, keyring)
        event = parse_event(env.payload, max_size=limits.max_payload_bytes)
        check_key_event(event)
    except ProvaultError as e:
        ids = _peek_ids(env.payload if env else None)
        keyid = env.signatures[0].keyid if env and env.signatures else None
        return Refused(raw=raw, reason=e.reason, message=e.message, keyid=keyid, **ids)
    except Exception as e:
        keyid = env.signatures[0].keyid if env and env.signatures else None
        return Refused(
            raw=raw,
            reason=CannotVerify.reason,
            keyid=keyid,
            message=f"the ledger could not check this envelope ({type(e).__name__}: {e!r:.200}); it was refused",
        )
    if event.time > now + limits.max_clock_skew:
        return Refused(
            raw=raw,
            reason=CLOCK_SKEW,
            event_id=event.id,
            keyid=signers[0],
            producer_id=event.producer.id,
            message=f"event time {event.time.isoformat()} is more than {limits.max_clock_skew} ahead of the ledger clock ({now.isoformat()})",
        )
    return Checked(
        raw=raw,
        event=EventHead.of(event),
        signer_keyids=signers,
        leaf_hash=leaf_hash(raw),
        chain_hash=chain_hash(env.payload),
        form_problem=form_problem(raw, env),
    )


def form_problem(raw: bytes, env: Envelope) -> str | None:
    """Why the ledger does not admit the envelope ``raw`` (parsed as ``env``) in this form; None when it does.

    One signed event must have exactly one admissible encoding, or a copy
    re-encoded by anyone who saw it in flight could be logged first and the
    genuine envelope refused as ``event_id_conflict`` (docs/security.md, D5).
    So the ledger admits only the canonical bytes (:func:`require_canonical`)
    with exactly one signature: further signatures are not bound to the event,
    so a relay could drop, reorder or add one (a signature by a key the ledger
    does not know is ignored by verification) and still have a valid copy.
    The one signature cannot be swapped either: it verifies only under its
    keyid's key, and Ed25519 signatures are not malleable.
    """
    try:
        require_canonical(raw, env)
    except MalformedEnvelope as e:
        return e.message
    if len(env.signatures) != 1:
        found = f"{len(env.signatures)} (keyids {', '.join(env.keyids())})"
        return (
            expected_found("signatures", "exactly one signature", found) + "; the ledger admits one signature per "
            "envelope: further signatures are not bound to the event, so a relay could drop, reorder or add one "
            "and log that copy first"
        )
    return None


# --- sequencing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerState:
    last_seq: int
    last_hash: str
    entries: int
    first_log_seq: int
    last_log_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    producer_id: str
    kind: str  # gap | late | fork
    expected_seq: int | None
    found_seq: int
    event_id: str
    log_seq: int | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    seq: int
    item: Checked
    keyid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    """Already in the log with identical bytes: acknowledge, append nothing."""

    item: Checked
    seq: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TailState:
    """What the sequencer must know about the log before planning a batch."""

    size: int
    existing: Mapping[str, tuple[int, bytes]]
    """event id -> (seq, leaf hash) for ids of this batch already in the log."""
    producers: Mapping[str, ProducerState]
    chain: Mapping[tuple[str, int], str]
    """(producer id, producer seq) -> chain hash of that entry, for lookups behind the tail."""
    registry: KeyRegistry


@dataclass(slots=True)
class BatchPlan:
    accepted: list[Accepted] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    producers: dict[str, ProducerState] = field(default_factory=dict)
    key_changes: list[KeyRecord] = field(default_factory=list)
    outcomes: list[Accepted | Duplicate | Refused] = field(default_factory=list)
    """One outcome per input item, in input order."""


def heads_to_plan(items: Sequence[Checked | Refused]) -> list[EventHead]:
    """The events plan_batch may accept: the checked ones, and those refused only for an
    unknown key (a key registered earlier in the batch makes them acceptable), whose
    state must be loaded too."""
    heads = []
    for it in items:
        if isinstance(it, Checked):
            heads.append(it.event)
        elif it.reason == UnknownKey.reason:
            try:
                heads.append(EventHead.of(parse_event(parse_envelope(it.raw, max_size=len(it.raw) + 1).payload)))
            except ProvaultError:
                pass
    return heads


def chain_lookups(heads: Sequence[EventHead], producers: Mapping[str, ProducerState]) -> set[tuple[str, int]]:
    """(producer, seq) pairs whose stored chain hash plan_batch may need."""
    wanted: set[tuple[str, int]] = set()
    for head in heads:
        p = head.producer
        st = producers.get(p.id)
        if st is not None and p.seq <= st.last_seq:
            wanted.update({(p.id, p.seq), (p.id, p.seq - 1)})
    return wanted


def plan_batch(
    items: Sequence[Checked | Refused], tail: TailState, *, now: datetime, limits: Limits = DEFAULT_LIMITS
) -> BatchPlan:
    """Decide every item of a batch in order; see the module docstring."""
    plan = BatchPlan()
    planner = _Planner(tail, plan, now, limits)
    for it in items:
        plan.outcomes.append(planner.decide(it))
    return plan


class _Planner:
    def __init__(self, tail: TailState, plan: BatchPlan, now: datetime, limits: Limits) -> None:
        self.tail = tail
        self.plan = plan
        self.now = now
        self.limits = limits
        self.next_seq = tail.size
        self.seen: dict[str, tuple[int | None, bytes]] = dict(tail.existing)
        self.chain = dict(tail.chain)
        self.producers = dict(tail.producers)

    def refuse(self, it: Checked, reason: str, message: str, keyid: str | None = None) -> Refused:
        r = Refused(
            raw=it.raw,
            reason=reason,
            message=message,
            event_id=it.event.id,
            keyid=keyid or it.keyid,
            producer_id=it.event.producer.id,
        )
        self.plan.refused.append(r)
        return r

    def decide(self, it: Checked | Refused) -> Accepted | Duplicate | Refused:
        if isinstance(it, Refused):
            it = self._retry_unknown_key(it)
            if isinstance(it, Refused):
                self.plan.refused.append(it)
                return it
        ev = it.event
        seq, leaf = self.seen.get(ev.id, (None, None))
        if leaf == it.leaf_hash:  # the very bytes already logged (before the form rules, perhaps): nothing to add
            dup = Duplicate(item=it, seq=seq)
            self.plan.duplicates.append(dup)
            return dup
        if it.form_problem is not None:  # before dedupe: another encoding of a logged event is refused for its form
            return self.refuse(it, MalformedEnvelope.reason, it.form_problem)
        if ev.id in self.seen:
            return self.refuse(
                it,
                EVENT_ID_CONFLICT,
                f"event id {ev.id} is already in the log (seq {seq}) with different bytes; the first one stands",
            )
        try:
            rec = self._authorize(it)
            self.tail.registry.check_apply(ev)
        except ProvaultError as e:
            return self.refuse(it, e.reason, e.message)
        fork = self._chain_problem(it)
        if fork:
            p = it.event.producer
            last = self.producers.get(p.id)
            self.plan.anomalies.append(
                Anomaly(
                    producer_id=p.id,
                    kind="fork",
                    expected_seq=last.last_seq + 1 if last else None,
                    found_seq=p.seq,
                    event_id=ev.id,
                    log_seq=None,
                    detail=fork,
                )
            )
            return self.refuse(it, PRODUCER_CHAIN_BROKEN, fork)
        return self._accept(it, rec)

    def _retry_unknown_key(self, r: Refused) -> Checked | Refused:
        """A key registered earlier in this batch was not in the worker's snapshot."""
        if r.reason != UnknownKey.reason:
            return r
        again = check_submission(r.raw, self.tail.registry.public_keys(), now=self.now, limits=self.limits)
        return again if isinstance(again, Checked) or again.reason != r.reason else r

    def _authorize(self, it: Checked) -> KeyRecord:
        last: ProvaultError | None = None
        for keyid in it.signer_keyids:
            try:
                return self.tail.registry.authorize(keyid, it.event)
            except ProvaultError as e:
                last = e
        assert last is not None
        raise last

    def _chain_problem(self, it: Checked) -> str | None:
        p = it.event.producer
        st = self.producers.get(p.id)
        if st is None or p.seq > st.last_seq:
            if st is not None and p.seq == st.last_seq + 1 and p.prev != st.last_hash:
                return (
                    f"producer {p.id} seq {p.seq}: prev is {p.prev}, but the entry at seq {st.last_seq} "
                    f"hashes to {st.last_hash}: the producer's chain forked"
                )
            return None
        if (p.id, p.seq) in self.chain:
            return (
                f"producer {p.id} seq {p.seq} is already in the log as a different event: the producer's chain forked"
            )
        before = self.chain.get((p.id, p.seq - 1))
        if before is not None and before != p.prev:
            return f"producer {p.id} seq {p.seq}: prev is {p.prev}, but the entry at seq {p.seq - 1} hashes to {before}"
        return None

    def _accept(self, it: Checked, rec: KeyRecord) -> Accepted:
        seq = self.next_seq
        self.next_seq += 1
        acc = Accepted(seq=seq, item=it, keyid=rec.keyid)
        self.plan.accepted.append(acc)
        self.seen[it.event.id] = (seq, it.leaf_hash)
        self._advance_producer(it, seq)
        changed = self.tail.registry.apply(it.event, seq) if it.event.kind in ADMIN_ONLY_KINDS else None
        if changed is not None:
            self.plan.key_changes.append(changed)
        return acc

    def _advance_producer(self, it: Checked, seq: int) -> None:
        p = it.event.producer
        st = self.producers.get(p.id)
        self.chain[(p.id, p.seq)] = it.chain_hash
        anomaly = None
        if st is None:
            expected = 1
            st = ProducerState(last_seq=p.seq, last_hash=it.chain_hash, entries=1, first_log_seq=seq, last_log_seq=seq)
            if p.seq != 1:
                anomaly = (
                    "gap",
                    expected,
                    f"first event seen from {p.id} has seq {p.seq}; seqs 1..{p.seq - 1} are missing",
                )
        elif p.seq > st.last_seq:
            if p.seq != st.last_seq + 1:
                anomaly = ("gap", st.last_seq + 1, f"seqs {st.last_seq + 1}..{p.seq - 1} of {p.id} are missing")
            st = ProducerState(
                last_seq=p.seq,
                last_hash=it.chain_hash,
                entries=st.entries + 1,
                first_log_seq=st.first_log_seq,
                last_log_seq=seq,
            )
        else:
            anomaly = ("late", None, f"seq {p.seq} of {p.id} arrived after seq {st.last_seq} (fills a gap)")
            st = ProducerState(
                last_seq=st.last_seq,
                last_hash=st.last_hash,
                entries=st.entries + 1,
                first_log_seq=st.first_log_seq,
                last_log_seq=seq,
            )
        self.producers[p.id] = st
        self.plan.producers[p.id] = st
        if anomaly:
            kind, expected, detail = anomaly
            self.plan.anomalies.append(
                Anomaly(
                    producer_id=p.id,
                    kind=kind,
                    expected_seq=expected,
                    found_seq=p.seq,
                    event_id=it.event.id,
                    log_seq=seq,
                    detail=detail,
                )
            )
