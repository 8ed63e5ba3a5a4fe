"""The Compose NATS nodes as configured, run on this machine: their configuration with a users file from the
real ``provault nats`` CLI passes ``nats-server -t``; they admit the ledger's user over TLS started first and
nobody anonymously, say nothing in clear, and let onto their route port only a peer with a certificate from the
private CA (one made for client authentication too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from ledger.config import load_settings
from ledger.embedded import free_port

from .manifests import (
    Process,
    compose,
    compose_processes,
)
from .natskit import (
    NATS_CONFS,
    NatsPorts,
    compose_nats_tree,
    connects_only_with_tls_first_and_credentials,
    localize_compose_nats,
    nats_config_check,
    nats_server,
    route_peers,
    routes_form,
    wait_until,
)
from .tlskit import Tls, make_tls


def _compose_nats_tls(folder: Path) -> Tls:
    """The NATS servers' certificate as docs/operations.md makes it: the Compose names, serverAuth and clientAuth."""
    return make_tls(folder, ["nats-1", "nats-2", "nats-3", "localhost"], cn="provault-nats", client_auth=True)


def _block(text: str, opener: str) -> str:
    """The body of the first ``opener {...}`` block (a line matching the regex ``opener``, braces balanced)."""
    m = re.search(rf"^[ \t]*{opener}[ \t]*\{{", text, re.M)
    assert m is not None, f"no {opener} {{...}} block"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end() : i - 1]


def _settings(block: str) -> dict[str, str]:
    """The ``key: value`` lines directly in a block (comments dropped; nested blocks not descended)."""
    out, depth = {}, 0
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if depth == 0 and (m := re.fullmatch(r"(\w+)\s*:\s*(\S+)", line)):
            out[m[1]] = m[2]
        depth += line.count("{") - line.count("}")
    return out


