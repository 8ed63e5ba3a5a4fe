"""``provault up``: the whole stack on one machine, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ledger.config import settings_from
from ledger.launch import refuse_if_up, start_stack
from ledger.stack import Endpoints, Stack, redact_dsn
from ledger.supervise import Supervisor

POLL_S = 0.5


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "up",
        parents=[common],
        help="run the whole stack on this machine (embedded PostgreSQL and NATS unless configured)",
        description=(
            "Start PostgreSQL and NATS JetStream (embedded, under the data directory, on 127.0.0.1) "
            "unless PROVAULT_POSTGRES_DSN / PROVAULT_NATS_URL name external ones, migrate and initialise "
            "the ledger (keys under <data-dir>/keys), run the ledger service, print where everything "
            "listens (gRPC, OpenLineage, Prometheus metrics on metrics.ledger_listen), and run until Ctrl-C or "
            "SIGTERM, then stop everything that was started. "
            "An embedded server that exits is restarted on the same port, with backoff, while the gRPC health of "
            "what needs it says NOT_SERVING. A second run reuses the same data and the same ports "
            "(<data-dir>/ports.json)."
        ),
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, dev_mode=True)
    refuse_if_up(settings)  # before the try: a refused start must not touch the running stack
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(settings)
    try:
        endpoints, changes = start_stack(stack)
        _print_banner(settings, endpoints, changes)
        return _wait(stack, stop)
    finally:
        print("provault: stopping...", file=sys.stderr)
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("provault: stopped", file=sys.stderr)


def _wait(stack: Stack, stop: threading.Event) -> int:
    supervisor = Supervisor(stack.children, stack.services)
    while not stop.wait(POLL_S):
        supervisor.check()
    return 0


def _print_banner(settings, endpoints: Endpoints, changes: list[str]) -> None:
    lines = [
        "provault is up (DEV MODE: no authentication on gRPC or NATS, loopback only)",
        f"  data dir    {settings.data_dir}",
        f"  postgres    {redact_dsn(endpoints.postgres_dsn)}"
        + ("  (embedded)" if "postgres" in endpoints.embedded else ""),
        f"  nats        {endpoints.nats_url}" + ("  (embedded)" if "nats" in endpoints.embedded else ""),
        f"  ledger      grpc://{endpoints.ledger_grpc}  (LedgerService)",
        f"  query       grpc://{endpoints.query_grpc}  (QueryService; the projector runs too)",
        *(f"  {name:<11} {url}  ({what})" for name, url, what in endpoints.services),
        *([f"  admin key   {admin}"] if (admin := settings.data_dir / "keys" / "admin.key").exists() else []),
        *(f"  setup       {c}" for c in changes),
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
