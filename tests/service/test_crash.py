"""The ledger process dies mid-ingest (before commit, between commit and ack): nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ledger.config import Settings
from ledger.core.keys import save_private_key
from ledger.service.failpoints import ENV as FAILPOINT_ENV
from ledger.service.failpoints import EXIT_CODE
from ledger.store import entries, log
from tests.ledgerkit import Ledger, dataset_prov

from .natskit import publish, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

EVENTS_PER_PRODUCER = 60


def _serve(settings: Settings, ledger: Ledger, nats_url: str, failpoint: str | None) -> subprocess.Popen[str]:
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
            "PROVAULT_INGEST_BATCH_SIZE": "20",
            "PROVAULT_INGEST_WORKERS": "1",
            "PROVAULT_INGEST_ACK_WAIT_S": "1",
            "PROVAULT_DEV_MODE": "true",  # loopback test: no gRPC authentication
        }
    )
    if failpoint:
        env[FAILPOINT_ENV] = failpoint
    return subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "ledger", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.mark.parametrize("failpoint", ["ingest.before_commit@3", "ingest.after_commit@3"])
def test_crash_then_restart_loses_and_duplicates_nothing(
    settings: Settings, ledger: Ledger, nats_target, failpoint: str
) -> None:
    save_private_key(ledger.checkpoint_key, settings.checkpoint_key_path)
    chains = [ledger.producer_with_key(f"trainer@host-{i}") for i in range(2)]
    events = [reg for _, reg in chains]
    events += [
        ch.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(EVENTS_PER_PRODUCER) for ch, _ in chains
    ]
    publish(nats_target.url, settings.nats, events)

    crashing = _serve(settings, ledger, nats_target.url, failpoint)
    try:
        crashing.wait(timeout=90)
    finally:
        out = _stop(crashing)
    assert crashing.returncode == EXIT_CODE, out
    committed = log.log_size(ledger.conn)
    assert 0 < committed < len(events), "the crash happened mid-ingest"

    healthy = _serve(settings, ledger, nats_target.url, None)
    try:
        wait_for(lambda: log.log_size(ledger.conn) >= len(events), timeout=90, what="the rest of the events")
    finally:
        out = _stop(healthy)
    assert healthy.returncode == 0, out
    ids = [e.event_id for e in entries.iter_entries(ledger.conn)]
    assert len(ids) == len(set(ids)) == len(events)
    assert set(ids) == {e.event_id for e in events}
    assert ledger.rejections() == []
