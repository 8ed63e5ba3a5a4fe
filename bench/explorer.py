"""``python -m bench.explorer``: how the lineage explorer holds up in a real browser on a 1,000-node graph.

A synthetic ledger from ``bench.query``'s generator (bulk-loaded, not ingested) is served by the explorer
(the real aiohttp app, the auditor read pool) and driven by Playwright in Debian's headless chromium.  From
the largest hub dataset, downstream, it opens the graph cut at ``--nodes`` (default 1,000) and at
``--baseline-nodes`` (default 50), alternately, ``--repeats`` times each, and reads what the page itself
measured (``performance.now()``, written on ``#graph`` as ``data-*-ms``):

* **open**: the API answer (``fetch``) plus ELK's layered layout and Cytoscape's first draw (``layout``);
* **details**: a click on a node until its attributes, signers and entries are on the page;
* **expand**: the same click's one-hop expansion (API, merge, layout again);
* **longest task**: the longest stretch the page's main thread was busy during a load (a click or a scroll
  waits at most that long: the layout itself runs in a Web Worker).

Each figure is reported next to the baseline graph's, measured in the same browser in the same run, as a
ratio: the cost of the size, with the machine's noise divided out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench import run_in_scratch
from bench.query.load import build
from bench.query.workload import Workload
from ledger.embedded import EmbeddedPostgres
from ledger.grpckit.server import ReadPool
from query.explorer import STATEMENT_TIMEOUT_S, ExplorerApp, ExplorerServer
from query.service import AUDITOR_ROLE

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run"]
FIGURES = ("fetchMs", "layoutMs", "openMs", "detailsMs", "expandMs", "longestTaskMs")
# Registered before the page's own scripts (through the driver, not the page, so the CSP does not apply):
# the longest main-thread task of each load, the time the page could not answer a click or a scroll.
LONG_TASKS = """
window.__provaultLongest = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__provaultLongest = Math.max(window.__provaultLongest, e.duration);
}).observe({ type: "longtask", buffered: true });
"""


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.explorer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000, help="nodes in the measured graph (explorer.max_nodes)")
    ap.add_argument("--baseline-nodes", type=int, default=50, help="nodes in the baseline graph")
    ap.add_argument("--repeats", type=int, default=7, help="opens of each graph, alternating")
    ap.add_argument("--edges", type=int, default=100_000, help="edges in the synthetic ledger")
    ap.add_argument("--predictions", type=int, default=20_000, help="prediction rows in the synthetic ledger")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--screenshot", type=Path, help="save the last large graph as drawn to this PNG")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not 1 <= args.baseline_nodes < args.nodes <= 10_000:
        ap.error("expected 1 <= --baseline-nodes < --nodes <= 10000")
    if not 1 <= args.repeats <= 100:
        ap.error("--repeats: expected 1..100")
    return args


def _figures(page) -> dict[str, float]:
    out = {k: float(page.get_attribute("#graph", f"data-{_kebab(k)}") or "nan") for k in FIGURES[:-1]}
    out["longestTaskMs"] = float(page.evaluate("() => window.__provaultLongest"))
    return out


def _kebab(name: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name)


def _open_and_click(page, base: str, start: str, nodes: int) -> dict[str, float]:
    """One open of ``start``'s downstream graph cut at ``nodes``, then a click on the node nearest the centre."""
    page.goto("about:blank")
    page.goto(
        f"{base}/#"
        + urllib.parse.urlencode({"id": start, "direction": "downstream", "depth": "50", "max_nodes": nodes})
    )
    page.wait_for_selector("body[data-ready='1'][data-busy='0'] #graph[data-open-ms]", timeout=120_000)
    drawn = int(page.get_attribute("#graph", "data-nodes") or "0")
    # the node nearest the middle of the view that has not been expanded: a click there shows and expands it
    x, y = page.evaluate(
        """() => {
          const cy = window.provaultExplorer.cy, w = cy.width() / 2, h = cy.height() / 2;
          let best = null, d = Infinity;
          cy.nodes().not(".expanded").forEach((n) => {
            const p = n.renderedPosition(), e = (p.x - w) ** 2 + (p.y - h) ** 2;
            if (e < d) { d = e; best = p; }
          });
          return [best.x, best.y];
        }"""
    )
    box = page.locator("#graph").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("body[data-busy='0'] #graph[data-expand-ms]", timeout=120_000)
    out = _figures(page)
    out["nodes"] = drawn
    return out


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a [dev] dependency, only this bench needs it

    result: dict[str, Any] = {
        "cores": os.cpu_count() or 1,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "command": f"python -m bench.explorer --nodes {args.nodes} --baseline-nodes {args.baseline_nodes} "
        f"--repeats {args.repeats} --edges {args.edges} --predictions {args.predictions} --seed {args.seed}",
    }
    with EmbeddedPostgres(root / "pg", database="postgres") as pg:
        w = Workload(edges=args.edges, predictions=args.predictions, batch_rows=100, seed=args.seed)
        print(f"building a ledger of {w.edges:,} edges ...", file=sys.stderr, flush=True)
        db = build(pg, "explorer", w, leaves=1, check_every=max(1, w.edges // 2000))
        reads = ReadPool(db.dsn, max_size=4, role=AUDITOR_ROLE, statement_timeout_s=STATEMENT_TIMEOUT_S)
        key = "bench-" + os.urandom(12).hex()
        app = ExplorerApp(reads, None, max_nodes=args.nodes, session_ttl_s=3600, https=False, dev_link_key=key)
        server = ExplorerServer(app, listen="127.0.0.1:0", tls=None)
        server.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1600, "height": 1000})
                    page.add_init_script(LONG_TASKS)
                    page.goto(server.url)
                    start = w.raw[0]  # the first hub: its downstream answer is far larger than --nodes
                    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "measured": []}
                    _open_and_click(page, server.base_url(), start, args.baseline_nodes)  # warm: scripts compiled
                    t0 = time.perf_counter()
                    for _ in range(args.repeats):
                        runs["baseline"].append(_open_and_click(page, server.base_url(), start, args.baseline_nodes))
                        runs["measured"].append(_open_and_click(page, server.base_url(), start, args.nodes))
                    result["seconds"] = time.perf_counter() - t0
                    if args.screenshot:
                        page.screenshot(path=str(args.screenshot), caret="initial")
                finally:
                    browser.close()
        finally:
            server.stop()
    result["start"] = start
    for name, rs in runs.items():
        result[name] = {"nodes": rs[0]["nodes"], **{k: statistics.median(r[k] for r in rs) for k in FIGURES}}
    # A long task is one over 50 ms: a baseline with none has no ratio.
    result["ratio"] = {
        k: result["measured"][k] / result["baseline"][k] if result["baseline"][k] > 0 else None for k in FIGURES
    }
    return result


def report(r: dict[str, Any]) -> None:
    print(f"# {r['command']}")
    print(f"# {r['cores']} cores, load {r['loadavg']}; medians of the page's own performance.now() timings\n")
    b, m = r["baseline"], r["measured"]
    print(f"| ms (median) | {b['nodes']}-node graph (baseline) | {m['nodes']}-node graph | ratio |")
    print("|---|---|---|---|")
    names = {
        "fetchMs": "API answer (fetch + JSON)",
        "layoutMs": "ELK layout + first draw",
        "openMs": "open: answer to drawn graph",
        "detailsMs": "click → node details shown",
        "expandMs": "click → one-hop expansion drawn",
        "longestTaskMs": "longest main-thread task (page unresponsive)",
    }
    for k, label in names.items():
        ratio = r["ratio"][k]
        print(f"| {label} | {b[k]:.1f} | {m[k]:.1f} | {'–' if ratio is None else f'{ratio:.1f}'} |")


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if not Path(CHROMIUM).exists():
        print(f"bench.explorer: no chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    return run_in_scratch(args, "provault-bench-explorer-", run, report)


if __name__ == "__main__":
    raise SystemExit(main())
