"""Step 3: every entry signed by a key that was valid for it at its seq.

The bundle's key history is replayed through the ledger's own :class:`~ledger.core.keyring.KeyRegistry`:
the bundle's root keys first, then every entry in seq order, each checked against the registry as the log
stood before it (``authorize``), and each key entry applied after its check (``apply``), exactly as the
ledger admitted them.  A key revoked after an entry it signed is noted, not refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ledger.core.envelope import Envelope, parse_envelope, verify_envelope
from ledger.core.errors import KeyNotPermitted, ProvaultError, UnknownKey, VerificationFailed, expected_found
from ledger.core.events import Event, format_time, parse_event
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, KeyRecord, KeyRegistry, parse_registration
from ledger.core.keys import Ed25519Verifier
from provault.v1 import ledger_pb2, query_pb2

from ._errors import _at, _fail


@dataclass(slots=True, kw_only=True)
class _KeyCheck:
    checked: int = 0
    unchecked: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Signed:
    place: str
    entry: ledger_pb2.Entry
    envelope: Envelope
    event: Event


def _parse_signed(pe: query_pb2.ProvenEntry, place: str) -> _Signed:
    raw = pe.entry.envelope_json
    with _at(3, place):
        env = parse_envelope(raw, max_size=max(len(raw), 1))
        event = parse_event(env.payload, max_size=max(len(env.payload), 1))
    if pe.entry.event_id != event.id:
        wrong = expected_found("entry.event_id", f"the signed payload's {event.id}", repr(pe.entry.event_id[:80]))
        _fail(3, place, VerificationFailed, wrong)
    return _Signed(place=place, entry=pe.entry, envelope=env, event=event)


def _root_record(keyid: str, pins: Mapping[str, bytes] | None) -> KeyRecord:
    """A trust-root (admin) key the bundle rests on; its public key only when the auditor pinned it."""
    return KeyRecord(
        keyid=keyid,
        public_key=(pins or {}).get(keyid, b""),
        role="admin",
        identity={"type": "service", "name": "root"},
        kinds=("*",),
        producers=("*",),
        registered_seq=None,
    )


def _registered_at(key_entries: Iterable[query_pb2.ProvenEntry], signed: Mapping[int, _Signed]) -> dict[str, int]:
    """keyid -> seq of the bundle's first registration of it, to say "registered later" rather than "unknown"."""
    out: dict[str, int] = {}
    for pe in key_entries:
        s = signed[pe.entry.seq]
        if s.event.kind == KEY_REGISTERED:
            try:
                out.setdefault(parse_registration(s.event).keyid, pe.entry.seq)
            except ProvaultError:
                continue  # refused, with its place, when the replay reaches it
    return out


def _check_signatures(
    b: query_pb2.AuditBundle, proven: dict[int, query_pb2.ProvenEntry], pins: dict[str, bytes] | None
) -> tuple[dict[int, _Signed], _KeyCheck]:
    places = {
        pe.entry.seq: f"{name}[{i}] (seq {pe.entry.seq})"
        for name in ("entries", "key_entries")
        for i, pe in enumerate(getattr(b, name))
    }
    signed = {seq: _parse_signed(proven[seq], places[seq]) for seq in sorted(proven)}
    key_seqs = {pe.entry.seq for pe in b.key_entries}
    registered_at = _registered_at(b.key_entries, signed)
    registry = KeyRegistry(_root_record(kid, pins) for kid in b.root_keyids)
    out, unchecked, used_roots = _KeyCheck(), [], set()
    for seq, s in signed.items():  # seq order: each entry meets the keys as the log stood before it
        record = _signing_key(s, seq, registry, registered_at, pins)
        if record.registered_seq is None:
            used_roots.add(record.keyid)
        if not record.public_key:
            unchecked.append(seq)
        else:
            with _at(3, s.place):
                verify_envelope(s.envelope, {record.keyid: Ed25519Verifier(record.public_key)})
            out.checked += 1
        if seq in key_seqs:
            _apply(s, seq, registry)
    for seq, s in signed.items():
        record = registry.get(s.entry.keyid)
        if record is not None and record.revoked_seq is not None:
            out.notes.append(_revocation_note(s, seq, record))
    for kid in b.root_keyids:
        if kid not in used_roots:
            _fail(
                3,
                "root_keyids",
                VerificationFailed,
                f"root key {kid} signs no entry of the bundle",
                hint="root_keyids lists exactly the root keys the bundle's entries rest on",
            )
    out.unchecked = tuple(unchecked)
    return signed, out


def _signing_key(
    s: _Signed, seq: int, registry: KeyRegistry, registered_at: Mapping[str, int], pins: dict[str, bytes] | None
) -> KeyRecord:
    """The key the entry names, valid for it at its seq (the ledger's own ``KeyRegistry.authorize``)."""
    kid = s.entry.keyid
    if kid not in s.envelope.keyids():
        wrong = expected_found("entry.keyid", f"one of the envelope's signatures {list(s.envelope.keyids())}", kid[:80])
        _fail(3, s.place, UnknownKey, wrong)
    record = registry.get(kid)
    if record is None:
        if kid in registered_at:
            at = registered_at[kid]
            _fail(3, s.place, KeyNotPermitted, f"signed by key {kid}, which was not registered before it (seq {at})")
        _fail(
            3,
            s.place,
            UnknownKey,
            f"signed by key {kid}, which is neither a root key of the bundle (root_keyids) "
            "nor registered by an entry of key_entries",
            hint="the bundle lacks the key's registration; ask for a complete bundle",
        )
    if record.registered_seq is None and pins is not None and not record.public_key:
        _fail(
            3,
            s.place,
            UnknownKey,
            f"signed by root key {kid}, which is not among the admin keys you pinned",
            hint="pin that admin public key too, or treat the bundle as coming from another ledger",
        )
    with _at(3, s.place):
        registry.authorize(kid, s.event)
    return record


def _apply(s: _Signed, seq: int, registry: KeyRegistry) -> None:
    """A key entry changes the keys from its seq on, by the rules the ledger applied it with."""
    if s.event.kind not in (KEY_REGISTERED, KEY_REVOKED):
        wrong = expected_found("kind of a key entry", f"{KEY_REGISTERED} or {KEY_REVOKED}", repr(s.event.kind))
        _fail(3, s.place, VerificationFailed, wrong)
    with _at(3, s.place):
        registry.apply(s.event, seq)


def _revocation_note(s: _Signed, seq: int, key: KeyRecord) -> str:
    suspect = key.revoked_from is not None and s.event.time >= key.revoked_from
    return (
        f"seq {seq}: key {key.keyid[:16]}… was revoked later (seq {key.revoked_seq}, effective from "
        f"{format_time(key.revoked_from)}); this entry's event time {format_time(s.event.time)} is "
        + ("AFTER that: treat it as suspect" if suspect else "before that")
    )
