"""Certificates for tests, a TLS gRPC health server, and the deploy health checks run as the real CLI."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path, names: list[str], *, cn: str = "provault-test", client_auth: bool = False) -> Tls:
    """A private CA and a server certificate for ``names`` (DNS names or IP addresses), PEM files in ``folder``.

    With ``client_auth`` the certificate also serves as a TLS client certificate (extended key usage serverAuth
    and clientAuth), as the NATS servers' certificate must for the mutual TLS of their cluster routes.
    """
    import datetime  # noqa: PLC0415
    import ipaddress  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provault test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def san(n: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(n))
        except ValueError:
            return x509.DNSName(n)

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san(n) for n in names]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])]
            ),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = Tls(ca=folder / "ca.crt", cert=folder / "server.crt", key=folder / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    out.key.chmod(0o600)
    return out


def san_names(cert: Path) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    from cryptography import x509  # noqa: PLC0415

    sans = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return {
        *sans.value.get_values_for_type(x509.DNSName),
        *(str(a) for a in sans.value.get_values_for_type(x509.IPAddress)),
    }


# --- a TLS gRPC health server, as the health checks see it ---------------------------------------------


@contextlib.contextmanager
def tls_health_server(credentials: Any) -> Iterator[tuple[int, Any]]:
    """A gRPC server on 127.0.0.1 with the health service only, SERVING; yields (port, the health servicer)."""
    from concurrent import futures  # noqa: PLC0415

    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: PLC0415

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None)


def health_argv(argv: list[str], target: str, ca: Path) -> list[str]:
    """A deploy health check (``provault health HOST:PORT --tls-ca FILE ...``) aimed at ``target`` with ``ca``."""
    assert argv[:2] == ["provault", "health"] and argv.count("--tls-ca") == 1, argv
    out = list(argv)
    out[2] = target
    out[out.index("--tls-ca") + 1] = str(ca)
    return out


def provault_executable() -> list[str]:
    """The installed ``provault`` script beside this Python (what the image puts on PATH), else ``python -m``."""
    script = Path(sys.executable).with_name("provault")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ledger.cli"]


def run_health_check(
    argv: list[str], target: str, ca: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a deploy health check, the real ``provault health`` command line, against ``target`` with ``ca``
    (its HOST:PORT and --tls-ca replaced, every other argument as deployed); ``env`` adds to this environment."""
    cmd = [*provault_executable(), *health_argv(argv, target, ca)[1:]]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **(env or {})}
    )
