"""docs/operations.md: its commands parse and work, and its set-up matches the deploy files.

* every `provault` command of its ```bash blocks parses with the real CLI;
* the operator steps come in a working order, and create every secret file and
  Secret the deploy files mount;
* its `openssl` lines, run as written, make certificates that name the hosts
  the deployment uses, that the servers' own checks accept, and that the
  deployed health check trusts over a real TLS connection.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ledger.cli import build_parser
from ledger.config import load_settings
from ledger.service.auth import server_security
from ledger.service.tokens import TokenStore
from ledger.transport import nats_servers

from .manifests import (
    KUBE,
    ROOT,
    compose,
    compose_processes,
    kube_documents,
    kube_processes,
    load_all,
    run_health_check,
    san_names,
    tls_health_server,
)

DOC = ROOT / "docs" / "operations.md"
_BASH = re.compile(r"^```bash\n(.*?)^```$", re.S | re.M)


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _command_lines(text: str | None = None) -> list[str]:
    """Command lines of the ```bash blocks: continuations joined, comments and blank lines dropped."""
    lines = []
    for block in _BASH.findall(DOC.read_text(encoding="utf-8") if text is None else text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_every_provault_command_in_the_operator_guide_parses() -> None:
    commands = [ln for ln in _command_lines() if ln.startswith("provault ")]
    assert len(commands) >= 10
    shown = set()
    for line in commands:
        try:
            args = build_parser().parse_args(shlex.split(line, comments=True)[1:])
        except SystemExit as e:
            pytest.fail(f"docs/operations.md: `{line}` does not parse with the CLI (exit {e.code})")
        assert callable(getattr(args, "run", None)), line
        shown.add(line.split()[1])
    assert {"db", "ledger", "verify", "checkpoint", "keys", "project", "auth", "nats"} <= shown


def test_files_the_operator_guide_names_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:deploy|tests/deploy|docs)/[\w./-]+)`", text))
    assert named, "the guide points at the deploy files"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert missing == [], f"docs/operations.md names files that do not exist: {missing}"


# --- the set-up steps -------------------------------------------------------------------------------

_ORDER = ("provault keys new", "openssl req -x509", "provault auth token create", "provault nats user add",
          "provault nats server-config")  # fmt: skip


@pytest.mark.parametrize("title, last", [("Docker Compose", "docker compose up"), ("Kubernetes", "kubectl apply -k")])
def test_the_set_up_steps_come_in_order(title: str, last: str) -> None:
    """Admin and checkpoint keys, TLS, tokens, NATS users, the users file, then start."""
    lines = _command_lines(_section(title))
    first = [next((i for i, ln in enumerate(lines) if ln.startswith(step)), None) for step in (*_ORDER, last)]
    assert None not in first, f"{title}: missing one of {(*_ORDER, last)}"
    assert first == sorted(first), f"{title}: the steps are out of order: {dict(zip((*_ORDER, last), first, strict=True))}"
    ledger_user = next(ln for ln in lines if ln.startswith("provault nats user add ledger"))
    assert "--role ledger" in ledger_user


def test_the_compose_steps_make_every_secret_the_compose_file_mounts() -> None:
    text = " ".join(_command_lines(_section("Docker Compose")))
    c = compose()
    files = [s["file"].removeprefix("./") for s in c["secrets"].values()]
    folders = {v.split(":")[0].removeprefix("./") for svc in c["services"].values() for v in svc.get("volumes", [])
               if v.startswith("./secrets/")}  # fmt: skip
    assert folders, "the tokens folder and the NATS folder"
    for path in [*files, *folders]:
        assert path in text, f"docs/operations.md, Docker Compose: nothing makes {path}"
    for name in ("secrets/auth/tokens.json", "secrets/nats/auth.conf", "secrets/ledger.nk"):
        assert name in text


def test_the_kubernetes_steps_create_every_secret_the_manifests_mount() -> None:
    lines = _command_lines(_section("Kubernetes"))
    created = {(ln.split()[2], ln.split()[6]) for ln in lines if re.match(r"kubectl -n \S+ create secret (generic|tls) ", ln)}
    docs = kube_documents()
    wanted = set()
    for proc in kube_processes(docs):
        wanted |= {("provault", m.source) for m in proc.mounts if m.kind == "secret"}
        wanted |= {("provault", src_mount.source) for _, (_, mounts) in proc.init_copies.items() for src_mount in mounts
                   if src_mount.kind == "secret"}  # fmt: skip
    text = "\n".join(p.read_text() for p in (KUBE / "base").glob("*.yaml"))
    wanted |= {("provault", n) for n in re.findall(r"secretKeyRef: \{name: (\S+), key:", text) if n != "provault-pg-app"}
    values = load_all(KUBE / "nats-values.yaml")[0]
    wanted.add(("nats", values["config"]["nats"]["tls"]["secretName"]))
    wanted |= {("nats", op["value"]["secret"]["secretName"]) for op in values["podTemplate"]["patch"] if "secret" in op["value"]}
    assert len(wanted) >= 10
    missing = sorted(wanted - created)
    assert missing == [], f"docs/operations.md, Kubernetes: no `kubectl -n NS create secret` for {missing}"


