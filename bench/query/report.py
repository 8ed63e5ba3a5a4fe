"""The query benchmark's text report."""

from __future__ import annotations

import sys


def _db_line(d: dict) -> str:
    s = d["seconds"]
    return (
        f"    {d['name']}: {d['entries']:,} entries, {d['nodes']:,} nodes, {d['versions']:,} node versions, "
        f"{d['edges']:,} edges, {d['predictions']:,} predictions, {d['leaves']:,} Merkle leaves; "
        f"generated+COPY {s['graph']:.0f} s, Merkle {s['merkle']:.0f} s, indexes+VACUUM {s['indexes_vacuum']:.0f} s; "
        f"generator checked against map_event on {d['checked']:,} entries"
    )


def report(r: dict) -> None:
    small, large = r["dbs"]
    print(
        f"provault query benchmark: {r['cores']} cores, Python {sys.version.split()[0]}, load average before {r['loadavg']}"
    )
    print(f"  {r['command']}")
    print("  data GENERATED DIRECTLY (bulk COPY into prov.* and ledger.merkle_nodes/log_state), not through ingest:")
    print(_db_line(small))
    print(_db_line(large))
    a = r["traceback"]
    h = a["health"]
    print(f"(a) Trace upstream from a random prediction over gRPC, {a['requests']} requests per database, interleaved:")
    for d in (small, large):
        x = a[d["name"]]
        print(
            f"    {d['name']} ({d['edges']:,} edges): p50 {x['p50_ms']:.2f} ms  p99 {x['p99_ms']:.2f} ms  max {x['max_ms']:.1f} ms "
            f"({x['nodes_mean']:.0f} nodes per answer, max {x['nodes_max']})"
        )
    print(f"    baseline gRPC health check: p50 {h['p50_ms']:.2f} ms  p99 {h['p99_ms']:.2f} ms")
    big, sm = a[large["name"]], a[small["name"]]
    print(
        f"    p99 large/small {big['p99_ms'] / sm['p99_ms']:.2f}; p50 / health p50 {big['p50_ms'] / h['p50_ms']:.1f} "
        f"(target p99 <= 10 ms, flat with size)"
    )
    for d in (small, large):
        x = r["breakdown"][d["name"]]
        print(
            f"    where the time goes on {d['name']} (the same traces in process, p50 {x['wall_p50_ms']:.1f} ms), per trace:"
        )
        for st in x["statements"]:
            print(f"      {st['ms_per_trace']:8.2f} ms  {st['calls'] / x['traces']:.0f}x  {st['sql'][:90]}")
        print("      EXPLAIN (ANALYZE, BUFFERS) of the first statement's slowest call:")
        print("\n".join(f"        {line}" for line in x["plan"]))
    print("(b) impact: traverse.trace downstream from datasets, in process (default max_nodes 10,000):")
    for d in (small, large):
        for group, x in r["impact"][d["name"]].items():
            print(
                f"    {d['name']} {group:7s}: {x['starts']} starts, {x['nodes_total']:,} nodes (max {x['nodes_max']:,}, "
                f"{x['truncated']} truncated), {x['predictions_total']:,} predictions reached; "
                f"{x['us_per_node_median']:.0f} µs/node median, {x['us_per_node_overall']:.0f} µs/node overall, "
                f"slowest {x['seconds_max'] * 1e3:.0f} ms"
            )
    p = r["impact_pages"]
    print(
        f"    gRPC, every page (5,000 items) of {p['start'][:20]}… on {large['name']}: {p['pages']} pages, {p['items']:,} items "
        f"in {p['seconds']:.2f} s = {p['us_per_item']:.0f} µs/item (page p50 {p['page_p50_ms']:.0f} ms, "
        f"first page {p['first_page_ms']:.0f} ms, a first page of 100 nodes {p['first_small_page_ms']:.0f} ms; "
        f"{'complete' if p['complete'] else 'stopped at the page cap'})"
    )
    print("(c) inclusion_proof of a random leaf (2 round trips: log size, nodes):")
    for d in (small, large):
        x = r["proofs"][d["name"]]
        print(
            f"    {x['leaves']:,} leaves: p50 {x['proof']['p50_ms']:.3f} ms  p99 {x['proof']['p99_ms']:.3f} ms "
            f"({x['hashes_mean']:.1f} hashes); baseline PK SELECT p50 {x['pk_select']['p50_ms']:.3f} ms "
            f"p99 {x['pk_select']['p99_ms']:.3f} ms; ratio p50 {x['proof']['p50_ms'] / x['pk_select']['p50_ms']:.1f}"
        )
    e = r["export"]
    print(
        f"(d) N-Triples export of the whole {e['db']} graph: {e['triples']:,} triples ({e['bytes'] / 1e6:.0f} MB) in "
        f"{e['seconds']:.1f} s = {e['triples_per_s']:,.0f} triples/s, {e['rows_per_s']:,.0f} graph rows/s"
    )
    print(
        f"    baseline COPY prov.edges TO STDOUT: {e['copy_rows']:,} rows in {e['copy_seconds']:.2f} s = "
        f"{e['copy_rows_per_s']:,.0f} rows/s; ratio rows/s {e['rows_per_s'] / e['copy_rows_per_s']:.3f}"
    )
    b = r["rebuild"]
    print(
        f"(e) rebuild of {b['events']:,} real signed events (provstory shapes, {b['rows_per_batch']} predictions per batch, "
        f"{b['envelope_bytes_mean']:,} B envelopes on average), median of {b['repeats']}: {b['rebuild_seconds']:.2f} s = "
        f"{b['rebuild_per_s']:,.0f} events/s"
    )
    print(
        f"    baseline iter_entries over the same entries: {b['scan_per_s']:,.0f} entries/s; ratio {b['rebuild_per_s'] / b['scan_per_s']:.2f}"
    )
