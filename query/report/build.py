"""Gathering a report's evidence from the ledger and the projection (read only, role ``provault_auditor``).

* :func:`model_evidence` -- resolve ``NAME|DIGEST`` to one model, walk its lifecycle both ways
  (``query.traverse.trace``) as of the latest checkpoint, bundle the entries behind it
  (``query.bundle.build_bundle``), and chain checkpoints from the first one that covers the model's
  first statement to the bundle's, with a consistency proof between each pair.
* :func:`period_evidence` -- the checkpoints signed at the period's start and end (by the ledger's
  clock), every entry the log grew by between them, bundled, and the chain on to the bundle's checkpoint.

Work is bounded: the walk by ``max_depth`` / ``max_nodes``, a period by ``max_entries``, and everything by
``timeout_s`` (each SQL statement, and the whole gathering).  A limit that is hit is
:class:`ReportLimit`, naming the limit and the option that raises it: a report is never cut short silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

import psycopg

from ledger.core.envelope import parse_envelope
from ledger.core.errors import InvalidArgument, ProvaultError, StorageUnavailable
from ledger.core.events import format_time, parse_event
from ledger.db import translate_errors
from ledger.store import checkpoints as stored_checkpoints
from ledger.store import log
from ledger.store.checkpoints import StoredCheckpoint
from ledger.store.entries import entries_at
from query import traverse
from query.bundle import build_bundle
from query.bundle_verify import encode_bundle, recompute_graph

from .evidence import Consistency, Evidence, StoredPoint

DEFAULT_MAX_DEPTH = traverse.DEFAULT_MAX_DEPTH
DEFAULT_MAX_NODES = traverse.DEFAULT_MAX_NODES
MAX_NODES_CAP = 100_000
DEFAULT_MAX_ENTRIES = 10_000
MAX_ENTRIES_CAP = 100_000
DEFAULT_TIMEOUT_S = 60.0
CHAIN_POINTS = 8
"""Checkpoints sampled between the chain's first and last (each pair linked by a consistency proof)."""
MODEL_KIND = "provault:Model"
DEPLOYMENT_KIND = "provault:Deployment"

T = TypeVar("T")


class ModelNotFound(ProvaultError):
    reason = "not_found"


class ReportLimit(ProvaultError):
    """A bound on the report's work was reached; the message names it and the option that raises it."""

    reason = "limit_reached"


