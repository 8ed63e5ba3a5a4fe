"""Authentication and roles of the gRPC services.

:class:`AuthInterceptor` asks a pluggable :class:`Authenticator` who the
caller is (from the call's metadata and, for :class:`PeerAuthenticator`, the
TLS peer), checks the method's required roles in a table, and refuses the
call before any servicer code runs: UNAUTHENTICATED when nobody could be
identified, PERMISSION_DENIED when the identity lacks the role.  A method
missing from the table is refused (fail closed).  Only the gRPC health
service is public (load balancers and probes carry no credentials);
reflection needs any identity.  The identity of an admitted call is
available to servicers through :func:`current_identity`.

Roles:

* ``producer`` -- LedgerService Append / AppendStream, and only for the
  producer ids its credential names (patterns, ``*`` for any), never ``key.*``
  events (:func:`append_refusal`, checked by the servicer before appending);
* ``auditor`` -- every QueryService method and the LedgerService reads;
* ``admin`` -- everything.

Credentials (``ledger.grpckit.security.server_security`` builds them from the settings):

* **bearer tokens** -- ``authorization: Bearer pvt_<id>_<secret>``, checked
  against the hashes in ``grpc.tokens_file`` (:mod:`.tokens`), re-read when
  the file changes, so ``provault auth token revoke`` takes effect without a
  restart.  A call that carries a token is judged by the token alone.
* **client certificates** (mutual TLS, with ``grpc.tls_client_ca``) -- the
  TLS handshake accepts only certificates that CA signed; the subject's CN
  names the caller (``cert:<CN>``), its OU attributes that are role names
  give the roles, and SAN URIs ``provault:producer:<pattern>`` the producer
  ids a producer certificate may append for.

Without ``dev_mode`` a server refuses to start with no way to authenticate
(no tokens file and no client CA), and refuses a non-loopback listen address
without TLS (tokens would travel in clear).  With ``dev_mode``
(``provault up``) :class:`DevModeAuthenticator` makes every caller an admin
and says so loudly.
"""

from __future__ import annotations

import contextvars
import fnmatch
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from ledger.core.envelope import PAYLOAD_TYPE, parse_envelope
from ledger.core.errors import ProvaultError
from ledger.core.events import parse_event
from ledger.core.keyring import ADMIN_ONLY_KINDS

from .tokens import ROLES, TokenEntry, TokenStore, match_token

logger = logging.getLogger("provault.auth")

ADMIN = "admin"
PRODUCER = "producer"
AUDITOR = "auditor"

ANY_AUTHENTICATED: frozenset[str] = frozenset()
"""Required roles of a method any identified caller may call."""

_LEDGER = "/provault.v1.LedgerService/"
_READERS = frozenset({AUDITOR, ADMIN})
LEDGER_METHOD_ROLES: Mapping[str, frozenset[str]] = {
    _LEDGER + "Append": frozenset({PRODUCER, ADMIN}),
    _LEDGER + "AppendStream": frozenset({PRODUCER, ADMIN}),
    _LEDGER + "GetEntry": _READERS,
    _LEDGER + "GetCheckpoint": _READERS,
    _LEDGER + "GetInclusionProof": _READERS,
    _LEDGER + "GetConsistencyProof": _READERS,
}

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods open to anyone: health checks."""

AUTHENTICATED_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Methods open to any identified caller: reflection (the schema is public in docs/api.md, the server need not be)."""

PRODUCER_SAN_PREFIX = "provault:producer:"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    subject: str
    roles: frozenset[str]
    producers: tuple[str, ...] | None = None
    """Producer-id patterns this caller may append for; None: not restricted by producer id."""


class Authenticator(Protocol):
    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Identity | None:
        """Who is calling, or None when the metadata identifies nobody."""
        ...


class PeerAuthenticator(Authenticator, Protocol):
    def authenticate_peer(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]], auth_context: Mapping[str, Sequence[bytes]]
    ) -> Identity | None:
        """The same, also given the TLS peer's properties (``ServicerContext.auth_context()``)."""
        ...


