"""How a provault gRPC server is assembled: pooled reads as a database role, health and reflection, one bind.

Shared by LedgerService and QueryService (``provault up``, ``ledger serve``, ``query serve``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg import sql
from psycopg_pool import ConnectionPool

from ledger.core.errors import ServerStartError, StorageUnavailable
from ledger.db import CONNECT_TIMEOUT_S, describe, fast_json

MAX_DB_INT = 2**63 - 1
"""The largest value a bigint column holds: request numbers beyond it are refused before any query."""


class ReadPool:
    """Pooled read connections as one database role (each service its own); driver errors become StorageUnavailable."""

    def __init__(
        self, dsn: str, *, timeout_s: float = 5.0, max_size: int = 8, role: str, statement_timeout_s: float = 0
    ) -> None:
        self.where = describe(dsn)
        self._role = role
        self._statement_timeout_ms = int(statement_timeout_s * 1000)
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            name="provault-ledger-reads",
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=self._configure,
            check=ConnectionPool.check_connection,
        )
        self.pool.open(wait=False)  # serve (and answer UNAVAILABLE) even while the database is down

    def _configure(self, conn: psycopg.Connection) -> None:
        fast_json(conn)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self._role)))
        if self._statement_timeout_ms:  # every statement of this pool's users is cut there (0: no limit)
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(self._statement_timeout_ms)))

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.Error as e:
            raise StorageUnavailable(
                f"cannot read from PostgreSQL at {self.where}: {type(e).__name__}: {e}",
                hint="is the server running and migrated?",
            ) from e

    def close(self) -> None:
        self.pool.close()


class ServiceServer(grpc.Server):
    """A grpc.Server that also releases the read pool and threads once it has stopped."""

    def __init__(
        self,
        server: grpc.Server,
        *,
        reads: ReadPool,
        health_servicer: health.HealthServicer,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._server = server
        self.reads = reads
        self.health = health_servicer
        self._executor = executor

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    def start(self) -> None:
        self._server.start()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)

    def stop(self, grace: float | None) -> threading.Event:
        """Stop serving; the returned event is set once calls ended and the pool is closed."""
        self.health.enter_graceful_shutdown()
        stopped = self._server.stop(grace)
        done = threading.Event()

        def release() -> None:
            stopped.wait()
            try:
                self.reads.close()
                self._executor.shutdown(wait=False)
            finally:
                done.set()

        threading.Thread(target=release, name="provault-grpc-release", daemon=True).start()
        return done


def serve_on(
    listen: str,
    *,
    reads: ReadPool,
    service_name: str,
    add_servicer: Callable[[grpc.Server], None],
    interceptors: Sequence[grpc.ServerInterceptor],
    max_workers: int,
    max_message_bytes: int,
    server_credentials: grpc.ServerCredentials | None,
    thread_prefix: str,
    listen_key: str,
) -> tuple[ServiceServer, int]:
    """A server for one provault service plus health (SERVING) and reflection, bound to ``listen``; not started.

    Shared by LedgerService and QueryService. With ``server_credentials`` it
    speaks TLS, else plaintext. When it cannot bind, everything it made
    (``reads`` included) is released and ServerStartError names ``listen_key``.
    """
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_prefix)
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.server(executor, interceptors=list(interceptors), options=options)
    add_servicer(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", service_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((service_name, health_name, reflection.SERVICE_NAME), server)
    try:
        port = (
            server.add_secure_port(listen, server_credentials)
            if server_credentials
            else server.add_insecure_port(listen)
        )
    except RuntimeError as e:
        port, cause = 0, e
    else:
        cause = None
    if not port:
        server.stop(None)
        reads.close()
        executor.shutdown(wait=False)
        raise ServerStartError(
            f"cannot listen for gRPC on {listen}", hint=f"is the port in use? set {listen_key}"
        ) from cause
    return ServiceServer(server, reads=reads, health_servicer=health_servicer, executor=executor), port
