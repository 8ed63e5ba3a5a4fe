"""deploy/ is consistent: YAML parses, references resolve, settings are real settings, commands parse.

And deploy/ is secure as configured: the gRPC servers get TLS and tokens that
``server_security`` accepts, every key and token file they name is mounted
(private keys with mode 0600), health checks speak TLS, and the NATS servers
include a users file made by the real ``provault nats`` CLI, pass
``nats-server -t`` and admit the ledger's user over TLS, nobody anonymously.
The NATS servers start TLS before they say anything (a client that waits for
a clear INFO gets none, so it cannot be downgraded), their routes admit only
peers with a certificate from the private CA, their monitoring port stays
inside the containers (Compose) or behind the NATS NetworkPolicy (Kubernetes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import posixpath
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ledger.cli import build_parser
from ledger.config import Settings, load_settings
from ledger.core.errors import ConfigError
from ledger.embedded import free_port, nats_server_binary
from ledger.natsauth import connect_options, require_ledger_user
from ledger.grpckit.auth import server_security
from ledger.grpckit.tokens import TokenStore

from .manifests import (
    CHART_RELEASE,
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    KUBE,
    NATS_CONFS,
    PATH_SETTINGS,
    PRIVATE_SETTINGS,
    ROOT,
    NatsPorts,
    Process,
    Tls,
    chart_route_hosts,
    compose,
    compose_nats_tree,
    compose_processes,
    dockerfile_env,
    env_values,
    kube_containers,
    kube_documents,
    kube_processes,
    load_all,
    localize_compose_nats,
    make_tls,
    nats_server,
    nats_users,
    provault_commands,
    route_peers,
    routes_form,
    run_health_check,
    tls_health_server,
    wait_until,
    yaml_files,
)

# --- every file -----------------------------------------------------------------------------------


def test_every_yaml_file_in_deploy_parses() -> None:
    files = yaml_files()
    assert len(files) >= 10
    for path in files:
        assert load_all(path), f"{path.relative_to(ROOT)} holds no document"


def _kustomizations() -> list[Path]:
    return sorted(KUBE.rglob("kustomization.yaml"))


@pytest.mark.parametrize("kustomization", _kustomizations(), ids=lambda p: str(p.relative_to(KUBE)))
def test_kustomization_lists_only_files_that_exist(kustomization: Path) -> None:
    k = load_all(kustomization)[0]
    here = kustomization.parent
    for entry in k.get("resources", []):
        target = here / entry
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{kustomization}: {entry} does not exist"
    for patch in k.get("patches", []):
        if "path" in patch:
            assert (here / patch["path"]).is_file(), f"{kustomization}: patch {patch['path']} does not exist"
    listed = {here / e for e in k.get("resources", [])} | {here / p["path"] for p in k.get("patches", []) if "path" in p}
    unlisted = {p for p in here.glob("*.yaml") if p.name != "kustomization.yaml"} - listed
    assert unlisted == set(), f"{kustomization}: files not in the kustomization: {sorted(p.name for p in unlisted)}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
@pytest.mark.parametrize("kustomization", _kustomizations(), ids=lambda p: str(p.relative_to(KUBE)))
def test_kustomize_renders(kustomization: Path) -> None:
    res = subprocess.run(["kubectl", "kustomize", str(kustomization.parent)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(res.stdout) if d}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "Cluster", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


# --- settings and commands --------------------------------------------------------------------------


def _compose_env() -> dict[str, dict[str, str]]:
    return {name: env_values(svc.get("environment")) for name, svc in compose()["services"].items()}


def _kube_env() -> dict[str, dict[str, str]]:
    docs = kube_documents()
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "provault-config")
    out = {}
    for c in kube_containers(docs):
        uses_config = any(s.get("configMapRef", {}).get("name") == "provault-config" for s in c.spec.get("envFrom", []))
        out[c.where] = {**(config if uses_config else {}), **env_values(c.spec.get("env"))}
    return out


def _provault_env_sets() -> dict[str, dict[str, str]]:
    sets = {"Dockerfile": dockerfile_env()}
    sets.update({f"compose {k}": {**sets["Dockerfile"], **v} for k, v in _compose_env().items()})
    sets.update({f"kubernetes {k}": {**sets["Dockerfile"], **v} for k, v in _kube_env().items()})
    return {where: {k: v for k, v in env.items() if k.startswith("PROVAULT_")} for where, env in sets.items()}


def test_every_provault_variable_in_deploy_is_a_valid_setting() -> None:
    sets = _provault_env_sets()
    names = {n for env in sets.values() for n in env}
    assert {"PROVAULT_POSTGRES_DSN", "PROVAULT_NATS_URL", "PROVAULT_NATS_REPLICAS"} <= names
    for where, env in sets.items():
        try:
            load_settings(env=env)
        except ConfigError as e:  # names every unknown or invalid variable
            pytest.fail(f"{where}: {e.diagnostics()}")
    for where, env in sets.items():
        if "PROVAULT_NATS_REPLICAS" in env and "dev" not in where:
            assert env["PROVAULT_NATS_REPLICAS"] == "3", where


def _deploy_commands() -> list[tuple[str, list[str]]]:
    out = []
    for name, svc in compose()["services"].items():
        argv = [*svc.get("entrypoint", []), *svc.get("command", [])]
        entry = "entrypoint" not in svc and "build" in svc  # the provault image: ENTRYPOINT ["provault"]
        out += [(f"compose {name}", cmd) for cmd in provault_commands(argv, entrypoint_is_provault=entry)]
    for c in kube_containers(kube_documents()):
        out += [(c.where, cmd) for cmd in provault_commands(c.argv(), entrypoint_is_provault="command" not in c.spec)]
    return out


def test_every_provault_command_in_deploy_parses_with_the_cli() -> None:
    commands = _deploy_commands()
    shown = {" ".join(cmd[1:3]) for _, cmd in commands}
    assert {"db migrate", "ledger init", "ledger serve", "query serve"} <= shown
    for where, cmd in commands:
        try:
            args = build_parser().parse_args(cmd[1:])
        except SystemExit:
            pytest.fail(f"{where}: `{' '.join(cmd)}` does not parse with the CLI")
        assert callable(getattr(args, "run", None)), where
    query_replicas = [cmd for where, cmd in commands if where == "Deployment/provault-query/query"]
    assert query_replicas == [["provault", "query", "serve", "--no-projector"]], "replicas on standbys must not project"


# --- Docker Compose --------------------------------------------------------------------------------


def test_compose_references_existing_files_services_and_secrets() -> None:
    c = compose()
    here = COMPOSE.parent
    services, secrets = c["services"], c["secrets"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./secrets/"):
                continue  # the operator's (docs/operations.md), like the secrets below
            if source.startswith("."):
                assert (here / source).is_file(), f"{name}: {source} does not exist"
            else:
                assert source in c["volumes"], f"{name}: volume {source} is not declared"
        for secret in svc.get("secrets", []):
            assert secret in secrets, f"{name}: secret {secret} is not declared"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name}: depends on unknown service {dep}"
        if "build" in svc:
            assert (here / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
    # Secret files are the operator's to create, under secrets/, which git ignores.
    for name, secret in secrets.items():
        assert secret["file"].startswith("./secrets/"), name
    assert "secrets/" in (here / ".gitignore").read_text().split()
    assert set(secrets) == {s for svc in services.values() for s in svc.get("secrets", [])}, "every secret is used"


def test_compose_runs_the_required_topology() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"] == "postgres:17" and "healthcheck" in services["postgres"]
    nats = [n for n in services if n.startswith("nats-")]
    assert len(nats) == 3
    for n in nats:
        assert services[n]["image"].startswith("nats:2.11")
        assert "healthcheck" in services[n]
    assert services["migrate"]["restart"] == "no"
    assert services["ledger"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond this host"


def _compose_nats_tls(folder: Path) -> Tls:
    """The NATS servers' certificate as docs/operations.md makes it: the Compose names, serverAuth and clientAuth."""
    return make_tls(folder, ["nats-1", "nats-2", "nats-3", "localhost"], cn="provault-nats", client_auth=True)


