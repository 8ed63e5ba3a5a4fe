"""Fuzzing campaigns on demand: the default suite's fuzz targets, for longer.

    python -m bench.fuzz.harness envelope --runs 200000
    python -m bench.fuzz.harness bundle --seconds 600
    python -m bench.fuzz.harness all --seconds 60          # each target in turn
    python -m bench.fuzz.harness payload --replay crash-1a2b...   # re-run one input

Targets (``tests/security/fuzz_targets.py``): ``envelope`` (check_submission on
any bytes), ``payload`` (validly signed payloads through both admission stages
and the projection's mapping), ``proof`` (Merkle verifiers), ``note``
(checkpoint notes), ``bundle`` (the offline bundle decoder and verifier),
``token`` (QueryService page tokens).

Engines: ``atheris`` (coverage-guided libFuzzer, instrumenting ``ledger`` and
``query``; install it with ``pip install -e '.[fuzz]'``) when it is importable,
else ``random``: seeded random mutations of the seed corpus (bit flips, cuts,
insertions, deletions, splices, JSON-significant tokens), bounded by
``--runs`` / ``--seconds``.  Either way an input that breaks a property is
written to ``--out`` (default ``$TMPDIR/provault-fuzz/``) and the exit code is 1.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(tempfile.gettempdir()) / "provault-fuzz"
TARGET_NAMES = ("envelope", "payload", "proof", "note", "bundle", "token")
TOKENS = (
    b'"',
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"NaN",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"==",
    b"=",
    b"-",
    b"_",
    b"+",
    b"/",
    b"\n",
    b" ",
    b"9" * 30,
    b"\xe2\x80\x94 ",
)


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


# --- the random engine ---------------------------------------------------------------------


def mutate(rng: random.Random, seed: bytes, pool: list[bytes]) -> bytes:
    """1..4 mutations of ``seed``; splices may borrow from another input of ``pool``."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(("flip", "flip", "truncate", "insert", "delete", "splice", "token", "cross"))
        at = rng.randrange(len(data)) if data else 0
        if op == "flip" and data:
            data[at] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randint(1, 255)
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == "delete":
            del data[at : at + rng.randint(1, 16)]
        elif op == "splice" and data:
            end = min(len(data), at + rng.randint(1, 64))
            data[rng.randint(0, len(data)) : 0] = data[at:end]
        elif op == "token":
            data[at : at + rng.randint(0, 2)] = rng.choice(TOKENS)
        elif op == "cross":
            other = rng.choice(pool)
            if other:
                start = rng.randrange(len(other))
                data[at : at + rng.randint(0, 32)] = other[start : start + rng.randint(1, 64)]
    return bytes(data)


def save(out: Path, target: str, data: bytes) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{target}-crash-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


def run_random(target: str, *, runs: int | None, seconds: float | None, seed: int, out: Path) -> int:
    from tests.security.fuzz_targets import corpus, run_target  # noqa: PLC0415

    seeds = corpus().seeds(target)
    pool = list(seeds)
    rng = random.Random(seed)
    labels: Counter[str] = Counter()
    started = time.monotonic()
    deadline = started + seconds if seconds else None
    n, crashes = 0, 0
    while (runs is None or n < runs) and (deadline is None or time.monotonic() < deadline):
        data = mutate(rng, rng.choice(seeds), pool)
        n += 1
        try:
            labels[run_target(target, data)] += 1
        except AssertionError as e:
            crashes += 1
            print(f"CRASH in {target}: {e}\n  input saved as {save(out, target, data)}", file=sys.stderr)
            break
        if len(pool) < 256 and rng.random() < 0.01:
            pool.append(data)  # a little diversity for splices
    _report(target, "random", n, time.monotonic() - started, labels, crashes, seed=seed)
    return 1 if crashes else 0