@pytest.mark.parametrize("conf", NATS_CONFS, ids=lambda p: p.name)
def test_compose_nats_config_with_a_generated_users_include_is_valid(
    conf: Path, users: dict[str, Path], tmp_path: Path
) -> None:
    text = conf.read_text()
    assert f"server_name: {conf.stem}" in text
    assert all(f"nats-route://nats-{i}:6222" in text for i in (1, 2, 3))
    assert re.search(r"^include \./secrets/auth\.conf$", text, re.M), (
        "the users file, from `provault nats server-config`"
    )
    assert re.search(r"^tls \{", text, re.M) and "no_advertise: true" in text
    # Clients: TLS first, with no fallback to a clear INFO (a duration would fall back).
    assert _settings(_block(text, "tls"))["handshake_first"] == "true"
    # Routes: mutual TLS against the private CA, which the service gets as the Compose secret ca.crt.
    route_tls = _settings(_block(_block(text, "cluster"), "tls"))
    assert route_tls == {
        "cert_file": "/etc/nats/secrets/server.crt",
        "key_file": "/etc/nats/secrets/server.key",
        "ca_file": "/run/secrets/ca.crt",
        "verify": "true",
    }
    assert "ca.crt" in compose()["services"][conf.stem]["secrets"]
    config = compose_nats_tree(conf, tmp_path, auth_conf=users["auth.conf"], tls=_compose_nats_tls(tmp_path / "pki"))
    res = nats_config_check(config, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # The include is not optional: without the users file the server does not start (no anonymous fallback).
    (config.parent / "secrets" / "auth.conf").unlink()
    res = nats_config_check(config, tmp_path)
    assert res.returncode != 0 and "auth.conf" in res.stdout + res.stderr


def _compose_ledger() -> Process:
    return next(p for p in compose_processes() if p.where == "compose ledger")


def _start_compose_nats(
    names: list[str], root: Path, users: dict[str, Path], tls: Tls
) -> tuple[dict[str, NatsPorts], list[Path]]:
    """Configurations for the Compose nodes ``names`` as shipped, moved to this machine; the other nodes are absent."""
    ports = {f"nats-{i}": NatsPorts(client=free_port(), http=free_port(), route=free_port()) for i in (1, 2, 3)}
    configs = []
    for name in names:
        config = compose_nats_tree(NATS_CONFS[int(name[-1]) - 1], root / name, auth_conf=users["auth.conf"], tls=tls)
        localize_compose_nats(
            config, ports=ports[name], store=root / name / "js", peers={n: p.route for n, p in ports.items()}
        )
        configs.append(config)
    return ports, configs


def test_compose_nats_admits_the_ledger_over_tls_first_and_nobody_anonymously(
    users: dict[str, Path], tmp_path: Path
) -> None:
    """nats-1 as configured (ports and store moved to this machine, its peers absent) against the ledger's NATS
    settings from compose: TLS first with the CA and the ledger's nkey works; the server says nothing in clear, so
    a client that waits for INFO before TLS (the downgradable kind) gets nowhere."""
    tls = _compose_nats_tls(tmp_path / "pki")
    ports, (config,) = _start_compose_nats(["nats-1"], tmp_path, users, tls)
    env = _compose_ledger().env
    assert env["PROVAULT_NATS_NKEY_SEED_FILE"].startswith("/run/secrets/") and env["PROVAULT_NATS_TLS_CA"].startswith(
        "/run/secrets/"
    )
    settings = load_settings(
        env={"PROVAULT_NATS_NKEY_SEED_FILE": str(users["ledger"]), "PROVAULT_NATS_TLS_CA": str(tls.ca)}
    )
    port = ports["nats-1"].client
    with nats_server(config, tmp_path / "nats.log"):
        asyncio.run(connects_only_with_tls_first_and_credentials(f"nats://localhost:{port}", settings))
        # Nothing in clear: a plain TCP client that waits for the greeting gets none (the server closes
        # after its TLS handshake timeout, or the read times out), never an INFO it could be fooled by.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            try:
                greeting = raw.recv(4096)
            except TimeoutError:
                greeting = b""
        assert b"INFO" not in greeting, greeting


_ROUTE_CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"intruder","cluster":"provault"}\r\nPING\r\n'


def _route_attempt(
    port: int, ctx: ssl.SSLContext | None, *, host: str = "nats-1", bound: float = 8
) -> tuple[str, bytes]:
    """Try to open a route to ``port`` as an intruder would: in clear (``ctx`` None) or over TLS with ``ctx``, then a
    route CONNECT and a PING.  Returns how it ended ("closed", "ssl: REASON" or "timeout", within ``bound``
    seconds) and what the server sent after the CONNECT."""
    deadline = time.monotonic() + bound
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=bound) as raw:
            sock: socket.socket = raw
            if ctx is not None:
                raw.settimeout(0.5)
                with contextlib.suppress(TimeoutError):
                    raw.recv(4096)  # a greeting in clear before TLS, from servers that send one
                raw.settimeout(bound)
                sock = ctx.wrap_socket(raw, server_hostname=host)
            sock.sendall(_ROUTE_CONNECT)
            while time.monotonic() < deadline:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    return "closed", data
                data += chunk
            return "timeout", data
    except ssl.SSLError as e:
        return f"ssl: {e.reason or e}", data
    except (ConnectionResetError, BrokenPipeError):
        return "closed", data
    except TimeoutError:
        return "timeout", data


def _intruder(root: Path, name: str, route: int, tls: dict[str, str] | None) -> Path:
    """A nats-server of its own that dials ``route`` as a route of cluster provault, with route TLS ``tls``."""
    cluster: dict[str, Any] = {
        "name": "provault",
        "listen": f"127.0.0.1:{free_port()}",
        "routes": [f"nats-route://localhost:{route}"],
    }
    if tls is not None:
        cluster["tls"] = tls
    config = root / f"{name}.conf"
    config.write_text(json.dumps({"server_name": name, "listen": f"127.0.0.1:{free_port()}", "cluster": cluster}))
    return config


