"""A gRPC server as a stack service: start, address, running, stop.

LedgerService and QueryService run the same way (``provault up``, ``ledger
serve``, ``query serve``); subclasses say only how to build their server and
which method-role table the authentication interceptor enforces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc

from .auth import AuthInterceptor, Authenticator, DevModeAuthenticator

logger = logging.getLogger("provault.grpc")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class GrpcServerService:
    name = "grpc"
    service_label = "gRPC service"
    method_roles: Mapping[str, frozenset[str]] = {}

    def __init__(
        self,
        *,
        dsn: str,
        listen: str,
        max_message_bytes: int,
        authenticator: Authenticator | None = None,
        server_credentials: grpc.ServerCredentials | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.dsn = dsn
        self.listen = listen
        self.max_message_bytes = max_message_bytes
        self.authenticator = authenticator or DevModeAuthenticator()
        self.server_credentials = server_credentials
        self.log = log_path or Path("(stderr)")
        self.port: int | None = None
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()

    def _build(self, interceptors: Sequence[grpc.ServerInterceptor]) -> tuple[grpc.Server, int]:
        raise NotImplementedError

    @property
    def address(self) -> str | None:
        """HOST:PORT actually bound, once started."""
        return f"{self.listen.rsplit(':', 1)[0]}:{self.port}" if self.port else None

    def start(self) -> None:
        self._server, self.port = self._build((AuthInterceptor(self.authenticator, self.method_roles),))
        self._server.start()
        logger.info("%s listening on %s", self.service_label, self.address)
        host = self.listen.rsplit(":", 1)[0].strip("[]")
        if isinstance(self.authenticator, DevModeAuthenticator) and host not in LOOPBACK:
            logger.warning("DEV MODE authentication on a non-loopback address %s: anyone who can connect is admin", self.listen)

    def running(self) -> bool:
        return self._server is not None and not self._stopped.is_set()

    def stop(self, grace: float | None = 5.0) -> None:
        if self._server is None or self._stopped.is_set():
            return
        self._stopped.set()
        self._server.stop(grace).wait()
