"""deploy/ is consistent: YAML parses, references resolve, settings are real settings, commands parse.

And deploy/ is secure as configured: the gRPC servers get TLS and tokens that
``server_security`` accepts, every key and token file they name is mounted
(private keys with mode 0600), health checks speak TLS, and the NATS servers
include a users file made by the real ``provault nats`` CLI, pass
``nats-server -t`` and admit the ledger's user over TLS, nobody anonymously.
"""

from __future__ import annotations

import asyncio
import dataclasses
import posixpath
import re
import shutil
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
from ledger.service.auth import server_security
from ledger.service.tokens import TokenStore

from .manifests import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    KUBE,
    PATH_SETTINGS,
    PRIVATE_SETTINGS,
    ROOT,
    Process,
    compose,
    compose_processes,
    dockerfile_env,
    env_values,
    kube_containers,
    kube_documents,
    kube_processes,
    load_all,
    make_tls,
    nats_users,
    provault_commands,
    run_health_check,
    tls_health_server,
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


NATS_CONFS = sorted((DEPLOY / "compose" / "nats").glob("*.conf"))


def _nats_service(conf: Path) -> dict[str, Any]:
    return compose()["services"][conf.stem]


def _compose_nats_tree(conf: Path, root: Path, users: dict[str, Path], tls_names: list[str]) -> Path:
    """The service's /etc/nats under ``root``: its config, and secrets/nats as the operator makes it.

    The config's absolute /etc/nats paths are moved under ``root``; everything
    else, the include and its relative path included, is the file as shipped.
    """
    mounts = {v.split(":")[1]: v.split(":")[0] for v in _nats_service(conf)["volumes"]}
    assert mounts["/etc/nats/nats.conf"] == f"./nats/{conf.name}"
    assert mounts["/etc/nats/secrets"] == "./secrets/nats", "the folder docs/operations.md fills"
    etc = root / "etc" / "nats"
    tls = make_tls(etc / "secrets", tls_names, cn="provault-nats")
    shutil.copy(users["auth.conf"], etc / "secrets" / "auth.conf")
    assert {p.name for p in (etc / "secrets").iterdir()} >= {"auth.conf", tls.cert.name, tls.key.name}
    (etc / "nats.conf").write_text(conf.read_text().replace("/etc/nats/", f"{etc}/"))
    return etc / "nats.conf"


