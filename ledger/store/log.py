"""The log in PostgreSQL: append a planned batch, read entries, build proofs.

Every function takes an open connection; transactions are explicit.  The
decisions (what is accepted, which seq, which Merkle nodes) come from the pure
core; this module only loads the state those decisions need and writes them.
Driver errors are translated to StorageUnavailable at the public functions.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from ledger.core import merkle
from ledger.core.admission import (
    DEFAULT_LIMITS,
    BatchPlan,
    Checked,
    Limits,
    ProducerState,
    Refused,
    TailState,
    chain_lookups,
    heads_to_plan,
    plan_batch,
)
from ledger.core.envelope import split_stored
from ledger.core.errors import InvalidArgument, LedgerCorrupted, MalformedEnvelope
from ledger.core.frontier import append_leaves, frontier_root
from ledger.core.keyring import KeyRecord, KeyRegistry, root_key
from ledger.db import translate_errors

LOG_CHANNEL = "provault_log"
"""The PostgreSQL channel every append NOTIFYs, at commit, with the new log size as payload."""


class RegistryCache:
    """The key registry as of a log size; reloaded when another writer moved the log."""

    def __init__(self) -> None:
        self.size = -1
        self.registry = KeyRegistry()

    def current(self, conn: psycopg.Connection, size: int) -> KeyRegistry:
        if size != self.size:
            self.registry = load_registry(conn)
            self.size = size
        return self.registry


@translate_errors
def load_registry(conn: psycopg.Connection) -> KeyRegistry:
    records = [
        root_key(bytes(pk), name)
        for pk, name in conn.execute("SELECT public_key, name FROM ledger.trust_root WHERE purpose = 'admin'")
    ]
    rows = conn.execute(
        "SELECT keyid, public_key, role, identity, kinds, producers, registered_seq,"
        " revoked_seq, revoked_from, revoked_reason FROM ledger.keys"
    )
    for r in rows:
        records.append(
            KeyRecord(
                keyid=r[0],
                public_key=bytes(r[1]),
                role=r[2],
                identity=r[3],
                kinds=tuple(r[4]),
                producers=tuple(r[5]),
                registered_seq=r[6],
                revoked_seq=r[7],
                revoked_from=r[8],
                revoked_reason=r[9],
            )
        )
    return KeyRegistry(records)


# --- append -----------------------------------------------------------------------


@translate_errors
def append_batch(
    conn: psycopg.Connection,
    items: Sequence[Checked | Refused],
    *,
    source: str,
    registry_cache: RegistryCache,
    stream_seqs: Sequence[int | None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> BatchPlan:
    """Plan and write one batch in one transaction; return the plan (one outcome per item)."""
    now = datetime.now(UTC)
    with conn.transaction():
        size, frontier = conn.execute("SELECT size, frontier FROM ledger.log_state FOR UPDATE").fetchone()
        frontier = [bytes(h) for h in frontier]
        tail = _load_tail(conn, items, size, registry_cache)
        try:
            plan = plan_batch(items, tail, now=now, limits=limits)
        except BaseException:
            registry_cache.size = -1  # the registry may be half-applied: reload next time
            raise
        try:
            _write(conn, plan, size, frontier, source=source, items=items, stream_seqs=stream_seqs)
        except BaseException:
            registry_cache.size = -1
            raise
        registry_cache.size = size + len(plan.accepted)
    return plan


def _load_tail(
    conn: psycopg.Connection, items: Sequence[Checked | Refused], size: int, cache: RegistryCache
) -> TailState:
    heads = heads_to_plan(items)
    ids = [uuid.UUID(h.id) for h in heads]
    existing = {
        str(eid): (seq, bytes(leaf))
        for eid, seq, leaf in conn.execute(
            "SELECT event_id, seq, leaf_hash FROM ledger.entries WHERE event_id = ANY(%s)", (ids,)
        )
    }
    pids = sorted({h.producer.id for h in heads})
    producers = {
        r[0]: ProducerState(last_seq=r[1], last_hash=r[2], entries=r[3], first_log_seq=r[4], last_log_seq=r[5])
        for r in conn.execute(
            "SELECT producer_id, last_seq, last_hash, entries, first_log_seq, last_log_seq"
            " FROM ledger.producers WHERE producer_id = ANY(%s) ORDER BY producer_id FOR UPDATE",
            (pids,),
        )
    }
    wanted = chain_lookups(heads, producers)
    chain: dict[tuple[str, int], str] = {}
    if wanted:
        ps, ss = zip(*sorted(wanted), strict=True)
        for pid, pseq, h in conn.execute(
            "SELECT e.producer_id, e.producer_seq, e.payload_hash FROM ledger.entries e"
            " JOIN unnest(%s::text[], %s::bigint[]) AS w(p, s) ON e.producer_id = w.p AND e.producer_seq = w.s",
            (list(ps), list(ss)),
        ):
            chain[(pid, pseq)] = h
    return TailState(size=size, existing=existing, producers=producers, chain=chain, registry=cache.current(conn, size))


def _write(
    conn: psycopg.Connection,
    plan: BatchPlan,
    size: int,
    frontier: list[bytes],
    *,
    source: str,
    items: Sequence[Checked | Refused],
    stream_seqs: Sequence[int | None] | None,
) -> None:
    if plan.accepted:
        _write_entries(conn, plan, source)
        new_frontier, nodes = append_leaves(size, frontier, [a.item.leaf_hash for a in plan.accepted])
        with conn.cursor().copy("COPY ledger.merkle_nodes (level, idx, hash) FROM STDIN") as cp:
            for n in nodes:
                cp.write_row((n.level, n.index, n.hash))
        conn.execute("UPDATE ledger.log_state SET size = %s, frontier = %s", (size + len(plan.accepted), new_frontier))
        # delivered at commit: readers that LISTEN (the projector) wake now instead of at their next poll
        conn.execute("SELECT pg_notify(%s, %s)", (LOG_CHANNEL, str(size + len(plan.accepted))))
    _write_producers(conn, plan)
    _write_keys(conn, plan.key_changes)
    _write_rejections(conn, plan, source, items, stream_seqs)


def _write_entries(conn: psycopg.Connection, plan: BatchPlan, source: str) -> None:
    with conn.cursor().copy(
        "COPY ledger.entries (seq, event_id, keyid, producer_id, producer_seq, kind, event_time,"
        " payload, signatures, envelope, leaf_hash, payload_hash, source) FROM STDIN"
    ) as cp:
        for a in plan.accepted:
            ev = a.item.event
            payload, signatures, envelope = _stored_form(a.item.raw)
            cp.write_row(
                (
                    a.seq,
                    ev.id,
                    a.keyid,
                    ev.producer.id,
                    ev.producer.seq,
                    ev.kind,
                    ev.time,
                    payload,
                    signatures,
                    envelope,
                    a.item.leaf_hash,
                    a.item.chain_hash,
                    source,
                )
            )


def _stored_form(raw: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(payload, signatures, None) for a canonical envelope; (None, None, raw) for one that is not (docs/ledger.md)."""
    try:
        payload, signatures = split_stored(raw)
    except MalformedEnvelope:  # admitted under rules that did not require the canonical form
        return None, None, raw
    return payload, signatures, None