def _nats_test(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(nats_server_binary()), "-c", str(config), "-t"]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)


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


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A ledger user and an agent user, made with the real `provault nats` CLI."""
    return nats_users(tmp_path_factory.mktemp("nats-users"))


@pytest.mark.parametrize("conf", NATS_CONFS, ids=lambda p: p.name)
def test_compose_nats_config_with_a_generated_users_include_is_valid(conf: Path, users: dict[str, Path], tmp_path: Path) -> None:
    text = conf.read_text()
    assert f"server_name: {conf.stem}" in text
    assert all(f"nats-route://nats-{i}:6222" in text for i in (1, 2, 3))
    assert re.search(r"^include \./secrets/auth\.conf$", text, re.M), "the users file, from `provault nats server-config`"
    assert re.search(r"^tls \{", text, re.M) and "no_advertise: true" in text
    # Clients: TLS first, with no fallback to a clear INFO (a duration would fall back).
    assert _settings(_block(text, "tls"))["handshake_first"] == "true"
    # Routes: mutual TLS against the private CA, which the service gets as the Compose secret ca.crt.
    route_tls = _settings(_block(_block(text, "cluster"), "tls"))
    assert route_tls == {"cert_file": "/etc/nats/secrets/server.crt", "key_file": "/etc/nats/secrets/server.key",
                         "ca_file": "/run/secrets/ca.crt", "verify": "true"}  # fmt: skip
    assert "ca.crt" in compose()["services"][conf.stem]["secrets"]
    config = compose_nats_tree(conf, tmp_path, auth_conf=users["auth.conf"], tls=_compose_nats_tls(tmp_path / "pki"))
    res = _nats_test(config, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # The include is not optional: without the users file the server does not start (no anonymous fallback).
    (config.parent / "secrets" / "auth.conf").unlink()
    res = _nats_test(config, tmp_path)
    assert res.returncode != 0 and "auth.conf" in res.stdout + res.stderr


def test_compose_keeps_nats_monitoring_inside_the_containers() -> None:
    """8222 has no authentication, and /connz lists every client's subscriptions (the ledger's inbox among them):
    Compose publishes neither it nor the routes' port, and the servers listen on it on the container's loopback,
    where the healthcheck, which runs inside the container, still reaches it."""
    services = compose()["services"]
    for conf in NATS_CONFS:
        svc = services[conf.stem]
        published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
        assert "8222" not in published and "6222" not in published, f"{conf.stem}: {svc.get('ports')}"
        assert re.search(r"^http: 127\.0\.0\.1:8222$", conf.read_text(), re.M), conf.name
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD" and test[-1] == "http://127.0.0.1:8222/healthz", test


def _compose_ledger() -> Process:
    return next(p for p in compose_processes() if p.where == "compose ledger")


def _start_compose_nats(names: list[str], root: Path, users: dict[str, Path], tls: Tls) -> tuple[dict[str, NatsPorts], list[Path]]:
    """Configurations for the Compose nodes ``names`` as shipped, moved to this machine; the other nodes are absent."""
    ports = {f"nats-{i}": NatsPorts(client=free_port(), http=free_port(), route=free_port()) for i in (1, 2, 3)}
    configs = []
    for name in names:
        config = compose_nats_tree(NATS_CONFS[int(name[-1]) - 1], root / name, auth_conf=users["auth.conf"], tls=tls)
        localize_compose_nats(config, ports=ports[name], store=root / name / "js",
                              peers={n: p.route for n, p in ports.items()})  # fmt: skip
        configs.append(config)
    return ports, configs


def test_compose_nats_admits_the_ledger_over_tls_first_and_nobody_anonymously(users: dict[str, Path], tmp_path: Path) -> None:
    """nats-1 as configured (ports and store moved to this machine, its peers absent) against the ledger's NATS
    settings from compose: TLS first with the CA and the ledger's nkey works; the server says nothing in clear, so
    a client that waits for INFO before TLS (the downgradable kind) gets nowhere."""
    tls = _compose_nats_tls(tmp_path / "pki")
    ports, (config,) = _start_compose_nats(["nats-1"], tmp_path, users, tls)
    env = _compose_ledger().env
    assert env["PROVAULT_NATS_NKEY_SEED_FILE"].startswith("/run/secrets/") and env["PROVAULT_NATS_TLS_CA"].startswith("/run/secrets/")
    settings = load_settings(env={"PROVAULT_NATS_NKEY_SEED_FILE": str(users["ledger"]), "PROVAULT_NATS_TLS_CA": str(tls.ca)})
    port = ports["nats-1"].client
    with nats_server(config, tmp_path / "nats.log"):
        asyncio.run(_connects_only_with_tls_first_and_credentials(f"nats://localhost:{port}", settings))
        # Nothing in clear: a plain TCP client that waits for the greeting gets none (the server closes
        # after its TLS handshake timeout, or the read times out), never an INFO it could be fooled by.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            try:
                greeting = raw.recv(4096)
            except TimeoutError:
                greeting = b""
        assert b"INFO" not in greeting, greeting


async def _quiet(_: Exception) -> None:
    return None


async def _connects_only_with_tls_first_and_credentials(url: str, settings: Settings) -> None:
    import nats  # noqa: PLC0415

    opts = connect_options(settings.nats)
    assert set(opts) >= {"tls", "nkeys_seed_str"}
    assert opts.get("tls_handshake_first", True) is True, "provault's clients start TLS first when nats.tls_ca is set"
    first = {**opts, "tls_handshake_first": True}
    common: dict[str, Any] = {"connect_timeout": 2, "max_reconnect_attempts": 0, "allow_reconnect": False, "error_cb": _quiet}
    deadline = time.monotonic() + 20
    while True:
        try:
            nc = await nats.connect(url, **common, **first)
            break
        except (OSError, nats.errors.Error, asyncio.TimeoutError):
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


_ROUTE_CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"intruder","cluster":"provault"}\r\nPING\r\n'


def _route_attempt(port: int, ctx: ssl.SSLContext | None, *, host: str = "nats-1", bound: float = 8) -> tuple[str, bytes]:
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
    cluster: dict[str, Any] = {"name": "provault", "listen": f"127.0.0.1:{free_port()}", "routes": [f"nats-route://localhost:{route}"]}
    if tls is not None:
        cluster["tls"] = tls
    config = root / f"{name}.conf"
    config.write_text(json.dumps({"server_name": name, "listen": f"127.0.0.1:{free_port()}", "cluster": cluster}))
    return config


def test_compose_nats_routes_admit_only_peers_with_a_certificate_from_the_ca(users: dict[str, Path], tmp_path: Path) -> None:
    """nats-1 and nats-2 as shipped (nats-3 absent; the routes dial localhost): they form their route over mutual
    TLS.  Intruders on nats-1's route port get no route: nats-servers of their own that dial it in clear, or over
    TLS with a certificate (serverAuth and clientAuth) from another CA; and a raw client (in clear, TLS without a
    certificate, TLS with the other CA's) is cut off within seconds without an answer to its PING."""
    tls = _compose_nats_tls(tmp_path / "pki")
    ports, configs = _start_compose_nats(["nats-1", "nats-2"], tmp_path, users, tls)
    route, http = ports["nats-1"].route, ports["nats-1"].http
    other = make_tls(tmp_path / "other-ca", ["nats-9", "localhost"], client_auth=True)
    intruders = [_intruder(tmp_path, "intruder-in-clear", route, None),
                 _intruder(tmp_path, "intruder-other-ca", route, {"cert_file": str(other.cert), "key_file": str(other.key),
                                                                  "ca_file": str(tls.ca)})]  # fmt: skip
    with nats_server(configs[0], tmp_path / "nats-1.log"), nats_server(configs[1], tmp_path / "nats-2.log"):
        wait_until(lambda: route_peers(http) != [], timeout=20, what="nats-1 and nats-2 form a route")
        assert set(route_peers(http)) == {"nats-2"}
        with nats_server(intruders[0], tmp_path / "intruder-1.log"), nats_server(intruders[1], tmp_path / "intruder-2.log"):
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
        attempts = {"in clear": _route_attempt(route, None), "TLS, no certificate": _route_attempt(route, no_cert),
                    "TLS, another CA's certificate": _route_attempt(route, other_ca)}  # fmt: skip
        for how, (ending, data) in attempts.items():
            assert ending == "closed" or ending.startswith("ssl: "), f"{how}: {ending} {data!r}"
            assert b"PONG" not in data, f"{how}: the server answered {data!r}"
        assert attempts["TLS, no certificate"][0] in ("closed", "ssl: TLSV13_ALERT_CERTIFICATE_REQUIRED"), attempts
        assert set(route_peers(http)) == {"nats-2"}, "no intruder among the routes"


def test_the_routes_need_a_certificate_for_client_authentication_too(tmp_path: Path) -> None:
    """Why the NATS servers' certificate carries clientAuth: each server presents it when it dials a route, and
    its peer (verify: true) refuses one made for serverAuth only."""
    only_server = make_tls(tmp_path / "server-only", ["localhost"])
    assert routes_form(tmp_path / "server-only", cert=only_server.cert, key=only_server.key, ca=only_server.ca, timeout=4) == []
    log = "".join(p.read_text() for p in (tmp_path / "server-only").glob("route-*.log"))
    assert "incompatible key usage" in log, log[-2000:]
    both = make_tls(tmp_path / "both", ["localhost"], client_auth=True)
    assert set(routes_form(tmp_path / "both", cert=both.cert, key=both.key, ca=both.ca)) == {"route-1"}


# --- Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_builds_from_the_repository_as_a_non_root_user() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    assert lines[[i for i, ln in enumerate(lines) if ln.startswith("FROM ")][0]] == "FROM python:3.11-slim"
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "*" in ignore and "!ledger/" in ignore


# --- Kubernetes ---------------------------------------------------------------------------------------


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in kube_documents() if d["kind"] == kind}


