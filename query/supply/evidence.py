"""A model's lifecycle as a verified audit bundle: what the gate, attestations and BOMs decide from.

:func:`gather` resolves the model (``sha256:<hex>`` or an exact label), walks its making upstream as of the
latest checkpoint (``query.traverse.trace``), adds the activities that ``used`` the model (approvals,
decisions, attestations, deployments; not prediction batches) and every ``wasInvalidatedBy`` of a node
reached or of a key that signed one of those entries (quarantines), bundles all of those entries with their
inclusion proofs (``query.bundle.build_bundle``) and **verifies the bundle** (``query.bundle_verify``)
against the ledger's own checkpoint key and trust root before returning it.  Everything after that is
read from the bundle's signed events (:mod:`query.report.facts`), never from the projection's rows.

:func:`from_bundle` does the same reading for a bundle that is already verified (offline checks).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ledger.core.errors import InvalidArgument, InvalidEvent, ProvaultError, expected_found
from ledger.core.events import Event
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, KeyRecord, KeyRegistry
from ledger.core.vocab import KEY_TARGET_PREFIX, PREDICT_PREFIX, QUARANTINE_PLACED, QUARANTINE_TARGET_TYPES, key_node_id
from ledger.db import translate_errors
from ledger.grpckit.status import NotCovered
from ledger.store import checkpoints as stored_checkpoints
from provault.v1 import query_pb2
from query import traverse
from query.bundle import build_bundle
from query.bundle_verify import BundleReport, encode_bundle, verify_bundle
from query.report.build import ModelNotFound, ReportLimit, resolve_model
from query.report.facts import Facts, facts, reach

DEFAULT_MAX_DEPTH = traverse.DEFAULT_MAX_DEPTH
DEFAULT_MAX_NODES = traverse.DEFAULT_MAX_NODES
MAX_NODES_CAP = 100_000
DEFAULT_TIMEOUT_S = 60.0
BUNDLE_MEDIA_TYPE = "application/vnd.provault.bundle+json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Quarantine:
    """One ``quarantine.placed`` entry: its target, why, and who placed it."""

    seq: int
    activity: str
    target: str
    """A node id (``sha256:…``, ``provault:git/…``) or ``key:<keyid>``."""
    target_type: str
    reason: str
    keyid: str
    time: datetime

    @property
    def target_key(self) -> str | None:
        """The keyid a key quarantine names; None for a dataset or commit."""
        return self.target[len(KEY_TARGET_PREFIX) :] if self.target_type == "key" else None


def parse_quarantine(event: Event, seq: int, keyid: str) -> Quarantine:
    """A ``quarantine.placed`` event's data, checked (docs/supply-chain.md, "New event kinds")."""
    data = event.data if isinstance(event.data, Mapping) else {}
    target, kind, reason = data.get("target"), data.get("target_type"), data.get("reason")
    if kind not in QUARANTINE_TARGET_TYPES:
        raise InvalidEvent(
            expected_found("data.target_type", " or ".join(QUARANTINE_TARGET_TYPES), repr(kind)[:80]),
            field="data.target_type",
        )
    if not isinstance(target, str) or not target or (kind == "key") != target.startswith(KEY_TARGET_PREFIX):
        want = f"'{KEY_TARGET_PREFIX}<keyid>'" if kind == "key" else "the node id of the dataset or commit"
        raise InvalidEvent(expected_found("data.target", want, repr(target)[:80]), field="data.target")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidEvent(expected_found("data.reason", "a non-empty string", repr(reason)[:80]), field="data.reason")
    activities = [n for n in event.prov.get("activity", {})] if isinstance(event.prov, Mapping) else []
    return Quarantine(
        seq=seq,
        activity=activities[0] if activities else "",
        target=target,
        target_type=kind,
        reason=reason,
        keyid=keyid,
        time=event.time,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvidence:
    """A model's verified lifecycle (see the module docstring)."""

    query: str
    """What the caller named the model by."""
    model: str
    """The model's node id."""
    bundle: query_pb2.AuditBundle
    bundle_json: bytes
    """The bundle's canonical JSON encoding (``provault bundle``'s file): the bytes its digest names."""
    report: BundleReport
    facts: Facts
    keys: Mapping[str, KeyRecord]
    """Every key of the bundle's key history, as it stood at the bundle's checkpoint (root keys included)."""
    upstream: frozenset[str]
    """Nodes the model was made from (the model included), not crossing ``wasInvalidatedBy``."""
    downstream: frozenset[str]
    """Nodes made from or about the model (the model included): approvals, deployments, decisions."""
    quarantines: tuple[Quarantine, ...]
    behind: tuple[int, ...]
    """Seqs of the entries behind the model, in log order: those that state a relation between two nodes
    upstream of it, or only attributes of upstream nodes.  Approvals, deployments, quarantines and decisions
    are about the model, not behind it; facts of how it was made (metrics, parameters, its signature) are read
    from these entries only, so a key allowed to sign something about the model cannot restate them."""

    @property
    def as_of_seq(self) -> int:
        return self.bundle.as_of_seq

    @property
    def bundle_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.bundle_json).hexdigest()

    def label(self, node: str | None = None) -> str | None:
        return self.facts.labels.get(node or self.model)

    def attributes(self, node: str, *, behind_only: bool = False) -> dict[str, Any]:
        """The merged attributes the bundle's entries (``behind_only``: the entries behind the model) state
        about ``node``, later statements winning."""
        behind = set(self.behind) if behind_only else None
        out: dict[str, Any] = {}
        for seq, n, name, value in self.facts.attrs:
            if n == node and (behind is None or seq in behind):
                out[name] = value
        return out

    def seqs_about(self, node: str) -> tuple[int, ...]:
        """The seqs of the entries that state something about ``node`` (an attribute or an edge)."""
        seqs = {s for s, n, _, _ in self.facts.attrs if n == node}
        seqs |= {s for s, _, src, dst, _ in self.facts.edges if node in (src, dst)}
        return tuple(sorted(seqs))

    def signer_record(self, seq: int) -> KeyRecord | None:
        return self.keys.get(self.facts.entries[seq].keyid)


