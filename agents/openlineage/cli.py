"""``provault openlineage serve|import``: the endpoint as its own server, and backfill from the ``file`` transport."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import signal
import sys
import threading
from pathlib import Path

from ledger import metrics
from ledger.config import Settings, settings_from
from ledger.core.errors import ProvaultError

from ..runtime import agent_from_settings
from ._spec import BadOpenLineage, check_body
from .intake import Credential, Intake, NotKept
from .stack import build_server, load_key, producer_id


class ImportFailed(ProvaultError):
    reason = "import_failed"


class EndpointStopped(ProvaultError):
    reason = "endpoint_stopped"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ol = sub.add_parser(
        "openlineage", help="take OpenLineage events: the HTTP endpoint, or a backfill from files"
    ).add_subparsers(dest="openlineage_command", metavar="ACTION", required=True)
    p = ol.add_parser(
        "serve",
        parents=[common],
        help="run the OpenLineage HTTP endpoint (POST /api/v1/lineage) until Ctrl-C or SIGTERM",
        description=(
            "Serve POST /api/v1/lineage for OpenLineage clients (Airflow, Spark, dbt-ol, Flink, openlineage-python). "
            "Each accepted event is sealed with the endpoint's key (openlineage.key_file) into its spool and "
            "delivered to the ledger over NATS or gRPC (agent.transport); clients authenticate with a provault "
            "token of the producer role as their api_key. See docs/openlineage.md."
        ),
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="where to listen (default: openlineage.listen)")
    p.set_defaults(run=run_serve)
    p = ol.add_parser(
        "import",
        parents=[common],
        help="seal the events of OpenLineage JSON-lines files (the `file` transport's output), idempotently",
        description=(
            "Read each FILE (one OpenLineage event per line; blank lines skipped), check every event as the "
            "endpoint does and seal the good ones. An event sealed before (by the endpoint or an earlier import) "
            "is counted as a duplicate and not sealed again. Bad lines are reported as FILE:LINE: member: rule "
            "and the command exits 1; the good lines are kept either way."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="JSON-lines files of OpenLineage events")
    p.set_defaults(run=run_import)


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    server = build_server(settings, signer=load_key(settings), listen=args.listen)
    exporter = metrics.server_for(
        settings,
        "openlineage_listen",
        tls=(settings.openlineage.tls_cert, settings.openlineage.tls_key),
        tls_keys="openlineage.tls_cert and openlineage.tls_key",
    )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        if exporter:
            exporter.start()
        print(
            f"openlineage endpoint listening on {server.url} (producer {producer_id(settings)})"
            + (f", metrics {exporter.url}" if exporter else ""),
            flush=True,
        )
        while not stop.wait(0.5):
            if not server.running():
                raise EndpointStopped("the OpenLineage endpoint stopped unexpectedly")
        return 0
    finally:
        if exporter:
            exporter.stop()
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def importer_settings(settings: Settings) -> Settings:
    """The import's producer: the endpoint's id with ``/import``, its own spool, the endpoint's key."""
    pid = f"{producer_id(settings)}/import"
    return dataclasses.replace(settings, agent=dataclasses.replace(settings.agent, producer_id=pid, spool_dir=None))


def run_import(args: argparse.Namespace) -> int:
    settings = importer_settings(settings_from(args))
    paths = [Path(f) for f in args.files]
    for path in paths:
        if not path.is_file():
            raise ImportFailed(f"{path}: no such file")
    agent = agent_from_settings(settings, signer=load_key(settings))
    intake = Intake(
        agent, index_dir=settings.data_dir / "producers", max_payload_bytes=settings.ingest.max_payload_bytes
    )
    counts = {"accepted": 0, "duplicate": 0, "refused": 0}
    try:
        for path in paths:
            credential = Credential("import", f"{getpass.getuser()}: {path}")
            with path.open("rb") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        outcome = intake.submit(check_body(line.rstrip(b"\r\n")), credential)
                    except BadOpenLineage as e:
                        counts["refused"] += 1
                        print(f"{path}:{number}: {e.message} [{e.rule}]", file=sys.stderr)
                        continue
                    except NotKept as e:
                        raise ImportFailed(f"{path}:{number}: {e.message}; the lines before it are kept") from None
                    counts[outcome.status] += 1
    finally:
        delivered = intake.close(timeout=settings.agent.publish_timeout_s)
    pending = "" if delivered else f"; {agent.pending()} still spooled, sent by the next import"
    print(
        f"{counts['accepted']} sealed, {counts['duplicate']} already sealed, {counts['refused']} refused{pending}",
        flush=True,
    )
    return 1 if counts["refused"] else 0
