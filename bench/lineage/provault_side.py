"""The workload loaded into provault the way users load it: the agents SDK, NATS, the ledger, the projector.

The stack is ``provault up``'s (``ledger.launch.start_stack``: embedded
PostgreSQL and NATS under a temporary data directory, the ledger service,
the projector, QueryService on 127.0.0.1:0); one producer key signs every
event.  Files are real and digested: raw datasets, code, feature sets and
models are small files with distinct contents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.lineage.shape import Shape
from ledger.cli import main as cli
from ledger.config import ExplorerSettings, GrpcSettings, OpenLineageSettings, Settings
from ledger.core.keys import load_private_key
from ledger.launch import start_stack
from ledger.stack import Stack
from provault.v1 import query_pb2, query_pb2_grpc

LOAD_TIMEOUT_S = 3600.0


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def _scalar(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(query).fetchone()[0]


def load(shape: Shape, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Load ``shape`` through a real stack in ``work``, measure, stop; the figures as a dict."""
    import agents  # noqa: PLC0415 - the SDK under test, imported once the stack is configured
    from agents.runtime import agent_from_settings  # noqa: PLC0415

    settings = dataclasses.replace(
        Settings(),
        data_dir=work / "state",
        dev_mode=True,
        grpc=GrpcSettings(ledger_listen="127.0.0.1:0", query_listen="127.0.0.1:0"),
        openlineage=OpenLineageSettings(enabled=False),
        explorer=ExplorerSettings(enabled=False),
    )
    stack = Stack(settings)
    try:
        endpoints, _ = start_stack(stack)
        key = settings.data_dir / "keys" / "bench.key"
        common = ["--data-dir", str(settings.data_dir)]
        with contextlib.redirect_stdout(io.StringIO()):
            failed = cli(["keys", "new", str(key), *common]) or cli(
                ["keys", "register", f"{key}.pub", "--identity", "service:bench-loader", *common]
            )
        if failed:
            raise RuntimeError("could not register the benchmark's producer key")
        agent = agent_from_settings(settings, producer_id="bench/lineage", signer=load_private_key(key))
        files = work / "files"
        t0 = time.perf_counter()
        ids = _emit(shape, agent, agents, files)
        if not agent.flush(timeout=LOAD_TIMEOUT_S):
            raise RuntimeError(f"the agent did not deliver everything: {agent.stats}")
        emitted = time.perf_counter() - t0
        dsn = endpoints.postgres_dsn
        size = _scalar(dsn, "SELECT size FROM ledger.log_state")
        _wait(
            "the projector catching up",
            lambda: _scalar(dsn, "SELECT last_seq FROM prov.position") >= size - 1,
            LOAD_TIMEOUT_S,
        )
        loaded = time.perf_counter() - t0
        say(
            f"  provault s={shape.scale}: {size:,} log entries; emitted in {emitted:.0f} s, projected by {loaded:.0f} s"
        )
        agent.close(timeout=10)
        out: dict[str, Any] = {"entries": size, "emit_s": emitted, "load_s": loaded, **_sizes(dsn)}
        out.update(_measure(shape, endpoints.query_grpc, ids))
        return out
    finally:
        stack.stop()


