"""The ledger killed again and again mid-ingest: nothing lost, nothing twice, order and audit intact.

A fixed set of events from three producers is published up front; then each
cycle starts ``provault ledger serve`` and kills it, the method rotating
through:

* ``sigkill``        -- SIGKILL at a random moment after it began committing;
* ``before_commit``  -- the failpoint before a batch transaction, at a random hit;
* ``after_commit``   -- the failpoint between commit and ack, at a random hit
                        (JetStream redelivers committed events: the ledger must
                        drop them by event id).

After every cycle the log must only have grown, hold no duplicate and keep
each producer's order; a final healthy run drains the rest and acks
everything, and then the whole log is checked (complete, unique, order, no
chain anomaly, audit).  The run's seed is
printed; ``PROVAULT_TEST_FAULT_SEED=<seed>`` replays its choices.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.config import Settings
from ledger.core.producing import Sealed
from ledger.service.failpoints import EXIT_CODE
from ledger.store import entries
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.natskit import publish

from .faultkit import (
    LedgerProcess,
    assert_log_intact,
    log_size,
    producer_order_problems,
    save_checkpoint_key,
    serving,
    stream_messages,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

PRODUCERS = 3
METHODS = ("sigkill", "before_commit", "after_commit")
CYCLE_TIMEOUT_S = 60.0


@dataclass
class Run:
    seed: int
    events_per_producer: int
    batch_size: int
    max_hits: int
    kill_jitter_s: float
    done: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METHODS, 0))
    progress: list[int] = field(default_factory=list)
    full: int = 0
    """The log size once every event is in (key registrations included)."""


def _events(ledger: Ledger, per_producer: int) -> list[Sealed]:
    """Keys registered in the log first (so every event verifies at once), events interleaved across producers."""
    chains = [ledger.producer_with_key(f"trainer@host-{i}") for i in range(PRODUCERS)]
    ledger.append(*(reg for _, reg in chains))
    return [
        ch.emit("dataset.registered", dataset_prov(f"{p}{i:063x}"))
        for i in range(per_producer)
        for p, (ch, _) in enumerate(chains)
    ]


def _kill_once(
    n: int, method: str, run: Run, rng: random.Random, settings: Settings, ledger: Ledger, url: str, out: Path
) -> None:
    before = log_size(ledger)
    if method == "sigkill":
        with serving(settings, ledger, url, out, batch_size=run.batch_size) as lp:
            wait_until(
                lambda: log_size(ledger) > before,
                timeout=CYCLE_TIMEOUT_S,
                what=f"cycle {n} to commit",
                every=0.01,
                alive=lp,
            )
            time.sleep(rng.uniform(0, run.kill_jitter_s))
            rc = lp.kill()
        assert rc == -signal.SIGKILL, f"cycle {n} ended with {rc} before the kill:\n{lp.output()}"
        return
    hit = rng.randint(1, run.max_hits)
    lp = LedgerProcess(settings, ledger, url, out, batch_size=run.batch_size, failpoint=f"ingest.{method}@{hit}")
    try:
        rc = lp.wait(CYCLE_TIMEOUT_S)
    finally:
        lp.kill()
    assert rc == EXIT_CODE, (
        f"cycle {n} ({method}@{hit}) ended with {rc}, log at {log_size(ledger)} (seed {run.seed}):\n{lp.output()}"
    )


def _cycle(n: int, run: Run, rng: random.Random, settings: Settings, ledger: Ledger, url: str, tmp: Path) -> None:
    method = METHODS[n % len(METHODS)]
    before = log_size(ledger)
    assert before < run.full, f"cycle {n}: the log was already complete, no kill can land mid-ingest (seed {run.seed})"
    _kill_once(n, method, run, rng, settings, ledger, url, tmp / f"cycle-{n:03d}-{method}.log")
    after = log_size(ledger)
    assert after >= before, f"cycle {n}: the log shrank from {before} to {after}"
    distinct = ledger.conn.execute("SELECT count(DISTINCT event_id) FROM ledger.entries").fetchone()[0]
    assert distinct == after, f"cycle {n} ({method}): {after - distinct} duplicate(s) in the log (seed {run.seed})"
    order = producer_order_problems(entries.iter_entries(ledger.conn))
    previous = METHODS[(n - 1) % len(METHODS)] if n else "no"
    assert not order, (
        f"cycle {n} ({method}, after a {previous} kill) broke a producer's order (seed {run.seed}): {order[:3]}"
    )
    run.done[method] += 1
    run.progress.append(after)


def _kill_cycles(cycles: int, run: Run, settings: Settings, ledger: Ledger, nats_target, tmp: Path) -> None:
    started = time.monotonic()
    save_checkpoint_key(ledger, settings)
    events = _events(ledger, run.events_per_producer)
    publish(nats_target.url, settings.nats, events)
    base = log_size(ledger)  # the key registrations
    run.full = base + len(events)
    rng = random.Random(run.seed)
    for n in range(cycles):
        _cycle(n, run, rng, settings, ledger, nats_target.url, tmp)
    under_faults = log_size(ledger) - base
    with serving(settings, ledger, nats_target.url, tmp / "final.log", batch_size=run.batch_size) as lp:
        wait_until(lambda: log_size(ledger) >= run.full, timeout=120, what="the final run to drain", alive=lp)
        wait_until(
            lambda: stream_messages(nats_target.url, settings) == 0, timeout=30, what="every message acked", every=0.2
        )
    assert lp.proc.returncode == 0, lp.output()
    print(
        f"\n{cycles} kill cycles {run.done}, seed {run.seed}, batch {run.batch_size}: {under_faults}/{len(events)} events "
        f"committed under faults, the rest by the final run; log sizes {run.progress}; "
        f"{time.monotonic() - started:.1f} s"
    )
    registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
    assert_log_intact(ledger, registrations + [e.event_id for e in events])


def _seed() -> int:
    return int(os.environ.get("PROVAULT_TEST_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))


def test_ingest_killed_five_times_mid_batch(tmp_path, settings: Settings, ledger: Ledger, nats_target) -> None:
    run = Run(seed=_seed(), events_per_producer=667, batch_size=20, max_hits=3, kill_jitter_s=0.2)
    _kill_cycles(5, run, settings, ledger, nats_target, tmp_path)


@pytest.mark.slow
def test_ingest_killed_a_hundred_times_mid_batch(tmp_path, settings: Settings, ledger: Ledger, nats_target) -> None:
    # Small batches, few hits and short jitter, so a hundred kills land before the log is complete.
    run = Run(seed=_seed(), events_per_producer=1000, batch_size=5, max_hits=3, kill_jitter_s=0.05)
    _kill_cycles(100, run, settings, ledger, nats_target, tmp_path)