def test_kubernetes_one_ledger_several_query_replicas() -> None:
    deployments = _by_kind("Deployment")
    assert deployments["provault-ledger"]["spec"]["replicas"] == 1
    assert deployments["provault-ledger"]["spec"]["strategy"]["type"] == "Recreate"
    assert deployments["provault-projector"]["spec"]["replicas"] == 1
    assert deployments["provault-query"]["spec"]["replicas"] >= 2
    assert _by_kind("PodDisruptionBudget") and len(_by_kind("NetworkPolicy")) >= 2


def test_kubernetes_containers_have_resources_and_health_probes() -> None:
    ports = {"ledger": 7430, "query": 7431, "projector": 7431}
    for c in kube_containers(kube_documents()):
        res = c.spec.get("resources", {})
        assert res.get("requests") and res.get("limits"), f"{c.where}: resources"
        assert c.spec["securityContext"]["readOnlyRootFilesystem"] is True, c.where
        if c.spec["name"] in ports:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                command = c.spec[probe]["exec"]["command"]
                assert command[:3] == ["provault", "health", f"127.0.0.1:{ports[c.spec['name']]}"], f"{c.where}: {probe}"
                check_timeout = build_parser().parse_args(command[1:]).timeout
                # The CLI takes about a second to start, then waits up to --timeout for the answer.
                assert c.spec[probe]["timeoutSeconds"] >= check_timeout + 2, f"{c.where}: {probe}: timeoutSeconds"


