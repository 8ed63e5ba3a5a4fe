"""Prometheus metrics: what the ledger's write path and both gRPC servers count, and the endpoint that serves them.

Counters are process-wide, so every test reads the change it caused (``_delta``), never an absolute value.
"""

from __future__ import annotations

import logging
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agents import metrics as agent_metrics
from agents.runtime import Agent
from agents.transport import GrpcTransport
from ledger.config import GrpcSettings, MetricsSettings, Settings
from ledger.core.errors import ConfigError, ServerStartError
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.metrics import REGISTRY, MetricsServer, server_for
from ledger.service.appender import Appender
from ledger.service.grpc_ledger import LedgerGrpcService
from provault.v1 import ledger_pb2, ledger_pb2_grpc
from tests.deploy.tlskit import make_tls
from tests.ledgerkit import Ledger, dataset_prov

TIMEOUT = 10


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class _Delta:
    """The change of chosen samples between construction and :meth:`of`."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.before = {(n, tuple(sorted(lb.items()))): _value(n, **lb) for n, lb in samples}

    def of(self, name: str, **labels: str) -> float:
        return _value(name, **labels) - self.before[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def ledger_service(ledger: Ledger) -> Iterator[tuple[LedgerGrpcService, ledger_pb2_grpc.LedgerServiceStub]]:
    appender = Appender(ledger.dsn, limits=ledger.limits)
    service = LedgerGrpcService(dsn=ledger.dsn, appender=appender, listen="127.0.0.1:0", max_message_bytes=4 << 20)
    service.start()
    try:
        with grpc.insecure_channel(service.address) as channel:
            yield service, ledger_pb2_grpc.LedgerServiceStub(channel)
    finally:
        service.stop()
        appender.close()


REQ = "provault_grpc_requests_total"
APPEND = {"service": "LedgerService", "method": "Append"}


@pytest.mark.postgres
def test_ingest_and_grpc_count_every_outcome_reason_and_status(ledger: Ledger, ledger_service, caplog) -> None:
    service, stub = ledger_service
    chain, registration = ledger.producer_with_key()
    event = chain.emit("dataset.registered", dataset_prov())
    stranger = ProducerChain("stranger@host", Ed25519Signer.generate()).emit("dataset.registered", dataset_prov())
    d = _Delta(
        *[
            ("provault_ingest_events_total", {"source": "grpc", "outcome": o})
            for o in ("accepted", "duplicate", "rejected")
        ],
        *[("provault_ingest_rejections_total", {"reason": r}) for r in ("unknown_key", "malformed_envelope")],
        ("provault_ingest_batch_events_count", {"source": "grpc"}),
        ("provault_ingest_commit_seconds_count", {"source": "grpc"}),
        (REQ, {**APPEND, "code": "OK"}),
        (REQ, {**APPEND, "code": "INVALID_ARGUMENT"}),
        (REQ, {"service": "LedgerService", "method": "GetEntry", "code": "NOT_FOUND"}),
        ("provault_grpc_request_seconds_count", APPEND),
    )
    with caplog.at_level(logging.WARNING, logger="provault.ingest"):
        for raw in (registration.envelope, event.envelope, event.envelope, stranger.envelope, b"not an envelope"):
            stub.Append(ledger_pb2.AppendRequest(envelope_json=raw), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as bad:
        grpc_call_raw(service.address)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetEntry(ledger_pb2.GetEntryRequest(seq=999), timeout=TIMEOUT)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(service.address) as channel:  # health probes are not the service's traffic
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    assert d.of("provault_ingest_events_total", source="grpc", outcome="accepted") == 2
    assert d.of("provault_ingest_events_total", source="grpc", outcome="duplicate") == 1
    assert d.of("provault_ingest_events_total", source="grpc", outcome="rejected") == 2
    assert d.of("provault_ingest_rejections_total", reason="unknown_key") == 1
    assert d.of("provault_ingest_rejections_total", reason="malformed_envelope") == 1
    assert d.of("provault_ingest_batch_events_count", source="grpc") == 5
    assert d.of("provault_ingest_commit_seconds_count", source="grpc") == 5
    assert d.of(REQ, **APPEND, code="OK") == 5
    assert d.of(REQ, **APPEND, code="INVALID_ARGUMENT") == 1
    assert d.of(REQ, service="LedgerService", method="GetEntry", code="NOT_FOUND") == 1
    assert d.of("provault_grpc_request_seconds_count", **APPEND) == 6
    assert _value(REQ, service="unknown", method="unknown", code="OK") == 0

    # Each rejection is one WARNING line that names the event, the producer and the reason as fields.
    refused = {r.reason: r for r in caplog.records if r.name == "provault.ingest"}
    assert set(refused) == {"unknown_key", "malformed_envelope"}
    assert (refused["unknown_key"].event_id, refused["unknown_key"].producer_id) == (
        stranger.event_id,
        "stranger@host",
    )
    assert refused["malformed_envelope"].event_id is None and refused["unknown_key"].levelname == "WARNING"


def grpc_call_raw(target: str) -> None:
    """Append with bytes that are not an AppendRequest: the server answers INVALID_ARGUMENT."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/provault.v1.LedgerService/Append")
        call(b"\xff\xff\xff", timeout=TIMEOUT)


