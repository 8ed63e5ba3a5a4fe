"""``provault db migrate``, ``provault ledger init|serve``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ledger import metrics
from ledger.bootstrap import initialise, migrate_all
from ledger.config import settings_from
from ledger.core.errors import ServerStartError
from ledger.db import connect
from ledger.service.runtime import LedgerRuntime
from ledger.stack import resolve_nats_url, resolve_postgres_dsn
from ledger.store import checkpoints

POLL_S = 0.5


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", metavar="ACTION", required=True)
    p = db.add_parser("migrate", parents=[common], help="apply pending schema migrations (idempotent)")
    p.set_defaults(run=run_migrate)

    led = sub.add_parser("ledger", help="initialise or run the ledger service")
    led_sub = led.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    p = led_sub.add_parser(
        "init",
        parents=[common],
        help="create the checkpoint-signing key and record the admin public key(s) (idempotent)",
        description=(
            "Migrate the schema, create the checkpoint-signing key (signing.checkpoint_key, default "
            "<data-dir>/keys/checkpoint.key) if missing, record it and the admin public keys as the "
            "ledger's trust root, and sign the empty tree. Without --admin-key, an admin key is created "
            "at <data-dir>/keys/admin.key."
        ),
    )
    p.add_argument(
        "--admin-key",
        action="append",
        default=[],
        metavar="PUBKEY_FILE",
        help="an admin public key (PEM or raw 32 bytes); repeat for several",
    )
    p.set_defaults(run=run_init)
    p = led_sub.add_parser(
        "serve", parents=[common], help="run the ledger service (ingest, checkpoints, gRPC) until stopped"
    )
    p.set_defaults(run=run_serve)

    p = sub.add_parser(
        "checkpoint",
        parents=[common],
        help="print the latest signed checkpoint (save it to prove later that the log was not rewritten)",
        description="Print the ledger's latest signed checkpoint (C2SP signed note). Keep it: "
        "`provault verify --checkpoint FILE` later proves the log still extends it. "
        "With --vkey, print the checkpoint verifier key instead, for `provault verify --key`.",
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--vkey", action="store_true", help="print the checkpoint verifier key (C2SP vkey)")
    p.set_defaults(run=run_checkpoint)


def run_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    applied = migrate_all(resolve_postgres_dsn(settings))
    print("\n".join(f"applied {a}" for a in applied) if applied else "schema is up to date")
    return 0


def run_init(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    changes = initialise(settings, resolve_postgres_dsn(settings), args.admin_key)
    print("\n".join(changes) if changes else "ledger already initialised; nothing changed")
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    from ledger.core.checkpoint import format_vkey  # noqa: PLC0415

    settings = settings_from(args)
    with connect(resolve_postgres_dsn(settings), autocommit=True, role="provault_auditor") as conn:
        verifier = checkpoints.checkpoint_verifier(conn)
        latest = checkpoints.latest(conn)
    if args.vkey:
        text = format_vkey(verifier.name, verifier.verifier.public_key) + "\n"
    elif latest is None:
        raise checkpoints.NotInitialized("the ledger has no checkpoint yet", hint="run `provault ledger init`")
    else:
        text = latest.note
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {'verifier key' if args.vkey else f'checkpoint of size {latest.tree_size}'} to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    runtime = LedgerRuntime(settings, dsn=resolve_postgres_dsn(settings), nats_url=resolve_nats_url(settings))
    exporter = metrics.server_for(settings, "ledger_listen")
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        runtime.start()
        if exporter:
            exporter.start()
        print(
            f"provault ledger serving: gRPC {runtime.grpc_address}, ingesting from {runtime.nats_url}"
            + (f", metrics {exporter.url}" if exporter else ""),
            flush=True,
        )
        while not stop.wait(POLL_S):
            for svc in runtime.services():
                if not svc.running():
                    raise ServerStartError(f"ledger {svc.name} stopped unexpectedly")
        return 0
    finally:
        if exporter:
            exporter.stop()
        runtime.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("provault ledger stopped", file=sys.stderr)
