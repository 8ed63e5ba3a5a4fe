"""``provault up``: the whole stack on one machine, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading

from ledger.core.errors import ServerStartError
from ledger.service.auth import server_security
from ledger.service.runtime import LedgerRuntime
from query.projector import Projector
from query.service import QueryGrpcService
from ledger.stack import Endpoints, Stack, redact_dsn, write_stack_file

from ._common import settings_from
from ._ledger import initialise

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
            "listens, and run until Ctrl-C or SIGTERM, then stop everything that was started. "
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
        changes = initialise(settings, endpoints.postgres_dsn, [])
        runtime = LedgerRuntime(settings, dsn=endpoints.postgres_dsn, nats_url=endpoints.nats_url)
        try:
            runtime.start()
        finally:
            for svc in runtime.services():
                stack.add(svc)
        projector = Projector(endpoints.postgres_dsn)
        projector.start()
        stack.add(projector)
        security = server_security(settings, listen=settings.grpc.query_listen, listen_key="grpc.query_listen")
        query = QueryGrpcService(dsn=endpoints.postgres_dsn, listen=settings.grpc.query_listen,
                                 max_message_bytes=settings.grpc.max_message_bytes,
                                 authenticator=security.authenticator, server_credentials=security.credentials)  # fmt: skip
        query.start()
        stack.add(query)
        endpoints = dataclasses.replace(endpoints, ledger_grpc=runtime.grpc_address, query_grpc=query.address)
        write_stack_file(settings.data_dir, endpoints)
        _print_banner(settings, endpoints, changes)
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


def _print_banner(settings, endpoints: Endpoints, changes: list[str]) -> None:
    lines = [
        "provault is up (DEV MODE: no authentication, loopback only)",
        f"  data dir    {settings.data_dir}",
        f"  postgres    {redact_dsn(endpoints.postgres_dsn)}" + ("  (embedded)" if "postgres" in endpoints.embedded else ""),
        f"  nats        {endpoints.nats_url}" + ("  (embedded)" if "nats" in endpoints.embedded else ""),
        f"  ledger      grpc://{endpoints.ledger_grpc}  (LedgerService)",
        f"  query       grpc://{endpoints.query_grpc}  (QueryService; the projector runs too)",
        *([f"  admin key   {admin}"] if (admin := settings.data_dir / "keys" / "admin.key").exists() else []),
        *(f"  setup       {c}" for c in changes),
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