@pytest.mark.postgres
def test_unknown_methods_are_not_counted(ledger_service) -> None:
    service, _ = ledger_service
    before = {(s.name, tuple(sorted(s.labels.items()))) for m in REGISTRY.collect() for s in m.samples}
    with grpc.insecure_channel(service.address) as channel, pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/provault.v1.LedgerService/Guess")(b"", timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    after = {(s.name, tuple(sorted(s.labels.items()))) for m in REGISTRY.collect() for s in m.samples}
    assert not [s for s in after - before if "Guess" in str(s)]


# --- the endpoint ---------------------------------------------------------------------------------------------


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as r:
        return r.status, r.headers["Content-Type"], r.read().decode()


def test_the_endpoint_serves_the_text_format_and_stops() -> None:
    server = MetricsServer("127.0.0.1:0")
    server.start()
    try:
        assert server.running() and server.url.startswith("http://127.0.0.1:")
        status, content_type, body = _get(server.url)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        for name in ("provault_ingest_events", "provault_dependency_up", "provault_grpc_request_seconds"):
            assert f"# TYPE {name}" in body
    finally:
        server.stop()
    assert not server.running()
    with pytest.raises(urllib.error.URLError):
        _get(server.url)


def test_the_endpoint_speaks_https_with_the_servers_certificate(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls", ["localhost", "127.0.0.1"])
    settings = Settings(
        data_dir=tmp_path,
        metrics=MetricsSettings(query_listen="127.0.0.1:0"),
        grpc=GrpcSettings(tls_cert=str(tls.cert), tls_key=str(tls.key)),
    )
    server = server_for(settings, "query_listen")
    assert server is not None and server.scheme == "https"
    server.start()
    try:
        status, _, body = _get(server.url, ssl.create_default_context(cafile=str(tls.ca)))
        assert status == 200 and "provault_grpc_requests" in body
        with pytest.raises(ConnectionResetError):  # plain HTTP gets no answer (http.client.RemoteDisconnected too)
            _get(server.url.replace("https://", "http://"))
    finally:
        server.stop()


def test_bad_endpoint_settings_are_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match=r"metrics.query_listen: '10.1.2.3:9431' is not a loopback address"):
        server_for(Settings(metrics=MetricsSettings(query_listen="10.1.2.3:9431")), "query_listen")
    # dev mode may listen anywhere (the warning is the gRPC servers'); nothing is started here
    assert server_for(Settings(dev_mode=True, metrics=MetricsSettings(query_listen="0.0.0.0:0")), "query_listen")
    assert server_for(Settings(metrics=MetricsSettings(enabled=False)), "ledger_listen") is None
    assert server_for(Settings(), "agent_listen") is None  # agents serve nothing unless asked

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MetricsServer(f"127.0.0.1:{port}")
        with pytest.raises(ServerStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.start()
        assert not server.running()


# --- agents -----------------------------------------------------------------------------------------------------


def test_a_live_agent_is_exported_until_it_closes(tmp_path: Path) -> None:
    producer = f"trainer@{tmp_path.name}"
    agent = Agent(
        producer_id=producer,
        signer=Ed25519Signer.generate(),
        spool_dir=tmp_path / "spool",
        state_dir=tmp_path / "state",
        transport=GrpcTransport("127.0.0.1:9", timeout_s=0.2),  # nothing listens: events stay spooled
    )
    try:
        for i in range(3):
            agent.emit("dataset.registered", dataset_prov(f"{i:064x}"))
        assert _value("provault_agent_events_total", producer=producer, outcome="sealed") == 3
        assert _value("provault_agent_events_total", producer=producer, outcome="delivered") == 0
        assert _value("provault_agent_spool_events", producer=producer) == 3
        assert _value("provault_agent_spool_bytes", producer=producer) > 3 * 200
    finally:
        agent.close(timeout=0.5)
    assert REGISTRY.get_sample_value("provault_agent_spool_events", {"producer": producer}) is None


def test_agents_serve_metrics_only_when_asked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(agent_metrics, "_served", None)
    assert agent_metrics.serve_if_configured(Settings(data_dir=tmp_path)) is None
    server = agent_metrics.serve_if_configured(
        Settings(data_dir=tmp_path, metrics=MetricsSettings(agent_listen="127.0.0.1:0"))
    )
    try:
        assert server is not None and server.running()
        assert (
            agent_metrics.serve_if_configured(Settings(metrics=MetricsSettings(agent_listen="127.0.0.1:0"))) is server
        )
        assert "# TYPE provault_agent_spool_events gauge" in _get(server.url)[2]
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_producer_anomaly_is_counted_and_logged_with_its_ids(ledger: Ledger, ledger_service, caplog) -> None:
    _, stub = ledger_service
    chain, registration = ledger.producer_with_key()
    first, _skipped, third = (chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(3))
    d = _Delta(("provault_producer_anomalies_total", {"kind": "gap"}))
    with caplog.at_level(logging.WARNING, logger="provault.ingest"):
        for ev in (registration, first, third):
            result = stub.Append(ledger_pb2.AppendRequest(envelope_json=ev.envelope), timeout=TIMEOUT).result
            assert result.status == ledger_pb2.AppendStatus.APPEND_STATUS_ACCEPTED
    assert d.of("provault_producer_anomalies_total", kind="gap") == 1
    (record,) = [r for r in caplog.records if getattr(r, "reason", None) == "gap"]
    assert (record.event_id, record.producer_id) == (third.event_id, chain.producer_id)
    # ``seq`` is the entry's seq in the log (registration 0, first 1, third 2); the message gives the producer's
    assert record.seq == 2 and "gap anomaly at seq 3" in record.getMessage()
