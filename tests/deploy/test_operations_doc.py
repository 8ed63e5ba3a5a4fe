"""docs/operations.md: its commands parse and work, and its set-up matches the deploy files.

* every `provault` command of its ```bash blocks parses with the real CLI;
* the operator steps come in a working order, and create every secret file and
  Secret the deploy files mount;
* its `openssl` lines, run as written, make certificates that name the hosts
  the deployment uses, that the servers' own checks accept, and that the
  deployed health check trusts over a real TLS connection; the NATS servers'
  certificate also works on both ends of a route (mutual TLS, the route names);
* every file its set-up steps write lands where git ignores it (or outside the
  checkout);
* what it says the ledger's NATS user may do to the stream is what NATS lets
  that user do.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ledger.cli import build_parser
from ledger.config import Settings, load_settings
from ledger.grpckit.security import server_security
from ledger.grpckit.tokens import TokenStore
from ledger.transport import nats_servers

from .manifests import KUBE, ROOT, compose, compose_processes, kube_documents, kube_processes, load_all
from .natskit import (
    NATS_CONFS,
    chart_route_hosts,
    check_route_certificate_with_python_tls,
    nats_server,
    nats_users,
    routes_form,
)
from .tlskit import run_health_check, san_names, tls_health_server

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

_ORDER = (
    "provault keys new",
    "openssl req -x509",
    "provault auth token create",
    "provault nats user add",
    "provault nats server-config",
)


@pytest.mark.parametrize("title, last", [("Docker Compose", "docker compose up"), ("Kubernetes", "kubectl apply -k")])
def test_the_set_up_steps_come_in_order(title: str, last: str) -> None:
    """Admin and checkpoint keys, TLS, tokens, NATS users, the users file, then start."""
    lines = _command_lines(_section(title))
    first = [next((i for i, ln in enumerate(lines) if ln.startswith(step)), None) for step in (*_ORDER, last)]
    assert None not in first, f"{title}: missing one of {(*_ORDER, last)}"
    assert first == sorted(first), (
        f"{title}: the steps are out of order: {dict(zip((*_ORDER, last), first, strict=True))}"
    )
    ledger_user = next(ln for ln in lines if ln.startswith("provault nats user add ledger"))
    assert "--role ledger" in ledger_user


def test_the_compose_steps_make_every_secret_the_compose_file_mounts() -> None:
    text = " ".join(_command_lines(_section("Docker Compose")))
    c = compose()
    files = [s["file"].removeprefix("./") for s in c["secrets"].values()]
    folders = {
        v.split(":")[0].removeprefix("./")
        for svc in c["services"].values()
        for v in svc.get("volumes", [])
        if v.startswith("./secrets/")
    }
    assert folders, "the tokens folder and the NATS folder"
    for path in [*files, *folders]:
        assert path in text, f"docs/operations.md, Docker Compose: nothing makes {path}"
    for name in ("secrets/auth/tokens.json", "secrets/nats/auth.conf", "secrets/ledger.nk"):
        assert name in text


def test_the_kubernetes_steps_create_every_secret_the_manifests_mount() -> None:
    lines = _command_lines(_section("Kubernetes"))
    created = {
        (ln.split()[2], ln.split()[6]) for ln in lines if re.match(r"kubectl -n \S+ create secret (generic|tls) ", ln)
    }
    docs = kube_documents()
    wanted = set()
    for proc in kube_processes(docs):
        wanted |= {("provault", m.source) for m in proc.mounts if m.kind == "secret"}
        wanted |= {
            ("provault", src_mount.source)
            for _, (_, mounts) in proc.init_copies.items()
            for src_mount in mounts
            if src_mount.kind == "secret"
        }
    text = "\n".join(p.read_text() for p in (KUBE / "base").glob("*.yaml"))
    wanted |= {
        ("provault", n) for n in re.findall(r"secretKeyRef: \{name: (\S+), key:", text) if n != "provault-pg-app"
    }
    values = load_all(KUBE / "nats-values.yaml")[0]
    wanted.add(("nats", values["config"]["nats"]["tls"]["secretName"]))
    wanted.add(("nats", values["config"]["cluster"]["tls"]["secretName"]))
    wanted.add(("nats", values["tlsCA"]["secretName"]))
    wanted |= {
        ("nats", op["value"]["secret"]["secretName"])
        for op in values["podTemplate"]["patch"]
        if "secret" in op["value"]
    }
    assert len(wanted) >= 10
    missing = sorted(wanted - created)
    assert missing == [], f"docs/operations.md, Kubernetes: no `kubectl -n NS create secret` for {missing}"


# --- the openssl lines, run as written ------------------------------------------------------------


def _run_openssl_lines(title: str, cwd: Path, certificates: int = 3) -> None:
    lines = [ln for ln in _command_lines(_section(title)) if ln.startswith(("mkdir ", "openssl "))]
    assert sum(ln.startswith("openssl req") for ln in lines) == certificates, (
        f"{title}: the CA and the server certificates"
    )
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(lines)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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
    settings = load_settings(
        env={
            "PROVAULT_GRPC_TLS_CERT": str(cert),
            "PROVAULT_GRPC_TLS_KEY": str(key),
            "PROVAULT_GRPC_TOKENS_FILE": str(tokens),
        }
    )
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
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
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
    assert set(servers) == {"ledger", "query", "openlineage"}
    assert _grpc_host_names(servers, None) | {"localhost"} <= san_names(secret["grpc.crt"])
    ledger = next(p for p in compose_processes() if p.where == "compose ledger")
    nats_hosts = {urlsplit(u).hostname for u in nats_servers(ledger.env["PROVAULT_NATS_URL"])}
    nats_cert = tmp_path / "secrets" / "nats" / "server.crt"
    assert {*nats_hosts, "localhost"} <= san_names(nats_cert), (
        "the names in nats.url, and localhost for agents on the host"
    )
    assert (tmp_path / "secrets" / "nats" / "server.key").is_file()
    assert not list((tmp_path / "secrets").glob("*.srl")), "the serial file stays in pki/"
    _check_grpc_certificate(secret["grpc.crt"], secret["grpc.key"], secret["ca.crt"], tmp_path, ledger.health[0])
    nats_key = tmp_path / "secrets" / "nats" / "server.key"
    for host in sorted(nats_hosts):
        _check_nats_certificate_with_python_tls(nats_cert, nats_key, secret["ca.crt"], host)
    # Routes: the names the shipped configurations dial, the certificate on both ends against the CA, which
    # the NATS services get as the Compose secret ca.crt.
    route_hosts = {h for conf in NATS_CONFS for h in re.findall(r"nats-route://([\w.-]+):6222", conf.read_text())}
    assert route_hosts == {"nats-1", "nats-2", "nats-3"} and route_hosts <= san_names(nats_cert)
    assert all("ca.crt" in c["services"][conf.stem]["secrets"] for conf in NATS_CONFS)
    _check_nats_routes(nats_cert, nats_key, secret["ca.crt"], sorted(route_hosts), tmp_path / "routes")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_kubernetes_openssl_lines_make_certificates_the_deployment_accepts(tmp_path: Path) -> None:
    _run_openssl_lines("Kubernetes", tmp_path, certificates=4)  # the CA, gRPC, NATS, the admission webhook
    docs = kube_documents()
    namespace = next(d for d in docs if d["kind"] == "Namespace")["metadata"]["name"]
    services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
    assert set(services) == {"provault-ledger", "provault-query", "provault-openlineage", "provault-admission"}
    grpc_services = [s for s in services if s != "provault-admission"]
    assert _grpc_host_names(grpc_services, namespace) | {"localhost"} <= san_names(tmp_path / "grpc.crt")
    # The API server calls the webhook by its Service's name in the namespace, and checks it against caBundle.
    webhook = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"][0]
    service = webhook["clientConfig"]["service"]
    assert f"{service['name']}.{namespace}.svc" in san_names(tmp_path / "admission.crt")
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.crt", "admission.crt"], cwd=tmp_path, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "provault-config")
    nats_hosts = {urlsplit(u).hostname for u in nats_servers(config["PROVAULT_NATS_URL"])}
    assert nats_hosts <= san_names(tmp_path / "nats.crt")
    ledger = next(p for p in kube_processes(docs) if p.where == "Deployment/provault-ledger/ledger")
    _check_grpc_certificate(
        tmp_path / "grpc.crt", tmp_path / "grpc.key", tmp_path / "ca.crt", tmp_path, ledger.health[0]
    )
    for host in sorted(nats_hosts):
        _check_nats_certificate_with_python_tls(tmp_path / "nats.crt", tmp_path / "nats.key", tmp_path / "ca.crt", host)
    # Routes: the names the chart dials for these values (release nats), the certificate on both ends, checked
    # against the CA, which the steps put into the Secret the values' tlsCA names.
    values = load_all(KUBE / "nats-values.yaml")[0]
    route_hosts = chart_route_hosts(values)
    assert route_hosts == [f"nats-{i}.nats-headless" for i in range(3)] and set(route_hosts) <= san_names(
        tmp_path / "nats.crt"
    )
    lines = _command_lines(_section("Kubernetes"))
    assert f"kubectl -n nats create secret generic {values['tlsCA']['secretName']} --from-file=ca.crt" in lines
    _check_nats_routes(
        tmp_path / "nats.crt", tmp_path / "nats.key", tmp_path / "ca.crt", route_hosts, tmp_path / "routes"
    )


def _check_nats_routes(cert: Path, key: Path, ca: Path, hosts: list[str], root: Path) -> None:
    """The NATS servers' certificate on a route: extended key usage serverAuth and clientAuth, and the route
    names (OpenSSL, as Go does, checks both); then two real nats-servers form a route with it (dialling localhost,
    which the certificate also names)."""
    for host in hosts:
        check_route_certificate_with_python_tls(cert, key, ca, host)
    assert set(routes_form(root, cert=cert, key=key, ca=ca)) == {"route-1"}, (
        "two servers with this certificate form a route"
    )


# --- where the set-up steps write ---------------------------------------------------------------------

_WRITES = [
    re.compile(p)
    for p in (
        r"(?:^|\s)-(?:keyout|out|CAserial)\s+(\S+)",  # openssl
        r"(?:^|\s)--(?:out|seed-out)[= ](\S+)",  # provault
        r"(?:^|[^\d&])>\s*(\S+)",  # shell redirections
        r"^export \w+=\$PWD/(\S+)",  # files the following commands write
    )
]


def _written_paths(title: str) -> list[tuple[str, str]]:
    """(absolute path, the command line) for every file or folder a section's command lines write, relative paths
    taken from the folder the lines `cd` to (the repository's root first); a folder's path ends in /."""
    cwd, out = ROOT, []
    for line in _command_lines(_section(title)):
        argv = shlex.split(line, comments=True)
        if argv[:1] == ["cd"]:
            cwd = (cwd / argv[1]).resolve()
            continue
        paths = [m for rx in _WRITES for m in rx.findall(line)]
        if argv[:3] == ["provault", "keys", "new"]:
            paths += [argv[3], argv[3] + ".pub"]
        if argv[:2] == ["mkdir", "-p"]:
            paths += [f"{d.rstrip('/')}/" for d in argv[2:]]
        if argv[:1] == ["cp"]:
            paths.append(argv[-1])
        for p in paths:
            p = p.strip("\"'")
            path = (Path(p).expanduser() if p.startswith(("~", "/")) else cwd / p).resolve()
            out.append((f"{path}/" if p.endswith("/") else str(path), line))
    return out


@pytest.mark.skipif(
    shutil.which("git") is None
    or subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True, check=False).returncode != 0,
    reason="not a git checkout",
)
@pytest.mark.parametrize("title", ["Docker Compose", "Kubernetes"])
def test_the_set_up_steps_write_secrets_only_where_git_ignores_them(title: str) -> None:
    """Keys, certificates, tokens and seeds must never be written where `git add` would pick them up: every file a
    set-up step writes is ignored by git (deploy/compose/secrets/ and pki/, deploy/kubernetes/secrets/), or outside
    the checkout."""
    written = _written_paths(title)
    assert len(written) >= 15, written
    inside = [(p, line) for p, line in written if Path(p).is_relative_to(ROOT)]
    assert inside, "the steps write into the checkout's ignored folders"
    exposed = []
    for path, line in inside:
        rel = str(Path(path).relative_to(ROOT)) + ("/" if path.endswith("/") else "")
        res = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", rel], capture_output=True, check=False
        )
        if res.returncode != 0:
            exposed.append(f"{rel}  (from `{line}`)")
    assert exposed == [], "docs/operations.md writes where git does not ignore it:\n" + "\n".join(exposed)
    kube_secrets = KUBE / "secrets" / ".gitignore"
    assert kube_secrets.read_text().split("\n")[-3:] == ["*", "!.gitignore", ""], "everything in it but itself"


# --- the ledger's NATS user ---------------------------------------------------------------------------------


def test_what_the_guide_says_the_ledgers_nats_user_can_do_to_the_stream(tmp_path: Path) -> None:
    """The guide: the ledger's user may create and update the stream (ensure_stream brings it to the configured
    limits), so its seed could shorten retention; it cannot turn off deny_delete / deny_purge, nor purge or
    delete the stream.  Checked against a nats-server with the users file from the real CLI."""
    text = " ".join(_section("Topology").split())
    assert "may create **and update** the stream" in text and "`deny_delete` and `deny_purge`" in text
    from ledger.embedded import free_port  # noqa: PLC0415

    users = nats_users(tmp_path / "users")
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {tmp_path / 'js'} }}\ninclude ./users/auth.conf\n"
    )
    settings = load_settings(
        env={"PROVAULT_NATS_URL": f"nats://127.0.0.1:{port}", "PROVAULT_NATS_NKEY_SEED_FILE": str(users["ledger"])}
    )
    with nats_server(config, tmp_path / "nats.log"):
        asyncio.run(_ledger_user_on_the_stream(settings))


async def _ledger_user_on_the_stream(settings: Settings) -> None:
    import dataclasses  # noqa: PLC0415
    import time  # noqa: PLC0415

    import nats  # noqa: PLC0415

    from ledger.natsauth import connect_options  # noqa: PLC0415
    from ledger.transport import ensure_stream, stream_config  # noqa: PLC0415

    async def quiet(_: Exception) -> None:
        return None

    deadline = time.monotonic() + 20
    while True:
        try:
            nc = await nats.connect(
                settings.nats.url,
                connect_timeout=2,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=quiet,
                **connect_options(settings.nats),
            )
            break
        except (TimeoutError, OSError, nats.errors.Error):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    try:
        js = nc.jetstream(timeout=2)
        info = await ensure_stream(js, settings.nats)  # create
        assert info.config.deny_delete and info.config.deny_purge
        want = stream_config(settings.nats)
        # Update: a shorter retention is allowed (that is the risk the guide states) ...
        shorter = await js.update_stream(dataclasses.replace(want, max_bytes=4096, max_msgs=10))
        assert shorter.config.max_bytes == 4096 and shorter.config.max_msgs == 10
        # ... turning off deny_delete or deny_purge is not, and neither is purging or deleting the stream.
        for flag in ("deny_delete", "deny_purge"):
            with pytest.raises(nats.errors.Error, match="can not cancel"):
                await js.update_stream(dataclasses.replace(want, **{flag: False}))
        denied = nc.jetstream(timeout=0.5)  # a request the user may not publish gets no reply
        with pytest.raises((nats.errors.Error, asyncio.TimeoutError)):
            await denied.purge_stream(settings.nats.stream)
        with pytest.raises((nats.errors.Error, asyncio.TimeoutError)):
            await denied.delete_stream(settings.nats.stream)
        assert (await js.stream_info(settings.nats.stream)).config.name == settings.nats.stream
        # ensure_stream, at the ledger's next start, brings back the limits it manages (the byte cap among them).
        back = await ensure_stream(js, settings.nats)
        assert (back.config.max_bytes, back.config.max_msgs, back.config.max_age) == (want.max_bytes, -1, 0.0)
    finally:
        await nc.close()