# --- the openssl lines, run as written ------------------------------------------------------------


def _run_openssl_lines(title: str, cwd: Path) -> None:
    lines = [ln for ln in _command_lines(_section(title)) if ln.startswith(("mkdir ", "openssl "))]
    assert sum(ln.startswith("openssl req") for ln in lines) == 3, f"{title}: the CA and two server certificates"
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=cwd, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr


def _grpc_host_names(services: list[str], namespace: str | None) -> set[str]:
    names = set(services)
    if namespace:
        names |= {f"{s}.{namespace}.svc" for s in services} | {f"{s}.{namespace}.svc.cluster.local" for s in services}
    return names


def _check_grpc_certificate(cert: Path, key: Path, ca: Path, tmp_path: Path, health: list[str]) -> None:
    """server_security accepts the pair; the deployed health check trusts the server over TLS with the CA."""
    tokens = tmp_path / "auth" / "tokens.json"
    TokenStore(tokens).create(role="admin")
    settings = load_settings(env={"PROVAULT_GRPC_TLS_CERT": str(cert), "PROVAULT_GRPC_TLS_KEY": str(key),
                                  "PROVAULT_GRPC_TOKENS_FILE": str(tokens)})  # fmt: skip
    security = server_security(settings, listen="0.0.0.0:7430", listen_key="grpc.ledger_listen")
    with tls_health_server(security.credentials) as (port, _):
        res = run_health_check(health, f"127.0.0.1:{port}", ca)
        assert res.returncode == 0, res.stderr


def _check_nats_certificate_with_python_tls(cert: Path, key: Path, ca: Path, host: str) -> None:
    """A TLS handshake with the certificate, checked as the NATS clients check it (ssl.create_default_context
    with nats.tls_ca, the host name from nats.url)."""
    import socket  # noqa: PLC0415
    import ssl  # noqa: PLC0415
    import threading  # noqa: PLC0415

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError), server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        client_ctx = ssl.create_default_context(cafile=str(ca))
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=host) as tls:  # fmt: skip
            assert tls.version() is not None
            tls.sendall(b"x")
        t.join(timeout=10)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_compose_openssl_lines_make_certificates_the_deployment_accepts(tmp_path: Path) -> None:
    _run_openssl_lines("Docker Compose", tmp_path)
    c = compose()
    secret = {name: tmp_path / s["file"].removeprefix("./") for name, s in c["secrets"].items()}
    for name in ("ca.crt", "grpc.crt", "grpc.key"):
        assert secret[name].is_file(), name
    assert secret["grpc.key"].stat().st_mode & 0o077 == 0, "openssl writes the key with mode 0600"
    servers = [n for n, svc in c["services"].items() if "command" in svc and svc["command"][1:2] == ["serve"]]
    assert set(servers) == {"ledger", "query"}
    assert _grpc_host_names(servers, None) | {"localhost"} <= san_names(secret["grpc.crt"])
    ledger = next(p for p in compose_processes() if p.where == "compose ledger")
    nats_hosts = {urlsplit(u).hostname for u in nats_servers(ledger.env["PROVAULT_NATS_URL"])}
    nats_cert = tmp_path / "secrets" / "nats" / "server.crt"
    assert {*nats_hosts, "localhost"} <= san_names(nats_cert), "the names in nats.url, and localhost for agents on the host"
    assert (tmp_path / "secrets" / "nats" / "server.key").is_file()
    assert not list((tmp_path / "secrets").glob("*.srl")), "the serial file stays in pki/"
    _check_grpc_certificate(secret["grpc.crt"], secret["grpc.key"], secret["ca.crt"], tmp_path, ledger.health[0])
    for host in sorted(nats_hosts):
        _check_nats_certificate_with_python_tls(nats_cert, tmp_path / "secrets" / "nats" / "server.key", secret["ca.crt"], host)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_kubernetes_openssl_lines_make_certificates_the_deployment_accepts(tmp_path: Path) -> None:
    _run_openssl_lines("Kubernetes", tmp_path)
    docs = kube_documents()
    namespace = next(d for d in docs if d["kind"] == "Namespace")["metadata"]["name"]
    services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
    assert set(services) == {"provault-ledger", "provault-query"}
    assert _grpc_host_names(services, namespace) | {"localhost"} <= san_names(tmp_path / "grpc.crt")
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap")
    nats_hosts = {urlsplit(u).hostname for u in nats_servers(config["PROVAULT_NATS_URL"])}
    assert nats_hosts <= san_names(tmp_path / "nats.crt")
    ledger = next(p for p in kube_processes(docs) if p.where == "Deployment/provault-ledger/ledger")
    _check_grpc_certificate(tmp_path / "grpc.crt", tmp_path / "grpc.key", tmp_path / "ca.crt", tmp_path, ledger.health[0])
    for host in sorted(nats_hosts):
        _check_nats_certificate_with_python_tls(tmp_path / "nats.crt", tmp_path / "nats.key", tmp_path / "ca.crt", host)
