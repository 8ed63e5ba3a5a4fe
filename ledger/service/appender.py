"""The one write path into the log, shared by JetStream ingest and gRPC Append.

An :class:`Appender` owns one write connection (as the least-privileged
``provault_ledger`` role) and the key-registry cache.  Appends from several
threads are serialised by a lock here and, across processes, by the
``log_state`` row lock in the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from ledger import metrics
from ledger.core.admission import BatchPlan, Checked, Limits, Refused, check_submission
from ledger.db import connect
from ledger.store import log

logger = logging.getLogger("provault.ingest")

SERVICE_ROLE = "provault_ledger"


class Appender:
    def __init__(self, dsn: str, *, limits: Limits, role: str | None = SERVICE_ROLE) -> None:
        self.dsn = dsn
        self.limits = limits
        self._role = role
        self._lock = threading.Lock()
        self._conn = connect(dsn, autocommit=True, role=role)
        self._cache = log.RegistryCache()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _ensure_connection(self) -> None:
        if self._conn.closed or self._conn.broken:
            self._conn = connect(self.dsn, autocommit=True, role=self._role)
            self._cache = log.RegistryCache()

    def public_keys(self) -> dict[str, bytes]:
        """A snapshot of the usable public keys, for stateless checks elsewhere."""
        with self._lock:
            self._ensure_connection()
            return self._cache.current(self._conn, log.log_size(self._conn)).public_keys()

    def check(self, raws: Sequence[bytes]) -> list[Checked | Refused]:
        keys = self.public_keys()
        now = datetime.now(UTC)
        return [check_submission(r, keys, now=now, limits=self.limits) for r in raws]

    def append_checked(
        self, items: Sequence[Checked | Refused], *, source: str, stream_seqs: Sequence[int | None] | None = None
    ) -> BatchPlan:
        with self._lock:
            self._ensure_connection()
            started = time.perf_counter()
            plan = log.append_batch(
                self._conn,
                items,
                source=source,
                registry_cache=self._cache,
                stream_seqs=stream_seqs,
                limits=self.limits,
            )
        metrics.record_batch(plan, source=source, seconds=time.perf_counter() - started)
        report(plan)
        return plan

    def append(self, raws: Sequence[bytes], *, source: str) -> BatchPlan:
        """Check and append in the calling thread (the gRPC path)."""
        return self.append_checked(self.check(raws), source=source)


def report(plan: BatchPlan) -> None:
    """One WARNING line per rejection and per producer anomaly of a committed batch, with its ids as fields."""
    for r in plan.refused:
        logger.warning(
            "rejected event %s from %s: %s [%s]",
            r.event_id or "(no id)",
            r.producer_id or "(unknown producer)",
            r.message,
            r.reason,
            extra={"event_id": r.event_id, "producer_id": r.producer_id, "reason": r.reason},
        )
    for a in plan.anomalies:
        logger.warning(
            "producer %s: %s anomaly at seq %d (%s)",
            a.producer_id,
            a.kind,
            a.found_seq,
            a.detail,
            extra={"event_id": a.event_id, "producer_id": a.producer_id, "seq": a.log_seq, "reason": a.kind},
        )
