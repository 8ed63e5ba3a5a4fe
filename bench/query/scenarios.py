"""The measured figures, each with its baseline from the same run: (a) traceback over gRPC, (b) impact,
(c) inclusion proofs, (d) export, (e) projector rebuild."""

from __future__ import annotations

import contextlib
import os
import random
import re
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from bench.query.load import Loaded
from bench.query.workload import HUBS, Workload
from ledger.config import Settings
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.core.vocab import deploy_activity_id, deployment_id, git_id, predict_batch_id, run_id
from ledger.db import connect
from ledger.embedded import EmbeddedPostgres
from ledger.store import entries, log
from provault.v1 import query_pb2, query_pb2_grpc
from query import traverse
from query.export import export_stream
from query.projector import PROJECTOR_ROLE, migrate_prov, project, rebuild
from query.service import QueryGrpcService

AUDITOR = "provault_auditor"


def _pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(int(len(samples) * q), len(samples) - 1)]


# --- (a) traceback over gRPC, (b) impact ----------------------------------------------------------------


@dataclass(slots=True)
class Served:
    db: Loaded
    service: QueryGrpcService
    channel: grpc.Channel
    stub: query_pb2_grpc.QueryServiceStub
    health: health_pb2_grpc.HealthStub


def serve(db: Loaded, stack: contextlib.ExitStack) -> Served:
    service = QueryGrpcService(dsn=db.dsn, listen="127.0.0.1:0", max_message_bytes=Settings().grpc.max_message_bytes)
    service.start()
    stack.callback(service.stop)
    channel = grpc.insecure_channel(service.address)
    stack.callback(channel.close)
    return Served(
        db=db,
        service=service,
        channel=channel,
        stub=query_pb2_grpc.QueryServiceStub(channel),
        health=health_pb2_grpc.HealthStub(channel),
    )


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = call()
    return time.perf_counter() - t0, out


def trace_latency(servers: list[Served], requests: int) -> dict[str, Any]:
    """Upstream Trace from random prediction ids, the servers taken in turn; health checks between."""
    ids = {s.db.name: s.db.workload.prediction_ids(requests + 30) for s in servers}
    ping = health_pb2.HealthCheckRequest(service="")
    samples: dict[str, list[float]] = {s.db.name: [] for s in servers}
    sizes: dict[str, list[int]] = {s.db.name: [] for s in servers}
    health: list[float] = []
    for i in range(requests + 30):
        for s in servers:
            req = query_pb2.TraceRequest(start_node_id=ids[s.db.name][i], direction=query_pb2.DIRECTION_UPSTREAM)
            dt, resp = _timed(lambda s=s, req=req: s.stub.Trace(req))
            dh, _ = _timed(lambda s=s: s.health.Check(ping))
            if i >= 30:  # the first 30 warm the pools and caches
                samples[s.db.name].append(dt)
                sizes[s.db.name].append(len(resp.nodes))
                health.append(dh)
    out: dict[str, Any] = {"requests": requests, "health": _stats(health)}
    for name, xs in samples.items():
        out[name] = {**_stats(xs), "nodes_mean": statistics.mean(sizes[name]), "nodes_max": max(sizes[name])}
    return out


def _stats(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(xs, 0.5) * 1e3, "p99_ms": _pct(xs, 0.99) * 1e3, "max_ms": max(xs) * 1e3}


def _timing_cursor(calls: list[tuple[Any, Any, float]]) -> type[psycopg.Cursor]:
    class Timed(psycopg.Cursor):
        def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super().execute(query, params, **kw)
            finally:
                calls.append((query, params, time.perf_counter() - t0))

    return Timed


def _text(query: Any, conn: psycopg.Connection) -> str:
    return " ".join((query.as_string(conn) if isinstance(query, sql.Composable) else str(query)).split())


def where_time_goes(db: Loaded, n: int) -> dict[str, Any]:
    """The same upstream traces in process, statement by statement; EXPLAIN ANALYZE of the costliest statement's slowest call."""
    ids = db.workload.prediction_ids(n + 10)
    calls: list[tuple[Any, Any, float]] = []
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        for pid in ids[:10]:
            traverse.trace(conn, pid)
        conn.cursor_factory = _timing_cursor(calls)
        walls = [_timed(lambda pid=pid: traverse.trace(conn, pid))[0] for pid in ids[10:]]
        conn.cursor_factory = psycopg.Cursor
        by: dict[str, list[tuple[Any, Any, float]]] = {}
        for q, p, dt in calls:
            by.setdefault(_text(q, conn)[:100], []).append((q, p, dt))
        top = sorted(by.items(), key=lambda kv: -sum(c[2] for c in kv[1]))
        q, p, _ = max(top[0][1], key=lambda c: c[2])
        explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ") + (
            q if isinstance(q, sql.Composable) else sql.SQL(q)
        )
        plan = [r[0] for r in conn.execute(explain, p)]
    statements = [{"sql": k, "calls": len(v), "ms_per_trace": sum(c[2] for c in v) / n * 1e3} for k, v in top[:4]]
    plan = [re.sub(r"'\{[^']{80,}\}'", "'{…}'", line) for line in plan]
    return {"traces": n, "wall_p50_ms": _pct(walls, 0.5) * 1e3, "statements": statements, "plan": plan}


