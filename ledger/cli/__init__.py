"""The ``provault`` command line: the composition root of the command.

``main(argv)`` builds the parser from the ledger's command modules and those the
query side and the agents contribute (:mod:`ledger.plugins`), runs one command,
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

from ledger import logs, metrics, plugins
from ledger.config import settings_from
from ledger.core.errors import ProvaultError

from . import _auth, _common, _health, _keys, _ledger, _nats, _up, _verify

# Each module adds its sub-commands with ``register(subparsers, common)``; the query side and
# the agents add theirs through the ``provault.commands`` entry points (see ledger.plugins).
_COMMAND_MODULES = (_up, _ledger, _keys, _auth, _nats, _health, _verify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provault",
        description="provault: a signed, append-only, provable lineage ledger for machine learning.",
    )
    parser.add_argument("--version", action="version", version=f"provault {_common.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common.common_options()
    for module in (*_COMMAND_MODULES, *plugins.contributions(plugins.COMMANDS)):
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ProvaultError as e:
        print(f"provault: error [{e.reason}]: {e.diagnostics()}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        _configure_process(args)
        return int(args.run(args) or 0)
    except ProvaultError as e:
        print(f"provault: error [{e.reason}]: {e.diagnostics()}", file=sys.stderr)
        # A command whose exit 1 means something else (`gate`: denied) names the code its errors exit with.
        return int(getattr(args, "error_exit", 1))
    except KeyboardInterrupt:
        print("provault: interrupted", file=sys.stderr)
        return 130


def _configure_process(args: argparse.Namespace) -> None:
    """Logging from the ``[log]`` settings (bad settings fail here, as the command would), and the build info."""
    settings = settings_from(args)
    logs.configure(settings.log.format, settings.log.level)
    metrics.set_version(_common.version())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
