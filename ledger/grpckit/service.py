"""A gRPC server as a stack service: start, address, running, stop.

LedgerService and QueryService run the same way (``provault up``, ``ledger
serve``, ``query serve``); subclasses say only how to build their server and
which method-role table the authentication interceptor enforces.

Both register their servicer with :func:`register_servicer` instead of the
generated ``add_*Servicer_to_server``: grpc's own request deserializer runs
before any interceptor and answers bytes that do not parse with INTERNAL
("Exception deserializing request!"), before authentication.  Here the
request arrives as raw bytes and is parsed inside the handler, so the
authentication interceptor decides first (an unauthenticated caller gets
UNAUTHENTICATED, whatever it sent) and bytes that are not the method's
request message are INVALID_ARGUMENT naming the method and the message type.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2

from ledger.metrics import GrpcMetricsInterceptor

from .auth import Authenticator, AuthInterceptor, DevModeAuthenticator
from .status import MalformedRequest, abort_with

logger = logging.getLogger("provault.grpc")

LOOPBACK = ("127.0.0.1", "localhost", "::1")

_HANDLER_CONSTRUCTORS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def register_servicer(server: grpc.Server, service: ServiceDescriptor, servicer: object) -> None:
    """Serve ``service``'s methods with ``servicer``, parsing each request as :func:`parse_request` does."""
    handlers = {m.name: _method_handler(m, getattr(servicer, m.name)) for m in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def parse_request(method: str, request_type: type[message.Message], data: bytes, *, index: int | None = None) -> Any:
    """``data`` parsed as ``request_type``; MalformedRequest (INVALID_ARGUMENT) naming ``method`` if it cannot be."""
    try:
        return request_type.FromString(data)
    except message.DecodeError as err:
        name = request_type.DESCRIPTOR.full_name
        detail = str(err).removeprefix(f"Error parsing message with type '{name}': ")
        detail = detail[:1].lower() + detail[1:]
        where = f"{method}: " if index is None else f"{method}: stream message {index}: "
        raise MalformedRequest(
            f"{where}the request bytes are not a valid {name} ({detail})",
            hint=f"send a serialized {name} (docs/api.md)",
        ) from None


def _method_handler(
    method: MethodDescriptor, behavior: Callable[[Any, grpc.ServicerContext], Any]
) -> grpc.RpcMethodHandler:
    """A handler that takes raw request bytes (no grpc deserializer) and parses them before ``behavior``."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)

    def parsed(requests: Iterable[bytes]) -> Iterator[Any]:
        for i, data in enumerate(requests):
            yield parse_request(path, request_type, data, index=i)

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if method.client_streaming:
                return behavior(parsed(request), context)
            return behavior(parse_request(path, request_type, request), context)
        except MalformedRequest as err:  # a servicer that lets it through (provault's own map it themselves)
            abort_with(context, err)

    constructor = _HANDLER_CONSTRUCTORS[(method.client_streaming, method.server_streaming)]
    return constructor(run, request_deserializer=None, response_serializer=response_type.SerializeToString)


class GrpcServerService:
    name = "grpc"
    service_label = "gRPC service"
    service_name = ""
    """The full protobuf service name its health is also reported under."""
    method_roles: Mapping[str, frozenset[str]] = {}
    depends_on: frozenset[str] = frozenset()
    """The embedded servers ("postgres", "nats") it cannot serve without: health says NOT_SERVING while one is down."""

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
        self._down: set[str] = set()

    def _build(self, interceptors: Sequence[grpc.ServerInterceptor]) -> tuple[grpc.Server, int]:
        raise NotImplementedError

    @property
    def address(self) -> str | None:
        """HOST:PORT actually bound, once started."""
        return f"{self.listen.rsplit(':', 1)[0]}:{self.port}" if self.port else None

    def start(self) -> None:
        self._server, self.port = self._build(
            (GrpcMetricsInterceptor(self.method_roles), AuthInterceptor(self.authenticator, self.method_roles))
        )
        self._server.start()
        logger.info("%s listening on %s", self.service_label, self.address)
        host = self.listen.rsplit(":", 1)[0].strip("[]")
        if isinstance(self.authenticator, DevModeAuthenticator) and host not in LOOPBACK:
            logger.warning(
                "DEV MODE authentication on a non-loopback address %s: anyone who can connect is admin", self.listen
            )

    def running(self) -> bool:
        return self._server is not None and not self._stopped.is_set()

    def set_serving(self, serving: bool, *, cause: str = "embedded") -> None:
        """Report health on grpc.health.v1, for the server as a whole and for its service.

        Each ``cause`` (the supervisor's "embedded", the dependency probe's "dependencies") holds the server
        NOT_SERVING on its own; it is SERVING only while none does.
        """
        (self._down.discard if serving else self._down.add)(cause)
        health = getattr(self._server, "health", None)
        if health is None or self._stopped.is_set():
            return
        status = health_pb2.HealthCheckResponse.NOT_SERVING if self._down else health_pb2.HealthCheckResponse.SERVING
        for name in ("", self.service_name):
            health.set(name, status)

    def stop(self, grace: float | None = 5.0) -> None:
        if self._server is None or self._stopped.is_set():
            return
        self._stopped.set()
        self._server.stop(grace).wait()
