"""What the metrics cost on the request path: a gRPC server with and without provault's metrics interceptor.

One trivial unary method (it answers the bytes it got), served twice in this
process on loopback: once with :class:`ledger.metrics.GrpcMetricsInterceptor`
(the counter, the latency histogram, the status code), once without.  Calls
alternate between the two in blocks, so both see the same machine; the result
is the per-call difference and the ratio of medians.  The ledger's write path
adds one :func:`ledger.metrics.record_batch` per committed batch, timed here too.

    python -m bench.metrics [--calls N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent import futures

import grpc

from ledger.core.admission import BatchPlan
from ledger.metrics import GrpcMetricsInterceptor, record_batch

METHOD = "/bench.Echo/Echo"


def _server(interceptors: tuple) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _time_calls(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call(b"x" * 64, timeout=10)
        out.append(time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls timed per server (default 20,000)")
    args = parser.parse_args(argv)
    if args.calls < 100:
        parser.error("--calls: at least 100")

    plain, plain_port = _server(())
    counted, counted_port = _server((GrpcMetricsInterceptor([METHOD]),))
    timings: dict[str, list[float]] = {"plain": [], "counted": []}
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{plain_port}") as a,
            grpc.insecure_channel(f"127.0.0.1:{counted_port}") as b,
        ):
            calls = {"plain": a.unary_unary(METHOD), "counted": b.unary_unary(METHOD)}
            for call in calls.values():
                _time_calls(call, 200)  # warm up both channels
            block = 500
            for _ in range(max(1, args.calls // block)):
                for name, call in calls.items():
                    timings[name] += _time_calls(call, block)
    finally:
        plain.stop(None)
        counted.stop(None)

    plan = BatchPlan()
    batches = 20_000
    started = time.perf_counter()
    for _ in range(batches):
        record_batch(plan, source="bench", seconds=0.001)
    per_batch_us = (time.perf_counter() - started) / batches * 1e6

    p50 = {k: statistics.median(v) * 1e6 for k, v in timings.items()}
    p99 = {k: statistics.quantiles(v, n=100)[98] * 1e6 for k, v in timings.items()}
    print(f"provault metrics overhead: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"  python -m bench.metrics --calls {args.calls}")
    print(f"  unary gRPC call on loopback, {len(timings['plain']):,} calls each, alternating in blocks of {block}:")
    print(f"    without the interceptor (baseline): p50 {p50['plain']:.0f} µs  p99 {p99['plain']:.0f} µs")
    print(f"    with GrpcMetricsInterceptor:        p50 {p50['counted']:.0f} µs  p99 {p99['counted']:.0f} µs")
    print(
        f"    difference p50 {p50['counted'] - p50['plain']:+.0f} µs per call; ratio p50 {p50['counted'] / p50['plain']:.3f}"
    )
    print(f"  record_batch of an empty batch (the write path's per-batch cost): {per_batch_us:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
