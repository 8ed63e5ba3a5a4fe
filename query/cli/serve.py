"""``provault query serve``: the projector and QueryService, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ledger import metrics
from ledger.config import settings_from
from ledger.core.errors import ServerStartError
from ledger.grpckit.security import server_security
from ledger.stack import resolve_postgres_dsn
from query.explorer import build_explorer
from query.projector import Projector
from query.service import QueryGrpcService
from query.stack import health_probe

POLL_S = 0.5


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    q = sub.add_parser("query", help="run the query side (projector and QueryService)")
    qs = q.add_subparsers(dest="query_command", metavar="ACTION", required=True)
    p = qs.add_parser(
        "serve",
        parents=[common],
        help="run the projector and the gRPC QueryService until stopped",
        description=(
            "Keep the PROV projection up to date with the log, serve QueryService on grpc.query_listen and the "
            "lineage explorer (a browser view for auditors) on explorer.listen. "
            "With --no-projector only the QueryService runs (for replicas on a read-only database, "
            "while one projector runs elsewhere)."
        ),
    )
    p.add_argument("--no-projector", action="store_true", help="serve queries only; another process projects")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    security = server_security(settings, listen=settings.grpc.query_listen, listen_key="grpc.query_listen")
    dsn = resolve_postgres_dsn(settings)
    query = QueryGrpcService(
        dsn=dsn,
        listen=settings.grpc.query_listen,
        max_message_bytes=settings.grpc.max_message_bytes,
        authenticator=security.authenticator,
        server_credentials=security.credentials,
        settings=settings,
    )
    exporter = metrics.server_for(settings, "query_listen")
    explorer = build_explorer(settings, dsn)
    services = [
        *([] if args.no_projector else [Projector(dsn)]),
        query,
        health_probe(settings, dsn, query),
        *([explorer] if explorer else []),
        *([exporter] if exporter else []),
    ]
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    started: list = []
    try:
        for svc in services:
            svc.start()
            started.append(svc)
        print(
            f"provault query serving: gRPC {query.address}"
            + ("" if args.no_projector else ", projector running")
            + (f", explorer {explorer.url}" if explorer else "")
            + (f", metrics {exporter.url}" if exporter else ""),
            flush=True,
        )
        while not stop.wait(POLL_S):
            for svc in started:
                if not svc.running():
                    raise ServerStartError(f"{svc.name} stopped unexpectedly")
        return 0
    finally:
        for svc in reversed(started):
            svc.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("provault query stopped", file=sys.stderr)
