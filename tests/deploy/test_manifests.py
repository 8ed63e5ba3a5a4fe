"""deploy/ is consistent: YAML parses, references resolve, settings are real settings, commands parse.

The rest of tests/deploy checks each part: ``test_compose.py`` and ``test_compose_nats.py`` (Docker Compose and its
NATS nodes), ``test_kubernetes.py`` and ``test_nats_helm.py`` (the manifests and the NATS chart's values), and
``test_server_security.py`` (the gRPC servers as deployed: TLS, tokens, mounted key files, health checks).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ledger.cli import build_parser
from ledger.config import load_settings
from ledger.core.errors import ConfigError

from .manifests import (
    DEPLOY,
    DOCKERFILE,
    KUBE,
    ROOT,
    compose,
    dockerfile_env,
    env_values,
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
    listed = {here / e for e in k.get("resources", [])} | {
        here / p["path"] for p in k.get("patches", []) if "path" in p
    }
    unlisted = {p for p in here.glob("*.yaml") if p.name != "kustomization.yaml"} - listed
    assert unlisted == set(), f"{kustomization}: files not in the kustomization: {sorted(p.name for p in unlisted)}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
@pytest.mark.parametrize("kustomization", _kustomizations(), ids=lambda p: str(p.relative_to(KUBE)))
def test_kustomize_renders(kustomization: Path) -> None:
    res = subprocess.run(
        ["kubectl", "kustomize", str(kustomization.parent)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(res.stdout) if d}
    assert {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "Cluster",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds


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
