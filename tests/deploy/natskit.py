"""NATS as deployed, on this machine: users from the real ``provault nats`` CLI, the Compose nodes' and the
chart's configurations moved to loopback, nats-server processes, their routes, and how a client gets in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.config import Settings
from ledger.natsauth import connect_options

from .manifests import DEPLOY, compose
from .tlskit import Tls

# --- the real `provault nats` CLI -------------------------------------------------------------------


def provault(*argv: str) -> str:
    """Run a provault command in this process; its standard output, or AssertionError with its error."""
    import io  # noqa: PLC0415
    from contextlib import redirect_stderr, redirect_stdout  # noqa: PLC0415

    from ledger.cli import main  # noqa: PLC0415

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code
    assert code == 0, f"`provault {' '.join(argv)}` exited {code}: {err.getvalue()}"
    return out.getvalue()


def nats_users(folder: Path) -> dict[str, Path]:
    """With the real CLI, in ``folder``: a ledger user and an agent user; returns their seed files and auth.conf."""
    folder.mkdir(parents=True, exist_ok=True)
    data = ["--data-dir", str(folder / "data")]
    files = {"ledger": folder / "ledger.nk", "agent": folder / "gpu-07.nk", "auth.conf": folder / "auth.conf"}
    provault("nats", "user", "add", "ledger", "--role", "ledger", "--seed-out", str(files["ledger"]), *data)
    provault(
        "nats",
        "user",
        "add",
        "gpu-07",
        "--role",
        "agent",
        "--producer",
        "trainer@gpu-07",
        "--seed-out",
        str(files["agent"]),
        *data,
    )
    provault("nats", "server-config", "--out", str(files["auth.conf"]), *data)
    return files


# --- NATS servers as deployed, on this machine -----------------------------------------------------------

NATS_CONFS = sorted((DEPLOY / "compose" / "nats").glob("*.conf"))
"""The Compose NATS nodes' configurations, nats-1.conf to nats-3.conf."""

CHART_RELEASE = "nats"
"""The Helm release and namespace docs/operations.md installs the NATS chart as."""


def chart_route_hosts(values: dict[str, Any]) -> list[str]:
    """The host names the chart's routes dial (files/config/cluster.yaml): <statefulset>-<i>.<headless service>,
    with the chart's default names for the release, and the FQDN form when routeURLs.useFQDN is set."""
    cluster = values["config"]["cluster"]
    statefulset = values.get("statefulSet", {}).get("name") or CHART_RELEASE
    domain = values.get("headlessService", {}).get("name") or f"{CHART_RELEASE}-headless"
    urls = cluster.get("routeURLs", {})
    if urls.get("useFQDN"):
        domain = f"{domain}.{CHART_RELEASE}.svc.{urls.get('k8sClusterDomain', 'cluster.local')}"
    return [f"{statefulset}-{i}.{domain}" for i in range(int(cluster["replicas"]))]


def compose_nats_tree(conf: Path, root: Path, *, auth_conf: Path, tls: Tls) -> Path:
    """A Compose NATS service's files under ``root``: its config; secrets/nats as the operator makes it (the
    certificate and key from ``tls``, auth.conf); the Compose secrets the service gets (the CA from ``tls``).

    The config's absolute /etc/nats and /run/secrets paths are moved under ``root``; everything else, the include
    and its relative path included, is the file as shipped.
    """
    c = compose()
    svc = c["services"][conf.stem]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert mounts["/etc/nats/nats.conf"] == f"./nats/{conf.name}"
    assert mounts["/etc/nats/secrets"] == "./secrets/nats", "the folder docs/operations.md fills"
    etc, run = root / "etc" / "nats", root / "run" / "secrets"
    (etc / "secrets").mkdir(parents=True)
    run.mkdir(parents=True)
    shutil.copy(tls.cert, etc / "secrets" / "server.crt")
    shutil.copy(tls.key, etc / "secrets" / "server.key")
    shutil.copy(auth_conf, etc / "secrets" / "auth.conf")
    files = {"ca.crt": tls.ca}
    for name in svc.get("secrets", []):
        assert name in files, f"{conf.stem}: a Compose secret this test cannot provide: {name}"
        assert c["secrets"][name]["file"] == f"./secrets/{name}"
        shutil.copy(files[name], run / name)
    (etc / "nats.conf").write_text(
        conf.read_text().replace("/etc/nats/", f"{etc}/").replace("/run/secrets/", f"{run}/")
    )
    return etc / "nats.conf"


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsPorts:
    client: int
    http: int
    route: int


def localize_compose_nats(config: Path, *, ports: NatsPorts, store: Path, peers: dict[str, int]) -> None:
    """Move a Compose node's listeners to free ports on 127.0.0.1 and its store to ``store``; its routes to
    ``nats-N`` dial localhost:``peers[nats-N]`` instead (a port nobody listens on stands for an absent peer)."""
    text = config.read_text()
    moves = {
        "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{ports.client}",
        "http: 127.0.0.1:8222": f"http: 127.0.0.1:{ports.http}",
        "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{ports.route}",
        "store_dir: /data/jetstream": f"store_dir: {store}",
        **{f"nats-route://{name}:6222": f"nats-route://localhost:{port}" for name, port in peers.items()},
    }
    for old, new in moves.items():
        assert text.count(old) == 1, f"{config.name}: {old!r}"
        text = text.replace(old, new)
    config.write_text(text)