def _write_producers(conn: psycopg.Connection, plan: BatchPlan) -> None:
    if plan.producers:
        conn.cursor().executemany(
            "INSERT INTO ledger.producers (producer_id, last_seq, last_hash, entries, first_log_seq, last_log_seq)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (producer_id) DO UPDATE SET"
            " last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash, entries = EXCLUDED.entries,"
            " last_log_seq = EXCLUDED.last_log_seq",
            [
                (p, s.last_seq, s.last_hash, s.entries, s.first_log_seq, s.last_log_seq)
                for p, s in plan.producers.items()
            ],
        )
    if plan.anomalies:
        conn.cursor().executemany(
            "INSERT INTO ledger.producer_anomalies (producer_id, kind, expected_seq, found_seq, event_id, log_seq, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (a.producer_id, a.kind, a.expected_seq, a.found_seq, a.event_id, a.log_seq, a.detail)
                for a in plan.anomalies
            ],
        )


def _write_keys(conn: psycopg.Connection, changes: Iterable[KeyRecord]) -> None:
    for k in changes:
        changed = k.revoked_seq if k.revoked_seq is not None else k.registered_seq
        conn.execute(
            "INSERT INTO ledger.keys (keyid, public_key, role, identity, kinds, producers, registered_seq,"
            " revoked_seq, revoked_from, revoked_reason, changed_seq) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT (keyid) DO UPDATE SET revoked_seq = EXCLUDED.revoked_seq,"
            " revoked_from = EXCLUDED.revoked_from, revoked_reason = EXCLUDED.revoked_reason,"
            " changed_seq = EXCLUDED.changed_seq",
            (
                k.keyid,
                k.public_key,
                k.role,
                Jsonb(dict(k.identity)),
                list(k.kinds),
                list(k.producers),
                k.registered_seq,
                k.revoked_seq,
                k.revoked_from,
                k.revoked_reason,
                changed,
            ),
        )


