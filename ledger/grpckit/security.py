"""A server's security from the settings: TLS credentials checked before the port opens, and the authenticator
its interceptor uses (tokens, client certificates, or dev mode on loopback only)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ledger.config import Settings
from ledger.core.errors import ConfigError
from ledger.credentials import is_loopback

from .auth import Authenticator, CallerAuthenticator, DevModeAuthenticator, TokenAuthenticator
from .tokens import tokens_path

logger = logging.getLogger("provault.auth")
# --- from the settings -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    authenticator: Authenticator
    credentials: grpc.ServerCredentials | None
    """TLS server credentials; None serves plaintext (loopback only, or dev mode)."""
    summary: str


def _read(key: str, value: str, problems: list[str], *, secret: bool = False) -> bytes:
    path = Path(value).expanduser()
    try:
        st = os.stat(path)
        data = path.read_bytes()
    except OSError as e:
        problems.append(f"{key}: cannot read {path} ({e.strerror})")
        return b""
    if secret and st.st_mode & 0o077:
        problems.append(f"{key}: {path} is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it")
    return data


def _pem_problem(key: str, data: bytes, *, private: bool) -> str | None:
    try:
        load_pem_private_key(data, password=None) if private else x509.load_pem_x509_certificates(data)
    except (ValueError, TypeError) as e:
        return f"{key}: expected PEM {'private key (unencrypted)' if private else 'certificates'}, found something else ({e})"
    return None


def _tls_pairing(settings: Settings) -> list[str]:
    g = settings.grpc
    problems = []
    if bool(g.tls_cert) != bool(g.tls_key):
        only = "grpc.tls_cert" if g.tls_cert else "grpc.tls_key"
        problems.append(f"grpc.tls_cert and grpc.tls_key: expected both or neither, found only {only}")
    if g.tls_client_ca and not g.tls_cert:
        problems.append("grpc.tls_client_ca: mutual TLS needs the server's own grpc.tls_cert and grpc.tls_key too")
    return problems


def tls_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS server credentials from grpc.tls_cert / tls_key (and tls_client_ca for mutual TLS); ConfigError naming keys."""
    g = settings.grpc
    problems = _tls_pairing(settings)
    if problems or not (g.tls_cert and g.tls_key):
        if problems:
            raise ConfigError(problems, hint="see docs/configuration.md, [grpc]")
        return None
    files = {
        "grpc.tls_cert": _read("grpc.tls_cert", g.tls_cert, problems),
        "grpc.tls_key": _read("grpc.tls_key", g.tls_key, problems, secret=True),
    }
    if g.tls_client_ca:
        files["grpc.tls_client_ca"] = _read("grpc.tls_client_ca", g.tls_client_ca, problems)
    problems += [p for k, data in files.items() if data and (p := _pem_problem(k, data, private=k == "grpc.tls_key"))]
    if problems:
        raise ConfigError(problems, hint="see docs/configuration.md, [grpc]")
    return grpc.ssl_server_credentials(
        [(files["grpc.tls_key"], files["grpc.tls_cert"])],
        root_certificates=files.get("grpc.tls_client_ca"),
        require_client_auth=bool(g.tls_client_ca),
    )


def server_security(settings: Settings, *, listen: str, listen_key: str) -> ServerSecurity:
    """How a server listening on ``listen`` (the setting ``listen_key``) authenticates; ConfigError when it cannot safely."""
    credentials = tls_credentials(settings)
    tls = "TLS" if credentials else "plaintext"
    if settings.dev_mode:
        return ServerSecurity(DevModeAuthenticator(), credentials, f"DEV MODE (no authentication), {tls}")
    if credentials is None and not is_loopback(listen):
        raise ConfigError(
            [
                f"{listen_key}: {listen} is not a loopback address and grpc.tls_cert is unset: bearer tokens would cross the network in clear"
            ],
            hint="set grpc.tls_cert and grpc.tls_key (and grpc.tls_client_ca for client certificates), or listen on 127.0.0.1",
        )
    path = tokens_path(settings)
    if not path.exists() and not settings.grpc.tls_client_ca:
        raise ConfigError(
            [
                f"no way to authenticate callers: the tokens file {path} (grpc.tokens_file) does not exist "
                "and grpc.tls_client_ca (mutual TLS) is unset; outside dev mode nobody may call anonymously"
            ],
            hint="create a token with `provault auth token create --role admin` (and one per producer or auditor), "
            "or set grpc.tls_client_ca; `provault up` runs a development stack without authentication",
        )
    mtls = ", client certificates" if settings.grpc.tls_client_ca else ""
    return ServerSecurity(
        CallerAuthenticator(TokenAuthenticator(path), certificates=bool(settings.grpc.tls_client_ca)),
        credentials,
        f"bearer tokens from {path}{mtls}, {tls}",
    )