class _Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.end = time.monotonic() + timeout_s

    def run(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``; a statement cancelled by ``statement_timeout`` or a deadline passed is :class:`ReportLimit`."""
        self.check(what)
        try:
            out = fn()
        except StorageUnavailable as e:
            if isinstance(e.__cause__, psycopg.errors.QueryCanceled):
                raise self._limit(what) from None
            raise
        self.check(what)
        return out

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise self._limit(what)

    def _limit(self, what: str) -> ReportLimit:
        return ReportLimit(
            f"the report took longer than its time limit of {self.timeout_s:g} s (while {what})",
            hint="raise --timeout, or narrow the report (--depth / --max-nodes, a shorter period)",
        )


@translate_errors
def _statement_timeout(conn: psycopg.Connection, timeout_s: float) -> None:
    conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{max(int(timeout_s * 1000), 1)}ms",))


def _check_limit(name: str, value: int, low: int, cap: int, option: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= cap:
        raise InvalidArgument(f"{option}: expected an integer from {low} to {cap}, found {value!r}")


# --- the model --------------------------------------------------------------------------------------


def resolve_model(conn: psycopg.Connection, name: str, as_of: int) -> str:
    """The id of the one model ``name`` names as of ``as_of``: a digest (``sha256:…``), else an exact label."""
    if name.startswith("sha256:"):
        try:
            node = traverse.get_node(conn, name, as_of_seq=as_of)
        except traverse.NodeNotFound:
            raise ModelNotFound(
                f"no model {name} in the ledger as of seq {as_of}",
                hint="check the digest, or name the model by its label",
            ) from None
        if node.kind != MODEL_KIND:
            raise ModelNotFound(
                f"{name} is a {node.kind or node.type}, not a model ({MODEL_KIND}), as of seq {as_of}",
                hint="a model report is about a registered model; trace other nodes with `provault trace`",
            )
        return node.id
    found: list[tuple[str, str]] = []
    after = None
    while True:
        page = traverse.search(conn, kind=MODEL_KIND, text=name, as_of_seq=as_of, limit=500, after=after)
        found += [(n.id, str(n.attributes.get("provault:version", "?"))) for n in page.nodes if n.label == name]
        if page.next_after is None:
            break
        after = page.next_after
    if not found:
        raise ModelNotFound(
            f"no model labelled {name!r} in the ledger as of seq {as_of}",
            hint="name the model by its label (prov:label) or its digest sha256:<hex>",
        )
    if len(found) > 1:
        listed = ", ".join(f"{i} (version {v})" for i, v in found[:10])
        raise ModelNotFound(
            f"{len(found)} models are labelled {name!r} as of seq {as_of}: {listed}",
            hint="name one by its digest",
        )
    return found[0][0]


def _latest(conn: psycopg.Connection) -> StoredCheckpoint:
    cp = stored_checkpoints.latest(conn)
    if cp is None or cp.tree_size == 0:
        raise ModelNotFound("the ledger has no checkpoint over any entry yet", hint="retry after the next checkpoint")
    return cp


def model_evidence(
    conn: psycopg.Connection,
    name: str,
    *,
    as_of_seq: int | None = None,
    as_of_time: datetime | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Evidence:
    """The evidence of a model report (see the module docstring)."""
    _check_limit("max_depth", max_depth, 1, traverse.DEFAULT_MAX_DEPTH * 5, "--depth")
    _check_limit("max_nodes", max_nodes, 1, MAX_NODES_CAP, "--max-nodes")
    deadline = _Deadline(timeout_s)
    _statement_timeout(conn, timeout_s)
    cp = deadline.run("reading the latest checkpoint", lambda: _latest(conn))
    as_of = _as_of(conn, cp, as_of_seq, as_of_time)
    model = deadline.run("resolving the model", lambda: resolve_model(conn, name, as_of))
    t = deadline.run(
        "walking the model's lifecycle",
        lambda: traverse.trace(
            conn,
            model,
            direction=traverse.BOTH,
            max_depth=max_depth,
            max_nodes=max_nodes,
            as_of_seq=as_of,
            predictions_limit=0,
        ),
    )
    if t.truncated:
        raise _walk_limit(len(t.nodes), max_depth, max_nodes)
    ids = [n.id for n in t.nodes]
    retired = [n.id for n in t.nodes if n.kind in (MODEL_KIND, DEPLOYMENT_KIND)]
    ended = deadline.run("reading invalidations", lambda: _invalidations(conn, retired, as_of))
    extra = [a for a in dict.fromkeys(a for _, a in ended) if a not in ids]
    if len(ids) + len(extra) > max_nodes:
        raise _walk_limit(max_nodes, max_depth, max_nodes)
    seqs = sorted(set(t.seqs) | {s for s, _ in ended})
    bundle = deadline.run(
        "bundling the entries",
        lambda: build_bundle(
            conn, seqs, subject=model, direction=traverse.BOTH, as_of_seq=as_of, node_ids=[*ids, *extra]
        ),
    )
    first = min(pe.entry.seq for pe in bundle.entries)
    chain = deadline.run("proving retention", lambda: _chain(conn, _covering(conn, first), bundle.checkpoint.tree_size))
    return Evidence(
        kind="model",
        subject={"query": name, "model": model},
        limits={"max_depth": max_depth, "max_nodes": max_nodes},
        bundle=encode_bundle(bundle).decode("ascii").rstrip("\n"),
        checkpoint_key=bundle.checkpoint_verifier_key,
        checkpoints=chain[0],
        proofs=chain[1],
    )


@translate_errors
def _invalidations(conn: psycopg.Connection, ids: Sequence[str], as_of: int) -> list[tuple[int, str]]:
    """(seq, activity) of every ``wasInvalidatedBy`` of these nodes up to ``as_of``: a quarantine or retirement
    of the model or of a deployment is upstream of what it ends, so the both-way walk does not reach it."""
    rows = conn.execute(
        "SELECT seq, dst FROM prov.edges WHERE src = ANY(%s) AND relation = 'wasInvalidatedBy' AND seq <= %s"
        " ORDER BY seq, dst",
        (list(ids), as_of),
    )
    return [(int(seq), str(dst)) for seq, dst in rows]


def _walk_limit(nodes: int, max_depth: int, max_nodes: int) -> ReportLimit:
    if nodes >= max_nodes:
        what = f"reaches more than --max-nodes {max_nodes} nodes"
    else:
        what = f"goes deeper than --depth {max_depth} hops"
    return ReportLimit(
        f"the model's lifecycle {what}, so the report would be incomplete; refusing to cut it short",
        hint=f"raise --max-nodes (at most {MAX_NODES_CAP}) or --depth (at most {traverse.DEFAULT_MAX_DEPTH * 5})",
    )


def _as_of(conn: psycopg.Connection, cp: StoredCheckpoint, seq: int | None, when: datetime | None) -> int:
    if when is not None:
        found = traverse.resolve_as_of(conn, time=when)
        if found is None or found < 0:
            raise ModelNotFound(f"nothing was logged at or before {format_time(when)}")
        seq = found
    if seq is None:
        return cp.tree_size - 1
    if seq >= cp.tree_size:
        raise InvalidArgument(
            f"--as-of seq {seq} is newer than the latest checkpoint (tree size {cp.tree_size}), so it is not provable yet",
            hint="retry after the next checkpoint, about a second later",
        )
    return seq


# --- checkpoints and consistency ------------------------------------------------------------------------


@translate_errors
def _covering(conn: psycopg.Connection, seq: int) -> StoredCheckpoint:
    """The first checkpoint whose tree holds ``seq``."""
    row = conn.execute(
        "SELECT tree_size, root_hash, note, signed_at FROM ledger.checkpoints WHERE tree_size > %s"
        " ORDER BY tree_size LIMIT 1",
        (seq,),
    ).fetchone()
    if row is None:
        raise InvalidArgument(f"no checkpoint covers seq {seq} yet", hint="retry after the next checkpoint")
    return StoredCheckpoint(tree_size=int(row[0]), root_hash=bytes(row[1]), note=row[2], signed_at=row[3])


@translate_errors
def _signed_by(conn: psycopg.Connection, when: datetime) -> StoredCheckpoint | None:
    """The last checkpoint the ledger signed at or before ``when`` (its clock)."""
    row = conn.execute(
        "SELECT tree_size, root_hash, note, signed_at FROM ledger.checkpoints WHERE signed_at <= %s"
        " ORDER BY tree_size DESC LIMIT 1",
        (when,),
    ).fetchone()
    return (
        StoredCheckpoint(tree_size=int(row[0]), root_hash=bytes(row[1]), note=row[2], signed_at=row[3]) if row else None
    )


@translate_errors
def _sizes_between(conn: psycopg.Connection, low: int, high: int) -> list[int]:
    """Up to :data:`CHAIN_POINTS` checkpoint sizes strictly between ``low`` and ``high``, spread evenly by size.

    One index lookup per point (the first checkpoint at or above each of evenly spaced sizes), so a chain
    over years of once-a-second checkpoints costs as little as one over a day.
    """
    targets = sorted({low + (high - low) * k // (CHAIN_POINTS + 1) for k in range(1, CHAIN_POINTS + 1)})
    rows = conn.execute(
        "SELECT DISTINCT c.tree_size FROM unnest(%s::bigint[]) AS t(size) CROSS JOIN LATERAL ("
        " SELECT tree_size FROM ledger.checkpoints WHERE tree_size >= t.size AND tree_size > %s AND tree_size < %s"
        " ORDER BY tree_size LIMIT 1) c ORDER BY 1",
        (targets, low, high),
    ).fetchall()
    return [int(r[0]) for r in rows]


def _consistency(conn: psycopg.Connection, old: int, new: int) -> tuple[bytes, ...]:
    return () if old == 0 else tuple(log.consistency_proof(conn, old, new))


def _point(cp: StoredCheckpoint) -> StoredPoint:
    return StoredPoint(note=cp.note, signed_at=format_time(cp.signed_at))


def _chain(
    conn: psycopg.Connection, first: StoredCheckpoint, last_size: int, via: Sequence[StoredCheckpoint] = ()
) -> tuple[tuple[StoredPoint, ...], tuple[Consistency, ...]]:
    """Checkpoints from ``first`` to the one at ``last_size`` (through ``via`` and a few sampled between)."""
    fixed = {first.tree_size: first, **{c.tree_size: c for c in via}}
    last = stored_checkpoints.at_size(conn, last_size)
    if last is None:
        raise InvalidArgument(f"no checkpoint at tree size {last_size}", hint="retry: checkpoints are never removed")
    fixed[last.tree_size] = last
    sizes = sorted(set(fixed) | set(_sizes_between(conn, first.tree_size, last_size)))
    cps = [fixed.get(s) or stored_checkpoints.at_size(conn, s) for s in sizes]
    proofs = tuple(
        Consistency(
            old_size=a.tree_size,
            new_size=b.tree_size,
            hashes=_consistency(conn, a.tree_size, b.tree_size),
        )
        for a, b in zip(cps, cps[1:], strict=False)
        if a is not None and b is not None
    )
    return tuple(_point(c) for c in cps if c is not None), proofs


# --- the period ---------------------------------------------------------------------------------------


def period_evidence(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Evidence:
    """The evidence of a period report (see the module docstring)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidArgument("--from and --to must carry a UTC offset (e.g. a trailing Z)")
    if start > end:
        raise InvalidArgument(f"--from {format_time(start)} is after --to {format_time(end)}")
    _check_limit("max_entries", max_entries, 1, MAX_ENTRIES_CAP, "--max-entries")
    deadline = _Deadline(timeout_s)
    _statement_timeout(conn, timeout_s)
    first = deadline.run("finding the period's checkpoints", lambda: _signed_by(conn, start) or _covering(conn, -1))
    last = deadline.run("finding the period's checkpoints", lambda: _signed_by(conn, end))
    if last is None or last.tree_size < first.tree_size:
        raise InvalidArgument(
            f"the ledger signed no checkpoint by --to {format_time(end)}",
            hint="choose a --to after the ledger's first checkpoint",
        )
    count = last.tree_size - first.tree_size
    if count > max_entries:
        raise ReportLimit(
            f"the period holds {count} entries (seqs {first.tree_size} to {last.tree_size - 1}), more than "
            f"--max-entries {max_entries}; refusing to cut the report short",
            hint=f"narrow the period, or raise --max-entries (at most {MAX_ENTRIES_CAP})",
        )
    seqs = list(range(first.tree_size, last.tree_size))
    bundle = deadline.run("bundling the entries", lambda: _period_bundle(conn, seqs)) if seqs else None
    top = bundle.checkpoint.tree_size if bundle is not None else last.tree_size
    chain = deadline.run("proving retention", lambda: _chain(conn, first, top, via=(last,)))
    return Evidence(
        kind="period",
        subject={"from": format_time(start), "to": format_time(end)},
        limits={"max_entries": max_entries},
        bundle=encode_bundle(bundle).decode("ascii").rstrip("\n") if bundle is not None else None,
        checkpoint_key=bundle.checkpoint_verifier_key if bundle is not None else _vkey(conn),
        checkpoints=chain[0],
        proofs=chain[1],
        period={"first_seq": first.tree_size, "end_seq": last.tree_size},
    )


def _vkey(conn: psycopg.Connection) -> str:
    return stored_checkpoints.checkpoint_verifier(conn).vkey()


def _period_bundle(conn: psycopg.Connection, seqs: list[int]):  # -> query_pb2.AuditBundle
    """The bundle of the period's entries; its subject is the first node the first entry states."""
    rows = entries_at(conn, seqs)
    events = []
    for seq, row in sorted(rows.items()):
        env = parse_envelope(row.envelope, max_size=len(row.envelope))
        events.append((seq, parse_event(env.payload, max_size=max(len(env.payload), 1))))
    graph = recompute_graph(events)
    if not graph.nodes:
        raise InvalidArgument("the period's entries state no node, so they cannot be bundled")
    subject = min(graph.nodes.values(), key=lambda n: (n.first_seq, n.id)).id
    return build_bundle(conn, seqs, subject=subject, direction=traverse.UPSTREAM, as_of_seq=seqs[-1])


__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_TIMEOUT_S",
    "MAX_ENTRIES_CAP",
    "MAX_NODES_CAP",
    "ModelNotFound",
    "ReportLimit",
    "model_evidence",
    "period_evidence",
    "resolve_model",
]
