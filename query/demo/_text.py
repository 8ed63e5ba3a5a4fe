"""Small pure helpers of the demo: text shaping for what it prints, one-line git and SQL calls."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


def run_git(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True, timeout=30, env=env).stdout


def scalar(conn: psycopg.Connection, query: str) -> int:
    return int(conn.execute(query).fetchone()[0])  # type: ignore[arg-type] - constant queries


def short_label(text: str) -> str:
    from query.render import short  # noqa: PLC0415

    if text.startswith("provault:run/"):
        return "run/" + text.rsplit("/", 1)[1][:13] + "…"
    return short(text)


def impact_lines(summary: dict[str, Any]) -> str:
    """The `provault impact` answer, in short: a count and names per group."""
    out = [
        f"impact of {short_label(summary['start'])} as of seq {summary['as_of_seq']}"
        + (" (TRUNCATED: a depth or node limit cut the walk)" if summary["truncated"] else "")
    ]
    for group in ("models", "deployments", "datasets", "runs"):
        items = summary[group]
        names = sorted({it["label"] or short_label(it["id"]) for it in items}) if group != "runs" else []
        out.append(f"  {group + ' affected:':<22}{len(items):>4}  {', '.join(names)}".rstrip())
    preds = summary["predictions"]
    listed = f"  (the first: {', '.join(p.rsplit('/', 1)[1] for p in preds['ids'])})" if preds["ids"] else ""
    out.append(f"  {'predictions affected:':<22}{preds['total']:>4}{listed}")
    return "\n".join(out)


def text_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def without_edges(table: str) -> str:
    """The trace table without its EDGES section (`provault trace` shows it)."""
    out, skipping = [], False
    for line in table.splitlines():
        if line.startswith("EDGES ("):
            skipping = True
            out.append(line + " -- not shown here; `provault trace` lists them")
            continue
        if skipping and not line.strip():
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)
