"""Ingest benchmark: verified events per second, end to end, against raw Ed25519 verification.

    python -m bench.ingest [--events 20000] [--producers 4] [--workers 0] [--batch 1000]

In one run, on this machine:

1. **baseline** -- raw Ed25519 verification of the same pre-signed envelopes'
   PAE bytes on all cores (a process per core, libsodium through PyNaCl: the
   verifier the ledger uses);
2. **end to end** -- a fresh embedded PostgreSQL (fsync on) and NATS
   JetStream, the ledger service (ingest + checkpointer) running, and the
   pre-signed events from several producers published to JetStream by this
   process at the same time; the clock stops when every event is committed
   AND covered by a signed checkpoint.

It prints both rates and their ratio.  Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nats

from ledger.bootstrap import initialise
from ledger.config import IngestSettings, NatsSettings, PostgresSettings, Settings, SigningSettings
from ledger.core.envelope import pae, parse_envelope
from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Ed25519Signer, Ed25519Verifier, load_private_key
from ledger.core.producing import ProducerChain, Sealed
from ledger.db import connect
from ledger.embedded import EmbeddedNats, EmbeddedPostgres
from ledger.store import checkpoints, log
from ledger.transport import ensure_stream, subject_for

DEADLINE_S = 600


def make_events(n: int, producers: int) -> tuple[list[Ed25519Signer], list[Sealed]]:
    keys = [Ed25519Signer.generate() for _ in range(producers)]
    chains = [ProducerChain(f"bench-producer-{i}@host-{i}", k) for i, k in enumerate(keys)]
    events = []
    for i in range(n):
        ch = chains[i % producers]
        prov = {
            "entity": {f"sha256:{i:064x}": {"prov:type": "provault:Dataset", "prov:label": f"shard-{i}"}},
            "activity": {f"provault:run-{i}": {"prov:type": "provault:TrainingRun"}},
            "used": {f"_:u{i}": {"prov:activity": f"provault:run-{i}", "prov:entity": f"sha256:{i:064x}"}},
        }
        events.append(ch.emit("run.started", prov))
    return keys, events


def registrations(admin: Ed25519Signer, keys: list[Ed25519Signer]) -> list[Sealed]:
    chain = ProducerChain("bench-admin", admin)
    out = []
    for i, k in enumerate(keys):
        reg = KeyRegistration(
            keyid=k.keyid,
            public_key=k.public_key,
            role="producer",
            identity={"type": "service", "name": f"bench-{i}"},
            kinds=("run.*",),
            producers=(f"bench-producer-{i}@*",),
        )
        out.append(chain.emit(KEY_REGISTERED, {"agent": {f"provault:bench-{i}": {}}}, data=reg.to_data()))
    return out


# --- baseline ---------------------------------------------------------------------------


def _verify_many(items: list[tuple[bytes, bytes, bytes]]) -> int:
    for public_key, sig, message in items:
        Ed25519Verifier(public_key).verify(sig, message)
    return len(items)


def baseline_verify_rate(events: list[Sealed], public_keys: dict[str, bytes], workers: int) -> float:
    items = []
    for e in events:
        env = parse_envelope(e.envelope)
        s = env.signatures[0]
        items.append((public_keys[s.keyid], s.sig, pae(env.payload_type, env.payload)))
    chunk = -(-len(items) // workers)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_verify_many, [items[:workers]] * workers))  # warm up the workers
        t0 = time.perf_counter()
        done = sum(pool.map(_verify_many, [items[i : i + chunk] for i in range(0, len(items), chunk)]))
        return done / (time.perf_counter() - t0)


# --- end to end --------------------------------------------------------------------------


async def publish(url: str, settings: NatsSettings, events: list[Sealed]) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=4000)
        await ensure_stream(js, settings)
        t0 = time.perf_counter()
        for e in events:
            await js.publish_async(
                subject_for(settings, e.event.producer.id), e.envelope, headers={"Nats-Msg-Id": e.event_id}
            )
        await js.publish_async_completed()
        return time.perf_counter() - t0
    finally:
        await nc.close()


def wait_checkpointed(dsn: str, size: int) -> float:
    deadline = time.monotonic() + DEADLINE_S
    with connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cp = checkpoints.latest(conn)
            if cp and cp.tree_size >= size:
                return time.perf_counter()
            time.sleep(0.02)
    raise TimeoutError(f"not all {size} entries were checkpointed within {DEADLINE_S} s")


def end_to_end(root: Path, keys: list[Ed25519Signer], events: list[Sealed], args: argparse.Namespace) -> dict:
    with EmbeddedPostgres(root / "pg") as pg, EmbeddedNats(root / "nats") as nt:
        settings = Settings(
            data_dir=root / "data",
            postgres=PostgresSettings(dsn=pg.dsn()),
            nats=NatsSettings(url=nt.url),
            ingest=IngestSettings(batch_size=args.batch, workers=args.workers),
            signing=SigningSettings(checkpoint_every=100_000, checkpoint_interval_s=1.0),
        )
        initialise(settings, pg.dsn(), [])
        admin = load_private_key(settings.data_dir / "keys" / "admin.key")
        ledger = start_ledger_process(settings, pg.dsn(), nt.url, root / "ledger.log")
        try:
            regs = registrations(admin, keys)
            asyncio.run(publish(nt.url, settings.nats, regs))
            wait_checkpointed(pg.dsn(), len(regs))
            t0 = time.perf_counter()
            publish_s = asyncio.run(publish(nt.url, settings.nats, events))
            t1 = wait_checkpointed(pg.dsn(), len(regs) + len(events))
            with connect(pg.dsn(), autocommit=True) as conn:
                size = log.log_size(conn)
                rejected = conn.execute("SELECT count(*) FROM ledger.rejections").fetchone()[0]
        finally:
            ledger.send_signal(signal.SIGTERM)
            ledger.wait(timeout=60)
    return {
        "events": len(events),
        "log_size": size,
        "seconds": t1 - t0,
        "publish_seconds": publish_s,
        "rate": len(events) / (t1 - t0),
        "rejected": rejected,
    }


def start_ledger_process(settings: Settings, dsn: str, url: str, log_path: Path) -> subprocess.Popen[bytes]:
    """`provault ledger serve` in its own process, as it runs in production."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
    env.update(
        {
            "PROVAULT_POSTGRES_DSN": dsn,
            "PROVAULT_NATS_URL": url,
            "PROVAULT_DATA_DIR": str(settings.data_dir),
            "PROVAULT_GRPC_LEDGER_LISTEN": "127.0.0.1:0",
            "PROVAULT_INGEST_BATCH_SIZE": str(settings.ingest.batch_size),
            "PROVAULT_INGEST_WORKERS": str(settings.ingest.workers),
            "PROVAULT_SIGNING_CHECKPOINT_EVERY": str(settings.signing.checkpoint_every),
            "PROVAULT_DEV_MODE": "true",  # loopback benchmark: no gRPC authentication
        }
    )
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "ledger", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while b"provault ledger serving" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("ledger did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.1)
    return proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0, help="ingest verification workers (0 = one per CPU)")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"signing {args.events} events from {args.producers} producers ...", flush=True)
    keys, events = make_events(args.events, args.producers)
    base = baseline_verify_rate(events, {k.keyid: k.public_key for k in keys}, cores)
    print(f"baseline: raw Ed25519 verify on {cores} cores: {base:,.0f}/s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="provault-bench-"))
    try:
        e2e = end_to_end(root, keys, events, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"cores": cores, "baseline_verify_per_s": base, **e2e, "ratio_to_baseline": e2e["rate"] / base}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"end to end: {e2e['events']:,} events committed and checkpointed in {e2e['seconds']:.2f} s "
            f"= {e2e['rate']:,.0f} events/s (publishing took {e2e['publish_seconds']:.2f} s; "
            f"rejected {e2e['rejected']})"
        )
        print(f"ratio end-to-end / raw verify: {result['ratio_to_baseline']:.2f}")
    return 0 if e2e["log_size"] == args.events + args.producers else 1


if __name__ == "__main__":
    raise SystemExit(main())
