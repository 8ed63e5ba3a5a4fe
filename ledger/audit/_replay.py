"""Replaying the entries: seqs, leaf hashes, signatures and columns, against the key
registry as it stood at each seq (rebuilt from the trust root by the key events)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg

from ledger.core import merkle
from ledger.core.admission import Checked, Limits, Refused, check_submission
from ledger.core.errors import ProvaultError, SignatureInvalid, UnknownKey
from ledger.core.keyring import ADMIN_ONLY_KINDS, KeyRecord, KeyRegistry
from ledger.store.entries import StoredEntry

from ._report import Problem, at_seq, problem

# The audit re-checks what admission checked, minus policy that was decided
# at arrival and may have been configured differently then: size limits and
# the producer-clock skew (``now`` lies beyond every representable time).
_AUDIT_LIMITS = Limits(max_envelope_bytes=1 << 62, max_payload_bytes=1 << 62, max_clock_skew=timedelta(0))
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)

_KEYS_SQL = (
    "SELECT keyid, public_key, role, identity, kinds, producers, registered_seq, revoked_seq, revoked_from,"
    " revoked_reason FROM ledger.keys ORDER BY keyid"
)
_KEY_FIELDS = (
    "public_key",
    "role",
    "identity",
    "kinds",
    "producers",
    "registered_seq",
    "revoked_seq",
    "revoked_from",
    "revoked_reason",
)


# --- pure decisions ---------------------------------------------------------------


def seq_problem(position: int, seq: int) -> Problem | None:
    """Entries must be numbered 0, 1, 2, ... in order."""
    if seq == position:
        return None
    if seq > position:
        what = f"seq {position} is missing" if seq == position + 1 else f"seqs {position}..{seq - 1} are missing"
    else:
        what = "seqs are out of order"
    return at_seq(seq, "seq", f"the log is not contiguous ({what})", expected=f"seq {position}", found=f"seq {seq}")


def leaf_problem(seq: int, recomputed: bytes, stored: bytes) -> Problem | None:
    if recomputed == stored:
        return None
    return at_seq(
        seq,
        "leaf_hash",
        "leaf hash mismatch: the stored leaf_hash is not SHA-256(0x00 || stored envelope bytes)",
        expected=recomputed.hex(),
        found=stored.hex(),
    )


def refused_problem(seq: int, refused: Refused) -> Problem:
    """An entry that the stateless admission checks refuse, with the registry as it stood at its seq."""
    kind = "signature" if refused.reason in (SignatureInvalid.reason, UnknownKey.reason) else "entry_refused"
    return at_seq(
        seq,
        kind,
        f"{refused.reason}: the entry does not verify with the key registry as it stood at seq {seq}: {refused.message}",
    )


def authorize(registry: KeyRegistry, checked: Checked) -> KeyRecord:
    """The record of the first signer allowed to sign this event (as the sequencer picks it)."""
    last: ProvaultError | None = None
    for keyid in checked.signer_keyids:
        try:
            return registry.authorize(keyid, checked.event)
        except ProvaultError as e:
            last = e
    assert last is not None  # check_submission returns at least one signer
    raise last


def column_problems(row: StoredEntry, checked: Checked, keyid: str) -> list[Problem]:
    """The searchable columns must say what the signed envelope says."""
    ev = checked.event
    pairs = (
        ("event_id", ev.id, row.event_id.lower()),
        ("keyid", keyid, row.keyid),
        ("producer_id", ev.producer.id, row.producer_id),
        ("producer_seq", ev.producer.seq, row.producer_seq),
        ("kind", ev.kind, row.kind),
        ("event_time", ev.time, row.event_time),
        ("payload_hash", checked.chain_hash, row.payload_hash),
    )
    return [
        at_seq(row.seq, "column", f"column {name} does not match the signed envelope", expected=want, found=got)
        for name, want, got in pairs
        if want != got
    ]


def key_table_problems(replayed: Sequence[KeyRecord], rows: Sequence[tuple]) -> list[Problem]:
    """ledger.keys must hold exactly the log-registered keys of the replayed registry."""
    want = {r.keyid: r for r in replayed if r.registered_seq is not None}
    problems: list[Problem] = []
    for row in rows:
        rec = want.get(row[0])
        if rec is None:
            problems.append(_at_key(row[0], "ledger.keys holds a key no key.registered entry registers"))
        else:
            problems += _key_row_problems(rec, row)
    for keyid in sorted(set(want) - {row[0] for row in rows}):
        problems.append(_at_key(keyid, f"registered at seq {want[keyid].registered_seq} but missing from ledger.keys"))
    return problems


def _key_row_problems(rec: KeyRecord, row: tuple) -> list[Problem]:
    got = (bytes(row[1]), row[2], dict(row[3]), tuple(row[4]), tuple(row[5]), row[6], row[7], row[8], row[9])
    exp = (
        rec.public_key,
        rec.role,
        dict(rec.identity),
        rec.kinds,
        rec.producers,
        rec.registered_seq,
        rec.revoked_seq,
        rec.revoked_from,
        rec.revoked_reason,
    )
    return [
        _at_key(rec.keyid, f"ledger.keys.{name} differs from the replayed log", _show(e), _show(g))
        for name, e, g in zip(_KEY_FIELDS, exp, got, strict=True)
        if e != g
    ]


def _at_key(keyid: str, message: str, expected: object = None, found: object = None) -> Problem:
    return problem("key_table", f"key {keyid}", message, expected, found)


def _show(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


# --- the replay -------------------------------------------------------------------


class Replay:
    """The key registry as it stood at each seq, rebuilt by replaying the key events from the trust root."""

    def __init__(self, admins: Sequence[KeyRecord]) -> None:
        self.registry = KeyRegistry(admins)
        self.public_keys = self.registry.public_keys()

    def entry(self, position: int, row: StoredEntry) -> tuple[bytes, list[Problem | None]]:
        """The entry at ``position`` of the log: its recomputed leaf hash and what is wrong with it."""
        leaf = merkle.leaf_hash(row.envelope)
        return leaf, [seq_problem(position, row.seq), leaf_problem(row.seq, leaf, row.leaf_hash), *self._verify(row)]

    def _verify(self, row: StoredEntry) -> list[Problem]:
        checked = check_submission(row.envelope, self.public_keys, now=_FAR_FUTURE, limits=_AUDIT_LIMITS)
        if isinstance(checked, Refused):
            return [refused_problem(row.seq, checked)]
        try:
            rec = authorize(self.registry, checked)
        except ProvaultError as e:
            return [
                at_seq(
                    row.seq,
                    "authorization",
                    f"{e.reason}: with the key registry as it stood at seq {row.seq}: {e.message}",
                )
            ]
        problems = column_problems(row, checked, rec.keyid)
        if checked.event.kind in ADMIN_ONLY_KINDS:
            problems += self._apply(checked, row.seq)
        return problems

    def _apply(self, checked: Checked, seq: int) -> list[Problem]:
        """Apply a key event, so later entries are checked against the registry it leaves."""
        problems = []
        try:
            self.registry.apply(checked.event, seq)
        except ProvaultError as e:
            problems.append(at_seq(seq, "key_event", f"{e.reason}: the key event cannot be applied: {e.message}"))
        self.public_keys = self.registry.public_keys()
        return problems

    def check_key_table(self, conn: psycopg.Connection) -> list[Problem]:
        """The derived table ledger.keys against the registry the replay rebuilt."""
        return key_table_problems(self.registry.records(), conn.execute(_KEYS_SQL).fetchall())
