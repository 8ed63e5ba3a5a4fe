"""The projector: the log, in seq order, into the PROV tables (DESIGN contract 6).

:func:`project` reads the entries after ``prov.position`` in chunks, maps each
with the pure :mod:`query._mapping` and writes the chunk's rows together with
the new position in one transaction, so readers never see a half-projected
entry and a crash loses nothing.  The position row is locked first, which
serialises concurrent projectors.

An entry the mapping cannot represent (a :class:`~ledger.core.errors.DecodeError`)
is recorded in ``prov.skipped`` with its reason and logged as an error; the
projector moves on.  Anything else (storage down, a bug) fails the chunk,
commits nothing, and the :class:`Projector` service retries it.

:func:`rebuild` truncates the projection (never the ledger) and replays the
log; :func:`checksum` digests every projected table in a canonical order, so a
rebuild can be shown to give identical tables.  Pass connections with no open
transaction (autocommit, as :func:`ledger.db.connect` gives them).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ledger import metrics
from ledger.background import BackgroundService
from ledger.core import fastjson
from ledger.core.errors import DecodeError, InvalidArgument, LedgerCorrupted, ProvaultError
from ledger.db import connect, translate_errors
from ledger.store.entries import StoredEntry, read_entries
from ledger.store.log import LOG_CHANNEL
from ledger.store.migrate import migrate

from ._mapping import EntryRows, changed_attributes, fold_nodes, json_key, map_admitted

logger = logging.getLogger("provault.projector")

PROJECTOR_ROLE = "provault_projector"
PROV_MIGRATIONS = Path(__file__).with_name("migrations")
DEFAULT_BATCH = 1000
MAX_CHUNK_BYTES = 64 << 20
"""A chunk stops early once its envelopes reach this many bytes (large prediction batches)."""

TABLES = ("entries", "skipped", "nodes", "node_versions", "edges", "predictions", "position")
"""The projected tables, in the order :func:`checksum` digests them."""

_UPSERT_NODE = sql.SQL(
    "INSERT INTO prov.nodes AS n (id, iri, node_type, label, kind, attributes, first_seq, last_seq)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
    " node_type = coalesce(n.node_type, EXCLUDED.node_type),"
    " label = coalesce(EXCLUDED.label, n.label),"
    " kind = coalesce(EXCLUDED.kind, n.kind),"
    " attributes = n.attributes || EXCLUDED.attributes,"
    " last_seq = EXCLUDED.last_seq"
)


def migrate_prov(dsn: str) -> list[str]:
    """Apply the projection's migrations (after the ledger's); return the names applied."""
    return migrate(dsn, "prov", PROV_MIGRATIONS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """An entry the projection could not map, and why."""

    seq: int
    reason: str
    message: str


def map_log_entry(entry: StoredEntry) -> EntryRows | Skipped:
    """The rows of one entry, or the reason it is skipped (logged loudly)."""
    try:
        return map_admitted(entry.envelope, entry.seq, event_id=entry.event_id, kind=entry.kind, payload=entry.payload)
    except DecodeError as e:
        logger.error("log entry %d (%s) is not projected: %s [%s]", entry.seq, entry.kind, e.message, e.reason)
        return Skipped(seq=entry.seq, reason=e.reason, message=e.message)


# --- projecting ------------------------------------------------------------------------


@translate_errors
def project(conn: psycopg.Connection, *, batch: int = DEFAULT_BATCH, max_chunks: int | None = None) -> int:
    """Project every entry after the position (at most ``max_chunks`` chunks); return how many."""
    if batch < 1:
        raise InvalidArgument(f"batch: expected at least 1 entry per chunk, found {batch}")
    total, chunks = 0, 0
    while max_chunks is None or chunks < max_chunks:
        n = _project_chunk(conn, batch)
        if n == 0:
            break
        total += n
        chunks += 1
    return total


def _project_chunk(conn: psycopg.Connection, batch: int) -> int:
    with conn.transaction():
        last = conn.execute("SELECT last_seq FROM prov.position FOR UPDATE").fetchone()[0]
        entries = read_entries(conn, after=last, limit=batch, max_bytes=MAX_CHUNK_BYTES)
        if not entries:
            return 0
        _check_contiguous(last, entries)
        mapped = [map_log_entry(e) for e in entries]
        _write(conn, entries, mapped)
        conn.execute("UPDATE prov.position SET last_seq = %s", (entries[-1].seq,))
    return len(entries)


def _check_contiguous(last: int, entries: Sequence[StoredEntry]) -> None:
    for expected, e in enumerate(entries, start=last + 1):
        if e.seq != expected:
            raise LedgerCorrupted(
                f"log entry {expected} is missing: the entry after seq {expected - 1} is seq {e.seq}",
                hint="the log has a hole; run `provault verify` (the projector will not skip a seq)",
            )


def _write(conn: psycopg.Connection, entries: Sequence[StoredEntry], mapped: Sequence[EntryRows | Skipped]) -> None:
    cur = conn.cursor()
    with cur.copy(
        "COPY prov.entries (seq, event_id, kind, keyid, producer_id, producer_seq, event_time, received_at) FROM STDIN"
    ) as cp:
        for e in entries:
            cp.write_row(
                (e.seq, e.event_id, e.kind, e.keyid, e.producer_id, e.producer_seq, e.event_time, e.received_at)
            )
    skipped = [m for m in mapped if isinstance(m, Skipped)]
    if skipped:
        cur.executemany(
            "INSERT INTO prov.skipped (seq, reason, message) VALUES (%s, %s, %s)",
            [(s.seq, s.reason, s.message) for s in skipped],
        )
    rows = [m for m in mapped if isinstance(m, EntryRows)]
    _write_nodes(cur, rows)
    _write_edges(cur, rows)
    _write_predictions(cur, rows)


def _write_nodes(cur: psycopg.Cursor, rows: Sequence[EntryRows]) -> None:
    state = _merged_state(cur, {n.id for r in rows for n in r.nodes})
    changes = fold_nodes(rows).values()
    if changes:
        cur.executemany(
            _UPSERT_NODE,
            [
                (
                    c.id,
                    c.iri,
                    c.node_type,
                    c.label,
                    c.kind,
                    Jsonb(c.attributes, fastjson.dumps),
                    c.first_seq,
                    c.last_seq,
                )
                for c in changes
            ],
        )
    with cur.copy("COPY prov.node_versions (node_id, seq, node_type, attributes) FROM STDIN") as cp:
        for r in rows:
            for n in r.nodes:
                cp.write_row(
                    (n.id, r.seq, n.node_type, Jsonb(changed_attributes(state, n.id, n.attributes), fastjson.dumps))
                )


def _merged_state(cur: psycopg.Cursor, ids: set[str]) -> dict[str, dict[str, str]]:
    """The merged attributes of ``ids`` before this chunk, each value as canonical JSON text."""
    if not ids:
        return {}
    rows = cur.execute("SELECT id, attributes FROM prov.nodes WHERE id = ANY(%s)", (list(ids),))
    return {nid: {k: json_key(v) for k, v in attrs.items()} for nid, attrs in rows}


def _write_edges(cur: psycopg.Cursor, rows: Sequence[EntryRows]) -> None:
    with cur.copy("COPY prov.edges (seq, ordinal, relation, src, dst, stmt_id, origin, attributes) FROM STDIN") as cp:
        for r in rows:
            for e in r.edges:
                cp.write_row(
                    (
                        r.seq,
                        e.ordinal,
                        e.relation,
                        e.src,
                        e.dst,
                        e.stmt_id,
                        e.origin,
                        Jsonb(dict(e.attributes), fastjson.dumps),
                    )
                )


def _jsonb(value: object) -> Jsonb | None:
    return None if value is None else Jsonb(value, fastjson.dumps)


def _write_predictions(cur: psycopg.Cursor, rows: Sequence[EntryRows]) -> None:
    with cur.copy("COPY prov.predictions (id, seq, activity, time, input, output) FROM STDIN") as cp:
        for r in rows:
            for p in r.predictions:
                cp.write_row((p.id, r.seq, p.activity, p.time, _jsonb(p.input), _jsonb(p.output)))


# --- rebuild, checksum, lag ------------------------------------------------------------


@translate_errors
def rebuild(conn: psycopg.Connection, *, batch: int = DEFAULT_BATCH) -> int:
    """Empty the projection (not the ledger) and replay the whole log; return the entries projected.

    The truncation commits with the position reset to -1, so while the
    replay runs readers see a consistent, shorter projection.
    """
    with conn.transaction():
        conn.execute("SELECT last_seq FROM prov.position FOR UPDATE")
        conn.execute(
            "TRUNCATE prov.edges, prov.predictions, prov.node_versions, prov.nodes, prov.skipped, prov.entries"
        )
        conn.execute("UPDATE prov.position SET last_seq = -1")
    return project(conn, batch=batch)


@translate_errors
def checksum(conn: psycopg.Connection) -> str:
    """``sha256:<hex>`` over every projected table, rows in a canonical order.

    Each table's rows are ordered by all their columns (text in the "C"
    collation) and hashed in their text form under fixed output settings, in
    one read-only snapshot; equal checksums mean equal tables.
    """
    h = hashlib.sha256()
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        conn.execute("SET LOCAL extra_float_digits = 3")
        for table in TABLES:
            h.update(f"-- prov.{table}\n".encode())
            for (line,) in conn.cursor().stream(_canonical_select(conn, table)):
                h.update(line.encode())
                h.update(b"\n")
    return "sha256:" + h.hexdigest()


def _canonical_select(conn: psycopg.Connection, table: str) -> sql.Composed:
    columns = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'prov' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not columns:
        raise LedgerCorrupted(f"table prov.{table} is missing", hint="run `provault db migrate`")
    order = [
        sql.SQL('{} COLLATE "C"').format(sql.Identifier(name)) if dtype == "text" else sql.Identifier(name)
        for name, dtype in columns
    ]
    return sql.SQL("SELECT t::text FROM prov.{} AS t ORDER BY {}").format(
        sql.Identifier(table), sql.SQL(", ").join(order)
    )


@translate_errors
def lag(conn: psycopg.Connection) -> tuple[int, int]:
    """(last projected seq, ledger size): caught up when the first is the second minus one."""
    projected, size = conn.execute(
        "SELECT (SELECT last_seq FROM prov.position), (SELECT coalesce(max(seq) + 1, 0) FROM ledger.entries)"
    ).fetchone()
    return int(projected), int(size)


# --- the service ------------------------------------------------------------------------


POSITION = metrics.Gauge("provault_projector_position", "The last log seq projected.")
LAG = metrics.Gauge("provault_projector_lag_entries", "Log entries not projected yet (at the projector's last poll).")
FAILURES = metrics.Counter("provault_projector_failures", "Projection passes that failed (retried with backoff).")

ANALYZE_AFTER = 1000
"""Entries projected (and caught up) before the projector refreshes the statistics the first time."""
_ANALYZED = ("nodes", "node_versions", "edges", "predictions", "entries")


class Projector(BackgroundService):
    """Keeps the projection caught up with the log, in a thread.

    Projects one chunk at a time while entries are waiting; when caught up,
    waits up to ``poll_s`` for the NOTIFY every append sends at commit
    (``ledger.store.log.LOG_CHANNEL``), so it wakes as soon as the log grows.  Failures are
    logged and retried with backoff; the thread does not die of them.
    """

    name = "projector"

    def __init__(
        self,
        dsn: str,
        *,
        batch: int = DEFAULT_BATCH,
        poll_s: float = 0.2,
        role: str = PROJECTOR_ROLE,
        analyze_after: int = ANALYZE_AFTER,
    ) -> None:
        super().__init__()
        self.dsn = dsn
        self.batch = batch
        self.poll_s = poll_s
        self.role = role
        self.analyze_after = analyze_after
        self.projected = 0
        self.analyzed = 0
        """How many times this service refreshed the statistics."""
        self._analyzed_at = 0
        self._lag_read_at = 0.0
        self.last_error: str | None = None

    def _main(self) -> None:
        conn: psycopg.Connection | None = None
        backoff = self.poll_s
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._connect()
                n = project(conn, batch=self.batch, max_chunks=1)
                self.projected += n
                self.last_error = None
                backoff = self.poll_s
                self._export_lag(conn)
                if n == 0:
                    self._analyze_if_grown(conn)
                    self._wait(conn)
            except (ProvaultError, psycopg.Error) as e:
                FAILURES.inc()
                self.last_error = getattr(e, "message", None) or type(e).__name__
                logger.warning("projection failed: %s; retrying in %.1f s", self.last_error, backoff)
                conn = _close(conn)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # a bug must not end the service silently: log it whole and retry
                FAILURES.inc()
                self.last_error = "internal error (see the log)"
                logger.exception("projection failed unexpectedly; retrying in %.1f s", backoff)
                conn = _close(conn)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        _close(conn)

    def _export_lag(self, conn: psycopg.Connection) -> None:
        """The position and lag gauges, read at most once a second."""
        now = time.monotonic()
        if now - self._lag_read_at < 1.0:
            return
        self._lag_read_at = now
        projected, size = lag(conn)
        POSITION.set(projected)
        LAG.set(max(0, size - 1 - projected))

    def _analyze_if_grown(self, conn: psycopg.Connection) -> None:
        """Caught up after projecting at least ``analyze_after`` entries, and at least as many as at the last
        refresh: ANALYZE the projection, so plans fit its size before autovacuum gets there (a doubling rule:
        a few refreshes over a log's life)."""
        grown = self.projected - self._analyzed_at
        if grown < max(self.analyze_after, self._analyzed_at):
            return
        conn.execute("ANALYZE " + ", ".join(f"prov.{t}" for t in _ANALYZED))
        self._analyzed_at = self.projected
        self.analyzed += 1
        logger.info("refreshed the projection's statistics after %d entries", grown)

    def _connect(self) -> psycopg.Connection:
        conn = connect(self.dsn, autocommit=True, role=self.role)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(LOG_CHANNEL)))
        return conn

    def _wait(self, conn: psycopg.Connection) -> None:
        for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
            pass


def _close(conn: psycopg.Connection | None) -> None:
    if conn is not None:
        conn.close()


__all__ = [
    "PROJECTOR_ROLE",
    "PROV_MIGRATIONS",
    "TABLES",
    "Projector",
    "Skipped",
    "checksum",
    "lag",
    "map_log_entry",
    "migrate_prov",
    "project",
    "rebuild",
]
