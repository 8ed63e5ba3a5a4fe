"""Prometheus metrics: the ledger's own, the ones both gRPC servers share, and the endpoint that serves them.

Metrics are process-wide (the Prometheus client's default registry), one
``/metrics`` per process, as Prometheus expects: ``provault up`` runs
everything in one process and exports everything on one port; ``ledger
serve``, ``query serve`` and ``openlineage serve`` each export what they run.
The query side and the agents define their metrics beside the code that
updates them (``query/projector.py``, ``agents/metrics.py``,
``agents/openlineage/server.py``) with the constructors re-exported here.

docs/operations.md (Monitoring) lists every metric; tests/deploy/test_monitoring.py
checks that the alert rules and the dashboard use only metrics the code exports.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from ledger.core.errors import ConfigError, ServerStartError
from ledger.credentials import is_loopback

__all__ = ["Counter", "Gauge", "Histogram", "MetricsServer", "REGISTRY", "GrpcMetricsInterceptor"]

logger = logging.getLogger("provault.metrics")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds, from half a millisecond (a cached read) to thirty seconds (a stalled commit)."""
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000)

INGEST_EVENTS = Counter("provault_ingest_events", "Submissions the ledger decided on.", ("source", "outcome"))
INGEST_REJECTIONS = Counter("provault_ingest_rejections", "Rejected submissions by reason.", ("reason",))
INGEST_BATCH = Histogram(
    "provault_ingest_batch_events", "Submissions per committed batch.", ("source",), buckets=_BATCH_BUCKETS
)
INGEST_COMMIT = Histogram(
    "provault_ingest_commit_seconds",
    "Time to plan and commit one batch in PostgreSQL.",
    ("source",),
    buckets=LATENCY_BUCKETS,
)
INGEST_BACKLOG = Gauge(
    "provault_ingest_backlog_messages", "Messages in the stream the ledger has not fetched yet (at the last fetch)."
)
PRODUCER_ANOMALIES = Counter("provault_producer_anomalies", "Producer chain anomalies recorded.", ("kind",))
LOG_ENTRIES = Gauge("provault_log_entries", "The log's size (entries), as the checkpointer last read it.")
CHECKPOINT_SIZE = Gauge(
    "provault_checkpoint_tree_size", "Tree size of the newest checkpoint (signed here, or stored when it started)."
)
CHECKPOINT_TIME = Gauge("provault_checkpoint_timestamp_seconds", "When that checkpoint was signed (Unix time).")
CHECKPOINT_FAILURES = Counter("provault_checkpoint_failures", "Checkpointing attempts that failed (retried).")
GRPC_REQUESTS = Counter("provault_grpc_requests", "Finished RPCs by status code.", ("service", "method", "code"))
GRPC_LATENCY = Histogram(
    "provault_grpc_request_seconds",
    "RPC latency, to the last message for streams.",
    ("service", "method"),
    buckets=LATENCY_BUCKETS,
)
DEPENDENCY_UP = Gauge(
    "provault_dependency_up", "1 while the process reaches the server it needs, 0 while it does not.", ("dependency",)
)
BUILD_INFO = Gauge("provault_build_info", "provault's version; always 1.", ("version",))


def record_batch(plan, *, source: str, seconds: float) -> None:
    """Count one committed :class:`~ledger.core.admission.BatchPlan` of ``source`` that took ``seconds``."""
    n_acc, n_dup, n_ref = len(plan.accepted), len(plan.duplicates), len(plan.refused)
    if n_acc:
        INGEST_EVENTS.labels(source, "accepted").inc(n_acc)
    if n_dup:
        INGEST_EVENTS.labels(source, "duplicate").inc(n_dup)
    if n_ref:
        INGEST_EVENTS.labels(source, "rejected").inc(n_ref)
        for r in plan.refused:
            INGEST_REJECTIONS.labels(r.reason).inc()
    for a in plan.anomalies:
        PRODUCER_ANOMALIES.labels(a.kind).inc()
    INGEST_BATCH.labels(source).observe(n_acc + n_dup + n_ref)
    INGEST_COMMIT.labels(source).observe(seconds)


def set_version(version: str) -> None:
    BUILD_INFO.labels(version).set(1)


# --- gRPC ---------------------------------------------------------------------------------------------------------


