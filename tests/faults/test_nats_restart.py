"""NATS hard-killed and restarted (same port, same store) while agents emit and the ledger ingests.

Three agents (agents.runtime.Agent over NatsTransport) emit on their own
threads; meanwhile the embedded nats-server is SIGKILLed and started again on
its port and JetStream store, twice.  Every event id emit() returned must be
in the log exactly once, each producer's events in its order, and the audit
must pass.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agents.runtime import Agent
from agents.transport import NatsTransport
from ledger.config import AgentSettings, Settings
from ledger.core.keys import Ed25519Signer
from ledger.store import entries
from tests.ledgerkit import Ledger, dataset_prov

from .faultkit import assert_log_intact, log_size, save_checkpoint_key, serving, stream_messages, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

AGENTS = 3
EVENTS_PER_AGENT = 400
EMIT_PAUSE_S = 0.02  # ~8 s of emitting per agent, so both outages fall inside it
OUTAGES = 2
DOWN_S = 1.0


def _agent(tmp: Path, ledger: Ledger, settings: Settings, url: str, n: int) -> Agent:
    producer = f"trainer@host-{n}/train"
    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, producers=[producer]))
    return Agent(
        producer_id=producer,
        signer=key,
        spool_dir=tmp / f"spool-{n}",
        state_dir=tmp / "state",
        transport=NatsTransport(url, settings.nats, producer, timeout_s=2.0),
        settings=AgentSettings(publish_timeout_s=2.0),
    )


def _emit_all(agent: Agent, n: int, ids: list[str], errors: list[BaseException]) -> None:
    try:
        for i in range(EVENTS_PER_AGENT):
            ids.append(agent.emit("dataset.registered", dataset_prov(f"{n:04x}{i:060x}")))
            time.sleep(EMIT_PAUSE_S)
    except BaseException as e:
        errors.append(e)


def test_nats_killed_and_restarted_while_agents_emit(tmp_path, settings: Settings, ledger: Ledger, nats_target) -> None:
    server = nats_target.server
    if server is None:
        pytest.skip("needs the embedded NATS server (this test kills and restarts it)")
    started = time.monotonic()
    save_checkpoint_key(ledger, settings)
    agents = [_agent(tmp_path, ledger, settings, nats_target.url, n) for n in range(AGENTS)]
    base = log_size(ledger)
    ids: list[list[str]] = [[] for _ in agents]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_emit_all, args=(a, n, ids[n], errors), name=f"emit-{n}") for n, a in enumerate(agents)
    ]
    try:
        with serving(settings, ledger, nats_target.url, tmp_path / "ledger.log") as lp:
            for t in threads:
                t.start()
            for _ in range(OUTAGES):
                before = log_size(ledger)
                wait_until(
                    lambda before=before: log_size(ledger) > before,
                    timeout=30,
                    what="the ledger to be ingesting",
                    every=0.02,
                    alive=lp,
                )
                assert all(t.is_alive() for t in threads), "the agents finished emitting before the outage"
                server.kill()
                time.sleep(DOWN_S)
                server.restart()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "an emitting thread did not finish"
            assert errors == [], errors
            for a in agents:
                assert a.flush(timeout=60), (
                    f"{a.producer_id}: {a.pending()} event(s) still spooled; last error {a.stats.last_error}"
                )
            emitted = [i for per in ids for i in per]
            assert len(emitted) == AGENTS * EVENTS_PER_AGENT and all(emitted)
            wait_until(
                lambda: log_size(ledger) >= base + len(emitted), timeout=60, what="every emitted event", alive=lp
            )
            wait_until(
                lambda: stream_messages(nats_target.url, settings) == 0,
                timeout=30,
                what="every message acked",
                every=0.2,
            )
        assert lp.proc.returncode == 0, lp.output()
    finally:
        for a in agents:
            a.close(timeout=1.0)
    failures = sum(a.stats.send_failures for a in agents)
    registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
    assert_log_intact(ledger, registrations + emitted)
    print(
        f"\n{OUTAGES} NATS kills, {len(emitted)} events from {AGENTS} agents, {failures} failed sends retried; "
        f"{time.monotonic() - started:.1f} s"
    )
