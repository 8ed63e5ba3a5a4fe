"""Two restart hazards of the ingest, each set up deterministically (regression tests).

* A ledger that dies holding fetched, uncommitted messages and is back before
  ack_wait runs out.  JetStream redelivers an old consumer's unacked messages
  only when their ack_wait expires while new ones flow at once, so a producer's
  later events could enter the log before its earlier ones (fixed in 4aa2854:
  the ingest recreates its work-queue consumer on start).  A bare consumer
  stands in for the dead ledger: it fetches one batch on the ledger's durable
  consumer and disconnects without acking.
* A clean stop (SIGTERM) while a commit waits (a lock held by another session,
  as a slow disk or a long transaction would): once the commit goes through
  the process must exit promptly, not wait out a 30 s join (fixed in cd00bd4),
  and a restart within ack_wait must keep each producer's order -- the batches
  a clean stop leaves unacked are the same hazard as a crash's.
"""

from __future__ import annotations

import asyncio
import signal
import time

import nats
import pytest

from ledger.config import Settings
from ledger.db import connect
from ledger.store import entries
from ledger.transport import CONSUMER, consumer_config
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
BATCH = 20
ACK_WAIT_S = 5.0  # room for the new ledger to start and commit before the held batch comes back
STOP_WITHIN_S = 10.0
HOLD_S = 2.0
SLOW_ACK_WAIT_S = 10.0


def _publish_events(ledger: Ledger, settings: Settings, url: str, per_producer: int) -> tuple[int, list[str]]:
    chains = [ledger.producer_with_key(f"trainer@host-{i}") for i in range(PRODUCERS)]
    ledger.append(*(reg for _, reg in chains))
    events = [
        ch.emit("dataset.registered", dataset_prov(f"{p}{i:063x}"))
        for i in range(per_producer)
        for p, (ch, _) in enumerate(chains)
    ]
    publish(url, settings.nats, events)
    return log_size(ledger), [e.event_id for e in events]


async def _fetch_and_vanish(url: str, settings: Settings, n: int) -> int:
    """What a ledger killed after fetching a batch leaves behind: n delivered, unacked messages."""
    nc = await nats.connect(url, connect_timeout=5)
    try:
        sub = await nc.jetstream().pull_subscribe(
            f"{settings.nats.subject_prefix}.>",
            durable=CONSUMER,
            stream=settings.nats.stream,
            config=consumer_config(ack_wait_s=ACK_WAIT_S, max_ack_pending=BATCH * 4),
        )
        return len(await sub.fetch(n, timeout=5))
    finally:
        await nc.close()


def test_restart_within_ack_wait_keeps_each_producers_order(
    tmp_path, settings: Settings, ledger: Ledger, nats_target
) -> None:
    save_checkpoint_key(ledger, settings)
    base, ids = _publish_events(ledger, settings, nats_target.url, per_producer=40)
    assert asyncio.run(_fetch_and_vanish(nats_target.url, settings, BATCH)) == BATCH
    with serving(
        settings, ledger, nats_target.url, tmp_path / "ledger.log", batch_size=BATCH, ack_wait_s=ACK_WAIT_S
    ) as lp:
        wait_until(lambda: log_size(ledger) >= base + len(ids), timeout=60, what="every event", alive=lp)
        wait_until(
            lambda: stream_messages(nats_target.url, settings) == 0, timeout=30, what="every message acked", every=0.2
        )
    registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
    assert_log_intact(ledger, registrations + ids)


def _stop_during_a_waiting_commit(ledger: Ledger, lp: LedgerProcess) -> float:
    """SIGTERM while the writer waits on the log_state row (a lock held elsewhere, a slow disk); seconds to exit after."""
    with connect(ledger.dsn) as blocker, blocker.transaction():
        blocker.execute("SELECT size FROM ledger.log_state FOR UPDATE")
        time.sleep(HOLD_S)  # fetch and check fill their queues behind the waiting writer
        lp.proc.send_signal(signal.SIGTERM)
        time.sleep(HOLD_S)  # the stop request reaches the ingest while the writer still waits
    released = time.monotonic()
    rc = lp.wait(STOP_WITHIN_S)
    took = time.monotonic() - released
    assert rc == 0, (
        f"the ledger did not stop cleanly within {STOP_WITHIN_S:.0f} s of the commit going through ({rc}):\n{lp.output()}"
    )
    return took


def _restart_and_check(
    tmp_path, settings: Settings, ledger: Ledger, url: str, base: int, ids: list[str], ack_wait_s: float
) -> None:
    with serving(settings, ledger, url, tmp_path / "again.log", batch_size=BATCH, ack_wait_s=ack_wait_s) as again:
        wait_until(lambda: log_size(ledger) >= base + len(ids), timeout=90, what="every event", alive=again)
    assert again.proc.returncode == 0, again.output()
    registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
    assert_log_intact(ledger, registrations + ids)


def test_sigterm_while_a_commit_waits_stops_promptly(tmp_path, settings: Settings, ledger: Ledger, nats_target) -> None:
    # ack_wait 1 s < the hold: JetStream redelivers what the pipeline holds, so every queue
    # is full when the writer, told to stop, returns -- the state that blocked the check
    # stage forever before cd00bd4.
    save_checkpoint_key(ledger, settings)
    base, ids = _publish_events(ledger, settings, nats_target.url, per_producer=667)
    lp = LedgerProcess(settings, ledger, nats_target.url, tmp_path / "ledger.log", batch_size=BATCH, ack_wait_s=1.0)
    try:
        wait_until(
            lambda: log_size(ledger) >= base + 5 * BATCH,
            timeout=60,
            what="the ledger to be ingesting",
            every=0.01,
            alive=lp,
        )
        took = _stop_during_a_waiting_commit(ledger, lp)
    finally:
        lp.kill()
    print(f"\nstopped {took:.1f} s after the waiting commit went through")
    _restart_and_check(tmp_path, settings, ledger, nats_target.url, base, ids, ack_wait_s=1.0)


def test_clean_restart_within_ack_wait_keeps_each_producers_order(
    tmp_path, settings: Settings, ledger: Ledger, nats_target
) -> None:
    # ack_wait 10 s > the holds plus a restart; the waiting commit makes the batches left
    # unacked (60 messages, under max_ack_pending) the same at every run.
    save_checkpoint_key(ledger, settings)
    base, ids = _publish_events(ledger, settings, nats_target.url, per_producer=667)
    lp = LedgerProcess(
        settings, ledger, nats_target.url, tmp_path / "ledger.log", batch_size=BATCH, ack_wait_s=SLOW_ACK_WAIT_S
    )
    try:
        wait_until(
            lambda: log_size(ledger) >= base + 5 * BATCH,
            timeout=60,
            what="the ledger to be ingesting",
            every=0.01,
            alive=lp,
        )
        _stop_during_a_waiting_commit(ledger, lp)
    finally:
        lp.kill()
    _restart_and_check(tmp_path, settings, ledger, nats_target.url, base, ids, ack_wait_s=SLOW_ACK_WAIT_S)