def grants_explicitly(record: KeyRecord, kind: str) -> bool:
    """Whether ``record`` is a service's producer key registered for ``kind`` by name (``attestation.issued``)
    or by its family (``attestation.*``).  A key that may sign everything (``*``, the default of
    ``keys register``) is a person's or a pipeline's, not the ledger's attestation key: what it signs as an
    attestation or a gate decision does not count, even though the ledger accepts it."""
    family = kind.split(".", 1)[0] + ".*"
    return (
        record.role == "producer"
        and record.identity.get("type") == "service"
        and any(p in (kind, family) for p in record.kinds)
    )


def key_history(bundle: query_pb2.AuditBundle, f: Facts) -> dict[str, KeyRecord]:
    """The bundle's key history replayed through the ledger's own registry rules (root keys first)."""
    records = {kid: _root(kid) for kid in bundle.root_keyids}
    registry = KeyRegistry(records.values())
    for pe in bundle.key_entries:
        entry = f.entries.get(pe.entry.seq)
        if entry is not None and entry.event.kind in (KEY_REGISTERED, KEY_REVOKED):
            registry.apply(entry.event, pe.entry.seq)
    return {r.keyid: r for r in registry.records()}


def _root(keyid: str) -> KeyRecord:
    return KeyRecord(
        keyid=keyid,
        public_key=b"",
        role="admin",
        identity={"type": "service", "name": "root"},
        kinds=("*",),
        producers=("*",),
        registered_seq=None,
    )


def behind_model(f: Facts, upstream: frozenset[str]) -> tuple[int, ...]:
    """The seqs of the entries behind the model (:attr:`ModelEvidence.behind`), in log order."""
    edges: dict[int, list[tuple[str, str, str]]] = {}
    for seq, rel, src, dst, _ in f.edges:
        edges.setdefault(seq, []).append((rel, src, dst))
    attributed = {seq for seq, node, _, _ in f.attrs if node in upstream}
    out = []
    for seq in sorted(f.entries):
        stated = [(src, dst) for rel, src, dst in edges.get(seq, ()) if rel != "wasInvalidatedBy"]
        if any(src in upstream and dst in upstream for src, dst in stated):
            out.append(seq)
        elif not edges.get(seq) and seq in attributed:
            out.append(seq)
    return tuple(out)