def test_kubernetes_dsns_point_writers_at_the_primary_and_queries_at_replicas() -> None:
    cluster = _by_kind("Cluster")["provault-pg"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["spec"]["instances"] == 3
    env = {c.where: c.spec.get("env", []) for c in kube_containers(kube_documents())}
    dsn = {w: next(e["value"] for e in v if e["name"] == "PROVAULT_POSTGRES_DSN") for w, v in env.items() if v}
    for where, value in dsn.items():
        host = value.split("@")[1].split(":")[0]
        assert host == ("provault-pg-ro" if where.endswith("/query") else "provault-pg-rw"), where


def test_kubernetes_secrets_are_referenced_never_contained() -> None:
    docs = kube_documents()
    assert not [d for d in docs if d["kind"] == "Secret"], "keys and passwords are created by the operator"
    text = "\n".join(p.read_text() for p in (KUBE / "base").glob("*.yaml"))
    for name in ("provault-checkpoint-key", "provault-admin-keys", "provault-pg-ledger", "provault-pg-query",
                 "provault-grpc-tls", "provault-grpc-tokens", "provault-ca", "provault-ledger-nats"):  # fmt: skip
        assert name in text


def test_nats_helm_values_run_three_jetstream_servers_on_volumes() -> None:
    values = load_all(KUBE / "nats-values.yaml")[0]
    assert values["config"]["cluster"]["enabled"] is True and values["config"]["cluster"]["replicas"] == 3
    store = values["config"]["jetstream"]["fileStore"]
    assert values["config"]["jetstream"]["enabled"] and store["enabled"] and store["pvc"]["enabled"]


CHART_CONFIG_DIR = "/etc/nats-config"
"""Where the chart mounts nats.conf; `$include` paths are relative to it (the chart's values.yaml, config.merge)."""


def _chart_tls(values: dict[str, Any], protocol: str) -> dict[str, Any]:
    """A tls block as the chart renders it (files/config/tls.yaml): the Secret's files, the tlsCA's ca_file in
    every block, then the block's merge."""
    tls = values["config"][protocol]["tls"]
    folder = (tls.get("dir") or f"/etc/nats-certs/{protocol}").rstrip("/")
    block: dict[str, Any] = {"cert_file": f"{folder}/{tls.get('cert') or 'tls.crt'}",
                             "key_file": f"{folder}/{tls.get('key') or 'tls.key'}"}  # fmt: skip
    ca = values.get("tlsCA", {})
    if ca.get("enabled") and (ca.get("secretName") or ca.get("configMapName")):
        block["ca_file"] = f"{(ca.get('dir') or '/etc/nats-ca-cert').rstrip('/')}/{ca.get('key') or 'ca.crt'}"
    return {**block, **tls.get("merge", {})}


def _chart_config(values: dict[str, Any]) -> str:
    """nats.conf as the chart renders it from these values (files/config/config.yaml, cluster.yaml, tls.yaml,
    config.merge with its $include), for the keys the values use; paths as in the pod."""
    config = values["config"]
    cluster = config["cluster"]
    doc: dict[str, Any] = {
        "server_name": "nats-0",
        "port": 4222,
        "tls": _chart_tls(values, "nats"),
        "cluster": {"name": CHART_RELEASE, "port": 6222, "no_advertise": cluster.get("noAdvertise", True),
                    "routes": [f"{'tls' if cluster['tls']['enabled'] else 'nats'}://{h}:6222" for h in chart_route_hosts(values)],
                    **({"tls": _chart_tls(values, "cluster")} if cluster["tls"]["enabled"] else {})},
        "http_port": 8222,
        "jetstream": {"store_dir": config["jetstream"]["fileStore"]["dir"]},
        **{k: v for k, v in config["merge"].items() if not k.endswith("$include")},
    }  # fmt: skip
    includes = "".join(f"  include {v};\n" for k, v in config["merge"].items() if k.endswith("$include"))
    return json.dumps(doc, indent=2)[:-2] + ",\n" + includes + "}\n"


def _chart_files(values: dict[str, Any], users: dict[str, Path], root: Path) -> tuple[Path, Tls]:
    """The pod's /etc (the chart's config, the Secrets' files) and /data under ``root``: the config file, and the
    certificate it serves (the Service name, the route names, localhost; serverAuth and clientAuth)."""
    etc = root / "etc"
    tls = make_tls(root / "pki", [f"{CHART_RELEASE}.{CHART_RELEASE}.svc.cluster.local", *chart_route_hosts(values), "localhost"],
                   cn="provault-nats", client_auth=True)  # fmt: skip
    text = _chart_config(values)
    for f in re.findall(r'"(/etc/[^"]+)"', text):
        dst = etc / f.removeprefix("/etc/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy({"tls.crt": tls.cert, "tls.key": tls.key, "ca.crt": tls.ca}[Path(f).name], dst)
    includes = [v for k, v in values["config"]["merge"].items() if k.endswith("$include")]
    auth = etc / posixpath.normpath(posixpath.join(CHART_CONFIG_DIR, includes[0])).removeprefix("/etc/")
    auth.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(users["auth.conf"], auth)
    config = etc / "nats-config" / "nats.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text.replace('"/etc/', f'"{etc}/').replace('"/data"', f'"{root / "data"}"'))
    return config, tls


def test_nats_helm_values_include_the_users_secret_and_serve_tls(users: dict[str, Path], tmp_path: Path) -> None:
    """The chart's conventions: `config.merge` keys ending in $include become include directives, relative to
    /etc/nats-config; extra volumes come through `podTemplate.patch` and `container.patch` (JSON patches); the
    config reloader gets every nats mount under /etc/ and watches included files."""
    values = load_all(KUBE / "nats-values.yaml")[0]
    includes = [v for k, v in values["config"]["merge"].items() if k.endswith("$include")]
    assert len(includes) == 1
    target = posixpath.normpath(posixpath.join(CHART_CONFIG_DIR, includes[0]))
    mounts = [op["value"] for op in values["container"]["patch"] if op["op"] == "add" and op["path"] == "/volumeMounts/-"]
    volumes = {op["value"]["name"]: op["value"] for op in values["podTemplate"]["patch"]
               if op["op"] == "add" and op["path"] == "/spec/volumes/-"}  # fmt: skip
    mount = next(m for m in mounts if target.startswith(m["mountPath"].rstrip("/") + "/"))
    assert volumes[mount["name"]]["secret"]["secretName"] == "nats-auth"
    assert mount["mountPath"].startswith("/etc/") and not mount["mountPath"].startswith(CHART_CONFIG_DIR + "/")
    assert values["config"]["cluster"].get("noAdvertise", True) is True
    assert values["natsBox"]["enabled"] is False, "nats-box has no NATS user"
    # The include as the chart renders it, with a users file from the CLI: nats-server accepts the whole config.
    config, _ = _chart_files(values, users, tmp_path)
    res = _nats_test(config, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_nats_helm_values_serve_tls_first_and_mutual_tls_on_the_routes(users: dict[str, Path], tmp_path: Path) -> None:
    """Clients: TLS first (handshake_first true, not a duration).  Routes: TLS with the servers' Secret, the CA from
    tlsCA (which the chart adds as ca_file), verify.  The chart's probes use the monitoring port over plain http,
    so TLS first on 4222 leaves them alone.  A server running the config as the chart renders it (its route peers
    unreachable) admits the ledger's user over TLS first, though the client port's block now has a ca_file too."""
    values = load_all(KUBE / "nats-values.yaml")[0]
    nats_tls, cluster = values["config"]["nats"]["tls"], values["config"]["cluster"]
    assert nats_tls["enabled"] is True and nats_tls["secretName"] == "nats-server-tls"
    assert nats_tls["merge"]["handshake_first"] is True
    assert cluster["tls"]["enabled"] is True and cluster["tls"]["secretName"] == "nats-server-tls"
    assert cluster["tls"]["merge"]["verify"] is True
    assert values["tlsCA"]["enabled"] is True and values["tlsCA"]["secretName"] == "nats-ca"
    assert not values["config"]["monitor"].get("tls", {}).get("enabled"), "the chart's httpGet probes stay plain http"
    assert not cluster.get("routeURLs", {}).get("user"), "routes authenticate with certificates, not a shared password"
    rendered = json.loads(_chart_config(values).split("  include ")[0].rstrip().rstrip(",") + "}")
    assert rendered["cluster"]["tls"] == {"cert_file": "/etc/nats-certs/cluster/tls.crt", "key_file": "/etc/nats-certs/cluster/tls.key",
                                          "ca_file": "/etc/nats-ca-cert/ca.crt", "verify": True}  # fmt: skip
    assert rendered["cluster"]["routes"] == [f"tls://nats-{i}.nats-headless:6222" for i in range(3)]
    config, tls = _chart_files(values, users, tmp_path)
    port, http, route = free_port(), free_port(), free_port()
    text = config.read_text()
    for old, new in (('"port": 4222', f'"listen": "127.0.0.1:{port}"'), ('"http_port": 8222', f'"http": "127.0.0.1:{http}"'),
                     ('"port": 6222', f'"listen": "127.0.0.1:{route}"')):  # fmt: skip
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config.write_text(text)
    settings = load_settings(env={"PROVAULT_NATS_NKEY_SEED_FILE": str(users["ledger"]), "PROVAULT_NATS_TLS_CA": str(tls.ca)})
    with nats_server(config, tmp_path / "nats.log"):
        asyncio.run(_connects_only_with_tls_first_and_credentials(f"nats://localhost:{port}", settings))


NATS_NETWORK_POLICY = KUBE / "nats-networkpolicy.yaml"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_the_nats_network_policy_admits_each_port_from_the_expected_pods_only() -> None:
    """deploy/kubernetes/nats-networkpolicy.yaml, for namespace nats: it selects the chart's NATS pods (release
    nats); 4222 from the ledger's pods (namespace provault) and pods labelled provault.io/nats-client; 6222 from
    the NATS pods only; 8222 from the NATS pods and pods labelled provault.io/nats-monitor; nothing else."""
    docs = load_all(NATS_NETWORK_POLICY)
    assert docs and all(d["apiVersion"] == "networking.k8s.io/v1" and d["kind"] == "NetworkPolicy" for d in docs)
    nats_pod = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": CHART_RELEASE, "app.kubernetes.io/component": "nats"}
    nats_box = {**nats_pod, "app.kubernetes.io/component": "nats-box"}
    ledger = next(d for d in kube_documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "provault-ledger")
    ledger_pod = ledger["spec"]["template"]["metadata"]["labels"]
    provault_ns = {"kubernetes.io/metadata.name": "provault"}
    admitted: dict[int, list[dict[str, Any]]] = {}
    for d in docs:
        assert d["metadata"]["namespace"] == CHART_RELEASE
        assert _selects(d["spec"]["podSelector"], nats_pod) and not _selects(d["spec"]["podSelector"], nats_box)
        assert "Ingress" in d["spec"]["policyTypes"]
        for rule in d["spec"].get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits every source"
            assert rule.get("ports"), "a rule without `ports` admits every port"
            for port in rule["ports"]:
                assert port.get("protocol", "TCP") == "TCP"
                admitted.setdefault(int(port["port"]), []).extend(rule["from"])
    assert set(admitted) == {4222, 6222, 8222}

    def in_namespace(name: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": name}

    def admits(port: int, labels: dict[str, str], namespace: dict[str, str]) -> bool:
        """Whether a pod with ``labels`` in a namespace with labels ``namespace`` may reach ``port``."""
        for peer in admitted[port]:
            assert set(peer) <= {"podSelector", "namespaceSelector"}, f"{port}: {peer} (no ipBlock by default)"
            # Without a namespaceSelector, a podSelector means pods of the policy's own namespace.
            in_ns = _selects(peer["namespaceSelector"], namespace) if "namespaceSelector" in peer else namespace == in_namespace("nats")
            if in_ns and _selects(peer.get("podSelector", {}), labels):
                return True
        return False

    nats_ns, monitoring_ns, agents_ns = in_namespace("nats"), in_namespace("monitoring"), in_namespace("ml")
    agent, monitor, stranger = {"provault.io/nats-client": "true"}, {"provault.io/nats-monitor": "true"}, {"app": "anything"}
    assert admits(4222, ledger_pod, provault_ns) and admits(4222, agent, agents_ns)
    assert not admits(4222, stranger, agents_ns) and not admits(4222, ledger_pod, agents_ns)
    assert admits(6222, nats_pod, nats_ns)
    for labels, ns in ((ledger_pod, provault_ns), (agent, agents_ns), (monitor, monitoring_ns), (stranger, nats_ns),
                       (nats_pod, agents_ns), (nats_box, nats_ns)):  # fmt: skip
        assert not admits(6222, labels, ns), f"6222 from {labels} in {ns}"
    assert admits(8222, nats_pod, nats_ns) and admits(8222, monitor, monitoring_ns)
    for labels, ns in ((ledger_pod, provault_ns), (agent, agents_ns), (stranger, monitoring_ns)):
        assert not admits(8222, labels, ns), f"8222 from {labels} in {ns}"
    # provault's own egress policy reaches these pods on 4222.
    egress = next(d for d in kube_documents() if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "provault-egress")
    to_nats = [r for r in egress["spec"]["egress"] if any(p["port"] == 4222 for p in r["ports"])]
    assert to_nats and all(_selects(peer["podSelector"], nats_pod) for r in to_nats for peer in r["to"])


def test_overlay_settings_are_valid_on_top_of_the_base() -> None:
    base = next(d["data"] for d in kube_documents() if d["kind"] == "ConfigMap")
    for overlay in sorted((KUBE / "overlays").iterdir()):
        docs = kube_documents(overlay)
        data = {**base, **{k: v for d in docs if d.get("kind") == "ConfigMap" for k, v in d["data"].items()}}
        load_settings(env=data)
        for c in kube_containers([d for d in docs if "template" in d.get("spec", {})]):
            load_settings(env={**data, **env_values(c.spec.get("env"))})


# --- security as deployed: the servers' settings, the files they name, health checks -------------------


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
    assert {"compose ledger", "compose query", "kubernetes base Deployment/provault-ledger/ledger",
            "kubernetes base Deployment/provault-projector/projector", "kubernetes base Deployment/provault-query/query"} <= where  # fmt: skip


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
def test_grpc_servers_as_deployed_pass_the_servers_security_checks(proc: Process, users: dict[str, Path], tmp_path: Path) -> None:
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
        assert set(connect_options(settings.nats)) >= {"nkeys_seed_str", "tls"}, f"{proc.where}: NATS with its user, over TLS"


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
                    assert mount.source.startswith("./secrets/"), f"{proc.where}: {key}: the operator's files live in secrets/"
                if key == "PROVAULT_GRPC_TOKENS_FILE":
                    # A single-file bind mount keeps showing the old file once `provault auth token` replaces it.
                    assert mount.kind == "bind" and mount.path != path, f"{proc.where}: mount the tokens file's folder"
                continue
            if key in PRIVATE_SETTINGS:
                assert mount.kind == "emptyDir", f"{proc.where}: {key}: a Secret volume is group-readable with fsGroup"
                assert path in proc.init_copies, f"{proc.where}: {key}={path}: no init container installs it with mode 0600"
                source, init_mounts = proc.init_copies[path]
                src_mount = next((m for m in init_mounts if source.startswith(m.path.rstrip("/") + "/")), None)
                assert src_mount is not None and src_mount.kind == "secret", f"{proc.where}: {key}: copied from {source}"
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
        assert proc.grpc_probes == [], f"{where}: the kubelet's grpc probe speaks plaintext to a TLS port ({proc.grpc_probes})"
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
            assert mount is not None and mount.kind in ("secret", "bind"), f"{where}: the CA file {args.tls_ca} is not mounted"
            assert args.tls_name == "localhost", f"{where}: the servers' certificates name localhost (docs/operations.md)"
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
def test_the_health_check_answers_over_tls_without_a_token(proc: Process, users: dict[str, Path], tmp_path: Path) -> None:
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
