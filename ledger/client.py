"""A small gRPC client for LedgerService, used by the CLI and the agents' fallback.

Credentials (see ``ledger/grpckit/auth.py``): a bearer token goes in each
call's ``authorization`` metadata; TLS is used when a CA (``tls_ca``) or a
client certificate is given.  A token is never sent in clear to a
non-loopback target (ConfigError: set ``grpc.tls_ca``).
:meth:`ClientCredentials.from_settings` reads ``grpc.client_token_file``,
``grpc.tls_ca`` and ``grpc.client_cert``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import grpc

from ledger.config import GrpcSettings
from ledger.core.errors import ConfigError, ProvaultError, TransportUnavailable
from ledger.credentials import is_loopback, read_token_file
from provault.v1 import ledger_pb2, ledger_pb2_grpc

DEFAULT_TIMEOUT_S = 15.0


class RemoteError(ProvaultError):
    """The ledger answered with an error status."""

    reason = "remote_error"

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"ledger answered {code.name}: {details}")
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendOutcome:
    status: str  # accepted | duplicate | rejected
    seq: int
    event_id: str
    reason: str
    message: str


def _status_name(value: int) -> str:
    return ledger_pb2.AppendStatus.Name(value).removeprefix("APPEND_STATUS_").lower()


def _reason_name(value: int) -> str:
    name = ledger_pb2.RejectionReason.Name(value).removeprefix("REJECTION_REASON_").lower()
    return "" if name == "unspecified" else name


def outcome_of(result: ledger_pb2.AppendResult) -> AppendOutcome:
    return AppendOutcome(
        status=_status_name(result.status),
        seq=result.seq,
        event_id=result.event_id,
        reason=_reason_name(result.rejection_reason),
        message=result.rejection_message,
    )


_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----\s*", re.S)


def _read(path: str | os.PathLike[str], key: str, *, secret: bool = False) -> bytes:
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"{key}: cannot read {p} ({e.strerror})"]) from None
    if secret and st.st_mode & 0o077:
        raise ConfigError(
            [f"{key}: {p} is readable by others (mode {st.st_mode & 0o777:o}); it holds a secret"],
            hint=f"chmod 600 {p}",
        )
    return data


def split_cert_and_key(pem: bytes, key: str = "grpc.client_cert") -> tuple[bytes, bytes]:
    """(certificate chain, private key) from one PEM file holding both."""
    keys = [m.group(0) for m in _PEM_KEY.finditer(pem)]
    chain = _PEM_KEY.sub(b"", pem)
    if len(keys) != 1 or b"-----BEGIN CERTIFICATE-----" not in chain:
        raise ConfigError(
            [
                f"{key}: expected one PEM file with the certificate chain and one private key, "
                f"found {len(keys)} private keys{'' if b'CERTIFICATE' in chain else ' and no certificate'}"
            ]
        )
    return chain, keys[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCredentials:
    """What a client presents to the ledger or query service."""

    token: str | None = None
    tls_ca: bytes | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None

    @classmethod
    def from_settings(cls, grpc_settings: GrpcSettings) -> ClientCredentials:
        g = grpc_settings
        token = read_token_file(Path(g.client_token_file).expanduser()) if g.client_token_file else None
        ca = _read(g.tls_ca, "grpc.tls_ca") if g.tls_ca else None
        cert, key = (
            split_cert_and_key(_read(g.client_cert, "grpc.client_cert", secret=True)) if g.client_cert else (None, None)
        )
        return cls(token=token, tls_ca=ca, tls_cert=cert, tls_key=key)

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None

    def channel(self, target: str) -> grpc.Channel:
        """A channel to ``target``: TLS when configured; ConfigError rather than a token in clear beyond loopback."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(["a client certificate needs its private key (tls_cert and tls_key), found only one"])
        if self.token and not self.tls and not is_loopback(target):
            raise ConfigError(
                [f"refusing to send a bearer token in clear to {target}, which is not a loopback address"],
                hint="set grpc.tls_ca (the CA of the server's certificate) so the client uses TLS",
            )
        if not self.tls:
            return grpc.insecure_channel(target)
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.tls_ca, private_key=self.tls_key, certificate_chain=self.tls_cert
        )
        return grpc.secure_channel(target, creds)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def _pem(value: bytes | str | os.PathLike[str] | None, what: str) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    return _read(value, what)


class LedgerClient:
    """LedgerService over one channel.

    ``tls_ca``, ``tls_cert`` and ``tls_key`` are PEM bytes or paths of PEM
    files; giving any of them makes the channel TLS (system roots without
    ``tls_ca``).  ``token`` is sent as ``authorization: Bearer <token>``.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: bytes | str | os.PathLike[str] | None = None,
        tls_cert: bytes | str | os.PathLike[str] | None = None,
        tls_key: bytes | str | os.PathLike[str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.credentials = ClientCredentials(
            token=token,
            tls_ca=_pem(tls_ca, "tls_ca"),
            tls_cert=_pem(tls_cert, "tls_cert"),
            tls_key=_pem(tls_key, "tls_key"),
        )
        self._metadata = self.credentials.metadata()
        self._channel = channel or self.credentials.channel(target)
        self._stub = ledger_pb2_grpc.LedgerServiceStub(self._channel)

    @classmethod
    def from_settings(
        cls, target: str, grpc_settings: GrpcSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> LedgerClient:
        """A client with the credentials the settings name (grpc.client_token_file, grpc.tls_ca, grpc.client_cert)."""
        return cls.with_credentials(target, ClientCredentials.from_settings(grpc_settings), timeout_s=timeout_s)

    @classmethod
    def with_credentials(
        cls, target: str, credentials: ClientCredentials, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> LedgerClient:
        c = credentials
        return cls(target, token=c.token, tls_ca=c.tls_ca, tls_cert=c.tls_cert, tls_key=c.tls_key, timeout_s=timeout_s)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise TransportUnavailable(
                    f"ledger at {self.target} is not reachable ({code.name})",
                    hint="is `provault up` or `provault ledger serve` running? check grpc.ledger_listen"
                    + (" and the TLS settings (grpc.tls_ca, grpc.client_cert)" if self.credentials.tls else ""),
                ) from None
            error = RemoteError(code, details)
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                error.hint = (
                    "check grpc.client_token_file or grpc.client_cert (`provault auth token create` makes a token)"
                )
            raise error from None

    def append(self, envelope: bytes) -> AppendOutcome:
        res = self._call(self._stub.Append, ledger_pb2.AppendRequest(envelope_json=envelope))
        return outcome_of(res.result)

    def append_many(self, envelopes: list[bytes]) -> list[AppendOutcome]:
        requests = iter([ledger_pb2.AppendStreamRequest(envelope_json=e) for e in envelopes])
        res = self._call(self._stub.AppendStream, requests)
        return [outcome_of(r) for r in res.results]

    def latest_checkpoint(self) -> ledger_pb2.GetCheckpointResponse:
        return self._call(self._stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest())
