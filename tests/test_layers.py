"""The dependency direction between provault's packages, as docs/architecture.md draws it.

* ``ledger`` (the write side and the composition root) imports neither ``query`` nor ``agents``:
  they contribute commands, stack services and migrations through entry points (ledger/plugins.py).
* ``agents`` (the SDK on producers' hosts) imports neither ``query`` nor the ledger's server side:
  only the modules in ``AGENTS_MAY_USE``.
* ``query`` (the read side) uses only the ledger's public modules (``LEDGER_PUBLIC``).
* The parts of ``agents`` that run as services (``AGENT_SERVICES``: the OpenLineage endpoint and the MLflow webhook receiver, producers
  that listens for other tools' events) use only the ledger's public modules too.
* Nobody imports another package's private (``_``-prefixed) module.

Every import counts, including the ones inside functions and relative ones (resolved first).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ledger", "agents", "query")

# The ledger's public modules: what the query side may import (a prefix covers its submodules).
LEDGER_PUBLIC = (
    "ledger.core",
    "ledger.config",
    "ledger.db",
    "ledger.credentials",
    "ledger.client",
    "ledger.chainfile",
    "ledger.stack",
    "ledger.embedded",
    "ledger.transport",
    "ledger.natsauth",
    "ledger.background",
    "ledger.grpckit",
    "ledger.plugins",
    "ledger.keyadmin",
    "ledger.metrics",
    "ledger.health",
    "ledger.logs",
    "ledger.webthread",
    "ledger.store.log",
    "ledger.store.entries",
    "ledger.store.checkpoints",
    "ledger.store.migrate",
    "ledger.audit",
    "ledger.launch",
    "ledger.cli",
)
# Parts of agents that run as services rather than inside a producer's process.
AGENT_SERVICES = ("agents.openlineage", "agents.mlflow.webhook")
# What runs on producers' hosts may use: no store, no database, no servers.
AGENTS_MAY_USE = (
    "ledger.core",
    "ledger.config",
    "ledger.credentials",
    "ledger.client",
    "ledger.chainfile",
    "ledger.stack",
    "ledger.transport",
    "ledger.natsauth",
    "ledger.metrics",
)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(root: Path, path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``; ``from x import y`` names ``x.y`` when that is a module."""
    here = _module_name(root, path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base


def _covered(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def _private_elsewhere(importer: str, module: str) -> bool:
    """A ``_x`` component of another package's module (a package's own privates are its business)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            return not (importer == owner or importer.startswith(owner + "."))
    return False


def _rule(importer: str, module: str) -> str | None:
    """Why ``importer`` may not import ``module``; None when it may."""
    top, target = importer.split(".")[0], module.split(".")[0]
    if target not in PACKAGES or target == top:
        return "private module of another package" if target == top and _private_elsewhere(importer, module) else None
    if top == "ledger":
        return f"the ledger may not import {target}"
    if _private_elsewhere(importer, module):
        return "private module of another package"
    if target == "ledger" and _covered(importer, AGENT_SERVICES):
        return None if _covered(module, LEDGER_PUBLIC) else "agents' services may use only the ledger's public modules"
    if target == "ledger" and top == "agents" and not _covered(module, AGENTS_MAY_USE):
        return "agents may use only the ledger's client-side modules"
    if target == "ledger" and top == "query" and not _covered(module, LEDGER_PUBLIC):
        return "query may use only the ledger's public modules"
    if top == "agents" and target == "query":
        return "agents may not import query"
    return None


def violations(root: Path) -> list[str]:
    """Every import under ``root``'s packages that breaks the rules, as ``file:line: importer -> module (why)``."""
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    known = {_module_name(root, p) for p in files}
    found = []
    for path in files:
        importer = _module_name(root, path)
        for line, module in _imports(root, path, known):
            why = _rule(importer, module)
            if why:
                found.append(f"{path.relative_to(root)}:{line}: {importer} -> {module} ({why})")
    return sorted(set(found))


def test_the_packages_keep_the_dependency_direction() -> None:
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


BAD_ARROWS = {
    "ledger imports query": (
        "ledger/launch.py",
        "from query.projector import Projector\n",
        "the ledger may not import query",
    ),
    "ledger imports agents inside a function": (
        "ledger/cli/keys.py",
        "def f():\n    import agents.runtime\n",
        "the ledger may not import agents",
    ),
    "agents imports the store": ("agents/runtime.py", "from ledger.store import log\n", "client-side modules"),
    "agents imports query": ("agents/cli.py", "from query import traverse\n", "agents may not import query"),
    "query imports a service internal": (
        "query/service.py",
        "from ledger.service.grpc_ledger import ReadPool\n",
        "public modules",
    ),
    "query imports a private module": ("query/cli.py", "from ledger.cli._common import version\n", "private module"),
    "a private module by relative import": (
        "ledger/x/a.py",
        "from ...agents._spool import Spool\n",
        "may not import agents",
    ),
}


@pytest.mark.parametrize("case", BAD_ARROWS, ids=list(BAD_ARROWS))
def test_an_arrow_against_the_rules_is_reported(tmp_path: Path, case: str) -> None:
    name, text, why = BAD_ARROWS[case]
    modules = {
        "ledger/cli/_common.py": "",
        "ledger/service/grpc_ledger.py": "",
        "ledger/store/log.py": "",
        "query/projector.py": "",
        "query/traverse.py": "",
        "agents/runtime.py": "",
        "agents/_spool.py": "",
        "ledger/x/__init__.py": "",
        "ledger/cli/__init__.py": "",
        "ledger/service/__init__.py": "",
        "ledger/store/__init__.py": "",
    }
    root = _tree(tmp_path, {**modules, name: text})
    found = violations(root)
    assert len(found) == 1 and found[0].startswith(f"{name}:") and why in found[0], found


def test_allowed_arrows_are_not_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ledger/core/__init__.py": "",
            "ledger/core/errors.py": "",
            "ledger/db.py": "",
            "ledger/service/__init__.py": "",
            "ledger/service/_x.py": "",
            "ledger/service/auth.py": "from ._x import y\nfrom ledger.service._x import z\n",
            "agents/runtime.py": "from ledger.core.errors import ProvaultError\nfrom ledger.client import LedgerClient\n",
            "agents/cli.py": "from . import runtime\n",
            "ledger/client.py": "",
            "query/projector.py": "from ledger.db import connect\nfrom agents.runtime import Agent\n",
        },
    )
    assert violations(root) == []