class NotPermitted(ProvaultError):
    """The caller is identified but may not do this (PERMISSION_DENIED)."""

    reason = "permission_denied"


# --- authenticators ----------------------------------------------------------------------


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


def _authorization(metadata: Sequence[tuple[str, str | bytes]]) -> list[str]:
    return [v.decode("latin-1") if isinstance(v, bytes) else v for k, v in metadata if k.lower() == "authorization"]


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The token of the one ``authorization: Bearer <token>`` entry; None when absent, repeated or malformed."""
    values = _authorization(metadata)
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_identity(entry: TokenEntry) -> Identity:
    name = f" ({entry.name})" if entry.name else ""
    return Identity(subject=f"token:{entry.id}{name}", roles=frozenset({entry.role}), producers=entry.producers)


class TokenAuthenticator:
    """Bearer tokens checked against the tokens file, re-read whenever it changes.

    A file that cannot be read or parsed at start is a ConfigError; one that
    breaks later is logged and, until fixed, no token is accepted (fail closed).
    """

    def __init__(self, path: Path) -> None:
        self.store = TokenStore(path)
        self._lock = threading.Lock()
        self._stamp = self.store.stamp()
        self._entries = self.store.load()

    def _current(self) -> Mapping[str, TokenEntry]:
        stamp = self.store.stamp()
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._entries = self.store.load()
                    logger.info("re-read the tokens file %s: %d tokens", self.store.path, len(self._entries))
                except ProvaultError as e:
                    self._entries = {}
                    logger.error(
                        "the tokens file is unusable, refusing every token until it is fixed: %s", e.diagnostics()
                    )
                self._stamp = stamp
            return self._entries

    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Identity | None:
        token = bearer_token(metadata)
        entry = match_token(self._current(), token) if token else None
        return token_identity(entry) if entry else None


@functools.lru_cache(maxsize=1024)
def certificate_identity(pem: bytes) -> Identity | None:
    """The identity a (CA-verified) client certificate names: CN, OU roles, SAN URI producer patterns."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(cns) != 1 or not cns[0]:
        return None
    ous = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)}
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    producers = tuple(
        u[len(PRODUCER_SAN_PREFIX) :]
        for u in uris
        if u.startswith(PRODUCER_SAN_PREFIX) and len(u) > len(PRODUCER_SAN_PREFIX)
    )
    return Identity(subject=f"cert:{cns[0]}", roles=frozenset(ous & set(ROLES)), producers=producers)


class CallerAuthenticator:
    """A server's authenticator outside dev mode: the bearer token if the call has one, else the client certificate."""

    def __init__(self, tokens: TokenAuthenticator, *, certificates: bool) -> None:
        self.tokens = tokens
        self.certificates = certificates

    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Identity | None:
        return self.tokens.authenticate(method, metadata)

    def authenticate_peer(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]], auth_context: Mapping[str, Sequence[bytes]]
    ) -> Identity | None:
        if _authorization(metadata):  # a call with a token is judged by it, never by the certificate beside it
            return self.tokens.authenticate(method, metadata)
        pems = auth_context.get("x509_pem_cert") or ()
        return certificate_identity(bytes(pems[0])) if self.certificates and len(pems) == 1 else None


# --- what a producer may append ------------------------------------------------------------


def restricted(identity: Identity | None) -> bool:
    """Whether appends of ``identity`` must be checked against its producer patterns."""
    return identity is not None and ADMIN not in identity.roles and identity.producers is not None


