"""The authentication seam of the gRPC services.

:class:`AuthInterceptor` asks a pluggable :class:`Authenticator` who the
caller is (from the call's metadata), checks the method's required roles in a
table, and refuses the call before any servicer code runs:
UNAUTHENTICATED when nobody could be identified, PERMISSION_DENIED when the
identity lacks the role.  A method missing from the table is refused (fail
closed); only the gRPC health and reflection services are public.  The
identity of an admitted call is available to servicers through
:func:`current_identity`.

For now the only authenticator is :class:`DevModeAuthenticator`, which makes
every caller an admin and says so loudly.  Tokens and mutual TLS plug in here
later as other authenticators; the interceptor and tables stay.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

logger = logging.getLogger("provault.auth")

ADMIN = "admin"
PRODUCER = "producer"
AUDITOR = "auditor"

ANY_AUTHENTICATED: frozenset[str] = frozenset()
"""Required roles of a method any identified caller may call."""

_LEDGER = "/provault.v1.LedgerService/"
LEDGER_METHOD_ROLES: Mapping[str, frozenset[str]] = {
    _LEDGER + "Append": frozenset({PRODUCER, ADMIN}),
    _LEDGER + "AppendStream": frozenset({PRODUCER, ADMIN}),
    _LEDGER + "GetEntry": ANY_AUTHENTICATED,
    _LEDGER + "GetCheckpoint": ANY_AUTHENTICATED,
    _LEDGER + "GetInclusionProof": ANY_AUTHENTICATED,
    _LEDGER + "GetConsistencyProof": ANY_AUTHENTICATED,
}

PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Methods open to anyone: health checks and reflection (the schema is public in docs/api.md)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    subject: str
    roles: frozenset[str]


class Authenticator(Protocol):
    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Identity | None:
        """Who is calling, or None when the metadata identifies nobody."""
        ...


class DevModeAuthenticator:
    """UNSAFE: every caller is an admin.  For ``provault up`` on loopback only."""

    def __init__(self) -> None:
        self._warned = False
        self._lock = threading.Lock()

    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Identity:
        with self._lock:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "DEV MODE: gRPC authentication is OFF, every caller is treated as an admin; "
                    "never expose this server beyond loopback"
                )
        return Identity(subject="dev-mode", roles=frozenset({ADMIN}))


_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("provault_identity", default=None)


def current_identity() -> Identity | None:
    """The identity of the call being served on this thread (None outside an admitted call)."""
    return _identity.get()


def permitted(identity: Identity, required: frozenset[str]) -> bool:
    return required is ANY_AUTHENTICATED or bool(identity.roles & required)


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        method_roles: Mapping[str, frozenset[str]],
        *,
        public_prefixes: Sequence[str] = PUBLIC_PREFIXES,
    ) -> None:
        self.authenticator = authenticator
        self.method_roles = dict(method_roles)
        self.public_prefixes = tuple(public_prefixes)

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:  # fmt: skip
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(self.public_prefixes):
            return handler
        required = self.method_roles.get(method)
        if required is None:
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, f"method {method} is not open to any role")
        identity = self.authenticator.authenticate(method, tuple(details.invocation_metadata or ()))
        if identity is None:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, "no valid credentials in the call metadata")
        if not permitted(identity, required):
            need = " or ".join(sorted(required))
            have = ", ".join(sorted(identity.roles)) or "none"
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED,
                            f"{method} needs role {need}; {identity.subject} has {have}")  # fmt: skip
        return _with_identity(handler, identity)


_CONSTRUCTORS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _rebuild(handler: grpc.RpcMethodHandler, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> grpc.RpcMethodHandler:
    """A handler of the same kind and (de)serializers with another behaviour."""
    kind = ("stream_" if handler.request_streaming else "unary_") + ("stream" if handler.response_streaming else "unary")
    return _CONSTRUCTORS[kind](
        behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def _behavior(handler: grpc.RpcMethodHandler) -> Callable[[Any, grpc.ServicerContext], Any]:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


def _with_identity(handler: grpc.RpcMethodHandler, identity: Identity) -> grpc.RpcMethodHandler:
    """The same handler, with the identity set while its behaviour runs (on the worker thread)."""
    behavior = _behavior(handler)

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        token = _identity.set(identity)
        try:
            return behavior(request, context)
        finally:
            _identity.reset(token)

    def run_streaming(request: Any, context: grpc.ServicerContext) -> Any:
        token = _identity.set(identity)  # responses are produced while the generator runs
        try:
            yield from behavior(request, context)
        finally:
            _identity.reset(token)

    return _rebuild(handler, run_streaming if handler.response_streaming else run)


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    logger.info("refused a call: %s: %s", code.name, message)

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return _rebuild(handler, refuse)
