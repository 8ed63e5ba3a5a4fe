"""Signs a checkpoint every N entries or T seconds while entries arrive.

Polls the log size (cheap: one row) a few times per interval; signs when the
log grew by ``every`` entries since the last checkpoint, or when it grew at
all and the last checkpoint is ``interval_s`` old.  With the defaults a
checkpoint is never more than about one second behind a growing log.
"""

from __future__ import annotations

import logging
import time

from ledger import metrics
from ledger.background import BackgroundService
from ledger.core.errors import ProvaultError
from ledger.core.keys import Ed25519Signer
from ledger.db import connect
from ledger.store import checkpoints, log

from .appender import SERVICE_ROLE

logger = logging.getLogger("provault.checkpointer")


def due(size: int, last_size: int, last_time: float, now: float, *, every: int, interval_s: float) -> bool:
    """Whether to sign now (pure, so the policy is testable without a clock)."""
    grown = size - last_size
    return grown >= every or (grown > 0 and now - last_time >= interval_s)


class Checkpointer(BackgroundService):
    name = "checkpointer"

    def __init__(self, dsn: str, signer: Ed25519Signer, origin: str, *, every: int, interval_s: float) -> None:
        super().__init__()
        self.dsn = dsn
        self.signer = signer
        self.origin = origin
        self.every = every
        self.interval_s = interval_s
        self.signed = 0

    def _main(self) -> None:
        poll = min(0.2, self.interval_s / 4)
        conn = None
        last_size, last_time = -1, 0.0
        while not self._stop.wait(poll):
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connect(self.dsn, autocommit=True, role=SERVICE_ROLE)
                    cp = checkpoints.latest(conn)
                    last_size, last_time = (cp.tree_size, time.monotonic()) if cp else (-1, 0.0)
                    if cp is not None:
                        metrics.CHECKPOINT_SIZE.set(cp.tree_size)
                        metrics.CHECKPOINT_TIME.set(cp.signed_at.timestamp())
                size = log.log_size(conn)
                metrics.LOG_ENTRIES.set(size)
                if due(size, last_size, last_time, time.monotonic(), every=self.every, interval_s=self.interval_s):
                    self._sign(conn)
                    last_size, last_time = size, time.monotonic()
            except ProvaultError as e:
                metrics.CHECKPOINT_FAILURES.inc()
                logger.warning("checkpointing failed: %s; retrying", e.message)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _sign(self, conn) -> None:
        signed = checkpoints.sign_latest(conn, self.signer, self.origin)
        if signed is not None:
            self.signed += 1
            metrics.CHECKPOINT_SIZE.set(signed.tree_size)
            metrics.CHECKPOINT_TIME.set(time.time())
            logger.debug("signed checkpoint %d", signed.tree_size, extra={"tree_size": signed.tree_size})

    def sign_now(self) -> None:
        """Sign the current size immediately (used on shutdown)."""
        with connect(self.dsn, autocommit=True, role=SERVICE_ROLE) as conn:
            self._sign(conn)
