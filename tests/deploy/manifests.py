"""Reading deploy/ (YAML documents, containers, PROVAULT_* settings, provault command lines, mounts, health
checks), and what tests need to try it: certificates, a TLS health server, NATS users from the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBE = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"

_PROVAULT_IN_SHELL = re.compile(r"(?:^|[;&|]|\bwhile|\bif|\bthen|\bdo)\s*(provault(?:\s+[^;&|]+)?)")


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def kube_documents(folder: Path = KUBE / "base") -> list[dict[str, Any]]:
    return [d for p in sorted(folder.glob("*.yaml")) if p.name != "kustomization.yaml" for d in load_all(p)]


def compose() -> dict[str, Any]:
    return load_all(COMPOSE)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    where: str
    spec: dict[str, Any]

    def argv(self) -> list[str]:
        return [*self.spec.get("command", []), *self.spec.get("args", [])]


def kube_containers(docs: list[dict[str, Any]]) -> Iterator[Container]:
    for d in docs:
        if d.get("kind") not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            yield Container(where=f"{d['kind']}/{d['metadata']['name']}/{c['name']}", spec=c)


def provault_commands(argv: list[str], *, entrypoint_is_provault: bool) -> list[list[str]]:
    """The provault command lines a container runs: the image's entrypoint + args, or inside ``sh -c``."""
    if argv[:2] in (["/bin/sh", "-c"], ["sh", "-c"]):
        return [shlex.split(m) for script in argv[2:] for m in _PROVAULT_IN_SHELL.findall(script)]
    if argv and argv[0] == "provault":
        return [argv]
    return [["provault", *argv]] if entrypoint_is_provault and argv else []


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        if line.startswith("ENV ") and "=" in line:
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


# --- the processes deploy/ runs: environment, commands, mounts, health checks ---------------------

PATH_SETTINGS = (
    "PROVAULT_DATA_DIR",
    "PROVAULT_SIGNING_CHECKPOINT_KEY",
    "PROVAULT_GRPC_TLS_CERT",
    "PROVAULT_GRPC_TLS_KEY",
    "PROVAULT_GRPC_TLS_CLIENT_CA",
    "PROVAULT_GRPC_TOKENS_FILE",
    "PROVAULT_NATS_NKEY_SEED_FILE",
    "PROVAULT_NATS_TLS_CA",
    "PGPASSFILE",
)
"""Variables whose value is a file or folder in the container."""

PRIVATE_SETTINGS = ("PROVAULT_SIGNING_CHECKPOINT_KEY", "PROVAULT_GRPC_TLS_KEY", "PROVAULT_NATS_NKEY_SEED_FILE", "PGPASSFILE")
"""Files provault (or libpq) refuses when group or others may read them."""

