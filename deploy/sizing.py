"""Measure what the log costs in PostgreSQL per event (docs/operations.md, "Sizing").

Appends N signed ``run.completed`` events (a run that used two datasets and
generated a model: a typical lineage event, about 2.2 KB of envelope) to a
fresh ledger through the ledger's own write path, then reads
``pg_total_relation_size`` (table + TOAST + indexes) of every ``ledger`` table
and divides by N.  It then runs the projector over the log and does the same
for the ``prov`` schema (what the query side and its read replicas hold).

    python deploy/sizing.py --events 20000                 # embedded PostgreSQL in a temp dir
    python deploy/sizing.py --events 20000 --dsn postgresql://…/scratch   # an EMPTY scratch database

Never point ``--dsn`` at a production ledger: it initialises the database and
appends test events to it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ledger.config import Settings
from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from ledger.db import connect
from ledger.service.appender import Appender
from ledger.service.ingest import limits_from
from ledger.store import checkpoints
from ledger.store.migrate import migrate
from query.projector import PROJECTOR_ROLE, migrate_prov, project

TABLES = ("entries", "merkle_nodes", "producers", "keys", "checkpoints", "rejections", "log_state")
BATCH = 1000


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def run_completed(chain: ProducerChain, i: int) -> Sealed:
    run, model = f"provault:run/{i:08d}", _sha(f"model-{i}")
    data_a, data_b = _sha(f"train-{i // 50}"), _sha(f"eval-{i // 50}")
    prov = {
        "activity": {run: {"prov:type": "provault:TrainingRun", "provault:command": "python train.py --epochs 20"}},
        "entity": {
            data_a: {"prov:type": "provault:Dataset", "prov:label": "train.parquet"},
            data_b: {"prov:type": "provault:Dataset", "prov:label": "eval.parquet"},
            model: {"prov:type": "provault:Model", "prov:label": "model.onnx"},
        },
        "agent": {"provault:trainer": {"prov:type": "prov:SoftwareAgent"}},
        "used": {
            "_:u1": {"prov:activity": run, "prov:entity": data_a},
            "_:u2": {"prov:activity": run, "prov:entity": data_b},
        },
        "wasGeneratedBy": {"_:g1": {"prov:entity": model, "prov:activity": run}},
        "wasAssociatedWith": {"_:a1": {"prov:activity": run, "prov:agent": "provault:trainer"}},
    }
    return chain.emit("run.completed", prov)


def _initialise(dsn: str) -> tuple[Appender, ProducerChain]:
    migrate(dsn)
    migrate_prov(dsn)
    admin = Ed25519Signer.generate()
    with connect(dsn, autocommit=True) as conn:
        checkpoints.initialize(
            conn,
            checkpoint_signer=Ed25519Signer.generate(),
            origin="sizing.provault/log",
            admins=[(admin.public_key, "sizing-admin")],
        )
    appender = Appender(dsn, limits=limits_from(Settings()))
    key = Ed25519Signer.generate()
    reg = KeyRegistration(
        keyid=key.keyid,
        public_key=key.public_key,
        role="producer",
        identity={"type": "service", "name": "trainer"},
        kinds=("*",),
        producers=("*",),
    )
    admin_chain = ProducerChain("admin/sizing", admin)
    appender.append(
        [admin_chain.emit(KEY_REGISTERED, {"agent": {"provault:trainer": {}}}, data=reg.to_data()).envelope],
        source="grpc",
    )
    return appender, ProducerChain("trainer@sizing", key)


def measure(dsn: str, events: int) -> dict[str, object]:
    """Append ``events`` events to the (empty) database at ``dsn``; return sizes per event."""
    appender, chain = _initialise(dsn)
    envelope_bytes = 0
    try:
        for start in range(0, events, BATCH):
            batch = [run_completed(chain, i).envelope for i in range(start, min(start + BATCH, events))]
            envelope_bytes += sum(len(b) for b in batch)
            plan = appender.append(batch, source="grpc")
            if plan.refused:
                raise RuntimeError(f"events refused: {plan.refused[0]}")
    finally:
        appender.close()
    with connect(dsn, autocommit=True, role=PROJECTOR_ROLE) as conn:
        project(conn)
    with connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        sizes = {
            t: int(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f"ledger.{t}",)).fetchone()[0])
            for t in TABLES
        }
        nodes = int(conn.execute("SELECT count(*) FROM ledger.merkle_nodes").fetchone()[0])
        prov = int(
            conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'prov' AND c.relkind IN ('r', 'm')"
            ).fetchone()[0]
        )
    n = events + 1  # and the key registration
    return {
        "events": n,
        "envelope_bytes_per_event": round(envelope_bytes / events),
        "merkle_nodes_per_event": round(nodes / n, 2),
        "bytes_per_event": {t: round(sizes[t] / n) for t in ("entries", "merkle_nodes")},
        "entries_plus_merkle_bytes_per_event": round((sizes["entries"] + sizes["merkle_nodes"]) / n),
        "prov_projection_bytes_per_event": round(prov / n),
        "total_bytes": sizes,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--dsn", help="an empty scratch database (default: embedded PostgreSQL in a temp dir)")
    args = p.parse_args(argv)
    if args.dsn:
        print(json.dumps(measure(args.dsn, args.events), indent=2))
        return 0
    from ledger.embedded import EmbeddedPostgres  # noqa: PLC0415

    root = Path(tempfile.mkdtemp(prefix="provault-sizing-"))
    try:
        with EmbeddedPostgres(root, durable=False) as pg:
            print(json.dumps(measure(pg.dsn(), args.events), indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
