"""What the explorer's JSON API answers: search, a graph, an impact list, one entry with its proofs, a bundle.

Functions of a read connection and the request's query string (parsed and bounded by the ``*_arg``
helpers, whose errors name the parameter): the aiohttp layer (``_app``) only authenticates, runs them in a worker thread and turns
their errors into statuses.  Every answer is bounded: ``max_nodes`` (``explorer.max_nodes``) on graphs
and impact lists, :data:`MAX_DEPTH` hops, :data:`MAX_SEARCH` search hits, and the read pool's statement
timeout on every query; an answer cut by a limit says which and how to narrow it.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.events import format_time
from ledger.grpckit.status import NotFound
from ledger.store import checkpoints, log
from ledger.store.entries import entries_at
from query import traverse
from query._requests import resolve_point
from query.bundle import bundle_trace, proofs_for
from query.bundle_verify import encode_bundle
from query.render import as_json

MAX_DEPTH = 50
DEFAULT_DEPTH = 3
MAX_SEARCH, DEFAULT_SEARCH = 200, 50
MAX_TEXT = 1024
PREDICTIONS_SHOWN = 50
"""Downstream graphs draw at most this many predictions as nodes; the total is always counted."""
NODE_TYPES = ("entity", "activity", "agent")
PLAN_KIND = "prov:Plan"
RUNS_SHOWN = 20
"""A plan (an OpenLineage job) opens as its latest runs, each traced as asked."""


# --- arguments ---------------------------------------------------------------------------------


def text_arg(query: Mapping[str, str], name: str, *, required: bool = True) -> str | None:
    value = query.get(name, "")
    if not value:
        if required:
            raise InvalidArgument(f"{name}: expected a value, found none", hint=f"add ?{name}=…")
        return None
    if len(value) > MAX_TEXT:
        raise InvalidArgument(expected_found(name, f"at most {MAX_TEXT} characters", f"{len(value)}"))
    if "\x00" in value:
        raise InvalidArgument(f"{name}: NUL characters are not allowed")
    return value


def int_arg(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidArgument(expected_found(name, f"an integer in {low}..{high}", repr(raw[:40])))
    return int(raw)


def choice_arg(query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    raw = query.get(name, "")
    if raw == "":
        return default
    if raw not in choices:
        raise InvalidArgument(expected_found(name, "one of " + ", ".join(choices), repr(raw[:40])))
    return raw


def as_of_arg(query: Mapping[str, str]) -> tuple[int | None, datetime | None]:
    """``as_of``: a seq (digits) or an ISO 8601 time with its offset (``2026-05-01T12:00:00Z``); absent: latest."""
    raw = query.get("as_of", "").strip()
    if not raw:
        return None, None
    if raw.isdigit():
        return int(raw), None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidArgument(
            expected_found("as_of", "a seq or an ISO 8601 time with its offset (…Z or …+02:00)", repr(raw[:40]))
        )
    return None, when.astimezone(UTC)


# --- answers -----------------------------------------------------------------------------------


def _limits_hit(answer: traverse.Trace, depth: int, max_nodes: int) -> list[str]:
    notes = []
    if answer.truncated and len(answer.nodes) >= max_nodes:
        notes.append(
            f"showing the first {max_nodes} nodes (explorer.max_nodes): lower the depth, or export the full "
            "answer with `provault export`"
        )
    elif answer.truncated:
        notes.append(f"stopped at depth {depth}: raise the depth to see further")
    return notes


def search(conn: psycopg.Connection, query: Mapping[str, str]) -> dict[str, Any]:
    text = text_arg(query, "q", required=False)
    node_type = choice_arg(query, "type", NODE_TYPES, None)
    kind = text_arg(query, "kind", required=False)
    limit = int_arg(query, "limit", DEFAULT_SEARCH, 1, MAX_SEARCH)
    seq = resolve_point(conn, *as_of_arg(query))
    page = traverse.search(conn, text=text, node_type=node_type, kind=kind, as_of_seq=seq, limit=limit)
    nodes = [
        {"id": n.id, "type": n.type, "kind": n.kind, "label": n.label, "first_seq": n.first_seq} for n in page.nodes
    ]
    limits = [f"showing the first {limit} matches: narrow the search"] if page.next_after else []
    return {"as_of_seq": page.as_of_seq, "nodes": nodes, "limits": limits}


def plan_runs(conn: psycopg.Connection, plan: str, as_of_seq: int) -> tuple[list[tuple[str, int]], bool]:
    """The latest :data:`RUNS_SHOWN` activities associated with ``plan`` (run id, the association's seq), and
    whether there are more."""
    rows = conn.execute(
        "SELECT src, max(seq) AS last FROM prov.edges WHERE relation = 'wasAssociatedWith' "
        "AND attributes ? 'prov:plan' AND attributes ->> 'prov:plan' = %s AND seq <= %s "
        "GROUP BY src ORDER BY last DESC, src LIMIT %s",
        (plan, as_of_seq, RUNS_SHOWN + 1),
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows[:RUNS_SHOWN]], len(rows) > RUNS_SHOWN


def _with_runs(conn: psycopg.Connection, out: dict[str, Any], walk, *, budget: int) -> None:
    """A plan's answer grown by its runs' (``walk(run, max_nodes)`` answers), each run linked to the plan."""
    plan = out["start"]
    runs, more = plan_runs(conn, plan, out["as_of_seq"])
    if not runs:
        return
    nodes = {n["id"]: n for n in out["nodes"]}
    edges = {(e["from"], e["relation"], e["to"], e["seq"]): e for e in out["edges"]}
    cut = False
    for run, seq in runs:
        room = budget - len(nodes)
        if room <= 0:
            cut = True
            break
        part = as_json(walk(run, room + (run in nodes)))
        for n in part["nodes"]:
            if n["id"] not in nodes:
                nodes[n["id"]] = {**n, "depth": n["depth"] + 1}
        for e in part["edges"]:
            edges.setdefault((e["from"], e["relation"], e["to"], e["seq"]), e)
        link = {"relation": "hadPlan", "from": run, "to": plan, "seq": seq, "origin": "prov", "attributes": {}}
        edges.setdefault((run, "hadPlan", plan, seq), link)
        out["signers"].update(part["signers"])
        out["keys"].update(part["keys"])
        out["seqs"] = sorted(set(out["seqs"]) | set(part["seqs"]))
        out["predictions"]["total"] += part["predictions"]["total"]
        out["predictions"]["ids"] += [p for p in part["predictions"]["ids"] if p not in out["predictions"]["ids"]]
        cut = cut or part["truncated"]
    out["nodes"] = list(nodes.values())[:budget]
    kept = {n["id"] for n in out["nodes"]}
    out["edges"] = [e for e in edges.values() if e["from"] in kept and e["to"] in kept]
    out["truncated"] = out["truncated"] or cut
    runs_text = f"{len(runs)} run" + ("s" if len(runs) != 1 else "")
    out["limits"].append(
        f"a plan: drawn through the {runs_text} that followed it"
        + (f"; older runs are not drawn (at most {RUNS_SHOWN}): open one by its id" if more else "")
    )


def traced(
    conn: psycopg.Connection,
    start: str,
    *,
    direction: str,
    depth: int,
    max_nodes: int,
    as_of: tuple[int | None, datetime | None],
) -> dict[str, Any]:
    """The trace from ``start`` as the CLI's JSON, plus the limits it hit.

    A plan (``prov:Plan``, such as an OpenLineage job) has no edges of its own: its runs name it in their
    associations.  It opens as its latest runs traced the same way, each linked to it by a ``hadPlan`` edge.
    """
    predictions = 0 if direction == traverse.UPSTREAM else PREDICTIONS_SHOWN
    with traverse.snapshot(conn):
        seq = resolve_point(conn, *as_of)

        def walk(node: str, budget: int, hops: int = depth) -> traverse.Trace:
            return traverse.trace(
                conn,
                node,
                direction=direction,
                max_depth=hops,
                max_nodes=budget,
                as_of_seq=seq,
                predictions_limit=predictions,
            )

        answer = walk(start, max_nodes)
        out = as_json(answer)
        out["limits"] = _limits_hit(answer, depth, max_nodes)
        if answer.nodes and answer.nodes[0].kind == PLAN_KIND:
            _with_runs(conn, out, lambda run, budget: walk(run, budget, max(1, depth - 1)), budget=max_nodes)
    shown, total = len(out["predictions"]["ids"]), out["predictions"]["total"]
    if total > shown:
        out["limits"].append(f"drawing {shown} of {total} predictions: the impact list counts them all")
    return out


def graph(conn: psycopg.Connection, query: Mapping[str, str], *, max_nodes: int) -> dict[str, Any]:
    """The graph from ``id`` (upstream, downstream or both), as :func:`traced` answers it."""
    return traced(
        conn,
        text_arg(query, "id"),
        direction=choice_arg(query, "direction", traverse.DIRECTIONS, traverse.UPSTREAM),
        depth=int_arg(query, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH),
        max_nodes=int_arg(query, "max_nodes", max_nodes, 1, max_nodes),
        as_of=as_of_arg(query),
    )


def impact(conn: psycopg.Connection, query: Mapping[str, str], *, max_nodes: int) -> dict[str, Any]:
    """Everything downstream of ``id``: counts by type and kind, and the nodes in walk order."""
    out = traced(
        conn,
        text_arg(query, "id"),
        direction=traverse.DOWNSTREAM,
        depth=int_arg(query, "depth", traverse.DEFAULT_MAX_DEPTH, 1, MAX_DEPTH),
        max_nodes=max_nodes,
        as_of=as_of_arg(query),
    )
    reached = [n for n in out["nodes"] if n["id"] != out["start"]]
    by_kind = Counter((n["type"] or "untyped", n["kind"] or "") for n in reached)
    return {
        "start": out["start"],
        "as_of_seq": out["as_of_seq"],
        "counts": {
            "nodes": len(reached),
            "by_type": dict(sorted(Counter(n["type"] or "untyped" for n in reached).items())),
            "by_kind": [{"type": t, "kind": k, "count": c} for (t, k), c in sorted(by_kind.items())],
            "predictions": out["predictions"]["total"],
        },
        "nodes": [
            {k: n[k] for k in ("id", "type", "kind", "label", "depth", "first_seq")}
            for n in sorted(reached, key=lambda n: (n["depth"], n["id"]))
        ],
        "predictions": out["predictions"]["ids"],
        "limits": [m for m in out["limits"] if not m.startswith("drawing ")],
    }


def entry(conn: psycopg.Connection, query: Mapping[str, str]) -> dict[str, Any]:
    """One log entry: its envelope, the statement it signs, and its inclusion proof against a signed checkpoint.

    The browser recomputes the leaf hash from the envelope bytes, the root from the proof, and checks the
    checkpoint's Ed25519 signature with ``verifier_key`` (compare that key with the one you pinned).
    """
    raw = query.get("seq", "")
    if not raw.isdigit():
        raise InvalidArgument(expected_found("seq", "a log seq (an integer >= 0)", repr(raw[:40])))
    seq = int(raw)
    size = log.log_size(conn)
    if seq >= size:
        raise NotFound(f"no log entry at seq {seq} (the log holds {size})")
    stored = entries_at(conn, [seq])[seq]
    proofs = proofs_for(conn, [seq])
    verifier = checkpoints.checkpoint_verifier(conn)
    envelope = json.loads(stored.envelope)
    try:
        statement = json.loads(base64.b64decode(envelope.get("payload", "")))
    except ValueError:
        statement = None
    proof = proofs.proofs[0] if proofs.proofs else None
    return {
        "seq": seq,
        "event_id": stored.event_id,
        "kind": stored.kind,
        "producer_id": stored.producer_id,
        "producer_seq": stored.producer_seq,
        "keyid": stored.keyid,
        "event_time": format_time(stored.event_time),
        "envelope_b64": base64.b64encode(stored.envelope).decode("ascii"),
        "statement": statement,
        "leaf_hash": stored.leaf_hash.hex(),
        "proof": None
        if proof is None
        else {"tree_size": proof.tree_size, "leaf_index": proof.seq, "hashes": [h.hex() for h in proof.hashes]},
        "checkpoint": {
            "note": proofs.checkpoint.note,
            "tree_size": proofs.checkpoint.tree_size,
            "root_hash": proofs.checkpoint.root_hash.hex(),
        },
        "verifier_key": {
            "name": verifier.name,
            "public_key_b64": base64.b64encode(verifier.verifier.public_key).decode("ascii"),
        },
        "unproven": proof is None,
    }


def bundle(conn: psycopg.Connection, query: Mapping[str, str], *, max_nodes: int) -> tuple[str, bytes]:
    """The audit bundle of the trace the page shows (``provault verify-bundle`` checks it); (file name, bytes)."""
    start = text_arg(query, "id")
    direction = choice_arg(query, "direction", traverse.DIRECTIONS, traverse.UPSTREAM)
    depth = int_arg(query, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH)
    seq, when = as_of_arg(query)
    built = bundle_trace(
        conn, start, direction=direction, max_depth=depth, max_nodes=max_nodes, as_of_seq=seq, as_of_time=when
    )
    return f"provault-bundle-{built.as_of_seq}.json", encode_bundle(built)
