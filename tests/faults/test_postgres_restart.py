"""PostgreSQL stopped and started again (same port, same data directory) while the ledger ingests.

The test owns a dedicated embedded PostgreSQL (the session's shared server
must not be restarted under other tests).  While it is down the ledger must
stay up, retry with backoff and acknowledge nothing: every published event is
either in the log or still in the work-queue stream.  Once it is back,
everything arrives exactly once, in each producer's order, and the audit
passes.
"""

from __future__ import annotations

import time

import pytest

from ledger.config import NatsSettings, PostgresSettings, Settings
from ledger.db import connect
from ledger.embedded import EmbeddedPostgres
from ledger.store import entries
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.natskit import publish

from .faultkit import (
    LedgerProcess,
    assert_log_intact,
    log_size,
    save_checkpoint_key,
    serving,
    stream_messages,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

PRODUCERS = 3
EVENTS_PER_PRODUCER = 500
RESTARTS = 2
DOWN_S = 2.5  # longer than ack_wait (1 s): JetStream redelivers the stuck batches meanwhile


def _outage(n: int, server: EmbeddedPostgres, lp: LedgerProcess, waiting) -> None:
    """Stop the server for DOWN_S: meanwhile the ledger stays up and acks nothing (nothing can commit)."""
    server.stop()
    time.sleep(0.5)  # let the acks of batches committed before the stop reach the stream
    before = waiting()
    deadline = time.monotonic() + DOWN_S
    while time.monotonic() < deadline:
        assert waiting() == before, f"outage {n}: messages were acked while PostgreSQL was down"
        assert lp.proc.poll() is None, f"the ledger exited while PostgreSQL was down:\n{lp.output()}"
        time.sleep(0.25)
    server.start()  # same port, same data directory


def _reconnect(ledger: Ledger) -> None:
    if ledger.conn is not None:
        ledger.conn.close()
    ledger.conn = connect(ledger.dsn, autocommit=True, role="provault_ledger")


def test_postgres_restarted_mid_ingest(tmp_path, own_postgres: EmbeddedPostgres, nats_target) -> None:
    started = time.monotonic()
    ledger = Ledger(own_postgres.dsn())
    try:
        settings = Settings(
            data_dir=tmp_path / "data",
            postgres=PostgresSettings(dsn=ledger.dsn),
            nats=NatsSettings(
                url=nats_target.url, stream=nats_target.stream, subject_prefix=nats_target.subject_prefix
            ),
        )
        save_checkpoint_key(ledger, settings)
        chains = [ledger.producer_with_key(f"trainer@host-{i}") for i in range(PRODUCERS)]
        ledger.append(*(reg for _, reg in chains))
        base = log_size(ledger)
        events = [
            ch.emit("dataset.registered", dataset_prov(f"{p}{i:063x}"))
            for i in range(EVENTS_PER_PRODUCER)
            for p, (ch, _) in enumerate(chains)
        ]
        publish(nats_target.url, settings.nats, events)
        with serving(settings, ledger, nats_target.url, tmp_path / "ledger.log") as lp:
            for n in range(RESTARTS):
                target = base + (n + 1) * len(events) // (RESTARTS + 2)
                wait_until(
                    lambda target=target: log_size(ledger) >= target,
                    timeout=60,
                    what=f"{target} entries",
                    every=0.01,
                    alive=lp,
                )
                _outage(n, own_postgres, lp, lambda: stream_messages(nats_target.url, settings))
                _reconnect(ledger)
            wait_until(lambda: log_size(ledger) >= base + len(events), timeout=90, what="every event", alive=lp)
            wait_until(
                lambda: stream_messages(nats_target.url, settings) == 0,
                timeout=30,
                what="every message acked",
                every=0.2,
            )
        assert lp.proc.returncode == 0, lp.output()
        assert "retrying" in lp.output(), "the ledger should log its retries"
        registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
        assert_log_intact(ledger, registrations + [e.event_id for e in events])
        print(
            f"\n{RESTARTS} PostgreSQL restarts ({DOWN_S} s down each), {len(events)} events; {time.monotonic() - started:.1f} s"
        )
    finally:
        ledger.close()