def _quarantines(f: Facts) -> tuple[Quarantine, ...]:
    """The well-formed ``quarantine.placed`` entries.  A malformed one is left out here, but the
    ``wasInvalidatedBy`` it states still marks its target: it cannot make anything pass."""
    out = []
    for seq, e in sorted(f.entries.items()):
        if e.event.kind == QUARANTINE_PLACED:
            try:
                out.append(parse_quarantine(e.event, seq, e.keyid))
            except InvalidEvent:
                continue
    return tuple(out)


def from_bundle(bundle: query_pb2.AuditBundle, report: BundleReport, *, query: str | None = None) -> ModelEvidence:
    """The evidence a **verified** bundle about a model holds (``report`` is its verification's result)."""
    f = facts(bundle)
    model = bundle.node_id
    upstream = frozenset(reach(f, model, upstream=True))
    return ModelEvidence(
        query=query or model,
        model=model,
        bundle=bundle,
        bundle_json=encode_bundle(bundle),
        report=report,
        facts=f,
        keys=key_history(bundle, f),
        upstream=upstream,
        downstream=frozenset(reach(f, model, upstream=False)),
        quarantines=_quarantines(f),
        behind=behind_model(f, upstream),
    )


# --- gathering from the ledger ------------------------------------------------------------------------


def _check_limit(name: str, value: int, low: int, cap: int) -> None:
    if not low <= value <= cap:
        raise InvalidArgument(expected_found(name, f"{low}..{cap}", str(value)))


@translate_errors
def _invalidations(conn: psycopg.Connection, ids: Sequence[str], as_of: int) -> list[int]:
    """Seqs of every ``wasInvalidatedBy`` of these nodes up to ``as_of`` (quarantines, retirements)."""
    rows = conn.execute(
        "SELECT DISTINCT seq FROM prov.edges WHERE src = ANY(%s) AND relation = 'wasInvalidatedBy' AND seq <= %s",
        (list(ids), as_of),
    )
    return sorted(int(r[0]) for r in rows)


@translate_errors
def _about(conn: psycopg.Connection, model: str, as_of: int, limit: int) -> list[tuple[int, str, str]]:
    """(seq, activity, signing keyid) of every activity that ``used`` the model up to ``as_of``: approvals, gate
    decisions, attestations, deployments; not prediction batches, whose number grows with serving and which
    nothing here decides from.  The walk the other way is upstream only, so evidence stays the size of the
    model's making however much it served."""
    rows = conn.execute(
        "SELECT e.seq, e.src, l.keyid FROM prov.edges e JOIN ledger.entries l ON l.seq = e.seq"
        " WHERE e.dst = %s AND e.relation = 'used' AND e.seq <= %s AND e.src NOT LIKE %s"
        " ORDER BY e.seq LIMIT %s",
        (model, as_of, PREDICT_PREFIX + "%", limit + 1),
    )
    return [(int(seq), str(src), str(keyid)) for seq, src, keyid in rows]


@translate_errors
def ledger_trust(conn: psycopg.Connection) -> tuple[str, list[bytes]]:
    vkey = stored_checkpoints.checkpoint_verifier(conn).vkey()
    admins = [bytes(r[0]) for r in conn.execute("SELECT public_key FROM ledger.trust_root WHERE purpose = 'admin'")]
    return vkey, admins


