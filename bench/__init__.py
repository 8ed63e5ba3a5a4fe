"""provault's benchmarks, run on demand (bench/README.md); none is part of the test suite."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_in_scratch(
    args: argparse.Namespace,
    prefix: str,
    run: Callable[[argparse.Namespace, Path], dict[str, Any]],
    report: Callable[[dict[str, Any]], None],
) -> int:
    """``run(args, root)`` in a scratch directory removed afterwards; its result as JSON (``--json``) or a report."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        result = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0
