"""Shared pieces of the fault tests: a ledger subprocess we can kill, and the end-of-run checks.

Every fault test ends with :func:`assert_log_intact`: the log holds exactly
the expected events (complete, no duplicate), each producer's events are in
its own order, no producer anomaly was recorded, and an independent audit of
the database passes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from ledger.audit import audit
from ledger.config import Settings
from ledger.core.keys import save_private_key
from ledger.db import connect
from ledger.service.failpoints import ENV as FAILPOINT_ENV
from ledger.store import entries, log
from tests.ledgerkit import Ledger

STOP_TIMEOUT_S = 30.0


class LedgerProcess:
    """``provault ledger serve`` as a child process, its output in a file (a pipe could fill and block it)."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        nats_url: str,
        out: Path,
        *,
        failpoint: str | None = None,
        batch_size: int = 20,
        ack_wait_s: float = 1.0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
        env.update(
            {
                "PROVAULT_POSTGRES_DSN": ledger.dsn,
                "PROVAULT_NATS_URL": nats_url,
                "PROVAULT_NATS_STREAM": settings.nats.stream,
                "PROVAULT_NATS_SUBJECT_PREFIX": settings.nats.subject_prefix,
                "PROVAULT_DATA_DIR": str(settings.data_dir),
                "PROVAULT_GRPC_LEDGER_LISTEN": "127.0.0.1:0",
                "PROVAULT_METRICS_LEDGER_LISTEN": "127.0.0.1:0",
                "PROVAULT_INGEST_BATCH_SIZE": str(batch_size),
                "PROVAULT_INGEST_WORKERS": "1",
                "PROVAULT_INGEST_ACK_WAIT_S": str(ack_wait_s),
                "PROVAULT_INGEST_FETCH_TIMEOUT_S": "0.2",
                # Nothing here calls the gRPC API (it listens on 127.0.0.1:0); spare the tests a tokens file.
                "PROVAULT_DEV_MODE": "true",
            }
        )
        env.update(extra_env or {})
        if failpoint:
            env[FAILPOINT_ENV] = failpoint
        self.out = out
        with open(out, "wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ledger.cli", "ledger", "serve"],
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        try:
            return self.out.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no output)"

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM (a clean stop), SIGKILL if it does not end within STOP_TIMEOUT_S."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            if self.wait(STOP_TIMEOUT_S) is None:
                return self.kill()
        return self.proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def serving(*args, **kw) -> Iterator[LedgerProcess]:
    """A ledger process that is always stopped (by its own handle) when the block ends."""
    lp = LedgerProcess(*args, **kw)
    try:
        yield lp
    finally:
        lp.stop()


def save_checkpoint_key(ledger: Ledger, settings: Settings) -> None:
    save_private_key(ledger.checkpoint_key, settings.checkpoint_key_path)


def wait_until(
    condition, *, timeout: float, what: str, every: float = 0.05, alive: LedgerProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(
                f"the ledger exited with {alive.proc.returncode} while waiting for {what}:\n{alive.output()}"
            )
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def log_size(ledger: Ledger) -> int:
    return log.log_size(ledger.conn)


def producer_order_problems(stored: Iterable[entries.StoredEntry]) -> list[str]:
    """Each producer's entries, in log order, must carry seqs 1, 2, 3, ... (its own order, no gap)."""
    seen: dict[str, int] = defaultdict(int)
    problems = []
    for e in stored:
        if e.producer_seq != seen[e.producer_id] + 1:
            problems.append(f"log seq {e.seq}: {e.producer_id} seq {e.producer_seq} follows seq {seen[e.producer_id]}")
        seen[e.producer_id] = max(seen[e.producer_id], e.producer_seq)
    return problems


def assert_log_intact(ledger: Ledger, expected_ids: Iterable[str]) -> None:
    """Complete, duplicate-free, no rejection, audit passes, per-producer order kept, no chain anomaly."""
    expected = list(expected_ids)
    stored = list(entries.iter_entries(ledger.conn))
    ids = [e.event_id for e in stored]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate event id(s) in the log"
    missing = set(expected) - set(ids)
    extra = set(ids) - set(expected)
    assert not missing, f"{len(missing)} published event(s) missing from the log, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected event(s) in the log, e.g. {sorted(extra)[:3]}"
    assert len(ids) == len(expected)
    assert ledger.rejections() == []
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as conn:
        report = audit(conn)
    assert report.ok, report
    order = producer_order_problems(stored)
    anomalies = ledger.conn.execute(
        "SELECT producer_id, kind, detail FROM ledger.producer_anomalies ORDER BY id LIMIT 5"
    ).fetchall()
    assert not order, f"{len(order)} per-producer order break(s), e.g. {order[:3]}"
    assert anomalies == [], f"producer chain anomalies recorded: {anomalies}"


def stream_messages(url: str, settings: Settings) -> int:
    """Messages still in the work-queue stream (each leaves only when the ledger acked it)."""
    import asyncio  # noqa: PLC0415

    import nats  # noqa: PLC0415

    async def count() -> int:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0, allow_reconnect=False)
        try:
            info = await nc.jetstream().stream_info(settings.nats.stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())
