"""``provault verify``: an independent audit of the ledger database.

The audit trusts nothing the database derived; it trusts only the trust root
(``ledger.trust_root``: admin keys and the checkpoint key, or a checkpoint key
the auditor brings) and re-derives everything else from the stored envelope
bytes, in seq order:

1. seqs run 0, 1, 2, ... without gaps and their count is ``log_state.size``;
2. every stored leaf hash is SHA-256(0x00 || the stored envelope bytes);
3. every entry passes the stateless admission checks again (envelope, payload
   type, event contract, signature) against the key registry *as it stood at
   that seq* -- rebuilt by replaying key.registered / key.revoked entries from
   the trust root -- and is authorised by it; the event id, keyid, producer,
   kind, time and payload-hash columns agree with the signed content;
4. every stored Merkle node equals the node recomputed from the envelopes,
   none is missing, none lies beyond the log; ``log_state.frontier`` equals
   the recomputed frontier;
5. every stored checkpoint is a signed note from the checkpoint key, names the
   log's origin, and signs the recomputed root at its size; consecutive
   checkpoints are linked by a consistency proof built from the stored nodes
   (step 4 has compared each of those nodes to the recomputed tree, so the
   proof is the recomputed tree's proof whenever step 4 found nothing);
6. the derived key table ``ledger.keys`` equals the replayed registry.

Memory stays flat as the log grows: entries and the nodes they complete are
read in chunks of ``chunk`` rows by key range, and only the Merkle frontier
(one hash per set bit of the size) is carried between chunks.  The key
registry is the one state kept whole (it is what authorises entries).

Everything runs in one REPEATABLE READ, READ ONLY transaction, so a ledger
that keeps appending meanwhile is audited as one consistent snapshot.

:func:`verify_against_checkpoint` is the other half of an audit: it proves
that the log today extends a checkpoint the auditor saved earlier, which
catches a rewrite even by someone who holds the checkpoint key and rebuilt
every table consistently.

Decisions are small pure functions (``*_problem(s)``); the ``_Auditor`` only
reads rows and feeds them in.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg.pq import TransactionStatus

from ledger.core import merkle
from ledger.core.admission import Checked, Limits, Refused, check_submission
from ledger.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint, parse_checkpoint, parse_note
from ledger.core.errors import (
    CannotVerify,
    DecodeError,
    ProvaultError,
    SignatureInvalid,
    UnknownKey,
    VerificationError,
    VerificationFailed,
    expected_found,
)
from ledger.core.frontier import Node, append_leaves, frontier_root
from ledger.core.keyring import ADMIN_ONLY_KINDS, KeyRecord, KeyRegistry, root_key
from ledger.core.keys import Ed25519Verifier, keyid_of
from ledger.store import checkpoints as store_checkpoints
from ledger.store import log as store_log
from ledger.store.log import translate_errors

CHUNK = 500
"""Entries read per query (and the Merkle nodes they complete)."""
MAX_DETAILS = 20
"""Problems kept in full; later ones are only counted."""
MAX_LEVEL = 64

Progress = Callable[[int, int], None]
"""``progress(entries_done, entries_expected)``, called after every chunk."""

# The audit re-checks what admission checked, minus policy that was decided
# at arrival and may have been configured differently then: size limits and
# the producer-clock skew (``now`` lies beyond every representable time).
_AUDIT_LIMITS = Limits(max_envelope_bytes=1 << 62, max_payload_bytes=1 << 62, max_clock_skew=timedelta(0))
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)

KEY_FROM_TRUST_ROOT = "trust_root"
"""The checkpoint key came from ledger.trust_root (the database)."""
KEY_GIVEN = "given"
"""The checkpoint key was given by the auditor (not read from the database)."""


# --- errors of verify_against_checkpoint ------------------------------------------


class OriginMismatch(VerificationFailed):
    reason = "origin_mismatch"


class CheckpointBeyondLog(VerificationFailed):
    reason = "checkpoint_beyond_log"


class StoredTreeDamaged(VerificationFailed):
    reason = "stored_tree_damaged"


class LogRewritten(VerificationFailed):
    reason = "log_rewritten"


# --- results ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One divergence between what is stored and what the envelopes prove."""

    kind: str
    """Stable name: seq, leaf_hash, entry_refused, authorization, key_event, column,
    merkle_node, merkle_node_missing, merkle_node_extra, checkpoint_malformed,
    checkpoint_origin, checkpoint_signature, checkpoint_row, checkpoint_root,
    checkpoint_consistency, checkpoint_beyond_log, log_state_size,
    log_state_frontier, trust_root, key_table."""
    where: str
    """``seq 12``, ``merkle node (level 1, idx 3)``, ``checkpoint at size 7``, ..."""
    message: str
    expected: str | None = None
    found: str | None = None
    seq: int | None = None
    tree_size: int | None = None
    node: tuple[int, int] | None = None

    def describe(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.expected is not None or self.found is not None:
            text += f": expected {self.expected}, found {self.found}"
        return text

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "where": self.where, "message": self.message, "text": self.describe()}
        for name in ("expected", "found", "seq", "tree_size"):
            if (value := getattr(self, name)) is not None:
                doc[name] = value
        if self.node is not None:
            doc["node"] = {"level": self.node[0], "idx": self.node[1]}
        return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    origin: str | None
    log_size: int
    """``ledger.log_state.size`` as stored."""
    entries_checked: int
    nodes_checked: int
    checkpoints_checked: int
    root_hash: bytes
    """Root recomputed from every stored envelope."""
    key_source: str
    """Where the checkpoint key came from: ``trust_root`` or ``given``."""
    problem_count: int
    problems: tuple[Problem, ...]
    """The first :data:`MAX_DETAILS` problems, in the order they were found."""
    problem_kinds: tuple[tuple[str, int], ...] = ()
    """(kind, count) of every problem found, most frequent first."""

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_json(self) -> dict[str, Any]:
        first = self.first_problem
        return {
            "ok": self.ok,
            "origin": self.origin,
            "log_size": self.log_size,
            "entries_checked": self.entries_checked,
            "nodes_checked": self.nodes_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "root_hash": self.root_hash.hex(),
            "checkpoint_key_source": self.key_source,
            "problem_count": self.problem_count,
            "problem_kinds": dict(self.problem_kinds),
            "first_problem": first.to_json() if first else None,
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointProof:
    """A saved checkpoint proven consistent with the ledger's latest checkpoint."""

    saved: Checkpoint
    latest: Checkpoint
    proof: tuple[bytes, ...]
    key_source: str
    key: str
    """The verifier key (C2SP vkey) both checkpoints verified with."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "origin": self.saved.origin,
            "saved": {"size": self.saved.size, "root_hash": self.saved.root_hash.hex()},
            "latest": {"size": self.latest.size, "root_hash": self.latest.root_hash.hex()},
            "proof": [h.hex() for h in self.proof],
            "key_source": self.key_source,
            "key": self.key,
        }


# --- rows -------------------------------------------------------------------------


class EntryRow(NamedTuple):
    seq: int
    event_id: str
    keyid: str
    producer_id: str
    producer_seq: int
    kind: str
    event_time: datetime
    envelope: bytes
    leaf_hash: bytes
    payload_hash: str
    received_at: datetime


class CheckpointRow(NamedTuple):
    tree_size: int
    root_hash: bytes
    note: str


_ENTRY_SQL = (
    "SELECT seq, event_id::text, keyid, producer_id, producer_seq, kind, event_time, envelope, leaf_hash,"
    " payload_hash, received_at FROM ledger.entries WHERE seq > %s ORDER BY seq LIMIT %s"
)
_NODES_SQL = (
    "SELECT n.level, n.idx, n.hash FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[]) AS w(l, lo, hi)"
    " JOIN ledger.merkle_nodes n ON n.level = w.l AND n.idx >= w.lo AND n.idx < w.hi"
)
_BEYOND_SQL = (
    "FROM unnest(%s::smallint[], %s::bigint[]) AS w(l, lo) JOIN ledger.merkle_nodes n ON n.level = w.l AND n.idx >= w.lo"
)
_CHECKPOINTS_SQL = "SELECT tree_size, root_hash, note FROM ledger.checkpoints WHERE tree_size > %s ORDER BY tree_size LIMIT %s"
_KEYS_SQL = (
    "SELECT keyid, public_key, role, identity, kinds, producers, registered_seq, revoked_seq, revoked_from,"
    " revoked_reason FROM ledger.keys ORDER BY keyid"
)


# --- pure decisions ---------------------------------------------------------------


def _short(h: bytes) -> str:
    return h.hex()


def at_seq(seq: int, kind: str, message: str, expected: object = None, found: object = None) -> Problem:
    return Problem(
        kind=kind, where=f"seq {seq}", message=message, seq=seq,
        expected=None if expected is None else str(expected), found=None if found is None else str(found),
    )  # fmt: skip


def at_checkpoint(size: int, kind: str, message: str, expected: object = None, found: object = None) -> Problem:
    return Problem(
        kind=kind, where=f"checkpoint at size {size}", message=message, tree_size=size,
        expected=None if expected is None else str(expected), found=None if found is None else str(found),
    )  # fmt: skip


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
        seq, "leaf_hash", "leaf hash mismatch: the stored leaf_hash is not SHA-256(0x00 || stored envelope bytes)",
        expected=_short(recomputed), found=_short(stored),
    )  # fmt: skip


def refused_problem(seq: int, refused: Refused) -> Problem:
    """An entry that the stateless admission checks refuse, with the registry as it stood at its seq."""
    kind = "signature" if refused.reason in (SignatureInvalid.reason, UnknownKey.reason) else "entry_refused"
    return at_seq(
        seq, kind,
        f"{refused.reason}: the entry does not verify with the key registry as it stood at seq {seq}: {refused.message}",
    )  # fmt: skip


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


def column_problems(row: EntryRow, checked: Checked, keyid: str) -> list[Problem]:
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


def node_range(start: int, end: int) -> list[tuple[int, int, int]]:
    """(level, lo, hi): the nodes completed by appending leaves ``[start, end)``, idx in [lo, hi)."""
    return [(lv, start >> lv, end >> lv) for lv in range(MAX_LEVEL) if start >> lv < end >> lv]


def node_problems(recomputed: Sequence[Node], stored: dict[tuple[int, int], bytes]) -> Iterator[Problem]:
    """Compare each recomputed node to the stored one (removing it from ``stored``)."""
    for n in recomputed:
        where = f"merkle node (level {n.level}, idx {n.index})"
        got = stored.pop((n.level, n.index), None)
        span = f"leaves [{n.index << n.level}, {(n.index + 1) << n.level})"
        if got is None:
            yield Problem(kind="merkle_node_missing", where=where, node=(n.level, n.index),
                          message=f"the node over {span} is missing from ledger.merkle_nodes",
                          expected=_short(n.hash), found="no row")  # fmt: skip
        elif got != n.hash:
            yield Problem(kind="merkle_node", where=where, node=(n.level, n.index),
                          message=f"merkle node mismatch: the stored hash over {span} is not the one recomputed from the envelopes",
                          expected=_short(n.hash), found=_short(got))  # fmt: skip


def frontier_problems(stored_size: int, stored: Sequence[bytes], size: int, recomputed: Sequence[bytes]) -> list[Problem]:
    if stored_size != size:
        return [Problem(kind="log_state_size", where="ledger.log_state", message="size is not the number of entries",
                        expected=f"{size} (entries found)", found=str(stored_size))]  # fmt: skip
    if list(stored) != list(recomputed):
        return [Problem(kind="log_state_frontier", where="ledger.log_state",
                        message="the stored frontier is not the frontier recomputed from the envelopes",
                        expected=_hashes(recomputed), found=_hashes(stored))]  # fmt: skip
    return []


def open_checkpoint_row(row: CheckpointRow, verifier: NoteVerifier | None, origin: str | None) -> tuple[Checkpoint | None, list[Problem]]:
    """Parse and verify a stored checkpoint note; the checkpoint is returned only when its signature verified."""
    size = row.tree_size
    try:
        body = parse_checkpoint(parse_note(row.note).text)
    except DecodeError as e:
        return None, [at_checkpoint(size, "checkpoint_malformed", f"the stored note is not a signed checkpoint: {e.message}")]
    if origin is not None and body.origin != origin:
        return None, [at_checkpoint(size, "checkpoint_origin", "the checkpoint names another log", expected=repr(origin), found=repr(body.origin))]
    if verifier is None:
        return None, [at_checkpoint(size, "checkpoint_signature", "cannot verify: no checkpoint key is known (ledger.trust_root has none)")]
    try:
        cp = open_checkpoint(row.note, [verifier])
    except (VerificationError, DecodeError) as e:
        return None, [at_checkpoint(size, "checkpoint_signature",
                                    f"the signed note does not verify with checkpoint key {verifier.vkey()}: [{e.reason}] {e.message}")]  # fmt: skip
    problems = []
    if cp.size != size:
        problems.append(at_checkpoint(size, "checkpoint_row", "the tree_size column differs from the signed size", expected=cp.size, found=size))
    if cp.root_hash != row.root_hash:
        problems.append(at_checkpoint(size, "checkpoint_row", "the root_hash column differs from the signed root",
                                      expected=_short(cp.root_hash), found=_short(row.root_hash)))  # fmt: skip
    return cp, problems


def checkpoint_root_problem(cp: Checkpoint, size: int, recomputed_root: bytes) -> Problem | None:
    if cp.root_hash == recomputed_root:
        return None
    return at_checkpoint(
        size, "checkpoint_root",
        f"checkpoint root mismatch: the signed root is not the root of the first {size} stored envelopes",
        expected=f"{_short(recomputed_root)} (recomputed)", found=f"{_short(cp.root_hash)} (signed)",
    )  # fmt: skip


def key_table_problems(replayed: Sequence[KeyRecord], rows: Sequence[tuple]) -> list[Problem]:
    """ledger.keys must hold exactly the log-registered keys of the replayed registry."""
    want = {r.keyid: r for r in replayed if r.registered_seq is not None}
    problems: list[Problem] = []
    seen: set[str] = set()
    for row in rows:
        keyid = row[0]
        seen.add(keyid)
        rec = want.get(keyid)
        if rec is None:
            problems.append(Problem(kind="key_table", where=f"key {keyid}", message="ledger.keys holds a key no key.registered entry registers"))
            continue
        got = (bytes(row[1]), row[2], dict(row[3]), tuple(row[4]), tuple(row[5]), row[6], row[7], row[8], row[9])
        exp = (rec.public_key, rec.role, dict(rec.identity), rec.kinds, rec.producers, rec.registered_seq,
               rec.revoked_seq, rec.revoked_from, rec.revoked_reason)  # fmt: skip
        for name, e, g in zip(_KEY_FIELDS, exp, got, strict=True):
            if e != g:
                problems.append(Problem(kind="key_table", where=f"key {keyid}", message=f"ledger.keys.{name} differs from the replayed log",
                                        expected=_show(e), found=_show(g)))  # fmt: skip
    for keyid in sorted(set(want) - seen):
        problems.append(Problem(kind="key_table", where=f"key {keyid}", message=f"registered at seq {want[keyid].registered_seq} but missing from ledger.keys"))
    return problems


_KEY_FIELDS = ("public_key", "role", "identity", "kinds", "producers", "registered_seq", "revoked_seq", "revoked_from", "revoked_reason")


def _hashes(hashes: Sequence[bytes]) -> str:
    return "[" + ", ".join(h.hex() for h in hashes) + "]"


def _show(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


# --- the audit ---------------------------------------------------------------------


@dataclass
class _Findings:
    limit: int = MAX_DETAILS
    count: int = 0
    details: list[Problem] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, problem: Problem | None) -> None:
        if problem is None:
            return
        self.count += 1
        self.kinds[problem.kind] += 1
        if len(self.details) < self.limit:
            self.details.append(problem)

    def extend(self, problems: Iterator[Problem] | Sequence[Problem]) -> None:
        for p in problems:
            self.add(p)

    def count_more(self, kind: str, n: int) -> None:
        """Problems counted but not described (past the detail limit)."""
        self.count += n
        self.kinds[kind] += n


@dataclass(frozen=True, slots=True, kw_only=True)
class _Trust:
    admins: tuple[KeyRecord, ...]
    checkpoint_key: NoteVerifier | None
    origin: str | None
    key_source: str
    problems: tuple[Problem, ...]


def _trust_problem(message: str, expected: object = None, found: object = None) -> Problem:
    return Problem(kind="trust_root", where="ledger.trust_root", message=message,
                   expected=None if expected is None else str(expected), found=None if found is None else str(found))  # fmt: skip


def load_trust(conn: psycopg.Connection, given: NoteVerifier | None = None) -> _Trust:
    """Admin keys and the checkpoint key; a key the auditor gives replaces the stored one."""
    rows = conn.execute("SELECT keyid, public_key, purpose, name FROM ledger.trust_root ORDER BY added_at, keyid").fetchall()
    problems: list[Problem] = []
    for keyid, pk, _, name in rows:
        if keyid_of(bytes(pk)) != keyid:
            problems.append(_trust_problem(f"keyid of {name!r} is not the SHA-256 of its public key", keyid_of(bytes(pk)), keyid))
    admins = tuple(root_key(bytes(pk), name) for _, pk, purpose, name in rows if purpose == "admin")
    stored = [NoteVerifier(name=name, verifier=Ed25519Verifier(bytes(pk))) for _, pk, purpose, name in rows if purpose == "checkpoint"]
    if len(stored) > 1:
        problems.append(_trust_problem("more than one checkpoint key: a log has one checkpoint identity",
                                       "1 key", ", ".join(v.vkey() for v in stored)))  # fmt: skip
    if given is not None:
        if stored and stored[0].vkey() != given.vkey():
            problems.append(_trust_problem("the checkpoint key stored in the database is not the key you gave",
                                           given.vkey(), stored[0].vkey()))  # fmt: skip
        return _Trust(admins=admins, checkpoint_key=given, origin=given.name, key_source=KEY_GIVEN, problems=tuple(problems))
    if not stored:
        problems.append(_trust_problem("no checkpoint key: checkpoints cannot be verified", "1 key", "none"))
    key = stored[0] if stored else None
    return _Trust(admins=admins, checkpoint_key=key, origin=key.name if key else None,
                  key_source=KEY_FROM_TRUST_ROOT, problems=tuple(problems))  # fmt: skip


class _CheckpointCursor:
    """Stored checkpoints in tree-size order, read a chunk at a time."""

    def __init__(self, conn: psycopg.Connection, chunk: int) -> None:
        self.conn, self.chunk = conn, chunk
        self.after = -1
        self.buffer: list[CheckpointRow] = []

    def peek(self) -> CheckpointRow | None:
        if not self.buffer:
            rows = self.conn.execute(_CHECKPOINTS_SQL, (self.after, self.chunk)).fetchall()
            self.buffer = [CheckpointRow(int(s), bytes(r), n) for s, r, n in reversed(rows)]
            if rows:
                self.after = rows[-1][0]
        return self.buffer[-1] if self.buffer else None

    def pop(self) -> CheckpointRow:
        return self.buffer.pop()


class _Auditor:
    def __init__(self, conn: psycopg.Connection, trust: _Trust, chunk: int, progress: Progress | None) -> None:
        self.conn, self.trust, self.chunk, self.progress = conn, trust, chunk, progress
        self.findings = _Findings()
        self.findings.extend(trust.problems)
        self.registry = KeyRegistry(trust.admins)
        self.public_keys = self.registry.public_keys()
        self.size = 0
        self.frontier: list[bytes] = []
        self.nodes_checked = 0
        self.checkpoints = _CheckpointCursor(conn, chunk)
        self.checkpoints_checked = 0
        self.last_checkpoint: Checkpoint | None = None

    def run(self, expected_size: int) -> None:
        self._checkpoints_at(0)
        after = -1
        while rows := self.conn.execute(_ENTRY_SQL, (after, self.chunk)).fetchall():
            self._chunk([EntryRow(*r[:7], bytes(r[7]), bytes(r[8]), *r[9:]) for r in rows])
            after = rows[-1][0]
            if self.progress:
                self.progress(self.size, expected_size)
        self._checkpoints_beyond()
        self._nodes_beyond()

    # -- entries and nodes --
    def _chunk(self, rows: list[EntryRow]) -> None:
        start = self.size
        stored = self._stored_nodes(start, start + len(rows))
        pending: list[bytes] = []
        for row in rows:
            pending.append(self._entry(self.size + len(pending), row))
            cp = self.checkpoints.peek()
            if cp is not None and cp.tree_size == self.size + len(pending):
                self._append(pending, stored)
                pending = []
                self._checkpoints_at(self.size)
        self._append(pending, stored)

    def _stored_nodes(self, start: int, end: int) -> dict[tuple[int, int], bytes]:
        levels, los, his = zip(*node_range(start, end), strict=True)
        rows = self.conn.execute(_NODES_SQL, (list(levels), list(los), list(his)))
        return {(lv, ix): bytes(h) for lv, ix, h in rows}

    def _append(self, leaves: list[bytes], stored: dict[tuple[int, int], bytes]) -> None:
        if not leaves:
            return
        self.frontier, nodes = append_leaves(self.size, self.frontier, leaves)
        self.size += len(leaves)
        self.nodes_checked += len(nodes)
        self.findings.extend(node_problems(nodes, stored))

    def _entry(self, position: int, row: EntryRow) -> bytes:
        self.findings.add(seq_problem(position, row.seq))
        leaf = merkle.leaf_hash(row.envelope)
        self.findings.add(leaf_problem(row.seq, leaf, row.leaf_hash))
        self._verify(row)
        return leaf

    def _verify(self, row: EntryRow) -> None:
        checked = check_submission(row.envelope, self.public_keys, now=_FAR_FUTURE, limits=_AUDIT_LIMITS)
        if isinstance(checked, Refused):
            self.findings.add(refused_problem(row.seq, checked))
            return
        try:
            rec = authorize(self.registry, checked)
        except ProvaultError as e:
            self.findings.add(at_seq(row.seq, "authorization", f"{e.reason}: with the key registry as it stood at seq {row.seq}: {e.message}"))
            return
        self.findings.extend(column_problems(row, checked, rec.keyid))
        if checked.event.kind in ADMIN_ONLY_KINDS:
            try:
                self.registry.apply(checked.event, row.seq)
            except ProvaultError as e:
                self.findings.add(at_seq(row.seq, "key_event", f"{e.reason}: the key event cannot be applied: {e.message}"))
            self.public_keys = self.registry.public_keys()

    def _nodes_beyond(self) -> None:
        """Stored nodes that no entry completes."""
        levels = list(range(MAX_LEVEL))
        los = [self.size >> lv for lv in levels]
        count = self.conn.execute("SELECT count(*) " + _BEYOND_SQL, (levels, los)).fetchone()[0]  # type: ignore[operator]
        if not count:
            return
        shown = self.conn.execute(
            "SELECT n.level, n.idx " + _BEYOND_SQL + " ORDER BY n.level, n.idx LIMIT %s",  # type: ignore[operator]
            (levels, los, MAX_DETAILS),
        ).fetchall()
        for lv, ix in shown:
            self.findings.add(Problem(kind="merkle_node_extra", where=f"merkle node (level {lv}, idx {ix})", node=(lv, ix),
                                      message=f"the node lies beyond the log of {self.size} entries: no entry completes it"))  # fmt: skip
        self.findings.count_more("merkle_node_extra", count - len(shown))

    # -- checkpoints --
    def _checkpoints_at(self, size: int) -> None:
        cp = self.checkpoints.peek()
        if cp is None or cp.tree_size != size:
            return
        self.checkpoints.pop()
        self.checkpoints_checked += 1
        opened, problems = open_checkpoint_row(cp, self.trust.checkpoint_key, self.trust.origin)
        self.findings.extend(problems)
        if opened is None:
            return
        self.findings.add(checkpoint_root_problem(opened, size, frontier_root(self.size, self.frontier)))
        self._consistency(opened)
        self.last_checkpoint = opened

    def _consistency(self, cp: Checkpoint) -> None:
        """The stored tree proves that this checkpoint extends the previous one."""
        prev = self.last_checkpoint
        if prev is None or prev.size == 0:
            return
        try:
            proof = store_log.consistency_proof(self.conn, prev.size, cp.size)
            merkle.verify_consistency(prev.size, cp.size, prev.root_hash, cp.root_hash, proof)
        except ProvaultError as e:
            self.findings.add(at_checkpoint(
                cp.size, "checkpoint_consistency",
                f"no valid consistency proof from the previous checkpoint (size {prev.size}) out of the stored nodes: [{e.reason}] {e.message}",
            ))  # fmt: skip

    def _checkpoints_beyond(self) -> None:
        while (cp := self.checkpoints.peek()) is not None:
            self.checkpoints.pop()
            self.checkpoints_checked += 1
            self.findings.add(at_checkpoint(cp.tree_size, "checkpoint_beyond_log", "a checkpoint for more entries than the log holds",
                                            expected=f"at most {self.size} entries", found=f"{cp.tree_size}"))  # fmt: skip

    # -- derived state --
    def finish(self, stored_size: int, stored_frontier: list[bytes]) -> None:
        self.findings.extend(frontier_problems(stored_size, stored_frontier, self.size, self.frontier))
        rows = self.conn.execute(_KEYS_SQL).fetchall()
        self.findings.extend(key_table_problems(self.registry.records(), rows))


@contextlib.contextmanager
def _snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """One REPEATABLE READ, READ ONLY transaction, unless the caller already holds one."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield
        return
    saved = (conn.isolation_level, conn.read_only)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction():
            yield
    finally:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.isolation_level, conn.read_only = saved


@translate_errors
def audit(
    conn: psycopg.Connection,
    *,
    progress: Progress | None = None,
    checkpoint_key: NoteVerifier | None = None,
    chunk: int = CHUNK,
) -> AuditReport:
    """Re-derive the whole log from its envelopes and the trust root; report every divergence.

    ``checkpoint_key`` replaces the checkpoint key stored in ledger.trust_root
    (an auditor need not trust the database for it).  Never raises for what it
    finds -- findings are in the report -- only for storage errors.
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    with _snapshot(conn):
        stored_size, stored_frontier = conn.execute("SELECT size, frontier FROM ledger.log_state").fetchone()  # type: ignore[misc]
        trust = load_trust(conn, checkpoint_key)
        auditor = _Auditor(conn, trust, chunk, progress)
        auditor.run(int(stored_size))
        auditor.finish(int(stored_size), [bytes(h) for h in stored_frontier])
    f = auditor.findings
    return AuditReport(
        origin=trust.origin, log_size=int(stored_size), entries_checked=auditor.size, nodes_checked=auditor.nodes_checked,
        checkpoints_checked=auditor.checkpoints_checked, root_hash=frontier_root(auditor.size, auditor.frontier),
        key_source=trust.key_source, problem_count=f.count, problems=tuple(f.details),
        problem_kinds=tuple(f.kinds.most_common()),
    )  # fmt: skip


# --- a saved checkpoint against today's log ---------------------------------------------


def _ledger_origin(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT name FROM ledger.trust_root WHERE purpose = 'checkpoint' ORDER BY added_at LIMIT 1").fetchone()
    return row[0] if row else None


def _open_saved(note_text: str, verifier: NoteVerifier, ledger_origin: str | None, source: str) -> Checkpoint:
    """Steps 2-3: the saved note is a checkpoint of this log, signed by its key."""
    try:
        body = parse_checkpoint(parse_note(note_text).text)
    except DecodeError as e:
        raise type(e)(f"the saved checkpoint is not a signed checkpoint note: {e.message}", hint=e.hint) from e
    for origin, whose in ((ledger_origin, "this ledger's"), (verifier.name, "the checkpoint key's")):
        if origin is not None and body.origin != origin:
            raise OriginMismatch(
                expected_found("origin of the saved checkpoint", f"{origin!r} ({whose} origin)", repr(body.origin)),
                hint="the saved checkpoint belongs to another log; compare it with that log",
            )
    try:
        return open_checkpoint(note_text, [verifier])
    except VerificationError as e:
        raise type(e)(
            f"the saved checkpoint (size {body.size}) does not verify with the {_source_text(source)} checkpoint key "
            f"{verifier.vkey()}: {e.message}",
            hint="the saved note was altered, or it was not signed by this log's checkpoint key; it proves nothing",
        ) from e


def _open_latest(conn: psycopg.Connection, verifier: NoteVerifier, saved: Checkpoint, source: str) -> Checkpoint:
    """Step 5: the ledger's newest checkpoint, which must verify with the same key."""
    stored = store_checkpoints.latest(conn)
    if stored is None:
        raise CannotVerify("the ledger holds no checkpoint to compare with", hint="run `provault ledger init` and let the service sign one")
    try:
        latest = open_checkpoint(stored.note, [verifier])
    except (VerificationError, DecodeError) as e:
        raise VerificationFailed(
            f"the ledger's latest checkpoint (size {stored.tree_size}) does not verify with the {_source_text(source)} "
            f"checkpoint key {verifier.vkey()}: [{e.reason}] {e.message}",
            hint="the database's checkpoints were not signed by that key: do not trust this log until this is explained",
        ) from e
    if latest.origin != saved.origin:
        raise OriginMismatch(expected_found("origin of the ledger's latest checkpoint", repr(saved.origin), repr(latest.origin)))
    if latest.size < saved.size:
        raise CannotVerify(
            expected_found("a signed checkpoint at or beyond the saved size", f"size >= {saved.size}", f"latest size {latest.size}"),
            hint="wait for the ledger to sign a newer checkpoint, then verify again",
        )
    return latest


def _prove(conn: psycopg.Connection, saved: Checkpoint, latest: Checkpoint) -> tuple[bytes, ...]:
    """Steps 6-7: the stored tree reproduces the latest root and extends the saved one."""
    if saved.size == 0:
        if saved.root_hash != merkle.EMPTY_ROOT:
            raise LogRewritten(expected_found("root of the saved empty checkpoint", merkle.EMPTY_ROOT.hex(), saved.root_hash.hex()))
        return ()
    stored_root = store_log.root_at(conn, latest.size)
    if stored_root != latest.root_hash:
        raise StoredTreeDamaged(
            expected_found(f"root of the stored Merkle tree at size {latest.size}", f"{latest.root_hash.hex()} (signed)", stored_root.hex()),
            hint="ledger.merkle_nodes does not reproduce the ledger's own latest checkpoint; run `provault verify` to locate the damage",
        )
    proof = store_log.consistency_proof(conn, saved.size, latest.size)
    try:
        merkle.verify_consistency(saved.size, latest.size, saved.root_hash, latest.root_hash, proof)
    except (VerificationError, DecodeError) as e:
        raise LogRewritten(
            f"THE LOG WAS REWRITTEN: the ledger is NOT consistent with your saved checkpoint "
            f"(size {saved.size}, root {saved.root_hash.hex()}); its latest checkpoint (size {latest.size}, "
            f"root {latest.root_hash.hex()}) does not extend it: {e.message}",
            hint="entries that existed when you saved the checkpoint were changed or removed; keep both checkpoints as evidence",
        ) from e
    return tuple(proof)


def _source_text(source: str) -> str:
    return "given" if source == KEY_GIVEN else "stored (ledger.trust_root)"


@translate_errors
def verify_against_checkpoint(conn: psycopg.Connection, note_text: str, *, key: NoteVerifier | None = None) -> CheckpointProof:
    """Prove that today's log extends a checkpoint saved earlier; raise naming the first failure.

    1. the key: ``key`` when the auditor gives one, else the checkpoint key in ledger.trust_root;
    2. the saved note is a checkpoint of this ledger's origin (OriginMismatch);
    3. and verifies with the key (SignatureInvalid / UnknownKey);
    4. the log is at least as long as the saved checkpoint (CheckpointBeyondLog);
    5. the ledger's latest checkpoint verifies with the same key;
    6. the stored tree reproduces the latest checkpoint's root (StoredTreeDamaged);
    7. a consistency proof from the stored tree links the saved root to the latest (LogRewritten).
    """
    with _snapshot(conn):
        if key is None:
            verifier, source = store_checkpoints.checkpoint_verifier(conn), KEY_FROM_TRUST_ROOT
        else:
            verifier, source = key, KEY_GIVEN
        saved = _open_saved(note_text, verifier, _ledger_origin(conn), source)
        size = store_log.log_size(conn)
        if saved.size > size:
            raise CheckpointBeyondLog(
                f"the saved checkpoint is for {saved.size} entries, larger than the log, which holds {size}: "
                "the log was truncated or rolled back since you saved it",
                hint="a log never shrinks; keep the saved checkpoint as evidence",
            )
        latest = _open_latest(conn, verifier, saved, source)
        proof = _prove(conn, saved, latest)
    return CheckpointProof(saved=saved, latest=latest, proof=proof, key_source=source, key=verifier.vkey())


__all__ = [
    "AuditReport",
    "CheckpointBeyondLog",
    "CheckpointProof",
    "LogRewritten",
    "OriginMismatch",
    "Problem",
    "StoredTreeDamaged",
    "audit",
    "verify_against_checkpoint",
]
