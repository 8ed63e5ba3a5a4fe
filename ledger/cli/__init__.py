"""The ``provault`` command line.

``main(argv)`` builds the parser from the command modules, runs one command,
and turns every known error into a clear message and exit code:

* 0 -- success;
* 1 -- the command ran and found a problem (an error, a failed verification);
* 2 -- the command line itself was wrong (argparse's convention);
* 130 -- interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agents import cli as _agents
from query import cli_export as _export
from query import cli_bundle as _bundle
from query import cli_project as _project
from query import cli_serve as _query_serve
from query import cli as _query
from ledger.core.errors import ProvaultError

from . import _auth, _common, _demo, _health, _keys, _ledger, _nats, _up, _verify

# Each module adds its sub-commands with ``register(subparsers, common)``.
_COMMAND_MODULES = (_up, _demo, _ledger, _keys, _auth, _nats, _health, _verify, _agents, _project, _export, _bundle, _query, _query_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provault",
        description="provault: a signed, append-only, provable lineage ledger for machine learning.",
    )
    parser.add_argument("--version", action="version", version=f"provault {_common.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common.common_options()
    for module in _COMMAND_MODULES:
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ProvaultError as e:
        print(f"provault: error [{e.reason}]: {e.diagnostics()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("provault: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