@contextlib.contextmanager
def nats_server(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """nats-server running ``config``; its output goes to ``log``."""
    from ledger.embedded import nats_server_binary  # noqa: PLC0415

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=config.parent
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def route_peers(http_port: int) -> list[str]:
    """The server names at the other end of a server's routes, from its monitoring port (/routez)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/routez", timeout=5) as r:
            doc = json.load(r)
    except OSError:
        return []
    return sorted(str(x.get("remote_name", "?")) for x in doc.get("routes") or [])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.1)


def routes_form(root: Path, *, cert: Path, key: Path, ca: Path, timeout: float = 15) -> list[str]:
    """Two nats-servers with the routes' TLS of the deploy files (this certificate and key on both ends, peers
    checked against ``ca``, verify) dial each other as localhost; the route peers the first one reports once it
    has one, or after ``timeout`` seconds ([] then).  Their logs are route-0.log and route-1.log in ``root``."""
    from ledger.embedded import free_port  # noqa: PLC0415

    root.mkdir(parents=True, exist_ok=True)
    ports = [NatsPorts(client=free_port(), http=free_port(), route=free_port()) for _ in range(2)]
    configs = []
    for i, p in enumerate(ports):
        other = ports[1 - i].route
        config = root / f"route-{i}.conf"
        config.write_text(
            json.dumps(
                {
                    "server_name": f"route-{i}",
                    "listen": f"127.0.0.1:{p.client}",
                    "http": f"127.0.0.1:{p.http}",
                    "cluster": {
                        "name": "provault",
                        "listen": f"127.0.0.1:{p.route}",
                        "no_advertise": True,
                        "routes": [f"nats-route://localhost:{other}"],
                        "tls": {"cert_file": str(cert), "key_file": str(key), "ca_file": str(ca), "verify": True},
                    },
                },
                indent=2,
            )
        )
        configs.append(config)
    with nats_server(configs[0], root / "route-0.log"), nats_server(configs[1], root / "route-1.log"):
        deadline = time.monotonic() + timeout
        while not (peers := route_peers(ports[0].http)) and time.monotonic() < deadline:
            time.sleep(0.1)
    return peers


def check_route_certificate_with_python_tls(cert: Path, key: Path, ca: Path, host: str) -> None:
    """A mutual TLS handshake as on a route: both ends present the certificate, each checks the other's against
    ``ca`` (OpenSSL, like Go, checks the extended key usage: serverAuth for the server, clientAuth for the client),
    and the dialling end the name ``host``."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.load_verify_locations(ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    errors: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            conn, _ = listener.accept()
            conn.settimeout(10)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"x")
            except (ssl.SSLError, OSError) as e:
                errors.append(e)

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        client_ctx = ssl.create_default_context(cafile=str(ca))
        client_ctx.load_cert_chain(cert, key)
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.recv(1) == b"x"
        t.join(timeout=10)
    assert errors == [], f"the route's server end refused the certificate: {errors}"


def nats_config_check(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``nats-server -c config -t``: whether nats-server accepts the configuration, without starting."""
    from ledger.embedded import nats_server_binary  # noqa: PLC0415

    argv = [str(nats_server_binary()), "-c", str(config), "-t"]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)


async def _quiet(_: Exception) -> None:
    return None


async def connects_only_with_tls_first_and_credentials(url: str, settings: Settings) -> None:
    """The ledger's NATS settings get in over TLS first with their nkey; TLS after a clear INFO gets no
    connection, and TLS first without a user is refused."""
    import nats  # noqa: PLC0415

    opts = connect_options(settings.nats)
    assert set(opts) >= {"tls", "nkeys_seed_str"}
    assert opts.get("tls_handshake_first", True) is True, "provault's clients start TLS first when nats.tls_ca is set"
    first = {**opts, "tls_handshake_first": True}
    common: dict[str, Any] = {
        "connect_timeout": 2,
        "max_reconnect_attempts": 0,
        "allow_reconnect": False,
        "error_cb": _quiet,
    }
    deadline = time.monotonic() + 20
    while True:
        try:
            nc = await nats.connect(url, **common, **first)
            break
        except (TimeoutError, OSError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert nc.is_connected and nc.connected_url is not None
    await nc.close()
    # The same client, CA and nkey, but TLS only after the server's INFO: no INFO comes, so no connection.
    late = {k: v for k, v in opts.items() if k != "tls_handshake_first"}
    started = time.monotonic()
    with pytest.raises((asyncio.TimeoutError, nats.errors.Error, OSError)):
        await nats.connect(url, **common, **late)
    assert time.monotonic() - started < 15
    # TLS first without a user: refused.
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(url, **common, tls=opts["tls"], tls_handshake_first=True)
