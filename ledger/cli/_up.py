"""``provault up``: the whole stack on one machine, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ledger.core.errors import ServerStartError
from ledger.stack import Stack

from ._common import settings_from

POLL_S = 0.5


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "up",
        parents=[common],
        help="run the whole stack on this machine (embedded PostgreSQL and NATS unless configured)",
        description=(
            "Start PostgreSQL and NATS JetStream (embedded, under the data directory, on 127.0.0.1) "
            "unless PROVAULT_POSTGRES_DSN / PROVAULT_NATS_URL name external ones, print where they "
            "listen, and run until Ctrl-C or SIGTERM, then stop everything that was started. "
            "A second run reuses the same data."
        ),
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, dev_mode=True)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(settings)
    try:
        endpoints = stack.start()
        _print_banner(settings.data_dir, endpoints)
        return _wait(stack, stop)
    finally:
        print("provault: stopping...", file=sys.stderr)
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("provault: stopped", file=sys.stderr)


def _wait(stack: Stack, stop: threading.Event) -> int:
    while not stop.wait(POLL_S):
        for svc in stack.services():
            if not svc.running():
                raise ServerStartError(f"{svc.name} stopped unexpectedly", hint=f"see its log: {svc.log}")
    return 0


def _print_banner(data_dir, endpoints) -> None:
    lines = [
        "provault is up (DEV MODE: no authentication, loopback only)",
        f"  data dir    {data_dir}",
        f"  postgres    {endpoints.postgres_dsn}" + ("  (embedded)" if "postgres" in endpoints.embedded else ""),
        f"  nats        {endpoints.nats_url}" + ("  (embedded)" if "nats" in endpoints.embedded else ""),
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
