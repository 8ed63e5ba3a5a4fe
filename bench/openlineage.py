"""OpenLineage into provault: events accepted durably over HTTP, acknowledgement latency, lineage through many jobs.

``python -m bench.openlineage [--events N] [--concurrency C] [--rate R] [--seconds S] [--layers L] [--width W]``

A real ``provault up`` stack (embedded PostgreSQL and NATS in a temporary
directory, the ledger service, the projector, QueryService and the
OpenLineage endpoint, in this process as ``provault up`` runs them) takes:

(a) N distinct RunEvents posted by C concurrent HTTP clients (aiohttp, in a
    separate process): accepted events/s, each one spooled and fsynced before
    its 201.  Baseline in the same run: the same client against a bare
    aiohttp server that reads the body and answers 201 -- the HTTP ceiling
    of this machine, so the ratio is what provault's checks, mapping,
    signing and fsync leave of it.
(b) an open loop at R events/s for S seconds: p50 / p99 of the time from a
    request's scheduled send to its 201.
(c) a pipeline of L layers of W jobs, each job reading 5 datasets of the
    layer before and writing one; once projected, p50 / p99 of gRPC Trace
    upstream from a last-layer dataset (max_depth 100), with the jobs and
    nodes it reaches.  Baselines: a gRPC health round trip, and the same trace
    on a pipeline of 2 layers (the growth ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ledger.config import ExplorerSettings, GrpcSettings, OpenLineageSettings, Settings
from ledger.launch import start_stack
from ledger.stack import Stack
from provault.v1 import query_pb2, query_pb2_grpc

PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def run_event(run_id: str, job: str, inputs: list[str], outputs: list[str], state: str = "COMPLETE") -> bytes:
    facet = {"_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json"}
    return json.dumps(
        {
            "eventType": state,
            "eventTime": "2026-03-02T09:30:00.123Z",
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
            "run": {"runId": run_id},
            "job": {"namespace": "bench", "name": job},
            "inputs": [
                {
                    "namespace": "postgres://wh:5432",
                    "name": n,
                    "facets": {"schema": {**facet, "fields": [{"name": "id", "type": "int"}]}},
                }
                for n in inputs
            ],
            "outputs": [{"namespace": "postgres://wh:5432", "name": n} for n in outputs],
        }
    ).encode()


# --- the HTTP clients (their own process) -------------------------------------------------


HEADERS = {"Content-Type": "application/json"}


async def _closed_loop(url: str, bodies: list[bytes], concurrency: int, headers: dict[str, str]) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    statuses: dict[int, int] = {}
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while queue:
                data = queue.pop()
                async with session.post(url, data=data, headers=headers) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "statuses": statuses}


async def _open_loop(url: str, bodies: list[bytes], rate: float, headers: dict[str, str]) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(data: bytes, due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            async with session.post(url, data=data, headers=headers) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter() + 0.2
        await asyncio.gather(*(one(b, start + i / rate) for i, b in enumerate(bodies)))
    return {"latencies": latencies, "statuses": statuses}


def _client(mode: str, url: str, bodies: list[bytes], arg: float, headers: dict, out: multiprocessing.Queue) -> None:
    coro = _closed_loop(url, bodies, int(arg), headers) if mode == "closed" else _open_loop(url, bodies, arg, headers)
    out.put(asyncio.run(coro))


def in_client_process(
    mode: str, url: str, bodies: list[bytes], arg: float, headers: dict[str, str] = HEADERS, timeout: float = 900.0
) -> dict[str, Any]:
    out: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(target=_client, args=(mode, url, bodies, arg, headers, out))
    proc.start()
    try:
        return out.get(timeout=timeout)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


# --- the baseline server ------------------------------------------------------------------


class BareServer:
    """aiohttp on 127.0.0.1:0 answering 201 to any POST after reading its body."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> str:
        from aiohttp import web  # noqa: PLC0415

        async def handle(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"status": "accepted"}, status=201)

        async def open_site() -> web.AppRunner:
            app = web.Application(client_max_size=1 << 20)
            app.router.add_post("/api/v1/lineage", handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
            await site.start()
            return runner

        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(open_site(), self._loop).result(30)
        self.port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/api/v1/lineage"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


# --- measuring ----------------------------------------------------------------------------


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(int(len(xs) * q), len(xs) - 1)]