def _nats_test(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(nats_server_binary()), "-c", str(config), "-t"]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)


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
    config = _compose_nats_tree(conf, tmp_path, users, ["nats-1", "nats-2", "nats-3", "localhost"])
    res = _nats_test(config, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # The include is not optional: without the users file the server does not start (no anonymous fallback).
    (config.parent / "secrets" / "auth.conf").unlink()
    res = _nats_test(config, tmp_path)
    assert res.returncode != 0 and "auth.conf" in res.stdout + res.stderr


def _compose_ledger() -> Process:
    return next(p for p in compose_processes() if p.where == "compose ledger")


def test_compose_nats_admits_the_ledger_over_tls_and_nobody_anonymously(users: dict[str, Path], tmp_path: Path) -> None:
    """nats-1 as configured (ports and store moved to this machine) against the ledger's NATS settings from compose."""
    config = _compose_nats_tree(NATS_CONFS[0], tmp_path, users, ["localhost"])
    port, http, route = free_port(), free_port(), free_port()
    text = config.read_text()
    moves = {
        "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{port}",
        "http: 0.0.0.0:8222": f"http: 127.0.0.1:{http}",
        "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{route}",
        "store_dir: /data/jetstream": f"store_dir: {tmp_path / 'js'}",
    }
    for old, new in moves.items():
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    env = _compose_ledger().env
    assert env["PROVAULT_NATS_NKEY_SEED_FILE"].startswith("/run/secrets/") and env["PROVAULT_NATS_TLS_CA"].startswith("/run/secrets/")
    settings = load_settings(env={"PROVAULT_NATS_NKEY_SEED_FILE": str(users["ledger"]),
                                  "PROVAULT_NATS_TLS_CA": str(config.parent / "secrets" / "ca.crt")})  # fmt: skip
    url = f"nats://localhost:{port}"
    with open(tmp_path / "nats.log", "wb") as log:
        server = subprocess.Popen([str(nats_server_binary()), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            asyncio.run(_connects_only_with_credentials(url, settings))
        finally:
            server.terminate()
            server.wait(timeout=10)


async def _connects_only_with_credentials(url: str, settings: Settings) -> None:
    import nats  # noqa: PLC0415

    opts = connect_options(settings.nats)
    assert set(opts) >= {"tls", "nkeys_seed_str"}
    deadline = time.monotonic() + 20
    while True:
        try:
            nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **opts)
            break
        except (OSError, nats.errors.Error, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert nc.is_connected and nc.connected_url is not None
    await nc.close()
    anonymous = {"tls": opts["tls"]}
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **anonymous)


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
                assert command[3] == f"127.0.0.1:{ports[c.spec['name']]}", f"{c.where}: {probe}"
                assert c.spec[probe]["timeoutSeconds"] >= 3, f"{c.where}: {probe}: python and grpc take a moment to start"


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
    assert values["config"]["nats"]["tls"] == {"enabled": True, "secretName": "nats-server-tls"}
    assert values["config"]["cluster"].get("noAdvertise", True) is True
    assert values["natsBox"]["enabled"] is False, "nats-box has no NATS user"
    # The include as the chart renders it, with a users file from the CLI: nats-server accepts it.
    etc = tmp_path / "etc"
    tls = make_tls(etc / "nats-certs" / "nats", ["nats.nats.svc.cluster.local"])
    auth = etc / target.removeprefix("/etc/")
    auth.parent.mkdir(parents=True)
    shutil.copy(users["auth.conf"], auth)
    config = etc / "nats-config" / "nats.conf"
    config.parent.mkdir(parents=True)
    config.write_text("{\n" f'  "port": 4222,\n  "tls": {{"cert_file": "{tls.cert}", "key_file": "{tls.key}"}},\n'
                      f'  "max_payload": {values["config"]["merge"]["max_payload"]},\n  include {includes[0]};\n' "}\n")  # fmt: skip
    res = _nats_test(config, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


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
    return [(p, h) for p in _processes() for h in p.health if h[:1] == ["python"]]


def test_no_health_check_uses_an_insecure_channel_against_a_tls_port() -> None:
    servers = {p.where: p for p in _servers()}
    assert "insecure_channel" not in "".join(p.read_text() for p in yaml_files())
    compose_script = next(h[2] for p, h in _health_checks() if p.where == "compose ledger")
    for where, proc in servers.items():
        assert proc.grpc_probes == [], f"{where}: the kubelet's grpc probe speaks plaintext to a TLS port ({proc.grpc_probes})"
        assert proc.health, f"{where}: no health check"
        listen = proc.env[(proc.server() or ("", ""))[1]]
        for argv in proc.health:
            assert argv[:3] == ["python", "-c", compose_script], f"{where}: one health check everywhere"
            assert argv[3] == f"127.0.0.1:{listen.rsplit(':', 1)[1]}", f"{where}: checks its own port"
            mount = proc.mount_of(argv[4])
            assert mount is not None and mount.kind in ("secret", "bind"), f"{where}: the CA file {argv[4]} is not mounted"
    assert "ssl_channel_credentials" in compose_script
    compile(compose_script, "<health check>", "exec")


def test_the_health_check_answers_over_tls_without_a_token(users: dict[str, Path], tmp_path: Path) -> None:
    """The deployed check against a server made by `server_security` from the ledger's compose settings."""
    from grpc_health.v1 import health_pb2  # noqa: PLC0415

    proc = _compose_ledger()
    argv = proc.health[0]
    settings = load_settings(env=_provision(proc, tmp_path, users))
    security = server_security(settings, listen="0.0.0.0:7430", listen_key="grpc.ledger_listen")
    ca = tmp_path / "pki" / "ca.crt"
    with tls_health_server(security.credentials) as (port, health):
        res = run_health_check(argv, f"127.0.0.1:{port}", ca)
        assert res.returncode == 0, res.stderr
        health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        res = run_health_check(argv, f"127.0.0.1:{port}", ca)
        assert res.returncode == 1 and res.stderr == ""
        # The CA is checked: a server whose certificate another CA signed fails the check.
        other = make_tls(tmp_path / "other", ["localhost"])
        res = run_health_check(argv, f"127.0.0.1:{port}", other.ca)
        assert res.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in res.stderr, res.stderr
