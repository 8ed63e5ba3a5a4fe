"""The gRPC servers as deployed are secure: they get TLS and tokens that ``server_security`` accepts, every key
and token file they name is mounted (private keys with mode 0600), and their health checks speak TLS and work
against a TLS server, run as the real ``provault health``."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ledger.cli import build_parser
from ledger.config import load_settings
from ledger.grpckit.security import server_security
from ledger.grpckit.tokens import TokenStore
from ledger.natsauth import connect_options, require_ledger_user

from .manifests import (
    DOCKERFILE,
    KUBE,
    PATH_SETTINGS,
    PRIVATE_SETTINGS,
    ROOT,
    Process,
    compose_processes,
    kube_documents,
    kube_processes,
    yaml_files,
)
from .tlskit import make_tls, run_health_check, tls_health_server


def _overlay_docs() -> list[tuple[str, list[dict[str, Any]]]]:
    out = [("base", kube_documents())]
    if shutil.which("kubectl") is not None:
        for overlay in sorted((KUBE / "overlays").iterdir()):
            res = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True)
            out.append((f"overlays/{overlay.name}", [d for d in yaml.safe_load_all(res.stdout) if d]))
    return out


def _processes() -> list[Process]:
    procs = compose_processes()
    for name, docs in _overlay_docs():
        procs += [dataclasses.replace(p, where=f"kubernetes {name} {p.where}") for p in kube_processes(docs)]
    return procs


def _servers() -> list[Process]:
    return [p for p in _processes() if p.server()]


def test_deploy_runs_every_grpc_server() -> None:
    where = {p.where for p in _servers()}
    assert {
        "compose ledger",
        "compose query",
        "kubernetes base Deployment/provault-ledger/ledger",
        "kubernetes base Deployment/provault-projector/projector",
        "kubernetes base Deployment/provault-query/query",
    } <= where


def _provision(proc: Process, root: Path, users: dict[str, Path]) -> dict[str, str]:
    """The process's PROVAULT_* variables with every file it names made, valid, under ``root``.

    Certificates come from a fresh private CA; the tokens file holds one admin
    token; the NATS seed is the ledger user's from the real CLI.
    """
    env = {k: v for k, v in proc.env.items() if k.startswith("PROVAULT_")}
    tls = make_tls(root / "pki", ["localhost"])
    for key in PATH_SETTINGS:
        if key not in env:
            continue
        path = root / env[key].lstrip("/")
        env[key] = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if key == "PROVAULT_DATA_DIR":
            path.mkdir(exist_ok=True)
        elif key == "PROVAULT_GRPC_TLS_CERT":
            shutil.copy(tls.cert, path)
        elif key == "PROVAULT_GRPC_TLS_KEY":
            shutil.copy(tls.key, path)
            path.chmod(0o600)  # the operator's chmod (compose) or the init container's install -m 0600 (Kubernetes)
        elif key in ("PROVAULT_GRPC_TLS_CLIENT_CA", "PROVAULT_NATS_TLS_CA"):
            shutil.copy(tls.ca, path)
        elif key == "PROVAULT_GRPC_TOKENS_FILE":
            TokenStore(path).create(role="admin", name="ops")
        elif key == "PROVAULT_NATS_NKEY_SEED_FILE":
            shutil.copy(users["ledger"], path)
            path.chmod(0o600)
    return env


@pytest.mark.parametrize("proc", _servers(), ids=lambda p: p.where)
def test_grpc_servers_as_deployed_pass_the_servers_security_checks(
    proc: Process, users: dict[str, Path], tmp_path: Path
) -> None:
    """`ledger serve` / `query serve` refuse to start without TLS beyond loopback and without a way to authenticate;
    with the settings deploy/ gives them (and valid files where those point), they start with TLS and tokens."""
    listen_key, listen_var = proc.server() or ("", "")
    env = proc.env
    assert not load_settings(env={k: v for k, v in env.items() if k.startswith("PROVAULT_")}).dev_mode, proc.where
    assert env[listen_var].startswith("0.0.0.0:"), "reachable from other containers and pods"
    # The tokens file is named explicitly: the default, under data_dir, is on a throwaway volume.
    assert "PROVAULT_GRPC_TOKENS_FILE" in env or "PROVAULT_GRPC_TLS_CLIENT_CA" in env, proc.where
    settings = load_settings(env=_provision(proc, tmp_path, users))
    security = server_security(settings, listen=env[listen_var], listen_key=listen_key)
    assert security.credentials is not None, f"{proc.where}: {security.summary}"
    assert "DEV MODE" not in security.summary
    if listen_key == "grpc.ledger_listen":
        require_ledger_user(settings)  # the ledger also refuses to start without its NATS user
        assert set(connect_options(settings.nats)) >= {"nkeys_seed_str", "tls"}, (
            f"{proc.where}: NATS with its user, over TLS"
        )


def test_every_file_a_setting_names_is_mounted_and_private_keys_are_private() -> None:
    """Each key, certificate, token or seed file a process is told to read is on a mount the operator fills;
    the tokens file on one that shows a replaced file (no single-file mount); private keys mode 0600."""
    checked = 0
    for proc in _processes():
        for key in PATH_SETTINGS:
            if key not in proc.env or key == "PROVAULT_DATA_DIR":
                continue
            path, checked = proc.env[key], checked + 1
            mount = proc.mount_of(path)
            assert mount is not None, f"{proc.where}: {key}={path} is on no mount"
            if proc.where.startswith("compose"):
                assert mount.kind in ("secret", "bind"), f"{proc.where}: {key}={path} is on a {mount.kind}"
                if mount.kind == "bind":
                    assert mount.source.startswith("./secrets/"), (
                        f"{proc.where}: {key}: the operator's files live in secrets/"
                    )
                if key == "PROVAULT_GRPC_TOKENS_FILE":
                    # A single-file bind mount keeps showing the old file once `provault auth token` replaces it.
                    assert mount.kind == "bind" and mount.path != path, f"{proc.where}: mount the tokens file's folder"
                continue
            if key in PRIVATE_SETTINGS:
                assert mount.kind == "emptyDir", f"{proc.where}: {key}: a Secret volume is group-readable with fsGroup"
                assert path in proc.init_copies, (
                    f"{proc.where}: {key}={path}: no init container installs it with mode 0600"
                )
                source, init_mounts = proc.init_copies[path]
                src_mount = next((m for m in init_mounts if source.startswith(m.path.rstrip("/") + "/")), None)
                assert src_mount is not None and src_mount.kind == "secret", (
                    f"{proc.where}: {key}: copied from {source}"
                )
            else:
                assert mount.kind in ("secret", "configMap") and not mount.sub_path, f"{proc.where}: {key}={path}"
    assert checked >= 15


def _health_checks() -> list[tuple[Process, list[str]]]:
    return [(p, h) for p in _processes() for h in p.health]


def test_no_health_check_uses_an_insecure_channel_against_a_tls_port() -> None:
    """Every gRPC server has health checks, all of them `provault health` on its own port with TLS: the CA from a
    mounted secret, the certificate checked under the name localhost; the same check everywhere."""
    servers = {p.where: p for p in _servers()}
    assert "insecure_channel" not in "".join(p.read_text() for p in yaml_files())
    shapes = set()
    for where, proc in servers.items():
        assert proc.grpc_probes == [], (
            f"{where}: the kubelet's grpc probe speaks plaintext to a TLS port ({proc.grpc_probes})"
        )
        assert proc.health, f"{where}: no health check"
        listen = proc.env[(proc.server() or ("", ""))[1]]
        for argv in proc.health:
            assert argv[:2] == ["provault", "health"], f"{where}: {argv}: the health command of the CLI"
            try:
                args = build_parser().parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"{where}: `{' '.join(argv)}` does not parse with the CLI")
            assert args.target == f"127.0.0.1:{listen.rsplit(':', 1)[1]}", f"{where}: checks its own port"
            assert args.tls_ca, f"{where}: no --tls-ca: the check would speak plaintext to a TLS port"
            mount = proc.mount_of(args.tls_ca)
            assert mount is not None and mount.kind in ("secret", "bind"), (
                f"{where}: the CA file {args.tls_ca} is not mounted"
            )
            assert args.tls_name == "localhost", (
                f"{where}: the servers' certificates name localhost (docs/operations.md)"
            )
            assert args.service == "" and args.config is None and args.data_dir is None, where
            shapes.add(tuple(a for a in argv if a not in (args.target, args.tls_ca)))
    assert len(shapes) == 1, f"one health check everywhere, found {shapes}"


def test_the_image_puts_the_cli_on_path() -> None:
    """The probes run `provault` by name: the image installs the package (its console script lands on PATH) and
    its entrypoint is that same script."""
    text = DOCKERFILE.read_text()
    assert "RUN pip install . " in text and 'ENTRYPOINT ["provault"]' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'provault = "ledger.cli:main"' in pyproject


@pytest.mark.parametrize("proc", _servers(), ids=lambda p: p.where)
def test_the_health_check_answers_over_tls_without_a_token(
    proc: Process, users: dict[str, Path], tmp_path: Path
) -> None:
    """The deployed check, run as the real `provault health` with the container's settings, against a server made by
    `server_security` from them: it passes with the right CA, fails on NOT_SERVING and with another CA."""
    from grpc_health.v1 import health_pb2  # noqa: PLC0415

    argv = proc.health[0]
    env = _provision(proc, tmp_path, users)
    listen_key, listen_var = proc.server() or ("", "")
    security = server_security(load_settings(env=env), listen=proc.env[listen_var], listen_key=listen_key)
    ca = tmp_path / build_parser().parse_args(argv[1:]).tls_ca.lstrip("/")  # where the container sees the CA
    ca.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "pki" / "ca.crt", ca)
    with tls_health_server(security.credentials) as (port, health):
        res = run_health_check(argv, f"127.0.0.1:{port}", ca, env=env)
        assert (res.returncode, res.stdout) == (0, f"provault health: 127.0.0.1:{port} SERVING\n"), res.stderr
        health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        res = run_health_check(argv, f"127.0.0.1:{port}", ca, env=env)
        assert (res.returncode, res.stdout, res.stderr) == (1, f"provault health: 127.0.0.1:{port} NOT_SERVING\n", "")
        # The CA is checked: a server whose certificate another CA signed fails the check.
        other = make_tls(tmp_path / "other", ["localhost"])
        res = run_health_check(argv, f"127.0.0.1:{port}", other.ca, env=env)
        assert res.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in res.stderr, res.stderr
        assert f"provault: error [transport_unavailable]: TLS handshake with 127.0.0.1:{port} failed" in res.stderr