def _split(method: str) -> tuple[str, str]:
    """``/provault.v1.QueryService/Trace`` -> (``QueryService``, ``Trace``)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service.rsplit(".", 1)[-1], name


class GrpcMetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every RPC of the server it is installed on, by service, method and final status code.

    Installed outermost (before authentication), so refused calls count as UNAUTHENTICATED / PERMISSION_DENIED.
    Only the service's own methods count (``methods``): not health probes, reflection, or methods that do not
    exist (a scanner must not create a label per guess).
    """

    def __init__(self, methods: Iterable[str]) -> None:
        self._known = frozenset(methods)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if method not in self._known:  # health probes, reflection: not the service's traffic
            return handler
        service, name = _split(method)
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, service, name))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._streaming(handler.unary_stream, service, name))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, service, name))
        return handler._replace(stream_stream=self._streaming(handler.stream_stream, service, name))

    @staticmethod
    def _finish(context, service: str, name: str, started: float, failed: BaseException | None) -> None:
        code = context.code()  # set by abort() and set_code(); None: the handler returned, or raised unhandled
        if code is None:
            code = grpc.StatusCode.OK if failed is None else grpc.StatusCode.UNKNOWN
        label = code.name if isinstance(code, grpc.StatusCode) else str(code)
        GRPC_REQUESTS.labels(service, name, label).inc()
        GRPC_LATENCY.labels(service, name).observe(time.perf_counter() - started)

    def _unary(self, behavior: Callable, service: str, name: str) -> Callable:
        def run(request, context):
            started = time.perf_counter()
            failed = None
            try:
                return behavior(request, context)
            except BaseException as e:
                failed = e
                raise
            finally:
                self._finish(context, service, name, started, failed)

        return run

    def _streaming(self, behavior: Callable, service: str, name: str) -> Callable:
        def run(request, context):
            started = time.perf_counter()
            failed = None
            try:
                yield from behavior(request, context)
            except BaseException as e:
                failed = e
                raise
            finally:
                self._finish(context, service, name, started, failed)

        return run


# --- the endpoint -------------------------------------------------------------------------------------------------


class MetricsServer:
    """``GET /metrics`` on ``listen`` (HOST:PORT, port 0 picks one), HTTPS with ``tls_cert``/``tls_key``; a stack service."""

    name = "metrics"

    def __init__(
        self,
        listen: str,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        dev_mode: bool = False,
        listen_key: str = "metrics.ledger_listen",
        tls_keys: str = "grpc.tls_cert and grpc.tls_key",
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.listen_key = listen_key
        if not tls_cert and not dev_mode and not is_loopback(listen):
            raise ConfigError(
                [f"{listen_key}: {listen!r} is not a loopback address and no certificate is configured"],
                hint=f"set {tls_keys} (metrics are served over HTTPS with them), or listen on 127.0.0.1",
            )
        self.log = Path("(stderr)")
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/metrics"

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(
                self.port,
                addr=self.host,
                certfile=self.tls_cert,
                keyfile=self.tls_key,
                protocol=ssl.PROTOCOL_TLS_SERVER,
            )
        except OSError as e:
            raise ServerStartError(
                f"the metrics endpoint cannot listen on {self.host}:{self.port}: {e.strerror or e}",
                hint=f"choose another {self.listen_key}, or set metrics.enabled = false",
            ) from None
        self.port = self._server.server_port
        logger.info("metrics on %s", self.url)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)


def server_for(
    settings,
    listen_key: str,
    *,
    tls: tuple[str | None, str | None] | None = None,
    tls_keys: str = "grpc.tls_cert and grpc.tls_key",
) -> MetricsServer | None:
    """The metrics endpoint a process runs at ``metrics.<listen_key>``; None with ``metrics.enabled`` off or no address.

    HTTPS with ``tls`` (cert, key), by default the gRPC servers' certificate, when one is configured.
    """
    listen = getattr(settings.metrics, listen_key)
    if not settings.metrics.enabled or listen is None:
        return None
    cert, key = tls if tls is not None else (settings.grpc.tls_cert, settings.grpc.tls_key)
    if not (cert and key):
        cert = key = None
    return MetricsServer(
        listen,
        tls_cert=cert,
        tls_key=key,
        dev_mode=settings.dev_mode,
        listen_key=f"metrics.{listen_key}",
        tls_keys=tls_keys,
    )
