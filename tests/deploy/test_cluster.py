"""A NATS node dies under load: a 3-node JetStream cluster, an R3 stream, `provault ledger serve`.

Three producers publish 3,000 signed events; when a third of them are
acknowledged, the stream's leader node (the one the ledger is connected to)
is SIGKILLed.  Publishers retry what was not acknowledged with the same
``Nats-Msg-Id``, as an agent's spool would.  Every event must end up in the
log exactly once, and the log must pass the full audit.

Slow (about 15 s): run with ``pytest -m slow tests/deploy``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.audit import audit
from ledger.config import NatsSettings
from ledger.core.keys import save_private_key
from ledger.db import connect
from ledger.embedded import EmbeddedNats
from ledger.store import entries, log
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.natskit import wait_for

from .clusterkit import create_stream, publish_while_killing, start_cluster

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.postgres]

PRODUCERS = 3
EVENTS_PER_PRODUCER = 1000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[EmbeddedNats]]:
    nodes = start_cluster(tmp_path / "nats")
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _serve(ledger: Ledger, data_dir: Path, nats_url: str, log_file: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
    env.update(
        {
            "PROVAULT_POSTGRES_DSN": ledger.dsn,
            # One URL on purpose: the client learns the other cluster members from the
            # server and fails over to them (nats.url may also list every node).
            "PROVAULT_NATS_URL": nats_url,
            "PROVAULT_NATS_REPLICAS": "3",
            "PROVAULT_DATA_DIR": str(data_dir),
            "PROVAULT_GRPC_LEDGER_LISTEN": "127.0.0.1:0",
            "PROVAULT_METRICS_LEDGER_LISTEN": "127.0.0.1:0",
            "PROVAULT_INGEST_BATCH_SIZE": "200",
            "PROVAULT_INGEST_WORKERS": "2",
            "PROVAULT_INGEST_ACK_WAIT_S": "2",
            "PROVAULT_INGEST_FETCH_TIMEOUT_S": "0.2",
            "PROVAULT_DEV_MODE": "true",  # loopback test: no gRPC authentication
        }
    )
    with open(log_file, "wb") as out:  # a file, not a pipe: reconnect warnings must never block the ledger
        return subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "ledger", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def test_killing_a_nats_node_mid_publish_loses_and_duplicates_nothing(
    cluster: list[EmbeddedNats], ledger: Ledger, tmp_path: Path
) -> None:
    started = time.monotonic()
    settings = NatsSettings(replicas=3)
    urls = [n.url for n in cluster]
    leader = create_stream(urls, settings)
    victim = next(n for n in cluster if n.server_name == leader)

    data_dir = tmp_path / "data"
    save_private_key(ledger.checkpoint_key, data_dir / "keys" / "checkpoint.key")
    chains = [ledger.producer_with_key(f"trainer@host-{i}") for i in range(PRODUCERS)]
    ledger.append(*(reg for _, reg in chains))
    streams = [
        [ch.emit("dataset.registered", dataset_prov(f"{p:02x}{i:062x}")) for i in range(EVENTS_PER_PRODUCER)]
        for p, (ch, _) in enumerate(chains)
    ]
    expected = {e.event_id for events in streams for e in events}
    total = PRODUCERS + len(expected)

    ledger_log = tmp_path / "ledger.log"
    serving = _serve(ledger, data_dir, victim.url, ledger_log)
    try:
        # Connected first: its one URL is the node about to die, and it must learn the others from it.
        wait_for(
            lambda: "provault ledger serving" in ledger_log.read_text(errors="replace") or serving.poll() is not None,
            timeout=60,
            what="the ledger to start",
        )
        stats = publish_while_killing(urls, settings, streams, kill_after=len(expected) // 3, kill=victim.kill)
        wait_for(lambda: log.log_size(ledger.conn) >= total, timeout=60, what=f"{total} entries in the log")
    finally:
        if serving.poll() is None:
            serving.send_signal(signal.SIGTERM)
        serving.wait(timeout=60)
    output = ledger_log.read_text(errors="replace")
    assert serving.returncode == 0, output
    assert stats.killed_at is not None and stats.killed_at < len(expected), "the node died mid-publish"

    ids = [e.event_id for e in entries.iter_entries(ledger.conn)]
    assert len(ids) == len(set(ids)) == total, "every event once, none twice"
    assert expected <= set(ids)
    assert ledger.rejections() == []
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as conn:
        report = audit(conn)
        anomalies = conn.execute("SELECT count(*) FROM ledger.producer_anomalies").fetchone()[0]
    assert report.ok, report.first_problem
    assert anomalies == 0, "each producer's chain arrived in order"
    print(
        f"\ncluster test: {len(expected)} events from {PRODUCERS} producers; killed {victim.server_name} "
        f"(stream leader, the ledger's server) after {stats.killed_at} acks; {stats.failures} publish retries "
        f"{stats.errors}; published in {stats.seconds:.1f} s; total {time.monotonic() - started:.1f} s"
    )
