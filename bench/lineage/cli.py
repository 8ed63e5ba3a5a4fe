"""``python -m bench.lineage``: options, the MLMD virtualenv, the run and its report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.lineage.provault_side import load
from bench.lineage.shape import shape

MLMD_REQUIREMENT = "ml-metadata==1.17.1"
MLMD_SCRIPT = Path(__file__).with_name("mlmd_side.py")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def mlmd_python(venv: Path) -> Path:
    """The interpreter of a virtualenv holding ml-metadata (created on first use; it pins its own protobuf)."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import ml_metadata"], capture_output=True).returncode == 0:
        return python
    _say(f"creating {venv} with {MLMD_REQUIREMENT} (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", MLMD_REQUIREMENT], check=True)
    return python


def run_mlmd(python: Path, spec: dict, work: Path) -> dict[str, Any]:
    path = work / "shape.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    out = subprocess.run([python, MLMD_SCRIPT, str(path), str(work)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"the MLMD baseline failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lineage", description=__doc__)
    p.add_argument("--scales", default="1,10", help="comma-separated scale factors s (default 1,10)")
    p.add_argument("--mlmd-venv", type=Path, default=Path(tempfile.gettempdir()) / "provault-bench-mlmd")
    p.add_argument("--no-mlmd", action="store_true", help="skip the MLMD baseline")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--keep", action="store_true", help="keep each scale's data directory (printed) to profile against later"
    )
    args = p.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    python = None if args.no_mlmd else mlmd_python(args.mlmd_venv)
    results: dict[str, Any] = {"command": " ".join(["python -m bench.lineage", *(argv or sys.argv[1:])]), "scales": {}}
    results["loadavg"] = os.getloadavg()[0]
    for s in scales:
        spec = shape(s)
        work = Path(tempfile.mkdtemp(prefix=f"provault-bench-lineage-s{s}-"))
        try:
            t0 = time.perf_counter()
            row: dict[str, Any] = {"statements": spec.statements, "predictions": spec.predictions}
            row["provault"] = load(spec, work, _say)
            if python is not None:
                row["mlmd"] = run_mlmd(python, spec.to_json(), work)
            _say(f"  s={s} done in {time.perf_counter() - t0:.0f} s")
            results["scales"][s] = row
        finally:
            if args.keep:
                _say(f"  s={s}: data kept in {work} (its PostgreSQL is under state/postgres)")
            else:
                shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 0


def report(r: dict[str, Any]) -> None:
    print(f"provault lineage benchmark (MLMD-shaped workload), {os.cpu_count()} cores, load average {r['loadavg']:.2f}")
    print(f"  {r['command']}")
    lines = [
        ("upstream trace from a prediction, p50 ms", "trace_p50_ms", ".1f"),
        ("upstream trace from a prediction, p99 ms", "trace_p99_ms", ".1f"),
        ("  nodes per answer", "trace_nodes", ".0f"),
        ("downstream impact from a raw dataset, p50 ms", "impact_p50_ms", ".1f"),
        ("downstream impact from a raw dataset, p99 ms", "impact_p99_ms", ".1f"),
        ("  nodes per answer (provault: first page)", "impact_nodes", ".0f"),
        ("database size, MB", "db_bytes", ""),
        ("load time, s", "load_s", ".0f"),
    ]
    scales = r["scales"]
    head = "".join(f" | provault s={s} | MLMD s={s} | ratio" for s in scales)
    print(f"| figure{head} |")
    print("|---" + "|---|---|---" * len(scales) + "|")
    for label, key, fmt in lines:
        cells = []
        for row in scales.values():
            pv, ml = row["provault"].get(key), row.get("mlmd", {}).get(key)
            if key == "db_bytes":
                pv, ml = pv / 1e6, (ml / 1e6 if ml is not None else None)
                fmt = ".1f"
            ratio = f"{pv / ml:.1f}" if ml else "-"
            cells.append(f" | {format(pv, fmt)} | {format(ml, fmt) if ml is not None else '-'} | {ratio}")
        print(f"| {label}{''.join(cells)} |")
    for s, row in scales.items():
        pv = row["provault"]
        print(
            f"  s={s}: {row['statements']:,} lineage statements, {pv['entries']:,} log entries; provault database "
            f"{pv['db_bytes'] / 1e6:.1f} MB (ledger schema {pv['ledger_bytes'] / 1e6:.1f} MB: envelopes and the "
            f"Merkle tree; projection {pv['prov_bytes'] / 1e6:.1f} MB) = {pv['db_bytes'] / row['statements']:.0f} "
            f"B per statement; gRPC health round trip p50 {pv['health_p50_ms']:.2f} ms"
        )
        data = pv["ledger_bytes"] + pv["prov_bytes"]
        mlmd = row.get("mlmd", {}).get("db_bytes")
        print(
            f"  s={s}: an empty PostgreSQL database takes {pv['empty_db_bytes'] / 1e6:.1f} MB (catalogs); provault's "
            f"tables {data / 1e6:.1f} MB = {data / row['statements']:.0f} B per statement"
            + (f", {data / mlmd:.1f}x MLMD's file; the projection alone {pv['prov_bytes'] / mlmd:.1f}x" if mlmd else "")
        )
    if len(scales) >= 2:
        (s0, a), (s1, b) = list(scales.items())[0], list(scales.items())[-1]
        for side in ("provault", "mlmd"):
            if side in a and side in b:
                print(
                    f"  {side} growth s={s1}/s={s0}: trace p99 {b[side]['trace_p99_ms'] / a[side]['trace_p99_ms']:.2f}, "
                    f"impact p50 {b[side]['impact_p50_ms'] / a[side]['impact_p50_ms']:.2f}"
                )