def append_refusal(identity: Identity | None, raw: bytes) -> str | None:
    """Why ``identity`` may not append the envelope ``raw``; None when it may.

    Parsed with the ledger's own parsers, so bytes that are not an event here
    are not one for the ledger either: those pass, and the ledger refuses and
    records them.
    """
    if identity is None or not restricted(identity):
        return None
    try:
        env = parse_envelope(raw, max_size=max(len(raw), 1), payload_type=PAYLOAD_TYPE)
        event = parse_event(env.payload, max_size=max(len(env.payload), 1))
    except ProvaultError:
        return None
    assert identity.producers is not None
    if event.kind in ADMIN_ONLY_KINDS:
        return f"{event.kind} events need the admin role; {identity.subject} has {', '.join(sorted(identity.roles))}"
    if not any(fnmatch.fnmatchcase(event.producer.id, p) for p in identity.producers):
        allowed = ", ".join(repr(p) for p in identity.producers) or "none"
        return f"producer id {event.producer.id!r} is not one {identity.subject} may append for (allowed: {allowed})"
    return None


# --- the interceptor -----------------------------------------------------------------------

_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("provault_identity", default=None)


def current_identity() -> Identity | None:
    """The identity of the call being served on this thread (None outside an admitted call)."""
    return _identity.get()


def permitted(identity: Identity, required: frozenset[str]) -> bool:
    return required is ANY_AUTHENTICATED or bool(identity.roles & required)


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        method_roles: Mapping[str, frozenset[str]],
        *,
        public_prefixes: Sequence[str] = PUBLIC_PREFIXES,
        authenticated_prefixes: Sequence[str] = AUTHENTICATED_PREFIXES,
    ) -> None:
        self.authenticator = authenticator
        self.method_roles = dict(method_roles)
        self.public_prefixes = tuple(public_prefixes)
        self.authenticated_prefixes = tuple(authenticated_prefixes)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(self.public_prefixes):
            return handler
        required = (
            ANY_AUTHENTICATED if method.startswith(self.authenticated_prefixes) else self.method_roles.get(method)
        )
        if required is None:
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, f"method {method} is not open to any role")
        return _guarded(handler, lambda context: self._admit(method, required, context))

    def _admit(self, method: str, required: frozenset[str], context: grpc.ServicerContext) -> Identity:
        """The caller's identity if it may call ``method``; raises _Refused otherwise."""
        metadata = tuple((m[0], m[1]) for m in context.invocation_metadata() or ())
        peer = getattr(self.authenticator, "authenticate_peer", None)
        identity = (
            peer(method, metadata, context.auth_context())
            if peer
            else self.authenticator.authenticate(method, metadata)
        )
        if identity is None:
            raise _Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                "no valid credentials in the call (a bearer token or a client certificate)",
            )
        if not permitted(identity, required):
            need = " or ".join(sorted(required))
            have = ", ".join(sorted(identity.roles)) or "none"
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED, f"{method} needs role {need}; {identity.subject} has {have}"
            )
        return identity


_CONSTRUCTORS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _rebuild(
    handler: grpc.RpcMethodHandler, behavior: Callable[[Any, grpc.ServicerContext], Any]
) -> grpc.RpcMethodHandler:
    """A handler of the same kind and (de)serializers with another behaviour."""
    kind = ("stream_" if handler.request_streaming else "unary_") + (
        "stream" if handler.response_streaming else "unary"
    )
    return _CONSTRUCTORS[kind](
        behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def _behavior(handler: grpc.RpcMethodHandler) -> Callable[[Any, grpc.ServicerContext], Any]:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


def _abort(context: grpc.ServicerContext, refused: _Refused) -> None:
    logger.info("refused a call: %s: %s", refused.code.name, refused.message)
    context.abort(refused.code, refused.message)


def _guarded(
    handler: grpc.RpcMethodHandler, admit: Callable[[grpc.ServicerContext], Identity]
) -> grpc.RpcMethodHandler:
    """The same handler, run only for an admitted caller, with its identity set (on the worker thread)."""
    behavior = _behavior(handler)

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            identity = admit(context)
        except _Refused as refused:
            _abort(context, refused)
        token = _identity.set(identity)
        try:
            return behavior(request, context)
        finally:
            _identity.reset(token)

    def run_streaming(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            identity = admit(context)
        except _Refused as refused:
            _abort(context, refused)
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
