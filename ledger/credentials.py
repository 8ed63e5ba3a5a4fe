"""What a gRPC client presents: the bearer token format, a client's token file, and where a token may travel.

Shared by the client (:mod:`ledger.client`, the agents) and the servers' token store
(:mod:`ledger.grpckit.tokens`). A token is ``pvt_<id>_<secret>``: 12 hex digits that name
it, then 32 random bytes in unpadded base64url. Without TLS a token crosses the wire in
clear, which is allowed only to and from loopback addresses (:func:`is_loopback`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from ledger.core.errors import ConfigError

TOKEN_PREFIX = "pvt_"
_TOKEN = re.compile(r"pvt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def token_id_of(token: str) -> str | None:
    """The id a well-formed token names; None for anything else."""
    m = _TOKEN.fullmatch(token)
    return m.group(1) if m else None


def is_loopback(address: str) -> bool:
    """Whether HOST:PORT (or a bare host, or a gRPC target) names this machine only.

    127.0.0.0/8, ::1, ``localhost`` and ``unix:`` sockets are; any other name is not (fail closed).
    """
    if address.startswith("unix:"):
        return True
    address = address.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path, key: str = "grpc.client_token_file") -> str:
    """A client's token from a file of its own (first line); refused when others may read it."""
    try:
        st = os.stat(path)
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{key}: cannot read {path} ({e.strerror})"]) from None
    if st.st_mode & 0o077:
        raise ConfigError(
            [f"{key}: {path} is readable by others (mode {st.st_mode & 0o777:o}); it holds a secret"],
            hint=f"chmod 600 {path}",
        )
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if token_id_of(token) is None:
        raise ConfigError(
            [f"{key}: {path} does not hold a provault token (expected pvt_<id>_<secret> on its first line)"],
            hint="create one with `provault auth token create --out FILE`",
        )
    return token