def _scalar(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(query).fetchone()[0]


def _wait(what: str, done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def pipeline(layers: int, width: int, tag: str) -> tuple[list[bytes], str]:
    """Events of a layered pipeline; the Marquez-style name of a last-layer dataset."""
    bodies = []
    for layer in range(layers):
        for k in range(width):
            reads = [f"{tag}.l{layer - 1}.d{(k + j) % width}" for j in range(5)] if layer else [f"{tag}.src{k}"]
            bodies.append(run_event(str(uuid.uuid4()), f"{tag}.l{layer}.job{k}", reads, [f"{tag}.l{layer}.d{k}"]))
    return bodies, f"dataset:postgres://wh:5432:{tag}.l{layers - 1}.d0"


def trace_times(address: str, start: str, requests: int) -> dict[str, Any]:
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub, health = query_pb2_grpc.QueryServiceStub(channel), health_pb2_grpc.HealthStub(channel)
        times, pings, answer = [], [], None
        for i in range(requests + 5):
            t0 = time.perf_counter()
            answer = stub.Trace(
                query_pb2.TraceRequest(
                    start_node_id=start, direction=query_pb2.DIRECTION_UPSTREAM, max_depth=100, page_size=5000
                )
            )
            t1 = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest())
            if i >= 5:
                times.append(t1 - t0)
                pings.append(time.perf_counter() - t1)
    assert answer is not None
    jobs = sum(1 for n in answer.nodes if n.id.startswith("provault:ol/run/"))
    return {
        "p50_ms": _pct(times, 0.5) * 1e3,
        "p99_ms": _pct(times, 0.99) * 1e3,
        "nodes": len(answer.nodes),
        "runs": jobs,
        "health_p50_ms": _pct(pings, 0.5) * 1e3,
    }


def serve_process(settings: Settings, endpoints) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """``provault openlineage serve`` against the stack, its key registered, a producer token for the clients."""
    from agents.openlineage.stack import ensure_dev_key  # noqa: PLC0415
    from ledger.grpckit.tokens import TokenStore  # noqa: PLC0415

    ensure_dev_key(settings, endpoints)
    token, _ = TokenStore(settings.data_dir / "auth" / "tokens.json").create(role="producer", name="bench")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledger.cli",
            "openlineage",
            "serve",
            "--data-dir",
            str(settings.data_dir),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env={**os.environ, "PROVAULT_NATS_URL": endpoints.nats_url},
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"`provault openlineage serve` did not start: {line!r}")
    url = line.split("listening on ", 1)[1].split()[0]
    return proc, url, {**HEADERS, "Authorization": f"Bearer {token}"}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.openlineage", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000, help="events for the throughput run (a)")
    p.add_argument("--concurrency", type=int, default=64, help="concurrent HTTP clients in (a)")
    p.add_argument("--rate", type=float, default=500.0, help="events/s of the latency run (b)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the latency run (b)")
    p.add_argument("--layers", type=int, default=20, help="layers of the pipeline in (c)")
    p.add_argument("--width", type=int, default=50, help="jobs per layer in (c)")
    p.add_argument("--requests", type=int, default=50, help="traces timed in (c)")
    p.add_argument(
        "--endpoint",
        choices=("process", "up"),
        default="process",
        help="process: `provault openlineage serve` in its own process, as deployed (default); "
        "up: inside the stack's process, as `provault up` runs it",
    )
    args = p.parse_args(argv)
    say = lambda text: print(text, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="provault-bench-ol-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "state",
            dev_mode=True,
            grpc=GrpcSettings(ledger_listen="127.0.0.1:0", query_listen="127.0.0.1:0"),
            openlineage=OpenLineageSettings(listen="127.0.0.1:0", enabled=args.endpoint == "up"),
            explorer=ExplorerSettings(enabled=False),
        )
        stack, bare, serving = Stack(settings), BareServer(), None
        try:
            endpoints, _ = start_stack(stack)
            if args.endpoint == "up":
                url, headers = dict((n, u) for n, u, _ in endpoints.services)["openlineage"], HEADERS
            else:
                serving, url, headers = serve_process(settings, endpoints)
            dsn = endpoints.postgres_dsn
            say(f"endpoint: {'in the stack process' if serving is None else 'its own process'} at {url}")
            bodies = [
                run_event(str(uuid.uuid4()), f"job{i % 100}", [f"in{i % 50}"], [f"out{i}"]) for i in range(args.events)
            ]
            base = in_client_process("closed", bare.start(), bodies, args.concurrency, headers)
            cpu0 = _cpu_s(serving.pid) if serving is not None else None
            ours = in_client_process("closed", url, bodies, args.concurrency, headers)
            if cpu0 is not None:
                cpu_us = (_cpu_s(serving.pid) - cpu0) / args.events * 1e6
            ratio = base["elapsed_s"] / ours["elapsed_s"]
            say(f"(a) {args.events:,} RunEvents, {args.concurrency} clients (separate process), stack in this process:")
            say(
                f"    provault  {args.events / ours['elapsed_s']:8,.0f} events/s accepted durably   statuses {ours['statuses']}"
            )
            say(
                f"    bare HTTP {args.events / base['elapsed_s']:8,.0f} requests/s (aiohttp, read + 201)  ratio {ratio:.2f}"
            )
            first_seq = _scalar(dsn, "SELECT size FROM ledger.log_state")
            _wait(
                "the ledger taking every event",
                lambda: _scalar(dsn, "SELECT size FROM ledger.log_state") >= args.events + 1,
                600,
            )
            if cpu0 is not None:
                say(
                    f"    the endpoint's process: {cpu_us:,.0f} CPU-us per event ({1e6 / cpu_us:,.0f} events/s per core)"
                )
            say(
                f"    all {args.events:,} in the log (ledger size {_scalar(dsn, 'SELECT size FROM ledger.log_state'):,}; "
                f"{first_seq:,} when the last 201 came)"
            )

            n = int(args.rate * args.seconds)
            paced = [run_event(str(uuid.uuid4()), f"paced{i % 100}", [f"in{i % 50}"], [f"p{i}"]) for i in range(n)]
            lat = in_client_process("open", url, paced, args.rate, headers)["latencies"]
            say(
                f"(b) open loop at {args.rate:,.0f} events/s for {args.seconds:.0f} s: acknowledgement "
                f"p50 {_pct(lat, 0.5) * 1e3:.1f} ms, p99 {_pct(lat, 0.99) * 1e3:.1f} ms, max {max(lat) * 1e3:.1f} ms"
            )

            big, big_start = pipeline(args.layers, args.width, "big")
            small, small_start = pipeline(2, args.width, "small")
            in_client_process("closed", url, big + small, args.concurrency, headers)
            _wait(
                "the ledger taking the pipelines",
                lambda: (
                    _scalar(dsn, "SELECT size FROM ledger.log_state") >= args.events + n + len(big) + len(small) + 1
                ),
                600,
            )
            target = _scalar(dsn, "SELECT size FROM ledger.log_state")
            _wait(
                "the projector catching up",
                lambda: _scalar(dsn, "SELECT last_seq FROM prov.position") >= target - 1,
                600,
            )
            t_big = trace_times(str(endpoints.query_grpc), big_start, args.requests)
            t_small = trace_times(str(endpoints.query_grpc), small_start, args.requests)
            say(
                f"(c) upstream Trace from {big_start} over gRPC "
                f"({args.layers} layers x {args.width} jobs = {len(big):,} jobs in the pipeline):"
            )
            say(
                f"    p50 {t_big['p50_ms']:.1f} ms, p99 {t_big['p99_ms']:.1f} ms; {t_big['runs']:,} runs, "
                f"{t_big['nodes']:,} nodes in the answer ({t_big['p50_ms'] * 1e3 / t_big['nodes']:.0f} us per node)"
            )
            say(
                f"    2 layers: p50 {t_small['p50_ms']:.1f} ms, p99 {t_small['p99_ms']:.1f} ms; {t_small['runs']} runs, "
                f"{t_small['nodes']} nodes; growth p50 x{t_big['p50_ms'] / t_small['p50_ms']:.1f}"
            )
            say(f"    gRPC health round trip p50 {t_big['health_p50_ms']:.2f} ms")
        finally:
            if serving is not None:
                serving.terminate()
                serving.wait(30)
            stack.stop()
            if bare.port:
                bare.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