def _emit(shape: Shape, agent: Any, agents: Any, files: Path) -> dict[str, list[str]]:
    """Every node of ``shape`` through the SDK; the ids of the raw datasets and of the predictions."""
    raw = [
        agents.register_dataset(_write(files / "raw" / f"{i}.csv", f"raw {i}\n"), name=f"raw-{i}", agent=agent)
        for i in range(shape.raw)
    ]
    code = [_write(files / "code" / f"train_{i}.py", f"# training code {i}\n") for i in range(shape.code)]
    authors = [f"Author {i} <author{i}@example.org>" for i in range(shape.authors)]
    projects = []
    for p in range(shape.projects):
        with agents.run(f"project-{p}", agent=agent, author=authors[p % len(authors)]) as project:
            pass
        projects.append(project.id)
    for i, (a, b) in enumerate(shape.prep):
        with agents.run(f"prep-{i}", agent=agent, author=authors[i % len(authors)]) as r:
            r.use(files / "raw" / f"{a}.csv")
            r.use(files / "raw" / f"{b}.csv")
            r.produce(_write(files / "features" / f"{i}.parquet", f"features {i}\n"), kind="dataset")
    models = []
    for j, (feats, c, author, project) in enumerate(shape.train):
        with agents.run(f"train-{j}", agent=agent, author=authors[author], parent=projects[project]) as r:
            for f in feats:
                r.use(files / "features" / f"{f}.parquet")
            r.use(code[c], role="code")
            models.append(r.produce(_write(files / "models" / f"{j}.bin", f"model {j}\n"), kind="model").id)
    predictions = []
    for d, m in enumerate(shape.deploy):
        deployment = agents.deploy_model(models[m], name=f"service-{d}", target="prod", agent=agent)
        logger = agents.PredictionLogger(agent, deployment=deployment, model=models[m])
        for k in range(shape.predictions_per_deployment):
            logger.log(f"req-{d}-{k}", input={"x": k}, output=k % 2)
        logger.close(timeout=60)
        predictions.extend(f"provault:prediction/req-{d}-{k}" for k in range(shape.predictions_per_deployment))
    return {"raw": raw, "predictions": predictions}


def _sizes(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
        per_schema = dict(
            c.execute(
                "SELECT n.nspname, sum(pg_total_relation_size(k.oid))::bigint FROM pg_class k "
                "JOIN pg_namespace n ON n.oid = k.relnamespace WHERE k.relkind IN ('r', 'm') "
                "AND n.nspname IN ('ledger', 'prov') GROUP BY 1"
            ).fetchall()
        )
        database = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        # The baseline: what PostgreSQL spends on an empty database (its catalogs), in the same cluster.
        c.execute("CREATE DATABASE bench_lineage_empty")
        try:
            empty = c.execute("SELECT pg_database_size('bench_lineage_empty')").fetchone()[0]
        finally:
            c.execute("DROP DATABASE bench_lineage_empty")
    return {
        "db_bytes": database,
        "empty_db_bytes": empty,
        "ledger_bytes": per_schema.get("ledger", 0),
        "prov_bytes": per_schema.get("prov", 0),
    }


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(int(len(xs) * q), len(xs) - 1)]


def _measure(shape: Shape, address: str | None, ids: dict[str, list[str]], requests: int = 300) -> dict[str, Any]:
    """Trace upstream from random predictions and downstream from random raw datasets over gRPC."""
    assert address is not None
    rng = random.Random(shape.scale)
    with grpc.insecure_channel(address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        up, down, ping, nodes_up, nodes_down = [], [], [], [], []
        for i in range(requests + 20):
            pid, raw = rng.choice(ids["predictions"]), rng.choice(ids["raw"])
            t0 = time.perf_counter()
            a = stub.Trace(query_pb2.TraceRequest(start_node_id=pid, direction=query_pb2.DIRECTION_UPSTREAM))
            t1 = time.perf_counter()
            b = stub.Trace(query_pb2.TraceRequest(start_node_id=raw, direction=query_pb2.DIRECTION_DOWNSTREAM))
            t2 = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest())
            t3 = time.perf_counter()
            if i >= 20:  # warm-up
                up.append(t1 - t0)
                down.append(t2 - t1)
                ping.append(t3 - t2)
                nodes_up.append(len(a.nodes))
                nodes_down.append(len(b.nodes))
    return {
        "trace_p50_ms": _pct(up, 0.5) * 1e3,
        "trace_p99_ms": _pct(up, 0.99) * 1e3,
        "trace_nodes": sum(nodes_up) / len(nodes_up),
        "impact_p50_ms": _pct(down, 0.5) * 1e3,
        "impact_p99_ms": _pct(down, 0.99) * 1e3,
        "impact_nodes": sum(nodes_down) / len(nodes_down),
        "health_p50_ms": _pct(ping, 0.5) * 1e3,
    }
