"""``provault health [TARGET]``: ask a ledger or query server for its gRPC health (grpc.health.v1).

The health service is public on both servers (no token), so this needs only
the address and, for a TLS port, the CA that signed the server's certificate
(``--tls-ca``, default ``grpc.tls_ca``).  ``--tls-name`` checks the
certificate under another name than the target's host: the deploy files'
probes dial 127.0.0.1 and check the name ``localhost``.  A client
certificate (``grpc.client_cert``) is presented when configured, for
servers that require mutual TLS.

Exit status: 0 when the server (or ``--service``) is SERVING; 1 when it
answers anything else, or cannot be reached, or the TLS handshake fails
(with a message naming the target and the cause); 2 for a wrong command
line.  The whole check is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ledger.client import ClientCredentials
from ledger.config import Settings, settings_from
from ledger.core.errors import ConfigError, ProvaultError, TransportUnavailable
from ledger.stack import read_stack_file

DEFAULT_TIMEOUT_S = 3.0
WORDS = {"ledger": ("grpc.ledger_listen", "ledger_grpc"), "query": ("grpc.query_listen", "query_grpc")}
"""TARGET words: the listen setting, and the key of a running `provault up`'s stack file."""
SERVICES = ("provault.v1.LedgerService", "provault.v1.QueryService")

_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")
_WILDCARD = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}
_LAST_ERROR = re.compile(r"last error: \w+: (?:ipv[46]:\S+?: |unix:\S+?: )?")


class HealthCheckFailed(ProvaultError):
    """The target answered, but not with a health status (no health service, an error)."""

    reason = "health_check_failed"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "health",
        parents=[common],
        help="check a ledger or query server's gRPC health (for probes and operators)",
        description=(
            "Call grpc.health.v1 Check on a provault server and print `provault health: TARGET STATUS`. "
            "TARGET is HOST:PORT, or `ledger` / `query` for the address of grpc.ledger_listen / grpc.query_listen "
            "(127.0.0.1 or ::1 for a wildcard listen address), or that of the `provault up` running with the same "
            "data directory; default `ledger`. With a CA (--tls-ca, default grpc.tls_ca) the check speaks TLS, "
            "otherwise plaintext (for loopback). No token is needed. Exit 0 when SERVING, 1 otherwise (NOT_SERVING, "
            "SERVICE_UNKNOWN, unreachable, TLS failure, timeout), 2 for a wrong command line."
        ),
    )
    p.add_argument(
        "target",
        nargs="?",
        default="ledger",
        type=_target,
        metavar="TARGET",
        help="HOST:PORT ([v6]:PORT), or `ledger` / `query` (the configured addresses); default: ledger",
    )
    p.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help=f"the service to ask about: {' or '.join(SERVICES)}; default: the server as a whole",
    )
    p.add_argument(
        "--tls-ca", metavar="FILE", help="CA certificates (PEM) of the server's certificate; default: grpc.tls_ca"
    )
    p.add_argument(
        "--tls-name",
        metavar="NAME",
        help="check the server's certificate for NAME instead of TARGET's host (e.g. localhost)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up after SECONDS (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--json", action="store_true", help='print {"target", "service", "status"} as JSON')
    p.set_defaults(run=run)


def _target(value: str) -> str:
    if value in WORDS:
        return value
    m = _HOST_PORT.fullmatch(value)
    if m is None or not 1 <= int(m["port"]) <= 65535:
        hint = " (write an IPv6 address in brackets: [::1]:7430)" if value.count(":") > 1 and "[" not in value else ""
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, `ledger` or `query`, found {value!r}{hint}")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, found {value!r}")
    return seconds


def _dialable(address: str) -> str:
    """A listen address as a client dials it: a wildcard host becomes the loopback address."""
    host, _, port = address.rpartition(":")
    return f"{_WILDCARD.get(host, host)}:{port}"


def resolve_target(target: str, settings: Settings) -> str:
    """HOST:PORT as given; for `ledger` / `query` the running `provault up`'s address, else the listen setting."""
    if target not in WORDS:
        return target
    setting, stack_key = WORDS[target]
    info = read_stack_file(settings.data_dir)
    if info and info.get(stack_key):
        return _dialable(str(info[stack_key]))
    return _dialable(getattr(settings.grpc, setting.removeprefix("grpc.")))


