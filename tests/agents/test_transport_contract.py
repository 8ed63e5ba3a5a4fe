"""The Transport contract, run against both transports an agent may use (JetStream and LedgerService over gRPC),
each with real servers: what the sender does with every kind of error either can raise.

* delivered events arrive once, in spool order;
* an unreachable ledger raises ``TransportUnavailable``: the events stay spooled and arrive later;
* an event the request can never carry (above the NATS message limit, above the gRPC message limit) is
  ``Undeliverable``: the sender sets that one event aside in ``undeliverable.jsonl`` with the reason, and the
  events before and after it arrive, in order;
* a refusal that may pass (gRPC: the agent's token revoked, then restored) is retried: nothing is lost, the
  sender thread survives, and everything arrives in order once the token is back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents._sender import UNDELIVERABLE_FILE
from agents.runtime import Agent
from agents.spool import Record
from agents.transport import GrpcTransport, NatsTransport, Transport, Undeliverable
from ledger.client import ClientCredentials
from ledger.config import AgentSettings, Settings
from ledger.core.errors import TransportUnavailable
from ledger.core.keys import Ed25519Signer, save_private_key
from ledger.embedded import free_port
from ledger.grpckit.tokens import TokenStore, tokens_path
from ledger.store import entries
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.natskit import wait_for
from tests.service.serverkit import serving, settings_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

PRODUCER = "trainer@host-9/train"
TIMEOUT = 2.0
NATS_MAX_PAYLOAD = 1 << 20  # nats-server's default
GRPC_MAX_MESSAGE = 4 << 20  # serverkit's servers


@dataclass
class Route:
    """One way to the ledger: a transport factory and what an event too large for it looks like."""

    name: str
    make: object  # () -> Transport
    too_large: int
    unreachable: object  # () -> Transport


@pytest.fixture(params=["nats", "grpc"])
def route(request, tmp_path: Path, ledger: Ledger) -> Iterator[Route]:
    if request.param == "nats":
        settings: Settings = request.getfixturevalue("settings")
        nats_url = request.getfixturevalue("nats_target").url
        request.getfixturevalue("ingest")
        yield Route(
            "nats",
            lambda: NatsTransport(nats_url, settings.nats, PRODUCER, timeout_s=TIMEOUT),
            NATS_MAX_PAYLOAD + 1000,
            lambda: NatsTransport(f"nats://127.0.0.1:{free_port()}", settings.nats, PRODUCER, timeout_s=TIMEOUT),
        )
        return
    grpc_settings = settings_for(tmp_path)
    store = TokenStore(tokens_path(grpc_settings))
    store.create(role="admin", name="bootstrap")
    token, _ = store.create(role="producer", producers=[PRODUCER], name="agent")
    with serving(ledger, grpc_settings) as servers:
        creds = ClientCredentials(token=token)
        yield Route(
            "grpc",
            lambda: GrpcTransport(servers.ledger_target, timeout_s=TIMEOUT, credentials=creds),
            GRPC_MAX_MESSAGE + 1000,
            lambda: GrpcTransport(f"127.0.0.1:{free_port()}", timeout_s=TIMEOUT, credentials=creds),
        )


def _key(ledger: Ledger) -> Ed25519Signer:
    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, producers=["trainer@*"]))
    return key


def _agent(tmp_path: Path, key: Ed25519Signer, transport: Transport) -> Agent:
    return Agent(
        producer_id=PRODUCER,
        signer=key,
        spool_dir=tmp_path / "spool",
        state_dir=tmp_path / "state",
        transport=transport,
        settings=AgentSettings(publish_timeout_s=TIMEOUT),
    )


def _ours(ledger: Ledger) -> list[entries.StoredEntry]:
    return [e for e in entries.iter_entries(ledger.conn) if e.producer_id == PRODUCER]


def _emit(agent: Agent, i: int, pad: int = 0) -> str:
    data = {"pad": "x" * pad} if pad else None
    return agent.emit("dataset.registered", dataset_prov(f"{i:064x}"), data=data)


def test_delivered_events_arrive_once_in_order(route: Route, tmp_path: Path, ledger: Ledger) -> None:
    agent = _agent(tmp_path, _key(ledger), route.make())
    try:
        ids = [_emit(agent, i) for i in range(20)]
        assert agent.flush(timeout=30)
    finally:
        agent.close()
    wait_for(lambda: len(_ours(ledger)) >= 20, timeout=30, what="20 events in the log")
    assert [e.event_id for e in _ours(ledger)] == ids


def test_an_unreachable_ledger_is_transport_unavailable_and_nothing_is_lost(route: Route, tmp_path: Path) -> None:
    transport = route.unreachable()

    async def send() -> int:
        try:
            return await transport.send([Record(index=0, event_id="e", envelope=b"{}")])
        finally:
            await transport.close()

    with pytest.raises(TransportUnavailable, match="not reachable"):
        asyncio.run(send())


def test_an_event_too_large_for_the_route_is_set_aside_and_the_rest_arrives_in_order(
    route: Route, tmp_path: Path, ledger: Ledger
) -> None:
    agent = _agent(tmp_path, _key(ledger), route.make())
    try:
        before = [_emit(agent, i) for i in range(3)]
        huge = _emit(agent, 100, pad=route.too_large)
        after = [_emit(agent, i) for i in range(3, 6)]
        assert agent.flush(timeout=60), f"still spooled: {agent.pending()} ({agent.stats.last_error})"
        assert agent._sender.thread.is_alive()
        assert agent.stats.set_aside == 1
    finally:
        agent.close()
    wait_for(lambda: len(_ours(ledger)) >= 6, timeout=30, what="6 events in the log")
    assert [e.event_id for e in _ours(ledger)] == before + after
    # the chain has a hole where the set-aside event was: the ledger accepts what follows and records the gap
    gaps = list(
        ledger.conn.execute("SELECT kind, detail FROM ledger.producer_anomalies WHERE producer_id = %s", (PRODUCER,))
    )
    assert gaps == [("gap", f"seqs 4..4 of {PRODUCER} are missing")]
    (line,) = (tmp_path / "spool" / UNDELIVERABLE_FILE).read_text().splitlines()
    kept = json.loads(line)
    assert kept["event_id"] == huge and kept["reason"] == Undeliverable.reason
    assert "limit" in kept["message"] or "RESOURCE_EXHAUSTED" in kept["message"]
    assert len(base64.b64decode(kept["envelope_b64"])) > route.too_large


@pytest.mark.parametrize("refusal", ["revoked", "wrong_producer"])
def test_a_refused_credential_is_retried_and_everything_arrives_once_it_is_fixed(
    refusal: str, tmp_path: Path, ledger: Ledger
) -> None:
    """Issue 19.1: a remote refusal (UNAUTHENTICATED, PERMISSION_DENIED) used to kill the sender thread."""
    grpc_settings = settings_for(tmp_path)
    path = tokens_path(grpc_settings)
    store = TokenStore(path)
    store.create(role="admin", name="bootstrap")
    producers = [PRODUCER] if refusal == "revoked" else ["someone-else@*"]
    token, entry = store.create(role="producer", producers=producers, name="agent")
    good = path.read_bytes() if refusal == "revoked" else None
    with serving(ledger, grpc_settings) as servers:
        if refusal == "revoked":
            store.revoke(entry.id)  # the ledger answers UNAUTHENTICATED from now on
        transport = GrpcTransport(servers.ledger_target, timeout_s=TIMEOUT, credentials=ClientCredentials(token=token))
        agent = _agent(tmp_path, _key(ledger), transport)
        try:
            first = _emit(agent, 0)
            wait_for(lambda: agent.stats.send_failures >= 2, timeout=30, what="the refusal to be retried")
            assert agent._sender.thread.is_alive() and agent.pending() == 1 and _ours(ledger) == []
            code = "UNAUTHENTICATED" if refusal == "revoked" else "PERMISSION_DENIED"
            assert code in (agent.stats.last_error or "")
            if refusal == "revoked":
                path.write_bytes(good)  # the token is valid again
            else:
                TokenStore(path).revoke(entry.id)
                fixed, _ = TokenStore(path).create(role="producer", producers=[PRODUCER], name="agent")
                transport._client.close()
                transport._client = GrpcTransport(
                    servers.ledger_target, timeout_s=TIMEOUT, credentials=ClientCredentials(token=fixed)
                )._client
            rest = [_emit(agent, i) for i in range(1, 4)]
            assert agent.flush(timeout=30), f"still spooled: {agent.pending()} ({agent.stats.last_error})"
        finally:
            agent.close()
        assert [e.event_id for e in _ours(ledger)] == [first, *rest]
        assert agent.stats.set_aside == 0


EXIT_CHILD = """
import sys
from ledger.config import AgentSettings, NatsSettings, Settings
import agents
from pathlib import Path
url, key, work, producer, transport = sys.argv[1:6]
settings = Settings(
    data_dir=Path(work),
    nats=NatsSettings(url=url),
    agent=AgentSettings(producer_id=producer, key_file=key, publish_timeout_s=20.0),
)
agent = agents.default_agent(settings)
for i in range(3):
    print(agent.emit("dataset.registered", {"entity": {f"sha256:{i:064x}": {}}}), flush=True)
# no close(): the exit hook flushes
"""


def test_events_emitted_just_before_exit_arrive_with_no_traceback(
    tmp_path: Path, ledger: Ledger, ingest, nats_target
) -> None:
    """Issue 19.2: at exit the sender could not schedule work any more ("cannot schedule new futures after
    shutdown") and the exit hook's flush delivered nothing."""
    key = _key(ledger)
    save_private_key(key, tmp_path / "p.key")
    child = subprocess.run(
        [sys.executable, "-c", EXIT_CHILD, nats_target.url, str(tmp_path / "p.key"), str(tmp_path), PRODUCER, "nats"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert "Traceback" not in child.stderr and "cannot schedule" not in child.stderr, child.stderr
    emitted = child.stdout.split()
    assert len(emitted) == 3
    wait_for(lambda: len(_ours(ledger)) >= 3, timeout=30, what="the 3 events emitted before exit")
    assert [e.event_id for e in _ours(ledger)] == emitted
