"""Serving-agent benchmark: the cost of logging a prediction, predictions/s into the ledger, spool drain rate.

    python -m bench.agent [--calls 200000] [--predictions 300000] [--batch-max 1000] [--spooled 20000] [--json]

In one run, on this machine, each figure next to a baseline measured in the same run:

a. **hot path** -- ``PredictionLogger.log`` timed with ``perf_counter_ns`` in
   groups of 100 calls (median and p99 per call) while the logger's real
   agent seals, signs and spools batches with the ledger unreachable; the
   buffer holds every call so back-pressure never applies.  Baseline: the
   same loop doing ``list.append`` of the same tuple.
b. **end to end** -- a fresh embedded PostgreSQL (fsync on) and NATS, the
   ledger (``provault ledger serve``, its own process), and this process
   logging predictions as fast as it can through a PredictionLogger; the
   clock stops when every batch is committed AND covered by a signed
   checkpoint.  Baselines: the list.append rate of (a), and the rate at which
   this process alone turns predictions into signed events (rows, signature,
   no ledger).
c. **spool drain** -- an agent emits small ``predictions.logged`` events while
   NATS is down; NATS starts (its stream already made); the clock runs until
   the spool is empty.
   Baseline: raw JetStream ``publish_async`` of the very same envelopes to a
   fresh server.

Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import nats

from agents.predictions import COLUMNS, PREDICTIONS_LOGGED, PredictionLogger, batch_prov, build_rows
from agents.runtime import Agent
from agents.transport import NatsTransport
from bench.ingest import DEADLINE_S, publish, start_ledger_process, wait_checkpointed
from ledger.bootstrap import initialise
from ledger.config import AgentSettings, IngestSettings, NatsSettings, PostgresSettings, Settings, SigningSettings
from ledger.core.envelope import parse_envelope
from ledger.core.events import parse_event
from ledger.core.ids import content_id, new_event_id
from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Ed25519Signer, load_private_key
from ledger.core.producing import ProducerChain
from ledger.core.vocab import deployment_id
from ledger.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from ledger.transport import ensure_stream, subject_for

PRODUCER = "bench-serving@host-1/serve"
DEPLOYMENT = deployment_id("bench", "0190c8a2-7b1e-7c3d-9a4f-1b2c3d4e5f60")
MODEL = content_id(b"bench model")
GROUP = 100
INPUTS = [f'{{"user": {i}, "plan": "basic", "tenure": {i % 48}}}'.encode() for i in range(1000)]


def make_agent(root: Path, url: str, nats_settings: NatsSettings, signer: Ed25519Signer, **settings) -> Agent:
    return Agent(
        producer_id=PRODUCER,
        signer=signer,
        spool_dir=root / "spool",
        state_dir=root / "state",
        transport=NatsTransport(url, nats_settings, PRODUCER, timeout_s=5.0),
        settings=AgentSettings(**settings),
    )


def make_logger(agent: Agent, **kw) -> PredictionLogger:
    return PredictionLogger(agent, deployment=DEPLOYMENT, model=MODEL, service="bench-serving", **kw)


def _pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(int(len(samples) * q), len(samples) - 1)]


# --- (a) the hot path -----------------------------------------------------------------------


def _timed_pairs(log, append, ids: list[str], inp: bytes) -> tuple[list[float], list[float]]:
    """Nanoseconds per call of ``log`` and of the baseline ``append``, one sample per group of GROUP
    calls, the two groups taken alternately so that both see the same machine (and batching thread)."""
    logged, base, clock, now = [], [], time.perf_counter_ns, time.time
    for g in range(0, len(ids), GROUP):
        chunk = ids[g : g + GROUP]
        t0 = clock()
        for pid in chunk:
            append((pid, now(), inp, 1, None))
        t1 = clock()
        for pid in chunk:
            log(pid, inp, 1)
        t2 = clock()
        base.append((t1 - t0) / len(chunk))
        logged.append((t2 - t1) / len(chunk))
    return logged, base


def hot_path(root: Path, calls: int) -> dict:
    ids = [f"pred-{i}" for i in range(calls)]
    sink: list[tuple] = []
    agent = make_agent(
        root, f"nats://127.0.0.1:{free_port()}", NatsSettings(), Ed25519Signer.generate(), publish_timeout_s=1.0
    )
    logger = make_logger(agent, queue_size=calls + 20_000, backpressure="drop")
    try:
        _timed_pairs(logger.log, sink.append, [f"warm-{i}" for i in range(10_000)], INPUTS[0])
        sink.clear()
        samples, base = _timed_pairs(logger.log, sink.append, ids, INPUTS[0])
        dropped = logger.stats.dropped
    finally:
        logger.close(timeout=0.5)
        agent.close(timeout=0.1)
    med, base_med = statistics.median(samples), statistics.median(base)
    return {
        "calls": calls,
        "log_median_ns": med,
        "log_p99_ns": _pct(samples, 0.99),
        "append_median_ns": base_med,
        "append_p99_ns": _pct(base, 0.99),
        "ratio_median": med / base_med,
        "dropped": dropped,
        "append_rate_per_s": 1e9 / base_med,
    }


# --- (b) end to end -----------------------------------------------------------------------------


def registration(admin: Ed25519Signer, key: Ed25519Signer):
    reg = KeyRegistration(
        keyid=key.keyid,
        public_key=key.public_key,
        role="producer",
        identity={"type": "service", "name": "bench-serving"},
        kinds=(PREDICTIONS_LOGGED,),
        producers=("bench-serving@*",),
    )
    return ProducerChain("bench-admin", admin).emit(
        KEY_REGISTERED, {"agent": {"provault:bench-serving": {}}}, data=reg.to_data()
    )


def seal_only(n: int, batch_max: int) -> dict:
    """Predictions/s this process turns into signed events alone (rows, encoding, signature, no I/O),
    and the microseconds per prediction spent making rows and making the signed event from them."""
    chain = ProducerChain(PRODUCER, Ed25519Signer.generate())
    now = time.time()
    items = [(f"pred-{i}", now, INPUTS[i % len(INPUTS)], i % 2, None) for i in range(n)]
    service = "provault:service/bench-serving"
    in_rows = in_events = 0.0
    for a in range(0, n, batch_max):
        t0 = time.perf_counter()
        rows = build_rows(items[a : a + batch_max], lambda counter, why: None)[0]
        prov = batch_prov(
            new_event_id(),
            start="2026-01-01T00:00:00Z",
            end="2026-01-01T00:00:01Z",
            count=len(rows),
            deployment=DEPLOYMENT,
            model=MODEL,
            service=service,
        )
        t1 = time.perf_counter()
        data = {"deployment": DEPLOYMENT, "model": MODEL, "columns": list(COLUMNS), "rows": rows}
        chain.emit(PREDICTIONS_LOGGED, prov, data=data)
        t2 = time.perf_counter()
        in_rows, in_events = in_rows + t1 - t0, in_events + t2 - t1
    return {"rate": n / (in_rows + in_events), "rows_us": in_rows / n * 1e6, "event_us": in_events / n * 1e6}


def count_rows(dsn: str) -> tuple[int, int, int]:
    """(rows, distinct ids, rejections) of the predictions in the ledger."""
    from ledger.db import connect  # noqa: PLC0415
    from ledger.store import entries  # noqa: PLC0415

    ids: Counter[str] = Counter()
    with connect(dsn, autocommit=True) as conn:
        for entry in entries.iter_entries(conn, chunk=50):
            if entry.kind == PREDICTIONS_LOGGED:
                ids.update(r[0] for r in parse_event(parse_envelope(entry.envelope).payload).data["rows"])
        rejected = conn.execute("SELECT count(*) FROM ledger.rejections").fetchone()[0]
    return sum(ids.values()), len(ids), rejected


def _tree_cpu_seconds(root_pid: int | None) -> float:
    """User + system CPU seconds of a live process and its live descendants (Linux /proc)."""
    if root_pid is None:
        return 0.0
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, grew = {root_pid}, True
    while grew:
        more = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(stats[p][1] for p in tree if p in stats)


def end_to_end(root: Path, n: int, batch_max: int) -> dict:
    with EmbeddedPostgres(root / "pg") as pg, EmbeddedNats(root / "nats") as nt:
        settings = Settings(
            data_dir=root / "data",
            postgres=PostgresSettings(dsn=pg.dsn()),
            nats=NatsSettings(url=nt.url),
            ingest=IngestSettings(batch_size=50, workers=0),
            signing=SigningSettings(checkpoint_every=100_000, checkpoint_interval_s=1.0),
        )
        initialise(settings, pg.dsn(), [])
        admin = load_private_key(settings.data_dir / "keys" / "admin.key")
        ledger = start_ledger_process(settings, pg.dsn(), nt.url, root / "ledger.log")
        try:
            key = Ed25519Signer.generate()
            asyncio.run(publish(nt.url, settings.nats, [registration(admin, key)]))
            wait_checkpointed(pg.dsn(), 1)
            agent = make_agent(root / "agent", nt.url, settings.nats, key, publish_timeout_s=60.0)
            logger = make_logger(
                agent, batch_max=batch_max, batch_interval_s=1.0, queue_size=100_000, backpressure="block"
            )
            ids = [f"pred-{i}" for i in range(n)]
            log, inputs, k = logger.log, INPUTS, len(INPUTS)
            cpu0 = (
                time.process_time(),
                _tree_cpu_seconds(ledger.pid),
                _tree_cpu_seconds(pg.pid),
                _tree_cpu_seconds(nt.pid),
            )
            t0 = time.perf_counter()
            for i, pid in enumerate(ids):
                log(pid, inputs[i % k], i & 1)
            t_logged = time.perf_counter()
            if not logger.flush(timeout=DEADLINE_S):
                raise RuntimeError(
                    f"the agent did not deliver every batch: {agent.pending()} event(s) still spooled, "
                    f"its sender thread {'runs' if agent._thread.is_alive() else 'died (see above)'}, "
                    f"last error: {agent.stats.last_error}"
                )
            t_sent = time.perf_counter()
            t1 = wait_checkpointed(pg.dsn(), 1 + logger.stats.batches)
            cpu1 = (
                time.process_time(),
                _tree_cpu_seconds(ledger.pid),
                _tree_cpu_seconds(pg.pid),
                _tree_cpu_seconds(nt.pid),
            )
            batches = logger.stats.batches
            logger.close(timeout=5)
            agent.close(timeout=5)
            rows, distinct, rejected = count_rows(pg.dsn())
        finally:
            ledger.send_signal(signal.SIGTERM)
            ledger.wait(timeout=60)
    return {
        "predictions": n,
        "batches": batches,
        "seconds": t1 - t0,
        "log_seconds": t_logged - t0,
        "delivered_seconds": t_sent - t0,
        "rate": n / (t1 - t0),
        "rows_in_ledger": rows,
        "distinct_ids": distinct,
        "rejected": rejected,
        "cpu_seconds": dict(
            zip(
                ("serving", "ledger", "postgres", "nats"), (b - a for a, b in zip(cpu0, cpu1, strict=True)), strict=True
            )
        ),
    }


# --- (c) spool drain ----------------------------------------------------------------------------------


def _small_event(i: int) -> tuple[dict, dict]:
    rows = [[f"drain-{i}-{j}", "2026-01-01T00:00:00.000000Z", content_id(INPUTS[j]), j & 1] for j in range(10)]
    prov = batch_prov(
        new_event_id(),
        start=rows[0][1],
        end=rows[-1][1],
        count=10,
        deployment=DEPLOYMENT,
        model=MODEL,
        service="provault:service/bench-serving",
    )
    return prov, {"deployment": DEPLOYMENT, "model": MODEL, "columns": list(COLUMNS), "rows": rows}


async def raw_publish(url: str, settings: NatsSettings, records: list[tuple[str, bytes]]) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=4000)
        await ensure_stream(js, settings)
        subject = subject_for(settings, PRODUCER)
        t0 = time.perf_counter()
        for event_id, envelope in records:
            await js.publish_async(subject, envelope, headers={"Nats-Msg-Id": event_id})
        await js.publish_async_completed()
        return len(records) / (time.perf_counter() - t0)
    finally:
        await nc.close()


async def _make_stream(url: str, settings: NatsSettings) -> None:
    nc = await nats.connect(url)
    try:
        await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()


def spool_drain(root: Path, m: int) -> dict:
    settings = NatsSettings()
    port = free_port()
    agent = make_agent(
        root / "agent", f"nats://127.0.0.1:{port}", settings, Ed25519Signer.generate(), publish_timeout_s=5.0
    )
    captured: list[tuple[str, bytes]] = []  # the exact envelopes, for the baseline
    spool_append = agent.spool.append

    def keep(event_id: str, envelope: bytes) -> int:
        captured.append((event_id, envelope))
        return spool_append(event_id, envelope)

    agent.spool.append = keep  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        for i in range(m):
            prov, data = _small_event(i)
            agent.emit(PREDICTIONS_LOGGED, prov, data=data)
        fill_rate = m / (time.perf_counter() - t0)
        with EmbeddedNats(root / "nats-baseline") as base:
            baseline = asyncio.run(raw_publish(base.url, settings, captured))
        with EmbeddedNats(root / "nats") as early:  # the stream exists before the agent can reach the server
            asyncio.run(_make_stream(early.url, settings))
        with EmbeddedNats(root / "nats", port=port):
            t0 = time.perf_counter()
            first = None
            deadline = time.monotonic() + DEADLINE_S
            while agent.pending():
                if first is None and agent.stats.sent:
                    first = time.perf_counter()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the spool did not drain within {DEADLINE_S} s")
                time.sleep(0.005)
            t1 = time.perf_counter()
            first = first or t1
    finally:
        agent.close(timeout=1)
    return {
        "events": m,
        "envelope_bytes": sum(len(e) for _, e in captured) // max(m, 1),
        "fill_rate": fill_rate,
        "until_first_ack_s": first - t0,
        "drain_seconds": t1 - t0,
        "drain_rate": m / (t1 - t0),
        "drain_rate_after_first_ack": m / max(t1 - first, 1e-9),
        "baseline_publish_rate": baseline,
    }


# --- report -----------------------------------------------------------------------------------------


def report(r: dict) -> None:
    a, b, c = r["hot_path"], r["end_to_end"], r["spool_drain"]
    print(f"provault agent benchmark: {r['cores']} cores, Python {sys.version.split()[0]}")
    print(f"(a) PredictionLogger.log, {a['calls']:,} calls in groups of {GROUP}, agent spooling, NATS down:")
    print(
        f"    log()        median {a['log_median_ns'] / 1000:.2f} µs  p99 {a['log_p99_ns'] / 1000:.2f} µs per call "
        f"(target: median <= 5 µs; dropped {a['dropped']})"
    )
    print(
        f"    list.append  median {a['append_median_ns'] / 1000:.2f} µs  p99 {a['append_p99_ns'] / 1000:.2f} µs per call (baseline)"
    )
    print(f"    ratio log/append (median): {a['ratio_median']:.1f}")
    print(
        f"(b) end to end, batches of {r['batch_max']}: {b['predictions']:,} predictions committed and checkpointed "
        f"in {b['seconds']:.2f} s = {b['rate']:,.0f}/s (target 100,000/s)"
    )
    print(
        f"    logging loop {b['log_seconds']:.2f} s, all batches in JetStream at {b['delivered_seconds']:.2f} s; "
        f"{b['batches']} events; ledger holds {b['rows_in_ledger']:,} rows, {b['distinct_ids']:,} distinct ids; "
        f"rejected {b['rejected']}"
    )
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in b["cpu_seconds"].items())
    print(
        f"    CPU seconds meanwhile: {cpu} (wall {b['seconds']:.1f} s x {r['cores']} cores; load average "
        f"before the run {r['loadavg']})"
    )
    s = r["seal_only"]
    print(
        f"    baselines: sealing alone, no I/O, {s['rate']:,.0f}/s -> ratio {b['rate'] / s['rate']:.2f} (per prediction: "
        f"rows {s['rows_us']:.1f} µs, signed event from them {s['event_us']:.1f} µs); "
        f"list.append {a['append_rate_per_s']:,.0f}/s -> ratio {b['rate'] / a['append_rate_per_s']:.3f}"
    )
    print(
        f"(c) spool drain: {c['events']:,} events of {c['envelope_bytes']:,} B spooled at {c['fill_rate']:,.0f}/s while NATS was down;"
    )
    print(
        f"    empty {c['drain_seconds']:.2f} s after NATS started = {c['drain_rate']:,.0f} events/s "
        f"(first ack after {c['until_first_ack_s']:.2f} s of retry backoff; {c['drain_rate_after_first_ack']:,.0f}/s from then)"
    )
    print(
        f"    baseline raw publish_async of the same envelopes: {c['baseline_publish_rate']:,.0f}/s -> ratio "
        f"{c['drain_rate_after_first_ack'] / c['baseline_publish_rate']:.2f} (from first ack)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.agent", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200_000, help="hot-path calls timed")
    ap.add_argument("--predictions", type=int, default=300_000, help="predictions carried into the ledger")
    ap.add_argument("--batch-max", type=int, default=1000, help="predictions per event in (b)")
    ap.add_argument("--spooled", type=int, default=20_000, help="events spooled for the drain")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="provault-bench-agent-"))
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        result = {"cores": os.cpu_count() or 1, "batch_max": args.batch_max, "loadavg": load}
        print("(a) hot path ...", file=sys.stderr, flush=True)
        result["hot_path"] = hot_path(root / "hot", args.calls)
        result["seal_only"] = seal_only(min(args.predictions, 50_000), args.batch_max)
        print("(b) end to end ...", file=sys.stderr, flush=True)
        result["end_to_end"] = end_to_end(root / "e2e", args.predictions, args.batch_max)
        print("(c) spool drain ...", file=sys.stderr, flush=True)
        result["spool_drain"] = spool_drain(root / "drain", args.spooled)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