def gather(
    conn: psycopg.Connection,
    name: str,
    *,
    as_of_seq: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    extra_keys: Sequence[str] = (),
) -> ModelEvidence:
    """The verified evidence about the model ``name`` (see the module docstring); the bundle also carries the
    key history of ``extra_keys`` (an attestation's signer, which signs nothing behind the model).

    Raises ``ModelNotFound`` for a model the ledger does not hold, ``NotCovered`` (retry shortly) when no
    checkpoint covers it or ``as_of_seq`` yet,
    ``ReportLimit`` when the lifecycle exceeds ``max_depth`` / ``max_nodes`` (never cut short silently),
    and the bundle verifier's error if the ledger's own entries do not verify.
    """
    _check_limit("max_depth", max_depth, 1, DEFAULT_MAX_DEPTH * 5)
    _check_limit("max_nodes", max_nodes, 1, MAX_NODES_CAP)
    conn.execute(f"SET statement_timeout = {max(1, int(timeout_s * 1000))}")
    try:
        deadline = time.monotonic() + timeout_s
        return _gather(conn, name, as_of_seq, max_depth, max_nodes, deadline, timeout_s, tuple(extra_keys))
    finally:
        with contextlib.suppress(psycopg.Error):  # the limit is this call's, not a pooled session's
            conn.execute("RESET statement_timeout")


def _gather(
    conn: psycopg.Connection,
    name: str,
    as_of_seq: int | None,
    max_depth: int,
    max_nodes: int,
    deadline: float,
    timeout_s: float,
    extra_keys: tuple[str, ...],
) -> ModelEvidence:
    cp = stored_checkpoints.latest(conn)
    if cp is None or cp.tree_size == 0:
        raise NotCovered("the ledger has no checkpoint over any entry yet", hint="retry after the next checkpoint")
    if as_of_seq is not None and as_of_seq >= cp.tree_size:
        raise NotCovered(
            f"as-of seq {as_of_seq} is newer than the latest checkpoint (tree size {cp.tree_size}), "
            "so it is not provable yet",
            hint="retry after the next checkpoint, about a second later",
        )
    as_of = cp.tree_size - 1 if as_of_seq is None else as_of_seq
    try:
        model = resolve_model(conn, name, as_of)
    except ModelNotFound as e:
        try:
            later = resolve_model(conn, name, traverse.position(conn))
        except ProvaultError:
            raise e from None  # not in the ledger at all
        raise NotCovered(
            f"model {later} is in the ledger but no checkpoint covers it yet", hint="retry after the next checkpoint"
        ) from None
    t = traverse.trace(
        conn,
        model,
        direction=traverse.UPSTREAM,
        max_depth=max_depth,
        max_nodes=max_nodes,
        as_of_seq=as_of,
        predictions_limit=0,
    )
    about = _about(conn, model, as_of, max_nodes)
    if t.truncated or len(t.nodes) + len(about) > max_nodes:
        raise ReportLimit(
            f"the model's lifecycle reaches more than {max_nodes} nodes or {max_depth} hops, so a decision "
            "from it would rest on part of the evidence; refusing to cut it short",
            hint=f"raise the node limit (at most {MAX_NODES_CAP}) or the depth (at most {DEFAULT_MAX_DEPTH * 5})",
        )
    ids = [n.id for n in t.nodes]
    ids += [node for node in dict.fromkeys(n for _, n, _ in about) if node not in set(ids)]
    keys = sorted({key_node_id(k) for k in [*t.signers.values(), *(k for _, _, k in about)]})
    ended = _invalidations(conn, [*ids, *keys], as_of)
    seqs = sorted(set(t.seqs) | {s for s, _, _ in about} | set(ended))
    if time.monotonic() > deadline:
        raise ReportLimit(f"gathering the model's evidence took longer than {timeout_s:g} s", hint="raise the timeout")
    bundle = build_bundle(
        conn, seqs, subject=model, direction=traverse.BOTH, as_of_seq=as_of, node_ids=ids, extra_keys=extra_keys
    )
    vkey, admins = ledger_trust(conn)
    report = verify_bundle(bundle, vkey=vkey, admin_keys=admins)
    return from_bundle(bundle, report, query=name)


__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "MAX_NODES_CAP",
    "ModelEvidence",
    "ModelNotFound",
    "ProvaultError",
    "Quarantine",
    "ReportLimit",
    "from_bundle",
    "gather",
    "key_history",
    "key_node_id",
    "parse_quarantine",
]