_INSTALL_0600 = re.compile(r"install -m 0600 (\S+) (\S+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    path: str
    """Where the container sees it."""
    kind: str
    """compose: secret, bind, volume, tmpfs; Kubernetes: secret, configMap, emptyDir, other."""
    source: str
    """compose: the secret's name or the host path; Kubernetes: the Secret's or ConfigMap's name, or the volume's."""
    sub_path: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    """One provault container: what it runs and what it sees."""

    where: str
    env: dict[str, str]
    commands: list[list[str]]
    mounts: list[Mount]
    health: list[list[str]]
    """Health-check command lines (compose healthcheck, Kubernetes exec probes)."""
    grpc_probes: list[str]
    """Kubernetes probes that use the kubelet's own grpc check."""
    init_copies: dict[str, tuple[str, list[Mount]]]
    """Kubernetes: files an init container installs with mode 0600, destination -> (source, that container's mounts)."""

    def mount_of(self, path: str) -> Mount | None:
        """The mount a path is on (the deepest one), or None."""
        hits = [m for m in self.mounts if path == m.path or path.startswith(m.path.rstrip("/") + "/")]
        return max(hits, key=lambda m: len(m.path), default=None)

    def server(self) -> tuple[str, str] | None:
        """(listen setting key, variable) of the gRPC server this process runs, or None."""
        for cmd in self.commands:
            if cmd[1:3] == ["ledger", "serve"]:
                return "grpc.ledger_listen", "PROVAULT_GRPC_LEDGER_LISTEN"
            if cmd[1:3] == ["query", "serve"]:
                return "grpc.query_listen", "PROVAULT_GRPC_QUERY_LISTEN"
        return None


def env_values(env: Any) -> dict[str, str]:
    if isinstance(env, dict):
        return {k: str(v) for k, v in env.items()}
    return {e["name"]: str(e["value"]) for e in env or [] if "value" in e}


def compose_processes() -> list[Process]:
    """The services that run the provault image."""
    c = compose()
    base = dockerfile_env()
    out = []
    for name, svc in c["services"].items():
        if "build" not in svc:
            continue
        argv = [*svc.get("entrypoint", []), *svc.get("command", [])]
        mounts = [Mount(path=f"/run/secrets/{s}", kind="secret", source=s) for s in svc.get("secrets", [])]
        for v in svc.get("volumes", []):
            source, target = v.split(":")[:2]
            mounts.append(Mount(path=target, kind="bind" if source.startswith(".") else "volume", source=source))
        mounts += [Mount(path=t.split(":")[0], kind="tmpfs", source="") for t in svc.get("tmpfs", [])]
        test = svc.get("healthcheck", {}).get("test")
        out.append(Process(
            where=f"compose {name}", env={**base, **env_values(svc.get("environment"))},
            commands=provault_commands(argv, entrypoint_is_provault="entrypoint" not in svc), mounts=mounts,
            health=[test[1:]] if test and test[0] == "CMD" else [], grpc_probes=[], init_copies={},
        ))  # fmt: skip
    return out


def _kube_mounts(container: dict[str, Any], volumes: dict[str, dict[str, Any]]) -> list[Mount]:
    out = []
    for m in container.get("volumeMounts", []):
        vol = volumes[m["name"]]
        if "secret" in vol:
            kind, source = "secret", vol["secret"]["secretName"]
        elif "configMap" in vol:
            kind, source = "configMap", vol["configMap"]["name"]
        elif "emptyDir" in vol:
            kind, source = "emptyDir", m["name"]
        else:
            kind, source = "other", m["name"]
        out.append(Mount(path=m["mountPath"], kind=kind, source=source, sub_path="subPath" in m))
    return out


def kube_processes(docs: list[dict[str, Any]]) -> list[Process]:
    """The main containers of the Deployments, with what their init containers prepare."""
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "provault-config")
    base = dockerfile_env()
    out = []
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        copies: dict[str, tuple[str, list[Mount]]] = {}
        for init in pod.get("initContainers", []):
            for script in Container(where="", spec=init).argv():
                for src, dst in _INSTALL_0600.findall(script):
                    copies[dst] = (src, _kube_mounts(init, volumes))
        for c in pod["containers"]:
            uses_config = any(s.get("configMapRef", {}).get("name") == "provault-config" for s in c.get("envFrom", []))
            env = {**base, **(config if uses_config else {}), **env_values(c.get("env"))}
            probes = [c[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in c]
            out.append(Process(
                where=f"Deployment/{d['metadata']['name']}/{c['name']}", env=env,
                commands=provault_commands(Container(where="", spec=c).argv(), entrypoint_is_provault="command" not in c),
                mounts=_kube_mounts(c, volumes), health=[p["exec"]["command"] for p in probes if "exec" in p],
                grpc_probes=[f"port {p['grpc']['port']}" for p in probes if "grpc" in p], init_copies=copies,
            ))  # fmt: skip
    return out


# --- certificates for tests ----------------------------------------------------------------------------


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
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    def san(n: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(n))
        except ValueError:
            return x509.DNSName(n)

    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              *([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    out = Tls(ca=folder / "ca.crt", cert=folder / "server.crt", key=folder / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    out.key.chmod(0o600)
    return out


def san_names(cert: Path) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    from cryptography import x509  # noqa: PLC0415

    sans = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return {*sans.value.get_values_for_type(x509.DNSName), *(str(a) for a in sans.value.get_values_for_type(x509.IPAddress))}


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


def run_health_check(argv: list[str], target: str, ca: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a deploy health check, the real ``provault health`` command line, against ``target`` with ``ca``
    (its HOST:PORT and --tls-ca replaced, every other argument as deployed); ``env`` adds to this environment."""
    cmd = [*provault_executable(), *health_argv(argv, target, ca)[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **(env or {})})


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
    provault("nats", "user", "add", "gpu-07", "--role", "agent", "--producer", "trainer@gpu-07",
             "--seed-out", str(files["agent"]), *data)  # fmt: skip
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
    (etc / "nats.conf").write_text(conf.read_text().replace("/etc/nats/", f"{etc}/").replace("/run/secrets/", f"{run}/"))
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
        proc = subprocess.Popen([str(nats_server_binary()), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=config.parent)  # fmt: skip
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
        config.write_text(json.dumps({
            "server_name": f"route-{i}", "listen": f"127.0.0.1:{p.client}", "http": f"127.0.0.1:{p.http}",
            "cluster": {"name": "provault", "listen": f"127.0.0.1:{p.route}", "no_advertise": True,
                        "routes": [f"nats-route://localhost:{other}"],
                        "tls": {"cert_file": str(cert), "key_file": str(key), "ca_file": str(ca), "verify": True}},
        }, indent=2))  # fmt: skip
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
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=host) as tls:  # fmt: skip
            assert tls.recv(1) == b"x"
        t.join(timeout=10)
    assert errors == [], f"the route's server end refused the certificate: {errors}"
