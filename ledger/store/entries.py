"""The one reader of ``ledger.entries``: the row type and the reads the projector, the audit, bundles, the
ledger service and tests share (tests/store/test_entry_reader.py is its contract)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from ledger.core.envelope import join_stored
from ledger.core.errors import InvalidArgument
from ledger.db import translate_errors


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEntry:
    """One log entry: the exact envelope bytes (joined back from the stored payload and signatures) and the
    columns derived from them on append."""

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
    source: str
    payload: bytes | None = None
    """The payload bytes as stored (None for an entry kept whole): the envelope's, without decoding it again."""


_SELECT = sql.SQL(
    "SELECT seq, event_id::text, keyid, producer_id, producer_seq, kind, event_time, payload, signatures, envelope,"
    " leaf_hash, payload_hash, received_at, source FROM ledger.entries "
)


def _entry(r: Sequence) -> StoredEntry:
    return StoredEntry(
        seq=r[0],
        event_id=r[1],
        keyid=r[2],
        producer_id=r[3],
        producer_seq=r[4],
        kind=r[5],
        event_time=r[6],
        envelope=bytes(r[9]) if r[9] is not None else join_stored(bytes(r[7]), bytes(r[8])),
        payload=bytes(r[7]) if r[7] is not None else None,
        leaf_hash=bytes(r[10]),
        payload_hash=r[11],
        received_at=r[12],
        source=r[13],
    )


@translate_errors
def get_entry(conn: psycopg.Connection, *, seq: int | None = None, event_id: str | None = None) -> StoredEntry | None:
    """The entry at ``seq``, or with ``event_id`` (``InvalidArgument`` when that is not a UUID); None if absent."""
    if seq is not None:
        row = conn.execute(_SELECT + sql.SQL("WHERE seq = %s"), (seq,)).fetchone()
    else:
        try:
            key = uuid.UUID(event_id)
        except (ValueError, TypeError):
            raise InvalidArgument(f"event id: expected a UUID, found {event_id!r:.80}") from None
        row = conn.execute(_SELECT + sql.SQL("WHERE event_id = %s"), (key,)).fetchone()
    return _entry(row) if row else None


@translate_errors
def read_entries(
    conn: psycopg.Connection, *, after: int, limit: int, max_bytes: int | None = None
) -> list[StoredEntry]:
    """Up to ``limit`` entries with seq above ``after``, in seq order.

    With ``max_bytes``, reading stops once the envelopes read add up to it (at least one entry is returned), so a
    chunk of large envelopes stays bounded in memory; the rows come through a server-side cursor (in the caller's
    transaction, or one of its own).
    """
    if limit < 1:
        raise InvalidArgument(f"limit: expected at least 1 entry, found {limit}")
    query = _SELECT + sql.SQL("WHERE seq > %s ORDER BY seq LIMIT %s")
    if max_bytes is None:
        return [_entry(r) for r in conn.execute(query, (after, limit)).fetchall()]
    out: list[StoredEntry] = []
    size = 0
    with conn.transaction(), conn.cursor(name="provault_entry_reader") as cur:
        cur.itersize = min(limit, 100)
        cur.execute(query, (after, limit))
        for r in cur:
            out.append(_entry(r))
            size += len(out[-1].envelope)
            if size >= max_bytes:
                break
    return out


def iter_entries(conn: psycopg.Connection, *, start: int = 0, chunk: int = 2000) -> Iterable[StoredEntry]:
    """All entries from seq ``start`` on, in seq order, read ``chunk`` at a time (bounded memory)."""
    after = start - 1
    while rows := read_entries(conn, after=after, limit=chunk):
        yield from rows
        after = rows[-1].seq


@translate_errors
def entries_at(conn: psycopg.Connection, seqs: Sequence[int]) -> dict[int, StoredEntry]:
    """The entries at ``seqs`` by seq; ``InvalidArgument`` naming the seqs the log does not hold."""
    rows = conn.execute(_SELECT + sql.SQL("WHERE seq = ANY(%s)"), (list(seqs),)).fetchall()
    found = {int(r[0]): _entry(r) for r in rows}
    missing = [s for s in seqs if s not in found]
    if missing:
        raise InvalidArgument(f"no log entries at seqs {missing[:10]}")
    return found


__all__ = ["StoredEntry", "entries_at", "get_entry", "iter_entries", "read_entries"]