def credentials_for(settings: Settings, tls_ca: str | None) -> ClientCredentials:
    """The CA (``tls_ca``, else grpc.tls_ca) and client certificate (grpc.client_cert) of the settings; no token."""
    g = dataclasses.replace(settings.grpc, client_token_file=None, tls_ca=tls_ca or settings.grpc.tls_ca)
    try:
        creds = ClientCredentials.from_settings(g)
    except ConfigError as e:
        if not tls_ca:
            raise
        raise ConfigError([p.replace("grpc.tls_ca:", "--tls-ca:", 1) for p in e.problems], hint=e.hint) from None
    if creds.tls_ca is not None and b"-----BEGIN CERTIFICATE-----" not in creds.tls_ca:
        where = "--tls-ca" if tls_ca else "grpc.tls_ca"
        raise ConfigError([f"{where}: expected PEM CA certificates, found no certificate in {g.tls_ca}"])
    return creds


def _channel(target: str, creds: ClientCredentials, tls_name: str | None) -> grpc.Channel:
    if tls_name is None:
        return creds.channel(target)
    if not creds.tls:
        raise HealthCheckFailed(
            f"--tls-name {tls_name}: the check of {target} would be plaintext, so there is no certificate to check",
            hint="give --tls-ca FILE (or set grpc.tls_ca), the CA that signed the server's certificate",
        )
    tls = grpc.ssl_channel_credentials(
        root_certificates=creds.tls_ca, private_key=creds.tls_key, certificate_chain=creds.tls_cert
    )
    return grpc.secure_channel(target, tls, options=[("grpc.ssl_target_name_override", tls_name)])


def _cause(details: str) -> str:
    """gRPC's connection error without its 'failed to connect to all addresses; last error: ...' wrapping."""
    m = _LAST_ERROR.search(details)
    return (details[m.end() :] if m else details).strip() or "no details"


def _unavailable(target: str, details: str, *, tls: bool, tls_name: str | None) -> TransportUnavailable:
    cause = _cause(details)
    low = cause.lower()  # without the address, so that a host name cannot look like a cause
    if "connection refused" in low:
        return TransportUnavailable(
            f"{target} is not reachable: nothing listens there ({cause})",
            hint="is `provault ledger serve` / `provault query serve` (or `provault up`) running? check the address",
        )
    if "resolving" in details.lower() or "lookup" in low:
        return TransportUnavailable(f"{target} is not reachable: its host name does not resolve ({cause})")
    if tls and "hostname verification" in low:
        return TransportUnavailable(
            f"TLS: the certificate of {target} does not name {tls_name or target.rpartition(':')[0]} ({cause})",
            hint="give --tls-name with a name the certificate holds (deploy/'s certificates name localhost)",
        )
    if tls and any(word in low for word in ("certificate", "handshake", "ssl", "tls")):
        return TransportUnavailable(
            f"TLS handshake with {target} failed: {cause}",
            hint="check --tls-ca (or grpc.tls_ca): the CA that signed the server's certificate; "
            "and that the server speaks TLS (grpc.tls_cert, grpc.tls_key)",
        )
    return TransportUnavailable(
        f"{target} is not reachable{'' if tls else ' in plaintext'}: {cause}",
        hint=None
        if tls
        else "if the server speaks TLS, give --tls-ca FILE (or set grpc.tls_ca) and, if needed, --tls-name",
    )


def check_health(
    target: str,
    *,
    credentials: ClientCredentials,
    service: str = "",
    tls_name: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """The health status name (SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN) of ``service`` at ``target``.

    TransportUnavailable when the target cannot be reached, the TLS handshake fails or no answer comes within
    ``timeout_s``; HealthCheckFailed when it answers with an error.
    """
    with _channel(target, credentials, tls_name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            res = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            if code == grpc.StatusCode.NOT_FOUND:  # grpc.health.v1: Check answers NOT_FOUND for an unknown service
                return "SERVICE_UNKNOWN"
            if code == grpc.StatusCode.UNAVAILABLE:
                raise _unavailable(target, details, tls=credentials.tls, tls_name=tls_name) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TransportUnavailable(
                    f"{target} did not answer the health check within {timeout_s:g} s",
                    hint="the server may be overloaded or stuck, or something else listens there; raise --timeout to wait longer",
                ) from None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise HealthCheckFailed(
                    f"{target} does not offer gRPC health (grpc.health.v1): {code.name}",
                    hint="is it a provault server? check the port",
                ) from None
            raise HealthCheckFailed(
                f"{target} answered the health check with {code.name}: {details or 'no details'}"
            ) from None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(res.status)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    target = resolve_target(args.target, settings)
    status = check_health(
        target,
        credentials=credentials_for(settings, args.tls_ca),
        service=args.service,
        tls_name=args.tls_name,
        timeout_s=args.timeout,
    )
    if args.json:
        print(json.dumps({"target": target, "service": args.service, "status": status}))
    else:
        print(f"provault health: {target}{f' {args.service}' if args.service else ''} {status}")
    return 0 if status == "SERVING" else 1