def _starts(w: Workload, n: int) -> dict[str, list[str]]:
    rng = random.Random(w.seed + 1)
    return {
        "hub": w.raw[:HUBS],
        "raw": rng.sample(w.raw[HUBS:], min(n, len(w.raw) - HUBS)),
        "derived": [d for d, _, _ in rng.sample(w.derived, min(n, len(w.derived)))],
    }


def impact(db: Loaded, per_group: int) -> dict[str, Any]:
    """Downstream from datasets, in process: time per node returned (predictions counted apart)."""
    out: dict[str, Any] = {}
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        traverse.trace(conn, db.workload.raw[0], direction=traverse.DOWNSTREAM)  # warm
        for group, starts in _starts(db.workload, per_group).items():
            runs = []
            for start in starts:
                dt, ans = _timed(lambda start=start: traverse.trace(conn, start, direction=traverse.DOWNSTREAM))
                runs.append((dt, len(ans.nodes), ans.predictions_total, ans.truncated))
            out[group] = {
                "starts": len(runs),
                "nodes_total": sum(r[1] for r in runs),
                "nodes_max": max(r[1] for r in runs),
                "predictions_total": sum(r[2] for r in runs),
                "truncated": sum(r[3] for r in runs),
                "seconds_total": sum(r[0] for r in runs),
                "seconds_max": max(r[0] for r in runs),
                "us_per_node_median": statistics.median(r[0] / r[1] * 1e6 for r in runs),
                "us_per_node_overall": sum(r[0] for r in runs) / sum(r[1] for r in runs) * 1e6,
            }
    return out


def _first_page_ms(served: Served, start: str, page_size: int, repeats: int = 5) -> float:
    """The median time to the first page of ``page_size`` nodes of ``start``'s impact."""
    req = query_pb2.TraceRequest(start_node_id=start, direction=query_pb2.DIRECTION_DOWNSTREAM, page_size=page_size)
    return statistics.median(_timed(lambda: served.stub.Trace(req))[0] for _ in range(repeats)) * 1e3


def impact_pages(served: Served, page_size: int = 5000, max_pages: int = 10) -> dict[str, Any]:
    """Every page of the largest hub's downstream answer through gRPC.

    The first page walks only its own nodes, the second the whole answer, the later ones slice the kept walk
    (docs/query.md, "Pagination"); the first page is also timed with a small page, as a browser asks for one.
    """
    start = served.db.workload.raw[0]
    req = query_pb2.TraceRequest(start_node_id=start, direction=query_pb2.DIRECTION_DOWNSTREAM, page_size=page_size)
    pages, items, per_page = 0, 0, []
    t0 = time.perf_counter()
    while pages < max_pages:
        dt, resp = _timed(lambda: served.stub.Trace(req))
        pages, items = pages + 1, items + len(resp.nodes)
        per_page.append(dt)
        if not resp.next_page_token:
            break
        req.page_token = resp.next_page_token
    total = time.perf_counter() - t0
    return {
        "start": start,
        "pages": pages,
        "items": items,
        "seconds": total,
        "complete": not resp.next_page_token,
        "page_p50_ms": _pct(per_page, 0.5) * 1e3,
        "first_page_ms": per_page[0] * 1e3,
        "first_small_page_ms": _first_page_ms(served, start, 100),
        "us_per_item": total / max(items, 1) * 1e6,
    }


# --- (c) inclusion proofs, (d) export -------------------------------------------------------------------------


