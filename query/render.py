"""A :class:`~query.traverse.Trace` as text, JSON, Graphviz DOT or SVG.

Pure: no database, no external binary.  The SVG is laid out here: one column
per depth (the start on the left), nodes in each column in the trace's order,
drawn in PROV's usual shapes -- entities as ellipses, activities as boxes,
agents as houses -- and edges as arrows in PROV's direction (from the
dependent to what it depends on) labelled with their relation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .traverse import Trace, TraceEdge, TraceNode

_LONG_HEX = re.compile(r"([0-9a-f]{12})[0-9a-f]{28,}")
TYPE_ORDER = ("entity", "activity", "agent", None)
_TYPE_TITLES = {"entity": "ENTITIES", "activity": "ACTIVITIES", "agent": "AGENTS", None: "UNTYPED NODES"}


def short(text: str | None) -> str:
    """Digests, keyids and commit hashes cut to their first 12 hex digits (``sha256:1f2e3d4c5b6a…``)."""
    return _LONG_HEX.sub(lambda m: m.group(1) + "…", text or "")


def _signer(trace: Trace, seq: int) -> str:
    keyid = trace.signers.get(seq)
    if keyid is None:
        return ""
    key = trace.keys.get(keyid)
    name = (key.name if key else None) or "?"
    return f"{name} ({keyid[:12]}…)"


# --- table ---------------------------------------------------------------------------


def _columns(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _node_rows(trace: Trace, nodes: Iterable[TraceNode]) -> list[list[str]]:
    rows = [["depth", "id", "kind", "label", "seqs", "introduced by"]]
    for n in nodes:
        seqs = ",".join(map(str, n.seqs)) or str(n.first_seq)
        rows.append([str(n.depth), short(n.id), n.kind or "", display_label(n), seqs, _signer(trace, n.first_seq)])
    return rows


def display_label(node: TraceNode) -> str:
    """The node's label, with the name it was registered under when that differs (a dataset registered as
    ``transactions`` that a run later used as ``train.csv`` reads ``train.csv [registered as transactions]``)."""
    label, name = node.label or "", node.attributes.get("provault:name")
    if not isinstance(name, str) or not name or name == label or node.type != "entity":
        return label
    return f"{label} [registered as {name}]" if label else name


def header(trace: Trace) -> str:
    cut = ", TRUNCATED (a depth or node limit cut the walk)" if trace.truncated else ""
    return (
        f"{trace.direction} trace from {short(trace.start)} as of seq {trace.as_of_seq}: "
        f"{len(trace.nodes)} nodes, {len(trace.edges)} edges{cut}"
    )


def as_table(trace: Trace) -> str:
    """A readable report: nodes grouped by type, edges, predictions and the keys behind them."""
    out = [header(trace)]
    if trace.prediction:
        p = trace.prediction
        out.append(
            f"prediction {p['id']}: batch {short(p['activity'])}, seq {p['seq']}, time {p['time']}, "
            f"output {json.dumps(p['output'])}"
        )
    for node_type in TYPE_ORDER:
        group = [n for n in trace.nodes if n.type == node_type]
        if group:
            out += ["", f"{_TYPE_TITLES[node_type]} ({len(group)})", *_columns(_node_rows(trace, group))]
    if trace.edges:
        rows = [["seq", "relation", "from", "to", "signed by"]]
        rows += [[str(e.seq), _relation(e), short(e.src), short(e.dst), _signer(trace, e.seq)] for e in trace.edges]
        out += ["", f"EDGES ({len(trace.edges)})", *_columns(rows)]
    if trace.predictions_total:
        shown = len(trace.predictions)
        out += ["", f"PREDICTIONS ({shown} of {trace.predictions_total})"]
        out += [f"  {pid}" for pid in trace.predictions]
        if trace.predictions_next:
            out.append(f"  … more after {trace.predictions_next}")
    if trace.keys:
        rows = [["keyid", "holder", "role", "signed seqs"]]
        for keyid, key in sorted(trace.keys.items(), key=lambda kv: kv[1].name or ""):
            seqs = [s for s, k in sorted(trace.signers.items()) if k == keyid]
            holder = (key.name or "?") + (" (root key)" if key.root_key else "")
            rows.append([keyid[:16] + "…", holder, key.role, _seq_list(seqs)])
        out += ["", f"SIGNED BY ({len(trace.keys)} keys)", *_columns(rows)]
    return "\n".join(out) + "\n"


def _relation(e: TraceEdge) -> str:
    return "signedBy" if e.origin == "signature" else e.relation


def _seq_list(seqs: Sequence[int], limit: int = 12) -> str:
    text = ",".join(map(str, seqs[:limit]))
    return text + (f",… ({len(seqs)})" if len(seqs) > limit else "")


# --- JSON ----------------------------------------------------------------------------


def as_json(trace: Trace) -> dict[str, Any]:
    """Everything in the trace as JSON-ready values (seqs as integers, keys of ``signers`` as text)."""
    return {
        "start": trace.start,
        "direction": trace.direction,
        "as_of_seq": trace.as_of_seq,
        "truncated": trace.truncated,
        "prediction": trace.prediction,
        "nodes": [
            {
                "id": n.id,
                "type": n.type,
                "kind": n.kind,
                "label": n.label,
                "depth": n.depth,
                "first_seq": n.first_seq,
                "seqs": list(n.seqs),
                "attributes": dict(n.attributes),
            }
            for n in trace.nodes
        ],
        "edges": [
            {
                "relation": e.relation,
                "from": e.src,
                "to": e.dst,
                "seq": e.seq,
                "origin": e.origin,
                "attributes": dict(e.attributes),
            }
            for e in trace.edges
        ],
        "predictions": {
            "ids": list(trace.predictions),
            "total": trace.predictions_total,
            "next_after": trace.predictions_next,
        },
        "seqs": list(trace.seqs),
        "signers": {str(seq): keyid for seq, keyid in sorted(trace.signers.items())},
        "keys": {
            k.keyid: {"key_node": k.key_node, "name": k.name, "role": k.role, "root_key": k.root_key}
            for k in sorted(trace.keys.values(), key=lambda k: k.keyid)
        },
    }


# --- DOT -------------------------------------------------------------------------------

_DOT_STYLE = {
    "entity": 'shape=ellipse, style=filled, fillcolor="#FFFC87", color="#808080"',
    "activity": 'shape=box, style=filled, fillcolor="#9FB1FC", color="#0000FF"',
    "agent": 'shape=house, style=filled, fillcolor="#FED37F", color="#808080"',
    None: 'shape=octagon, style=dashed, color="#808080"',
}


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _caption(n: TraceNode) -> list[str]:
    lines = [n.label] if n.label else []
    lines.append(short(n.id))
    if n.kind:
        lines.append(n.kind)
    return lines


def as_dot(trace: Trace) -> str:
    """A Graphviz ``digraph``; edges point from the dependent to what it depends on."""
    out = [
        "digraph provenance {",
        "  rankdir=BT;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    for n in trace.nodes:
        caption = "\n".join(_caption(n))
        extra = ", penwidth=2" if n.id == trace.start else ""
        out.append(
            f"  {_dot_str(n.id)} [label={_dot_str(caption)}, {_DOT_STYLE.get(n.type, _DOT_STYLE[None])}{extra}];"
        )
    for e in trace.edges:
        style = ", style=dashed" if e.origin == "signature" else ""
        out.append(f"  {_dot_str(e.src)} -> {_dot_str(e.dst)} [label={_dot_str(f'{_relation(e)} @{e.seq}')}{style}];")
    out.append("}")
    return "\n".join(out) + "\n"


# --- SVG -------------------------------------------------------------------------------

_W, _H = 230, 50
_COL, _ROW, _MARGIN = 320, 80, 30
_FILL = {
    "entity": ("#FFFC87", "#808080"),
    "activity": ("#9FB1FC", "#0000FF"),
    "agent": ("#FED37F", "#808080"),
    None: ("#FFFFFF", "#808080"),
}


def _layout(nodes: Sequence[TraceNode]) -> dict[str, tuple[float, float]]:
    """Node id -> centre: one column per depth, rows in the trace's order."""
    rows: dict[int, int] = {}
    where: dict[str, tuple[float, float]] = {}
    for n in nodes:
        row = rows.get(n.depth, 0)
        rows[n.depth] = row + 1
        where[n.id] = (_MARGIN + _W / 2 + n.depth * _COL, _MARGIN + _H / 2 + row * _ROW)
    return where