def _report(
    target: str, engine: str, n: int, elapsed: float, labels: Counter[str], crashes: int, *, seed: int | None = None
) -> None:
    rate = n / elapsed if elapsed > 0 else 0.0
    extra = f", seed {seed}" if seed is not None else ""
    print(f"{target} [{engine}{extra}]: {n} runs in {elapsed:.1f} s ({rate:,.0f}/s), {crashes} crash(es)")
    for label, count in labels.most_common(12):
        print(f"  {count:>9}  {label}")


# --- the atheris engine ------------------------------------------------------------------------


def run_atheris(target: str, *, runs: int | None, seconds: float | None, out: Path) -> int:
    """Coverage-guided fuzzing of one target; never returns (libFuzzer exits the process)."""
    import atheris  # noqa: PLC0415

    with atheris.instrument_imports(include=["ledger", "query", "tests.security.fuzz_targets"]):
        import query._mapping  # noqa: PLC0415 - imported lazily by the targets: instrument it now
        import query.bundle_verify  # noqa: PLC0415
        import query.service  # noqa: F401, PLC0415
        from tests.security.fuzz_targets import corpus, run_target  # noqa: PLC0415

    seeds_dir = Path(tempfile.mkdtemp(prefix=f"provault-fuzz-{target}-"))
    for i, s in enumerate(corpus().seeds(target)):
        (seeds_dir / f"seed-{i}").write_bytes(s)

    def one_input(data: bytes) -> None:
        run_target(target, data)  # a broken property raises AssertionError: libFuzzer saves the input and stops

    out.mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], f"-artifact_prefix={out}/{target}-", "-print_final_stats=1"]
    args += [f"-runs={runs}"] if runs else []
    args += [f"-max_total_time={int(seconds)}"] if seconds else []
    atheris.Setup([*args, str(seeds_dir)], one_input)
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz exits


def replay(target: str, path: Path) -> int:
    from tests.security.fuzz_targets import run_target  # noqa: PLC0415

    data = path.read_bytes()
    try:
        label = run_target(target, data)
    except AssertionError as e:
        print(f"{path}: {type(e).__name__}: {e}")
        return 1
    print(f"{path}: ok ({label})")
    return 0


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz.harness", description=__doc__.split("\n\n")[0])
    p.add_argument("target", choices=(*TARGET_NAMES, "all"))
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--runs", type=int, help="inputs to try (per target with 'all')")
    bound.add_argument("--seconds", type=float, help="time to spend (per target with 'all')")
    p.add_argument(
        "--engine",
        choices=("auto", "atheris", "random"),
        default="auto",
        help="auto: atheris when installed, else random",
    )
    p.add_argument("--seed", type=int, default=0, help="random engine: the RNG seed (a run reproduces exactly)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where inputs that break a property are saved")
    p.add_argument("--replay", type=Path, metavar="FILE", help="run the target once on FILE and report")
    args = p.parse_args(argv)
    if args.runs is None and args.seconds is None and args.replay is None:
        args.runs = 10_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay:
        if args.target == "all":
            raise SystemExit("--replay needs one target")
        return replay(args.target, args.replay)
    engine = args.engine if args.engine != "auto" else ("atheris" if have_atheris() else "random")
    if engine == "atheris" and not have_atheris():
        raise SystemExit("atheris is not installed: pip install -e '.[fuzz]' (or use --engine random)")
    if args.target == "all":
        return _each_target(args, engine)
    if engine == "atheris":
        return run_atheris(args.target, runs=args.runs, seconds=args.seconds, out=args.out)
    return run_random(args.target, runs=args.runs, seconds=args.seconds, seed=args.seed, out=args.out)


def _each_target(args: argparse.Namespace, engine: str) -> int:
    """One process per target (libFuzzer owns its process)."""
    worst = 0
    for name in TARGET_NAMES:
        cmd = [
            sys.executable,
            "-m",
            "bench.fuzz.harness",
            name,
            "--engine",
            engine,
            "--seed",
            str(args.seed),
            "--out",
            str(args.out),
        ]
        cmd += ["--runs", str(args.runs)] if args.runs else ["--seconds", str(args.seconds)]
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        worst = max(
            worst, subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False).returncode
        )
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
