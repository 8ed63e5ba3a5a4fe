"""A batch checked before the key registration it needs was committed (the ingest pipeline's race).

The ingest checks batch N+1 on its workers while batch N commits; when batch N
registers a producer's key, the workers' key snapshot does not have it yet and
refuse N+1's events of that producer as ``unknown_key``.  ``plan_batch`` then
checks them again against the registry (``_retry_unknown_key``) and accepts
them.  The store must load the chain state and the known event ids for those
retried items too; when it loaded them only for items that came in
``Checked``:

* the producer's earlier entries were not seen: a 'gap' anomaly ("first event
  seen ... seqs 1..k are missing") was recorded and ``ledger.producers`` was
  overwritten with entries=1 and a wrong first_log_seq;
* an event already in the log (a redelivery) was not recognised as a
  duplicate: the insert violated ``entries_event_id_key`` and the batch failed
  with StorageUnavailable -- which the ingest retried with the same stale
  items, for ever.

Reproduced at the store, without timing (the stale check is made before the
registration is appended), and end to end, where it showed in nearly every run.
"""

from __future__ import annotations

import pytest

from ledger.config import Settings
from ledger.core.errors import StorageUnavailable
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.store import entries, log
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.natskit import publish

from .faultkit import assert_log_intact, save_checkpoint_key, serving, stream_messages, wait_until

pytestmark = [pytest.mark.postgres]

PRODUCER = "trainer@host-1/train"


def _chain(ledger: Ledger):
    key = Ed25519Signer.generate()
    chain = ProducerChain(PRODUCER, key)
    return ledger.registration(key, producers=[PRODUCER]), chain


def test_events_checked_before_their_key_was_committed_continue_the_chain(ledger: Ledger) -> None:
    reg, chain = _chain(ledger)
    e1, e2 = (chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in (1, 2))
    stale = ledger.check([e2.envelope])  # the workers' snapshot predates the registration
    assert [r.reason for r in stale] == ["unknown_key"]
    ledger.append(reg, e1)
    plan = log.append_batch(ledger.conn, stale, source="nats", registry_cache=ledger.cache, stream_seqs=[7])
    assert len(plan.accepted) == 1
    assert [(a.kind, a.detail) for a in plan.anomalies] == []
    row = ledger.conn.execute(
        "SELECT last_seq, entries, first_log_seq FROM ledger.producers WHERE producer_id = %s", (PRODUCER,)
    ).fetchone()
    first = entries.get_entry(ledger.conn, event_id=e1.event_id)
    assert row == (2, 2, first.seq)


def test_a_redelivery_checked_before_its_key_was_committed_is_a_duplicate(ledger: Ledger) -> None:
    reg, chain = _chain(ledger)
    e1 = chain.emit("dataset.registered", dataset_prov("01" * 32))
    stale = ledger.check([e1.envelope])
    ledger.append(reg, e1)  # committed; its ack was lost, JetStream redelivers it
    try:
        plan = log.append_batch(ledger.conn, stale, source="nats", registry_cache=ledger.cache, stream_seqs=[7])
    except StorageUnavailable as e:
        pytest.fail(f"a redelivered event is not recognised as already in the log: {e.message}")
    assert len(plan.duplicates) == 1 and plan.accepted == []


@pytest.mark.nats
def test_keys_registered_through_the_stream_with_their_events(
    tmp_path, settings: Settings, ledger: Ledger, nats_target
) -> None:
    """End to end: registrations and the producers' first events travel the stream together (a fresh deployment)."""
    save_checkpoint_key(ledger, settings)
    chains = [ledger.producer_with_key(f"trainer@host-{i}") for i in range(3)]
    events = [reg for _, reg in chains]
    events += [
        ch.emit("dataset.registered", dataset_prov(f"{p}{i:063x}"))
        for i in range(100)
        for p, (ch, _) in enumerate(chains)
    ]
    publish(nats_target.url, settings.nats, events)
    with serving(settings, ledger, nats_target.url, tmp_path / "ledger.log") as lp:
        wait_until(lambda: log.log_size(ledger.conn) >= len(events), timeout=60, what="every event", alive=lp)
        wait_until(
            lambda: stream_messages(nats_target.url, settings) == 0, timeout=30, what="every message acked", every=0.2
        )
    assert_log_intact(ledger, [e.event_id for e in events])
