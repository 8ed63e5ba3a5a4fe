"""JetStream ingest on real NATS and PostgreSQL."""

from __future__ import annotations

import pytest

from ledger.config import Settings
from ledger.core import merkle
from ledger.service.ingest import IngestService
from ledger.store import entries, log
from tests.ledgerkit import Ledger, dataset_prov

from .natskit import publish, publish_raw, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


def _size(lg: Ledger) -> int:
    return log.log_size(lg.conn)


def test_events_from_three_producers_arrive_verified_once(
    ledger: Ledger, ingest: IngestService, settings: Settings, nats_target
) -> None:
    chains = [ledger.producer_with_key(f"trainer@host-{i}") for i in range(3)]
    publish(nats_target.url, settings.nats, [reg for _, reg in chains])
    events = [ch.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(40) for ch, _ in chains]
    publish(nats_target.url, settings.nats, events)
    wait_for(lambda: _size(ledger) == 3 + len(events), what="all events in the log")
    stored = {e.event_id: e for e in entries.iter_entries(ledger.conn)}
    assert set(stored) == {r.event_id for _, r in chains} | {e.event_id for e in events}
    for e in events:
        assert stored[e.event_id].envelope == e.envelope
    per_producer = {}
    for entry in entries.iter_entries(ledger.conn):
        per_producer.setdefault(entry.producer_id, []).append(entry.producer_seq)
    for seqs in per_producer.values():
        assert seqs == sorted(seqs), "per-producer order is kept"
    leaves = [e.leaf_hash for e in entries.iter_entries(ledger.conn)]
    assert log.current_root(ledger.conn) == (len(leaves), merkle.root_hash(leaves))
    assert ingest.ingest.stats.rejected == 0


def test_redelivered_event_is_appended_once(
    ledger: Ledger, ingest: IngestService, settings: Settings, nats_target
) -> None:
    chain, reg = ledger.producer_with_key()
    ev = chain.emit("run.started", {})
    # Different Nats-Msg-Ids get past JetStream's own dedupe: the ledger must catch it.
    publish(nats_target.url, settings.nats, [reg, ev, ev], msg_ids=["a", "b", "c"])
    wait_for(lambda: ingest.ingest.stats.duplicates == 1, what="the duplicate to be seen")
    assert _size(ledger) == 2


def test_invalid_messages_are_recorded_and_acknowledged(
    ledger: Ledger, ingest: IngestService, settings: Settings, nats_target
) -> None:
    publish_raw(nats_target.url, settings.nats, [b"not an envelope", b"{}"])
    wait_for(lambda: len(ledger.rejections()) == 2, what="two rejections")
    assert [r for r, _ in ledger.rejections()] == ["malformed_envelope", "malformed_envelope"]
    assert _size(ledger) == 0
    info = _consumer_pending(nats_target, settings)
    assert info == (0, 0), "rejected messages are acked, not redelivered forever"


def _consumer_pending(nats_target, settings: Settings) -> tuple[int, int]:
    import asyncio  # noqa: PLC0415

    import nats  # noqa: PLC0415

    from ledger.transport import CONSUMER  # noqa: PLC0415

    async def go():
        nc = await nats.connect(nats_target.url)
        try:
            ci = await nc.jetstream().consumer_info(settings.nats.stream, CONSUMER)
            return ci.num_pending, ci.num_ack_pending
        finally:
            await nc.close()

    deadline = 50
    while deadline:
        pending = asyncio.run(go())
        if pending == (0, 0):
            return pending
        deadline -= 1
        __import__("time").sleep(0.1)
    return pending
