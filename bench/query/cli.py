"""``python -m bench.query``: the options, the run (both databases built, every figure measured), the output."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from bench import run_in_scratch
from bench.query import __doc__ as PACKAGE_DOC
from bench.query.load import Loaded, build
from bench.query.report import report
from bench.query.scenarios import (
    export,
    impact,
    impact_pages,
    proofs,
    rebuild_rate,
    serve,
    trace_latency,
    where_time_goes,
)
from bench.query.workload import Workload
from ledger.embedded import EmbeddedPostgres

FULL = {"predictions": 1_000_000, "edges": 10_000_000, "leaves": 10_000_000}


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.query", description=PACKAGE_DOC.split("\n\n")[0])
    ap.add_argument("--predictions", type=int, default=100_000, help="prediction rows in the large graph")
    ap.add_argument("--edges", type=int, default=1_000_000, help="edges in the large graph")
    ap.add_argument("--leaves", type=int, default=1_000_000, help="Merkle leaves for the inclusion proofs")
    ap.add_argument("--full", action="store_true", help="the issue's scale: 1M predictions, 10M edges, 10M leaves")
    ap.add_argument("--small", type=float, default=0.1, help="size of the second database, as a fraction")
    ap.add_argument("--requests", type=int, default=300, help="Trace requests timed per database")
    ap.add_argument("--batch-rows", type=int, default=100, help="predictions per prediction batch")
    ap.add_argument("--impact-starts", type=int, default=10, help="random raw and derived datasets for (b)")
    ap.add_argument("--proofs", type=int, default=1000, help="inclusion proofs timed per leaf count")
    ap.add_argument("--rebuild-events", type=int, default=6000, help="signed events for (e)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.full:
        args.predictions, args.edges, args.leaves = FULL["predictions"], FULL["edges"], FULL["leaves"]
    return args


def _command(args: argparse.Namespace) -> str:
    return (
        f"python -m bench.query --predictions {args.predictions} --edges {args.edges} --leaves {args.leaves} "
        f"--small {args.small} --requests {args.requests} --batch-rows {args.batch_rows} "
        f"--impact-starts {args.impact_starts} --proofs {args.proofs} --rebuild-events {args.rebuild_events} "
        f"--seed {args.seed}"
    )


def _public(d: Loaded) -> dict[str, Any]:
    return {
        k: getattr(d, k)
        for k in ("name", "entries", "nodes", "versions", "edges", "predictions", "leaves", "checked", "seconds")
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "cores": os.cpu_count() or 1,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "command": _command(args),
    }
    with EmbeddedPostgres(root / "pg", database="postgres") as pg:
        dbs = []
        for name, f in (("small", args.small), ("large", 1.0)):
            w = Workload(
                edges=int(args.edges * f),
                predictions=int(args.predictions * f),
                batch_rows=args.batch_rows,
                seed=args.seed,
            )
            print(f"building {name}: {w.edges:,} edges, {w.predictions:,} predictions ...", file=sys.stderr, flush=True)
            dbs.append(build(pg, name, w, max(1, int(args.leaves * f)), check_every=max(1, w.edges // 2000)))
        result["dbs"] = [_public(d) for d in dbs]
        with contextlib.ExitStack() as stack:
            servers = [serve(d, stack) for d in dbs]
            print("(a) traceback ...", file=sys.stderr, flush=True)
            result["traceback"] = trace_latency(servers, args.requests)
            result["breakdown"] = {d.name: where_time_goes(d, 50) for d in dbs}
            print("(b) impact ...", file=sys.stderr, flush=True)
            result["impact"] = {d.name: impact(d, args.impact_starts) for d in dbs}
            result["impact_pages"] = impact_pages(servers[-1])
        print("(c) proofs, (d) export ...", file=sys.stderr, flush=True)
        result["proofs"] = {d.name: proofs(d, args.proofs) for d in dbs}
        result["export"] = export(dbs[0])
        print("(e) rebuild ...", file=sys.stderr, flush=True)
        result["rebuild"] = rebuild_rate(pg, args.rebuild_events, args.batch_rows)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_in_scratch(_args(argv), "provault-bench-query-", run, report)