def proofs(db: Loaded, samples: int) -> dict[str, Any]:
    rng = random.Random(db.workload.seed + 2)
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        point = "SELECT hash FROM ledger.merkle_nodes WHERE level = 0 AND idx = %s"
        proof, base, lengths = [], [], []
        for i in range(samples + 50):
            leaf = rng.randrange(db.leaves)
            dp, hashes = _timed(lambda leaf=leaf: log.inclusion_proof(conn, leaf, db.leaves))
            dq, _ = _timed(lambda leaf=leaf: conn.execute(point, (leaf,)).fetchone())
            if i >= 50:
                proof.append(dp)
                base.append(dq)
                lengths.append(len(hashes))
    return {
        "leaves": db.leaves,
        "samples": samples,
        "proof": _stats(proof),
        "pk_select": _stats(base),
        "hashes_mean": statistics.mean(lengths),
    }


def export(db: Loaded) -> dict[str, Any]:
    with connect(db.dsn, autocommit=True, role=AUDITOR) as conn:
        t0 = time.perf_counter()
        triples = size = 0
        for chunk in export_stream(conn, fmt="ntriples"):
            triples += chunk.count(b"\n")
            size += len(chunk)
        t1 = time.perf_counter()
        rows = 0
        with conn.cursor().copy("COPY prov.edges TO STDOUT") as cp:
            for block in cp:
                rows += bytes(block).count(b"\n")
        t2 = time.perf_counter()
    graph_rows = db.nodes + db.edges + db.predictions
    return {
        "db": db.name,
        "triples": triples,
        "bytes": size,
        "seconds": t1 - t0,
        "triples_per_s": triples / (t1 - t0),
        "rows_per_s": graph_rows / (t1 - t0),
        "copy_rows": rows,
        "copy_seconds": t2 - t1,
        "copy_rows_per_s": rows / (t2 - t1),
    }


# --- (e) projector rebuild --------------------------------------------------------------------------------------


def story_events(n: int, rows: int) -> tuple[list, list]:
    """Registrations, then ~``n`` events: provstory's six-event story over and over, fresh ids each time."""
    from tests.query import provstory as ps  # noqa: PLC0415 - the test helpers, used as event factories

    chains = {r: ProducerChain(f"{r}@bench", Ed25519Signer.generate()) for r in ("trainer", "deployer", "server")}
    events = []
    for k in range(-(-n // 6)):
        u = [str(uuid.uuid4()) for _ in range(3)]
        i = ps.Ids(
            dataset="sha256:" + os.urandom(32).hex(),
            model="sha256:" + os.urandom(32).hex(),
            run=run_id(u[0]),
            deploy=deploy_activity_id(u[1]),
            deployment=deployment_id("svc", u[1]),
            batch=predict_batch_id(u[2]),
            code=git_id(os.urandom(20).hex()),
            predictions=tuple(f"req-{k}-{j}" for j in range(rows)),
        )
        tr, de, se = chains["trainer"], chains["deployer"], chains["server"]
        events += [
            ps.dataset_registered(tr, i),
            ps.run_started(tr, i),
            ps.run_completed(tr, i),
            ps.model_registered(tr, i),
            ps.model_deployed(de, i),
            ps.predictions_logged(se, i),
        ]
    return list(chains.values()), events


def rebuild_rate(pg: EmbeddedPostgres, n: int, rows: int, repeats: int = 3) -> dict[str, Any]:
    from tests.ledgerkit import Ledger  # noqa: PLC0415

    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_rebuild")
    ledger = Ledger(pg.dsn("bench_rebuild"))
    try:
        migrate_prov(ledger.dsn)
        chains, events = story_events(n, rows)
        ledger.append(*[ledger.registration(c.signer, name=c.producer_id.split("@")[0]) for c in chains])
        for a in range(0, len(events), 500):
            plan = ledger.append(*events[a : a + 500])
            if len(plan.accepted) != len(events[a : a + 500]):
                raise RuntimeError(f"the ledger refused story events: {ledger.rejections()[:3]}")
    finally:
        ledger.close()
    with connect(ledger.dsn, autocommit=True, role=PROJECTOR_ROLE) as conn:
        total = project(conn)
        rebuilds, scans = [], []
        for _ in range(repeats):
            dt, done = _timed(lambda: rebuild(conn))
            rebuilds.append(dt)
            ds, seen = _timed(lambda: sum(1 for _ in entries.iter_entries(conn)))
            scans.append(ds)
        sizes = [len(e.envelope) for e in entries.iter_entries(conn)]
        envelope = round(sum(sizes) / len(sizes))
    r, s = statistics.median(rebuilds), statistics.median(scans)
    return {
        "events": total,
        "rows_per_batch": rows,
        "envelope_bytes_mean": envelope,
        "rebuild_seconds": r,
        "rebuild_per_s": done / r,
        "scan_seconds": s,
        "scan_per_s": seen / s,
        "repeats": repeats,
    }