def _write_rejections(
    conn: psycopg.Connection,
    plan: BatchPlan,
    source: str,
    items: Sequence[Checked | Refused],
    stream_seqs: Sequence[int | None] | None,
) -> None:
    seqs = list(stream_seqs) if stream_seqs is not None else [None] * len(items)
    rows = [
        (
            source,
            sseq,
            _storable(r.event_id),
            _storable(r.keyid),
            _storable(r.producer_id),
            r.reason,
            _storable(r.message),
            len(r.raw),
            hashlib.sha256(r.raw).digest(),
            r.raw,
        )
        for r, sseq in zip(plan.outcomes, seqs, strict=True)
        if isinstance(r, Refused)
    ]
    if not rows:
        return
    conn.cursor().executemany(
        "INSERT INTO ledger.rejections (source, stream_seq, event_id, keyid, producer_id, reason, message,"
        " raw_size, raw_sha256, raw) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (stream_seq) WHERE source = 'nats' DO NOTHING",
        rows,
    )


def _storable(text: str | None) -> str | None:
    """Text PostgreSQL can hold: a NUL (which an attacker may put in a quoted value) written as \\x00."""
    return text.replace("\x00", "\\x00") if text else text


# --- reads --------------------------------------------------------------------------


@translate_errors
def log_size(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT size FROM ledger.log_state").fetchone()[0])


@translate_errors
def current_root(conn: psycopg.Connection) -> tuple[int, bytes]:
    size, frontier = conn.execute("SELECT size, frontier FROM ledger.log_state").fetchone()
    return int(size), frontier_root(int(size), [bytes(h) for h in frontier])


def _fetch_nodes(conn: psycopg.Connection, wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    if not wanted:
        return {}
    levels, idxs = zip(*wanted, strict=True)
    rows = conn.execute(
        "SELECT n.level, n.idx, n.hash FROM ledger.merkle_nodes n"
        " JOIN unnest(%s::smallint[], %s::bigint[]) AS w(l, i) ON n.level = w.l AND n.idx = w.i",
        (list(levels), list(idxs)),
    )
    found = {(lv, ix): bytes(h) for lv, ix, h in rows}
    missing = [w for w in wanted if w not in found]
    if missing:
        raise LedgerCorrupted(
            f"Merkle nodes {missing[:3]} are missing from storage",
            hint="the node table is incomplete: run `provault verify` to locate the damage",
        )
    return found


def _range_hashes(conn: psycopg.Connection, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    parts = [merkle.perfect_subtrees(s, e) for s, e in ranges]
    nodes = _fetch_nodes(conn, sorted({n for p in parts for n in p}))
    return [merkle.fold_subtrees([nodes[n] for n in p]) for p in parts]


def _check_size(conn: psycopg.Connection, tree_size: int) -> None:
    size = log_size(conn)
    if not 0 < tree_size <= size:
        raise InvalidArgument(f"tree size {tree_size} is out of range: the log has {size} entries (sizes 1..{size})")


@translate_errors
def root_at(conn: psycopg.Connection, tree_size: int) -> bytes:
    if tree_size == 0:
        return merkle.root_hash([])
    _check_size(conn, tree_size)
    return _range_hashes(conn, [(0, tree_size)])[0]


@translate_errors
def inclusion_proof(conn: psycopg.Connection, index: int, tree_size: int) -> list[bytes]:
    _check_size(conn, tree_size)
    if not 0 <= index < tree_size:
        raise InvalidArgument(f"leaf index {index} is out of range for tree size {tree_size}")
    return _range_hashes(conn, merkle.inclusion_proof_ranges(index, tree_size))


@translate_errors
def consistency_proof(conn: psycopg.Connection, old_size: int, new_size: int) -> list[bytes]:
    _check_size(conn, new_size)
    if not 0 < old_size <= new_size:
        raise InvalidArgument(f"old size {old_size} must be between 1 and the new size {new_size}")
    return _range_hashes(conn, merkle.consistency_proof_ranges(old_size, new_size))
