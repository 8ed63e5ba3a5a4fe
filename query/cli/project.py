"""``provault project``: run the projector once, rebuild it, prove it deterministic, show its lag."""

from __future__ import annotations

import argparse

from ledger.config import settings_from
from ledger.db import connect
from ledger.stack import resolve_postgres_dsn
from query.projector import PROJECTOR_ROLE, checksum, lag, project, rebuild


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "project",
        parents=[common],
        help="bring the PROV projection up to date with the log (or rebuild it, checksum it, show its lag)",
        description=(
            "Project every ledger entry not yet projected into the PROV tables and exit. "
            "The projector inside `provault up` does this continuously; this command is for operators. "
            "--rebuild drops the projection and replays the whole log; --checksum prints a digest of "
            "every PROV table (equal before and after a rebuild: the projection is deterministic); "
            "--lag prints how far the projection is behind the log."
        ),
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rebuild", action="store_true", help="drop the projection and replay the whole log")
    mode.add_argument("--checksum", action="store_true", help="print a digest of every PROV table")
    mode.add_argument("--lag", action="store_true", help="print projected seq, log size and the difference")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    dsn = resolve_postgres_dsn(settings_from(args))
    with connect(dsn, autocommit=True, role=PROJECTOR_ROLE) as conn:
        if args.checksum:
            print(checksum(conn))
            return 0
        if args.lag:
            done, size = lag(conn)
            print(f"projected up to seq {done} of a log of {size} entries; behind by {size - 1 - done}")
            return 0
        n = rebuild(conn) if args.rebuild else project(conn)
        done, size = lag(conn)
    print(f"{'rebuilt from' if args.rebuild else 'projected'} {n} entries; projection at seq {done} of {size}")
    return 0
