"""Reading deploy/: YAML documents, containers, PROVAULT_* settings and provault command lines."""

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