def _shape(n: TraceNode, x: float, y: float) -> str:
    fill, stroke = _FILL.get(n.type, _FILL[None])
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="{2 if n.depth == 0 else 1}"'
    w, h = _W / 2, _H / 2
    if n.type == "entity":
        return f'<ellipse cx="{x:.1f}" cy="{y:.1f}" rx="{w:.1f}" ry="{h:.1f}" {paint}/>'
    if n.type == "agent":
        pts = [(x - w, y + h), (x + w, y + h), (x + w, y - h / 3), (x, y - h), (x - w, y - h / 3)]
        return f'<polygon points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in pts)}" {paint}/>'
    dash = "" if n.type == "activity" else ' stroke-dasharray="4 3"'
    return f'<rect x="{x - w:.1f}" y="{y - h:.1f}" width="{_W}" height="{_H}" {paint}{dash}/>'


def _svg_node(n: TraceNode, x: float, y: float) -> list[str]:
    lines = _caption(n)[:3]
    first = y - (len(lines) - 1) * 6
    texts = [
        f'<text x="{x:.1f}" y="{first + i * 12 + 4:.1f}" text-anchor="middle" font-size="{11 if i == 0 else 9}">'
        f"{escape(_clip(line, 40))}</text>"
        for i, line in enumerate(lines)
    ]
    return [
        f"<g class={quoteattr('node ' + (n.type or 'untyped'))}>",
        f"<title>{escape(n.id)}</title>",
        _shape(n, x, y),
        *texts,
        "</g>",
    ]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg_edge(e: TraceEdge, a: tuple[float, float], b: tuple[float, float]) -> list[str]:
    (x1, y1), (x2, y2) = a, b
    if abs(x1 - x2) < 1:  # same column: bow out to the right
        x1, x2 = x1 + _W / 2, x2 + _W / 2
        cx, cy = x1 + 60, (y1 + y2) / 2
        path = f"M{x1:.1f},{y1:.1f} Q{cx:.1f},{cy:.1f} {x2:.1f},{y2:.1f}"
        lx, ly = cx - 10, cy
    else:
        side = _W / 2 if x2 > x1 else -_W / 2
        x1, x2 = x1 + side, x2 - side
        path = f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}"
        lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 4
    dash = ' stroke-dasharray="5 3"' if e.origin == "signature" else ""
    return [
        f'<g class="edge"><title>{escape(f"{e.src} {e.relation} {e.dst} (seq {e.seq})")}</title>',
        f'<path d="{path}" fill="none" stroke="#404040" marker-end="url(#arrow)"{dash}/>',
        f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="middle" font-size="9" fill="#303030">'
        f"{escape(_relation(e))} @{e.seq}</text></g>",
    ]


def as_svg(trace: Trace) -> str:
    """A standalone SVG document of the trace, laid out by depth."""
    where = _layout(trace.nodes)
    depth = max((n.depth for n in trace.nodes), default=0)
    rows = max((sum(1 for n in trace.nodes if n.depth == d) for d in range(depth + 1)), default=1)
    width = int(2 * _MARGIN + _W + depth * _COL + 80)
    height = int(2 * _MARGIN + _H + (rows - 1) * _ROW + 20)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif">',
        f"<title>{escape(header(trace))}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#404040"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="#FFFFFF"/>',
        f'<text x="{_MARGIN}" y="{_MARGIN - 12}" font-size="11">{escape(short(header(trace)))}</text>',
    ]
    for e in trace.edges:
        if e.src in where and e.dst in where:
            out += _svg_edge(e, where[e.src], where[e.dst])
    for n in trace.nodes:
        out += _svg_node(n, *where[n.id])
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["as_dot", "as_json", "as_svg", "as_table", "header", "short"]