def test_compose_nats_routes_admit_only_peers_with_a_certificate_from_the_ca(
    users: dict[str, Path], tmp_path: Path
) -> None:
    """nats-1 and nats-2 as shipped (nats-3 absent; the routes dial localhost): they form their route over mutual
    TLS.  Intruders on nats-1's route port get no route: nats-servers of their own that dial it in clear, or over
    TLS with a certificate (serverAuth and clientAuth) from another CA; and a raw client (in clear, TLS without a
    certificate, TLS with the other CA's) is cut off within seconds without an answer to its PING."""
    tls = _compose_nats_tls(tmp_path / "pki")
    ports, configs = _start_compose_nats(["nats-1", "nats-2"], tmp_path, users, tls)
    route, http = ports["nats-1"].route, ports["nats-1"].http
    other = make_tls(tmp_path / "other-ca", ["nats-9", "localhost"], client_auth=True)
    intruders = [
        _intruder(tmp_path, "intruder-in-clear", route, None),
        _intruder(
            tmp_path,
            "intruder-other-ca",
            route,
            {"cert_file": str(other.cert), "key_file": str(other.key), "ca_file": str(tls.ca)},
        ),
    ]
    with nats_server(configs[0], tmp_path / "nats-1.log"), nats_server(configs[1], tmp_path / "nats-2.log"):
        wait_until(lambda: route_peers(http) != [], timeout=20, what="nats-1 and nats-2 form a route")
        assert set(route_peers(http)) == {"nats-2"}
        with (
            nats_server(intruders[0], tmp_path / "intruder-1.log"),
            nats_server(intruders[1], tmp_path / "intruder-2.log"),
        ):
            # They retry every second; watch for 4 s: never a route, and nats-1 refuses them.
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                assert set(route_peers(http)) == {"nats-2"}, f"an intruder joined: {route_peers(http)}"
                time.sleep(0.2)
        refusals = (tmp_path / "nats-1.log").read_text().count("TLS Handshake Failure")
        assert refusals >= 2, "nats-1 saw the intruders' routes and failed their TLS handshakes"
        no_cert = ssl.create_default_context(cafile=str(tls.ca))
        other_ca = ssl.create_default_context(cafile=str(tls.ca))
        other_ca.load_cert_chain(other.cert, other.key)
        attempts = {
            "in clear": _route_attempt(route, None),
            "TLS, no certificate": _route_attempt(route, no_cert),
            "TLS, another CA's certificate": _route_attempt(route, other_ca),
        }
        for how, (ending, data) in attempts.items():
            assert ending == "closed" or ending.startswith("ssl: "), f"{how}: {ending} {data!r}"
            assert b"PONG" not in data, f"{how}: the server answered {data!r}"
        assert attempts["TLS, no certificate"][0] in ("closed", "ssl: TLSV13_ALERT_CERTIFICATE_REQUIRED"), attempts
        assert set(route_peers(http)) == {"nats-2"}, "no intruder among the routes"


def test_the_routes_need_a_certificate_for_client_authentication_too(tmp_path: Path) -> None:
    """Why the NATS servers' certificate carries clientAuth: each server presents it when it dials a route, and
    its peer (verify: true) refuses one made for serverAuth only."""
    only_server = make_tls(tmp_path / "server-only", ["localhost"])
    assert (
        routes_form(tmp_path / "server-only", cert=only_server.cert, key=only_server.key, ca=only_server.ca, timeout=4)
        == []
    )
    log = "".join(p.read_text() for p in (tmp_path / "server-only").glob("route-*.log"))
    assert "incompatible key usage" in log, log[-2000:]
    both = make_tls(tmp_path / "both", ["localhost"], client_auth=True)
    assert set(routes_form(tmp_path / "both", cert=both.cert, key=both.key, ca=both.ca)) == {"route-1"}
