"""The producer runtime on real NATS and the real ledger: delivery, offline, crash, damage."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents.runtime import Agent, AgentClosed
from agents.spool import SpoolCorrupted
from agents.transport import NatsTransport
from ledger.config import AgentSettings, Settings
from ledger.core.keys import Ed25519Signer, save_private_key
from ledger.store import entries
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.natskit import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

PRODUCER = "trainer@host-1/train"


def _registered_key(ledger: Ledger) -> Ed25519Signer:
    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, producers=["trainer@*"]))
    return key


def _agent(tmp_path: Path, key: Ed25519Signer, settings: Settings, url: str, **kw) -> Agent:
    agent_settings = AgentSettings(publish_timeout_s=2.0, **kw)
    return Agent(
        producer_id=PRODUCER,
        signer=key,
        spool_dir=tmp_path / "spool",
        state_dir=tmp_path / "state",
        transport=NatsTransport(url, settings.nats, PRODUCER, timeout_s=2.0),
        settings=agent_settings,
    )


def _ours(ledger: Ledger) -> list:
    return [e for e in entries.iter_entries(ledger.conn) if e.producer_id == PRODUCER]


def test_emitted_events_arrive_verified_and_in_order(tmp_path, ledger, ingest, settings, nats_target) -> None:
    key = _registered_key(ledger)
    with _agent(tmp_path, key, settings, nats_target.url) as agent:
        ids = [agent.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(120)]
        assert agent.flush(timeout=30)
    wait_for(lambda: len(_ours(ledger)) == 120, what="all events in the ledger")
    entries = _ours(ledger)
    assert [e.event_id for e in entries] == ids
    assert [e.producer_seq for e in entries] == list(range(1, 121))
    assert ledger.rejections() == []


def test_nats_down_for_the_whole_run_then_everything_arrives_once(
    tmp_path, ledger, ingest, settings, nats_target
) -> None:
    key = _registered_key(ledger)
    nats_target.server.stop()
    agent = _agent(tmp_path, key, settings, nats_target.url)
    ids = [agent.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(50)]
    assert agent.close(timeout=1.0) is False  # nothing could be delivered
    with pytest.raises(AgentClosed):
        agent.emit("run.started", {})
    nats_target.server.restart()
    with _agent(tmp_path, key, settings, nats_target.url) as again:
        ids.append(again.emit("run.started", {}))
        assert again.flush(timeout=60)
    wait_for(lambda: len(_ours(ledger)) == 51, timeout=60, what="the spooled events")
    entries = _ours(ledger)
    assert [e.event_id for e in entries] == ids, "exactly once, in per-producer order"
    assert [e.producer_seq for e in entries] == list(range(1, 52))
    anomalies = ledger.conn.execute("SELECT count(*) FROM ledger.producer_anomalies").fetchone()[0]
    assert anomalies == 0


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from agents.runtime import Agent
    from agents.transport import NatsTransport
    from ledger.config import AgentSettings, NatsSettings
    from ledger.core.keys import load_private_key
    url, key, work, producer = sys.argv[1:5]
    agent = Agent(producer_id=producer, signer=load_private_key(key), spool_dir=Path(work) / "spool",
                  state_dir=Path(work) / "state", transport=NatsTransport(url, NatsSettings(), producer, timeout_s=2.0),
                  settings=AgentSettings(publish_timeout_s=2.0))
    for i in range(100000):
        eid = agent.emit("dataset.registered", {"entity": {f"sha256:{i:064x}": {}}})
        print(eid, flush=True)
""")


def test_sigkill_mid_batch_loses_nothing_accepted(tmp_path, ledger, ingest, settings, nats_target) -> None:
    key = _registered_key(ledger)
    save_private_key(key, tmp_path / "p.key")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, nats_target.url, str(tmp_path / "p.key"), str(tmp_path), PRODUCER],
        stdout=subprocess.PIPE,
        text=True,
    )
    accepted = []
    try:
        assert child.stdout is not None
        while len(accepted) < 700:
            line = child.stdout.readline()
            assert line, "the child stopped early"
            accepted.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with _agent(tmp_path, key, settings, nats_target.url) as again:
        assert again.flush(timeout=60)
    wait_for(lambda: len(_ours(ledger)) >= len(accepted), timeout=60, what="every accepted event")
    logged = [e.event_id for e in _ours(ledger)]
    assert set(accepted) <= set(logged)
    assert len(logged) == len(set(logged))
    assert [e.producer_seq for e in _ours(ledger)] == list(range(1, len(logged) + 1))
    assert ledger.rejections() == []


def test_a_corrupted_spool_stops_the_agent_with_the_place(tmp_path, ledger, settings, nats_target) -> None:
    key = _registered_key(ledger)
    nats_target.server.stop()
    agent = _agent(tmp_path, key, settings, nats_target.url)
    for i in range(5):
        agent.emit("dataset.registered", dataset_prov(f"{i:064x}"))
    agent.close(timeout=0.2)
    seg = next((tmp_path / "spool").glob("seg-*.log"))
    data = bytearray(seg.read_bytes())
    data[200] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(SpoolCorrupted, match=r"damaged at byte \d+ \(record 0\)"):
        _agent(tmp_path, key, settings, nats_target.url)


def test_drop_policy_counts_and_leaves_no_gap(tmp_path, ledger, ingest, settings, nats_target) -> None:
    key = _registered_key(ledger)
    nats_target.server.stop()
    agent = _agent(tmp_path, key, settings, nats_target.url, spool_max_bytes=20_000, backpressure="drop")
    ids = [agent.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(200)]
    kept = [i for i in ids if i]
    assert agent.stats.dropped == 200 - len(kept) > 0
    agent.close(timeout=0.2)
    nats_target.server.restart()
    with _agent(tmp_path, key, settings, nats_target.url) as again:
        assert again.flush(timeout=60)
    wait_for(lambda: len(_ours(ledger)) == len(kept), timeout=60, what="the kept events")
    assert [e.producer_seq for e in _ours(ledger)] == list(range(1, len(kept) + 1)), "dropped events used no seq"
