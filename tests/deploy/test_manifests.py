"""deploy/ is consistent: YAML parses, references resolve, settings are real settings, commands parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ledger.cli import build_parser
from ledger.config import load_settings
from ledger.core.errors import ConfigError
from ledger.embedded import nats_server_binary

from .manifests import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    KUBE,
    ROOT,
    compose,
    dockerfile_env,
    kube_containers,
    kube_documents,
    load_all,
    provault_commands,
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


def _env_values(env: Any) -> dict[str, str]:
    if isinstance(env, dict):
        return {k: str(v) for k, v in env.items()}
    return {e["name"]: str(e["value"]) for e in env or [] if "value" in e}


def _compose_env() -> dict[str, dict[str, str]]:
    return {name: _env_values(svc.get("environment")) for name, svc in compose()["services"].items()}


def _kube_env() -> dict[str, dict[str, str]]:
    docs = kube_documents()
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "provault-config")
    out = {}
    for c in kube_containers(docs):
        uses_config = any(s.get("configMapRef", {}).get("name") == "provault-config" for s in c.spec.get("envFrom", []))
        out[c.where] = {**(config if uses_config else {}), **_env_values(c.spec.get("env"))}
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


def test_compose_grpc_healthchecks_are_valid_python() -> None:
    checks = {name: svc["healthcheck"]["test"] for name, svc in compose()["services"].items()
              if svc.get("healthcheck", {}).get("test", [None, None])[1] == "python"}  # fmt: skip
    assert set(checks) == {"ledger", "query"}
    for name, test in checks.items():
        assert test[:3] == ["CMD", "python", "-c"]
        compile(test[3], f"<{name} healthcheck>", "exec")


@pytest.mark.parametrize("conf", sorted((DEPLOY / "compose" / "nats").glob("*.conf")), ids=lambda p: p.name)
def test_nats_config_is_valid_for_nats_server(conf: Path, tmp_path: Path) -> None:
    res = subprocess.run([str(nats_server_binary()), "-c", str(conf), "-t"], capture_output=True, text=True,
                         cwd=tmp_path, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    text = conf.read_text()
    assert f"server_name: {conf.stem}" in text
    assert all(f"nats-route://nats-{i}:6222" in text for i in (1, 2, 3))


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


def test_kubernetes_containers_have_resources_and_grpc_probes() -> None:
    ports = {"ledger": 7430, "query": 7431, "projector": 7431}
    for c in kube_containers(kube_documents()):
        res = c.spec.get("resources", {})
        assert res.get("requests") and res.get("limits"), f"{c.where}: resources"
        assert c.spec["securityContext"]["readOnlyRootFilesystem"] is True, c.where
        if c.spec["name"] in ports:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c.spec[probe]["grpc"]["port"] == ports[c.spec["name"]], f"{c.where}: {probe}"


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
    for name in ("provault-checkpoint-key", "provault-admin-keys", "provault-pg-ledger", "provault-pg-query"):
        assert name in text


def test_nats_helm_values_run_three_jetstream_servers_on_volumes() -> None:
    values = load_all(KUBE / "nats-values.yaml")[0]
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    store = values["config"]["jetstream"]["fileStore"]
    assert values["config"]["jetstream"]["enabled"] and store["enabled"] and store["pvc"]["enabled"]


def test_overlay_settings_are_valid_on_top_of_the_base() -> None:
    base = next(d["data"] for d in kube_documents() if d["kind"] == "ConfigMap")
    for overlay in sorted((KUBE / "overlays").iterdir()):
        docs = kube_documents(overlay)
        data = {**base, **{k: v for d in docs if d.get("kind") == "ConfigMap" for k, v in d["data"].items()}}
        load_settings(env=data)
        for c in kube_containers([d for d in docs if "template" in d.get("spec", {})]):
            load_settings(env={**data, **_env_values(c.spec.get("env"))})
