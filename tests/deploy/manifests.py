"""Reading deploy/: YAML documents, containers, PROVAULT_* settings, provault command lines, mounts and health
checks of the processes the Compose file and the Kubernetes manifests run.

What tests need to try the deploy files lives beside it: certificates and a TLS health server in ``tlskit``,
NATS users and NATS servers as deployed in ``natskit``."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
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

PRIVATE_SETTINGS = (
    "PROVAULT_SIGNING_CHECKPOINT_KEY",
    "PROVAULT_GRPC_TLS_KEY",
    "PROVAULT_NATS_NKEY_SEED_FILE",
    "PGPASSFILE",
)
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
        out.append(
            Process(
                where=f"compose {name}",
                env={**base, **env_values(svc.get("environment"))},
                commands=provault_commands(argv, entrypoint_is_provault="entrypoint" not in svc),
                mounts=mounts,
                health=[test[1:]] if test and test[0] == "CMD" else [],
                grpc_probes=[],
                init_copies={},
            )
        )
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
            out.append(
                Process(
                    where=f"Deployment/{d['metadata']['name']}/{c['name']}",
                    env=env,
                    commands=provault_commands(
                        Container(where="", spec=c).argv(), entrypoint_is_provault="command" not in c
                    ),
                    mounts=_kube_mounts(c, volumes),
                    health=[p["exec"]["command"] for p in probes if "exec" in p],
                    grpc_probes=[f"port {p['grpc']['port']}" for p in probes if "grpc" in p],
                    init_copies=copies,
                )
            )
    return out
