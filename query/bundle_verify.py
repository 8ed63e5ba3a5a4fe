"""Offline verification of audit bundles (``provault.v1.AuditBundle``), pure.

An audit bundle carries everything needed to check a trace without the
server: the exact envelope bytes of every entry behind the answer, an
inclusion proof for each against one signed checkpoint, the key history that
makes every signing key valid, and the nodes and edges of the answer.  This
module checks it with no database and no network: it imports the pure core
(``ledger.core``), the generated messages (``provault.v1``), the projection's
pure entry-to-rows mapping (``query._mapping``, so the graph is recomputed by
the very rules that built it) and the standard library.  A test keeps it so.

:func:`verify_bundle` runs five numbered steps and raises at the first
failure; the error is one of :mod:`ledger.core.errors` (``ProofInvalid``,
``SignatureInvalid``, ``MalformedProof``, ``UnknownKey``, ...) whose message
names the step, the place (``entries[2] (seq 5)``) and what was expected and
found.  The error also carries ``step``, ``step_name`` and ``place``.  A bundle
is untrusted input, so the text of these errors (which quotes its fields) is
made :func:`printable` first: control characters and bidi overrides from the
bundle cannot reach a terminal (docs/security.md, D7).

0. **Format**: the format identifier, enums, order and uniqueness.
1. **Checkpoint**: the signed note verifies under the checkpoint key -- the
   one the auditor pinned (``vkey``), or else the one the bundle names -- and
   its parsed fields are the signed ones.
2. **Inclusion**: every entry's leaf hash is SHA-256(0x00 || envelope bytes)
   and its inclusion proof leads to the checkpoint's root at its size.
3. **Signatures and keys**: every payload parses as an event whose id is the
   entry's; every envelope's signature verifies with its signing key, and
   that key is a root (admin) key listed by the bundle, or registered by a
   ``key.registered`` entry of the bundle (proven in step 2, signed by a
   valid admin key) before the entries it signs, not revoked before them,
   and allowed to sign their kind for their producer.
4. **Events and graph**: the nodes and edges recompute from the events
   exactly as the bundle states them, and the bundle's subject is one of them.

Serialization (:func:`encode_bundle`, :func:`decode_bundle`): the proto3
JSON mapping, written canonically (one line of ASCII, no spaces, fields in
number order, then a newline; ``jq .`` shows it readably), or the
deterministic binary encoding.  Reading refuses any file that
is not exactly the canonical encoding of what it parses to, so two different
files never verify as the same bundle: every byte of a bundle file matters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError

from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint, parse_vkey
from ledger.core.envelope import Envelope, parse_envelope, verify_envelope
from ledger.core.errors import (
    DecodeError,
    KeyMaterialError,
    KeyNotPermitted,
    KeyRevoked,
    MalformedProof,
    ProofInvalid,
    ProvaultError,
    UnknownKey,
    VerificationFailed,
    expected_found,
)
from ledger.core.events import Event, format_time, parse_event
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, KeyRecord, parse_registration, parse_revocation
from ledger.core.keys import Ed25519Verifier, pinned_keys
from provault.v1 import ledger_pb2, query_pb2
from query._mapping import EdgeRow, EntryRows, NodeRow, fold_attributes, map_event, node_kind, node_label

BUNDLE_FORMAT = "provault.audit-bundle.v1"
MAX_BUNDLE_BYTES = 1 << 30

STEPS: Mapping[int, str] = {
    0: "bundle format",
    1: "checkpoint",
    2: "inclusion proofs",
    3: "signatures and keys",
    4: "events and graph",
}

DIRECTIONS: Mapping[int, str] = {
    query_pb2.DIRECTION_UPSTREAM: "upstream",
    query_pb2.DIRECTION_DOWNSTREAM: "downstream",
    query_pb2.DIRECTION_BOTH: "both",
}
NODE_TYPES: Mapping[str | None, int] = {
    None: query_pb2.NODE_TYPE_UNSPECIFIED,
    "entity": query_pb2.NODE_TYPE_ENTITY,
    "activity": query_pb2.NODE_TYPE_ACTIVITY,
    "agent": query_pb2.NODE_TYPE_AGENT,
}
RELATIONS: Mapping[str, int] = {
    "used": query_pb2.RELATION_USED,
    "wasGeneratedBy": query_pb2.RELATION_WAS_GENERATED_BY,
    "wasAssociatedWith": query_pb2.RELATION_WAS_ASSOCIATED_WITH,
    "wasAttributedTo": query_pb2.RELATION_WAS_ATTRIBUTED_TO,
    "wasDerivedFrom": query_pb2.RELATION_WAS_DERIVED_FROM,
    "wasInformedBy": query_pb2.RELATION_WAS_INFORMED_BY,
    "actedOnBehalfOf": query_pb2.RELATION_ACTED_ON_BEHALF_OF,
    "wasStartedBy": query_pb2.RELATION_WAS_STARTED_BY,
    "wasEndedBy": query_pb2.RELATION_WAS_ENDED_BY,
    "wasInvalidatedBy": query_pb2.RELATION_WAS_INVALIDATED_BY,
    "wasInfluencedBy": query_pb2.RELATION_WAS_INFLUENCED_BY,
    "specializationOf": query_pb2.RELATION_SPECIALIZATION_OF,
    "alternateOf": query_pb2.RELATION_ALTERNATE_OF,
    "hadMember": query_pb2.RELATION_HAD_MEMBER,
}
RELATION_NAMES: Mapping[int, str] = {v: k for k, v in RELATIONS.items()}
PREDICTION_KIND = "provault:Prediction"

_KEYID = re.compile(r"[0-9a-f]{64}")


class MalformedBundle(DecodeError):
    """A bundle file or message that does not follow the bundle format."""

    reason = "malformed_bundle"


# --- printable text ------------------------------------------------------------------

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories escaped: controls (C0, DEL, C1: newlines, tabs, ANSI escapes), format characters
(the bidi controls that reorder a line, zero-width spaces and joiners, the BOM, soft hyphens, tag
characters), lone surrogates, private-use and unassigned code points, and line / paragraph separators:
everything that moves the cursor, reorders or hides text, or looks like nothing."""


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: each character of a :data:`_HIDDEN` category is written
    as a ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN`` escape; the rest is kept as is.

    A backslash is kept as is, so applying it twice changes nothing more."""
    if text.isprintable() and text.isascii():  # the common case, in C
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# --- located errors ------------------------------------------------------------------


def _located(cls: type[ProvaultError], step: int, place: str, message: str, hint: str | None) -> ProvaultError:
    place, message, hint = printable(place), printable(message), printable(hint) if hint is not None else None
    text = f"step {step} ({STEPS[step]}), {place}: {message}"
    try:
        err = cls(text, hint=hint)
    except TypeError:  # an error class with another constructor: keep the family
        err = VerificationFailed(text, hint=hint)
    err.step, err.step_name, err.place, err.detail = step, STEPS[step], place, message  # type: ignore[attr-defined]
    return err


def _fail(step: int, place: str, cls: type[ProvaultError], message: str, hint: str | None = None) -> NoReturn:
    raise _located(cls, step, place, message, hint)


@contextmanager
def _at(step: int, place: str) -> Iterator[None]:
    """Re-raise a core error from inside the block with the step and place in front."""
    try:
        yield
    except ProvaultError as e:
        if getattr(e, "step", None) is not None:
            raise
        raise _located(type(e), step, place, e.message, e.hint) from e


# --- serialization -------------------------------------------------------------------


def encode_bundle(bundle: query_pb2.AuditBundle, *, binary: bool = False) -> bytes:
    """The canonical bytes of a bundle: proto3 JSON (default) or deterministic binary."""
    if binary:
        return bundle.SerializeToString(deterministic=True)
    doc = json_format.MessageToDict(bundle)
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def decode_bundle(data: bytes) -> query_pb2.AuditBundle:
    """Parse bundle bytes (JSON if they start with ``{``, else binary); refuse non-canonical ones.

    Errors are :class:`MalformedBundle` located at step 0, place ``file``.
    """
    with _at(0, "file"):
        return _decode(data)


def _decode(data: bytes) -> query_pb2.AuditBundle:
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedBundle(expected_found("bundle", "bytes", type(data).__name__))
    data = bytes(data)
    if len(data) > MAX_BUNDLE_BYTES:
        raise MalformedBundle(expected_found("bundle size", f"at most {MAX_BUNDLE_BYTES} bytes", len(data)))
    binary = not data.startswith(b"{")
    bundle = _parse_binary(data) if binary else _parse_json(data)
    canonical = encode_bundle(bundle, binary=binary)
    if canonical != data:
        raise MalformedBundle(
            f"the bundle file is not in canonical form: {_first_difference(data, canonical, binary)}",
            hint="bundle files are written by `provault bundle`; a file that was edited, re-formatted or damaged "
            "is refused, because every byte of a bundle must be accounted for",
        )
    return bundle


def _parse_json(data: bytes) -> query_pb2.AuditBundle:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise MalformedBundle(f"bundle JSON: byte {e.start} is not ASCII (0x{data[e.start]:02x})") from None
    bundle = query_pb2.AuditBundle()
    try:
        json_format.Parse(text, bundle)
    except (json_format.ParseError, ValueError, RecursionError, TypeError) as e:
        raise MalformedBundle(f"bundle JSON does not parse as an AuditBundle: {str(e)[:300]}") from None
    return bundle


def _parse_binary(data: bytes) -> query_pb2.AuditBundle:
    bundle = query_pb2.AuditBundle()
    try:
        bundle.ParseFromString(data)
    except (ProtobufDecodeError, ValueError, RecursionError) as e:
        raise MalformedBundle(
            f"bundle is neither JSON (first byte 0x{data[:1].hex() or 'none'}, expected '{{') "
            f"nor a binary AuditBundle: {str(e)[:200]}"
        ) from None
    bundle.DiscardUnknownFields()  # unknown fields make the canonical encoding differ: refused
    return bundle


def _first_difference(data: bytes, canonical: bytes, binary: bool) -> str:
    i = next(
        (n for n, (a, b) in enumerate(zip(data, canonical, strict=False)) if a != b), min(len(data), len(canonical))
    )
    if binary:
        return (
            f"byte {i} differs from the canonical encoding of what it parses to ({len(data)} vs {len(canonical)} bytes)"
        )
    found, want = data[max(i - 24, 0) : i + 16], canonical[max(i - 24, 0) : i + 16]
    return f"byte {i} differs from the canonical encoding of what it parses to: found {found!r}, expected {want!r}"


def write_bundle(bundle: query_pb2.AuditBundle, path: str | Path, *, binary: bool = False) -> int:
    """Write the canonical encoding to ``path``; return the number of bytes."""
    data = encode_bundle(bundle, binary=binary)
    Path(path).write_bytes(data)
    return len(data)


def read_bundle(path: str | Path) -> query_pb2.AuditBundle:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise MalformedBundle(f"cannot read bundle file {path}: {e.strerror or type(e).__name__}") from None
    return decode_bundle(data)


# --- the graph, recomputed from events (shared with the builder) ---------------------------


@dataclass(slots=True, kw_only=True)
class GraphNode:
    id: str
    node_type: str | None
    attributes: dict[str, Any]
    first_seq: int


@dataclass(slots=True, kw_only=True)
class Graph:
    """Nodes (fold of every mention, in seq order) and edges keyed by (relation, src, dst, seq)."""

    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: dict[tuple[str, str, str, int], list[dict[str, Any]]] = field(default_factory=dict)


def _prediction_rows(rows: EntryRows) -> EntryRows:
    """A prediction as the traversal presents it: an entity generated by its batch at the row's seq."""
    nodes, edges = list(rows.nodes), list(rows.edges)
    for p in rows.predictions:
        attrs: dict[str, Any] = {"prov:type": PREDICTION_KIND, "prov:generatedAtTime": format_time(p.time)}
        attrs.update({f"provault:{k}": v for k, v in (("input", p.input), ("output", p.output)) if v is not None})
        nodes.append(NodeRow(id=p.id, iri=p.id, node_type="entity", attributes=attrs))
        edges.append(
            EdgeRow(
                ordinal=len(edges),
                relation="wasGeneratedBy",
                src=p.id,
                dst=p.activity,
                stmt_id="_:prediction",
                origin="prediction",
                attributes={},
            )
        )
    return EntryRows(seq=rows.seq, kind=rows.kind, nodes=tuple(nodes), edges=tuple(edges))


def recompute_graph(events: Sequence[tuple[int, Event]]) -> Graph:
    """The graph the given (seq, event) pairs state, folded in seq order (query._mapping rules)."""
    graph = Graph()
    for seq, event in sorted(events, key=lambda p: p[0]):
        rows = _prediction_rows(map_event(event, seq))
        for n in rows.nodes:
            node = graph.nodes.get(n.id)
            if node is None:
                graph.nodes[n.id] = GraphNode(
                    id=n.id, node_type=n.node_type, attributes=dict(n.attributes), first_seq=seq
                )
            else:
                node.node_type = node.node_type or n.node_type
                node.attributes = fold_attributes([node.attributes, n.attributes])
        for e in rows.edges:
            graph.edges.setdefault((e.relation, e.src, e.dst, seq), []).append(dict(e.attributes))
    return graph


def attributes_json(attributes: Mapping[str, Any]) -> str:
    """The canonical JSON of a node's or edge's attributes, as QueryService and bundles carry it."""
    return json.dumps(dict(attributes), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def node_pb(node: GraphNode) -> query_pb2.Node:
    return query_pb2.Node(
        id=node.id,
        type=NODE_TYPES[node.node_type],
        kind=node_kind(node.attributes) or "",
        label=node_label(node.attributes) or "",
        attributes_json=attributes_json(node.attributes),
        introduced_seq=node.first_seq,
    )


def edge_pb(key: tuple[str, str, str, int], attributes: Mapping[str, Any]) -> query_pb2.Edge:
    relation, src, dst, seq = key
    return query_pb2.Edge(
        relation=RELATIONS[relation], from_id=src, to_id=dst, seq=seq, attributes_json=attributes_json(attributes)
    )


# --- the report ----------------------------------------------------------------------


KEY_FROM_BUNDLE = "bundle"
KEY_GIVEN = "given"


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleReport:
    """What a bundle that verified proves, and on whose keys."""

    node_id: str
    direction: str
    as_of_seq: int
    origin: str
    tree_size: int
    root_hash: bytes
    checkpoint_key: str
    """The verifier key the checkpoint verified under."""
    key_source: str
    """``given`` (pinned by the auditor) or ``bundle`` (named by the bundle itself: pin it)."""
    admin_keys_pinned: bool
    root_keyids: tuple[str, ...]
    unchecked_seqs: tuple[int, ...]
    """Entries signed by a root key whose public key was not pinned: their signatures were not checked."""
    entries: int
    key_entries: int
    nodes: int
    edges: int
    steps: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def fully_pinned(self) -> bool:
        return self.key_source == KEY_GIVEN and self.admin_keys_pinned

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "node_id": self.node_id,
            "direction": self.direction,
            "as_of_seq": self.as_of_seq,
            "checkpoint": {"origin": self.origin, "tree_size": self.tree_size, "root_hash": self.root_hash.hex()},
            "checkpoint_key": self.checkpoint_key,
            "key_source": self.key_source,
            "admin_keys_pinned": self.admin_keys_pinned,
            "root_keyids": list(self.root_keyids),
            "unchecked_signature_seqs": list(self.unchecked_seqs),
            "entries": self.entries,
            "key_entries": self.key_entries,
            "nodes": self.nodes,
            "edges": self.edges,
            "steps": list(self.steps),
            "notes": list(self.notes),
        }


# --- verification ----------------------------------------------------------------------


def verify_bundle(
    bundle: query_pb2.AuditBundle, *, vkey: str | None = None, admin_keys: Sequence[bytes] | None = None
) -> BundleReport:
    """Verify ``bundle`` offline; return a report, or raise at the first failing step.

    ``vkey`` is the checkpoint verifier key the auditor pinned (C2SP
    ``name+hash+key``); without it, the key the bundle names is used and the
    report says so.  ``admin_keys`` are the raw 32-byte public keys of the
    root (admin) keys the auditor pinned; without them, signatures by root
    keys cannot be checked (listed in ``unchecked_seqs``), and the key
    registrations they signed rest on the checkpoint alone.
    """
    if not isinstance(bundle, query_pb2.AuditBundle):
        raise MalformedBundle(expected_found("bundle", "a provault.v1.AuditBundle", type(bundle).__name__))
    pins = pinned_keys(admin_keys)
    # 0. The bundle has the shape the format requires.
    _check_format(bundle)
    # 1. The checkpoint is signed by the log's key.
    cp, verifier, source = _check_checkpoint(bundle, vkey)
    # 2. Every entry is in the tree the checkpoint commits to.
    proven = _check_inclusion(bundle, cp)
    # 3. Every entry is signed by a key that was valid for it.
    signed, keys = _check_signatures(bundle, proven, pins)
    # 4. The graph the events state is the bundle's.
    graph = _check_graph(bundle, signed)
    return _report(bundle, cp, verifier, source, pins is not None, keys, graph)


def _report(
    b: query_pb2.AuditBundle,
    cp: Checkpoint,
    verifier: NoteVerifier,
    source: str,
    pinned: bool,
    keys: _KeyCheck,
    graph: Graph,
) -> BundleReport:
    held = "pinned by you" if source == KEY_GIVEN else "named by the bundle itself"
    unchecked = f"; {len(keys.unchecked)} by root keys not checked (no admin keys pinned)" if keys.unchecked else ""
    return BundleReport(
        node_id=b.node_id,
        direction=DIRECTIONS[b.direction],
        as_of_seq=b.as_of_seq,
        origin=cp.origin,
        tree_size=cp.size,
        root_hash=cp.root_hash,
        checkpoint_key=verifier.vkey(),
        key_source=source,
        admin_keys_pinned=pinned,
        root_keyids=tuple(b.root_keyids),
        unchecked_seqs=keys.unchecked,
        entries=len(b.entries),
        key_entries=len(b.key_entries),
        nodes=len(b.nodes),
        edges=len(b.edges),
        notes=tuple(keys.notes),
        steps=(
            f"1 checkpoint: {cp.origin} size {cp.size} root {cp.root_hash.hex()} verifies under {verifier.vkey()} ({held})",
            f"2 inclusion: {keys.checked + len(keys.unchecked)} entries hash to their leaves and are proven against that root",
            f"3 signatures: {keys.checked} signatures verify with keys valid at their seqs{unchecked}",
            f"4 graph: {len(b.nodes)} nodes and {len(b.edges)} edges recompute from the {len(b.entries)} signed events; "
            f"subject {b.node_id} first mentioned at seq {graph.nodes[b.node_id].first_seq}",
        ),
    )


# 0. format ------------------------------------------------------------------------------


def _check_format(b: query_pb2.AuditBundle) -> None:
    if b.format != BUNDLE_FORMAT:
        _fail(
            0, "format", MalformedBundle, expected_found("format identifier", repr(BUNDLE_FORMAT), repr(b.format[:80]))
        )
    if b.direction not in DIRECTIONS:
        _fail(0, "direction", MalformedBundle, expected_found("direction", "UPSTREAM, DOWNSTREAM or BOTH", b.direction))
    if not b.node_id:
        _fail(0, "node_id", MalformedBundle, "the bundle names no subject node")
    if not b.HasField("checkpoint"):
        _fail(0, "checkpoint", MalformedBundle, "the bundle has no checkpoint")
    if not b.entries:
        _fail(0, "entries", MalformedBundle, "the bundle has no entries")
    for name in ("entries", "key_entries"):
        _check_entry_order(getattr(b, name), name, b.as_of_seq if name == "entries" else None)
    ids = list(b.root_keyids)
    if any(not _KEYID.fullmatch(k) for k in ids) or ids != sorted(set(ids)):
        _fail(0, "root_keyids", MalformedBundle, expected_found("root_keyids", "distinct 64-hex keyids in order", ids))
    _check_unique([n.id for n in b.nodes], "nodes", "node id")
    _check_unique([e.SerializeToString(deterministic=True) for e in b.edges], "edges", "edge")


def _check_entry_order(items: Sequence[query_pb2.ProvenEntry], name: str, as_of: int | None) -> None:
    last = -1
    for i, pe in enumerate(items):
        if not pe.HasField("entry") or not pe.HasField("inclusion_proof"):
            _fail(0, f"{name}[{i}]", MalformedBundle, "expected an entry and its inclusion proof, found only part")
        seq = pe.entry.seq
        if seq <= last:
            _fail(0, f"{name}[{i}] (seq {seq})", MalformedBundle, expected_found("order", f"a seq after {last}", seq))
        if as_of is not None and seq > as_of:
            _fail(
                0, f"{name}[{i}] (seq {seq})", MalformedBundle, expected_found("seq", f"at most as_of_seq {as_of}", seq)
            )
        last = seq


def _check_unique(values: Sequence[object], name: str, what: str) -> None:
    seen: set[object] = set()
    for i, v in enumerate(values):
        if v in seen:
            _fail(0, f"{name}[{i}]", MalformedBundle, f"the same {what} appears twice")
        seen.add(v)


# 1. checkpoint ----------------------------------------------------------------------------


def _check_checkpoint(b: query_pb2.AuditBundle, vkey: str | None) -> tuple[Checkpoint, NoteVerifier, str]:
    if vkey is not None:
        try:
            verifier, source = parse_vkey(vkey.strip()), KEY_GIVEN
        except KeyMaterialError as e:
            raise KeyMaterialError(f"the checkpoint key you gave: {e.message}", hint=e.hint) from None
        if b.checkpoint_verifier_key and b.checkpoint_verifier_key != verifier.vkey():
            pinned = f"the key you pinned, {verifier.vkey()}"
            named = expected_found("checkpoint key named by the bundle", pinned, b.checkpoint_verifier_key)
            _fail(
                1,
                "checkpoint_verifier_key",
                VerificationFailed,
                named,
                hint="the bundle was altered, or it comes from another log than the one whose key you pinned",
            )
    else:
        with _at(1, "checkpoint_verifier_key"):
            verifier, source = parse_vkey(b.checkpoint_verifier_key), KEY_FROM_BUNDLE
    with _at(1, "checkpoint.signed_note"):
        cp = open_checkpoint(b.checkpoint.signed_note, [verifier])
    c = b.checkpoint
    stated = (
        ("origin", c.origin, cp.origin),
        ("tree_size", c.tree_size, cp.size),
        ("root_hash", c.root_hash, cp.root_hash),
    )
    for what, found, signed in stated:
        if found != signed:
            shown = (signed.hex(), found.hex()) if isinstance(signed, bytes) else (repr(signed), repr(found))
            _fail(
                1,
                f"checkpoint.{what}",
                VerificationFailed,
                expected_found(what, f"the signed note's {shown[0]}", shown[1]),
            )
    if b.as_of_seq >= cp.size:
        below = f"below the checkpoint's tree size {cp.size}"
        _fail(1, "as_of_seq", VerificationFailed, expected_found("as_of_seq", below, b.as_of_seq))
    return cp, verifier, source


# 2. inclusion -----------------------------------------------------------------------------


def _check_inclusion(b: query_pb2.AuditBundle, cp: Checkpoint) -> dict[int, query_pb2.ProvenEntry]:
    """Check every proof; return the proven entries by seq (an entry in both lists must be the same)."""
    proven: dict[int, query_pb2.ProvenEntry] = {}
    for name in ("key_entries", "entries"):
        for i, pe in enumerate(getattr(b, name)):
            place = f"{name}[{i}] (seq {pe.entry.seq})"
            _check_proof(pe, cp, place)
            other = proven.setdefault(pe.entry.seq, pe)
            if other is not pe and other != pe:
                _fail(2, place, VerificationFailed, "differs from the key entry with the same seq")
    return proven


def _check_proof(pe: query_pb2.ProvenEntry, cp: Checkpoint, place: str) -> None:
    e, p = pe.entry, pe.inclusion_proof
    leaf = merkle.leaf_hash(e.envelope_json)
    for what, found in (("entry.leaf_hash", e.leaf_hash), ("inclusion_proof.leaf_hash", p.leaf_hash)):
        if found != leaf:
            wrong = expected_found(what, f"SHA-256(0x00 || envelope_json) = {leaf.hex()}", found.hex() or "empty")
            _fail(2, place, ProofInvalid, wrong, hint="the envelope bytes or the leaf hash were altered")
    for what, found, want in (
        ("inclusion_proof.seq", p.seq, e.seq),
        ("inclusion_proof.leaf_index", p.leaf_index, e.seq),
        ("inclusion_proof.tree_size", p.tree_size, cp.size),
    ):
        if found != want:
            _fail(2, place, MalformedProof, expected_found(what, want, found))
    with _at(2, place):
        merkle.verify_inclusion(leaf, e.seq, cp.size, list(p.hashes), cp.root_hash)


# 3. signatures and keys ----------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Key:
    record: KeyRecord
    root: bool
    public_key: bytes | None
    revoked_seq: int | None = None
    revoked_from: datetime | None = None


@dataclass(slots=True, kw_only=True)
class _KeyCheck:
    checked: int = 0
    unchecked: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Signed:
    place: str
    entry: ledger_pb2.Entry
    envelope: Envelope
    event: Event


def _parse_signed(pe: query_pb2.ProvenEntry, place: str) -> _Signed:
    raw = pe.entry.envelope_json
    with _at(3, place):
        env = parse_envelope(raw, max_size=max(len(raw), 1))
        event = parse_event(env.payload, max_size=max(len(env.payload), 1))
    if pe.entry.event_id != event.id:
        wrong = expected_found("entry.event_id", f"the signed payload's {event.id}", repr(pe.entry.event_id[:80]))
        _fail(3, place, VerificationFailed, wrong)
    return _Signed(place=place, entry=pe.entry, envelope=env, event=event)


def _check_signatures(
    b: query_pb2.AuditBundle, proven: dict[int, query_pb2.ProvenEntry], pins: dict[str, bytes] | None
) -> tuple[dict[int, _Signed], _KeyCheck]:
    places = {
        pe.entry.seq: f"{name}[{i}] (seq {pe.entry.seq})"
        for name in ("entries", "key_entries")
        for i, pe in enumerate(getattr(b, name))
    }
    signed = {seq: _parse_signed(proven[seq], places[seq]) for seq in sorted(proven)}
    keys = _key_history(b, signed, pins)
    out, unchecked, used_roots = _KeyCheck(), [], set()
    for seq, s in signed.items():
        key = _valid_key(s, seq, keys, pins)
        if key.root:
            used_roots.add(key.record.keyid)
        if key.public_key is None:
            unchecked.append(seq)
        else:
            with _at(3, s.place):
                verify_envelope(s.envelope, {key.record.keyid: Ed25519Verifier(key.public_key)})
            out.checked += 1
        if key.revoked_seq is not None:
            out.notes.append(_revocation_note(s, seq, key))
    for kid in b.root_keyids:
        if kid not in used_roots:
            _fail(
                3,
                "root_keyids",
                VerificationFailed,
                f"root key {kid} signs no entry of the bundle",
                hint="root_keyids lists exactly the root keys the bundle's entries rest on",
            )
    out.unchecked = tuple(unchecked)
    return signed, out


def _key_history(
    b: query_pb2.AuditBundle, signed: dict[int, _Signed], pins: dict[str, bytes] | None
) -> dict[str, _Key]:
    """The keys as the bundle's key entries establish them, from its root keys."""
    keys: dict[str, _Key] = {}
    for kid in b.root_keyids:
        record = KeyRecord(
            keyid=kid,
            public_key=b"",
            role="admin",
            identity={"type": "service", "name": "root"},
            kinds=("*",),
            producers=("*",),
            registered_seq=None,
        )
        keys[kid] = _Key(record=record, root=True, public_key=(pins or {}).get(kid))
    for pe in b.key_entries:
        s = signed[pe.entry.seq]
        if s.event.kind == KEY_REGISTERED:
            _apply_registration(s, pe.entry.seq, keys)
        elif s.event.kind == KEY_REVOKED:
            _apply_revocation(s, pe.entry.seq, keys)
        else:
            wrong = expected_found("kind of a key entry", f"{KEY_REGISTERED} or {KEY_REVOKED}", repr(s.event.kind))
            _fail(3, s.place, VerificationFailed, wrong)
    return keys


def _apply_registration(s: _Signed, seq: int, keys: dict[str, _Key]) -> None:
    with _at(3, s.place):
        reg = parse_registration(s.event)
    if reg.keyid in keys:
        old = keys[reg.keyid]
        where = "is a root key" if old.root else f"was registered at seq {old.record.registered_seq}"
        _fail(3, s.place, VerificationFailed, f"registers key {reg.keyid}, which {where}")
    record = KeyRecord(
        keyid=reg.keyid,
        public_key=reg.public_key,
        role=reg.role,
        identity=reg.identity,
        kinds=reg.kinds,
        producers=reg.producers,
        registered_seq=seq,
    )
    keys[reg.keyid] = _Key(record=record, root=False, public_key=reg.public_key)


def _apply_revocation(s: _Signed, seq: int, keys: dict[str, _Key]) -> None:
    with _at(3, s.place):
        rev = parse_revocation(s.event)
    key = keys.get(rev.keyid)
    if key is None or key.root or key.revoked_seq is not None:
        why = (
            "is not registered in the bundle"
            if key is None
            else "is a root key"
            if key.root
            else f"was revoked at seq {key.revoked_seq}"
        )
        _fail(3, s.place, VerificationFailed, f"revokes key {rev.keyid}, which {why}")
    key.revoked_seq, key.revoked_from = seq, rev.effective_from


def _valid_key(s: _Signed, seq: int, keys: dict[str, _Key], pins: dict[str, bytes] | None) -> _Key:
    """The key the entry names, checked valid for it at its seq."""
    kid = s.entry.keyid
    if kid not in s.envelope.keyids():
        wrong = expected_found("entry.keyid", f"one of the envelope's signatures {list(s.envelope.keyids())}", kid[:80])
        _fail(3, s.place, UnknownKey, wrong)
    key = keys.get(kid)
    if key is None:
        _fail(
            3,
            s.place,
            UnknownKey,
            f"signed by key {kid}, which is neither a root key of the bundle (root_keyids) "
            "nor registered by an entry of key_entries",
            hint="the bundle lacks the key's registration; ask for a complete bundle",
        )
    if key.root and pins is not None and key.public_key is None:
        _fail(
            3,
            s.place,
            UnknownKey,
            f"signed by root key {kid}, which is not among the admin keys you pinned",
            hint="pin that admin public key too, or treat the bundle as coming from another ledger",
        )
    registered = key.record.registered_seq
    if registered is not None and registered >= seq:
        _fail(3, s.place, KeyNotPermitted, f"signed by key {kid}, which was registered later, at seq {registered}")
    if key.revoked_seq is not None and key.revoked_seq < seq:
        _fail(3, s.place, KeyRevoked, f"signed by key {kid}, which was revoked before it, at seq {key.revoked_seq}")
    r = key.record
    if not r.may_sign(s.event.kind):
        _fail(
            3,
            s.place,
            KeyNotPermitted,
            f"key {kid} (role {r.role}, kinds {list(r.kinds)}) may not sign {s.event.kind!r}",
        )
    if not r.may_speak_for(s.event.producer.id):
        _fail(
            3,
            s.place,
            KeyNotPermitted,
            f"key {kid} (producers {list(r.producers)}) may not speak for {s.event.producer.id!r}",
        )
    return key


def _revocation_note(s: _Signed, seq: int, key: _Key) -> str:
    suspect = key.revoked_from is not None and s.event.time >= key.revoked_from
    return (
        f"seq {seq}: key {key.record.keyid[:16]}… was revoked later (seq {key.revoked_seq}, effective from "
        f"{format_time(key.revoked_from)}); this entry's event time {format_time(s.event.time)} is "
        + ("AFTER that: treat it as suspect" if suspect else "before that")
    )


# 4. events and graph --------------------------------------------------------------------------


def _check_graph(b: query_pb2.AuditBundle, signed: dict[int, _Signed]) -> Graph:
    events: list[tuple[int, Event]] = []
    for pe in b.entries:
        events.append((pe.entry.seq, signed[pe.entry.seq].event))
    with _at(4, "entries"):
        graph = recompute_graph(events)
    for i, n in enumerate(b.nodes):
        _compare_node(n, graph, f"nodes[{i}] ({n.id[:120]})")
    for i, e in enumerate(b.edges):
        _compare_edge(
            e, graph, {n.id for n in b.nodes}, f"edges[{i}] ({e.from_id[:80]} -> {e.to_id[:80]}, seq {e.seq})"
        )
    if b.node_id not in {n.id for n in b.nodes}:
        _fail(4, "node_id", VerificationFailed, f"the subject {b.node_id[:120]!r} is not among the bundle's nodes")
    return graph


def _load_attributes(text: str, place: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate member name")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        _fail(4, place, VerificationFailed, f"attributes_json is not one JSON object: {str(e)[:120]}")


def _compare_node(n: query_pb2.Node, graph: Graph, place: str) -> None:
    node = graph.nodes.get(n.id)
    if node is None:
        _fail(
            4,
            place,
            VerificationFailed,
            "no entry of the bundle mentions this node",
            hint="the node was altered, or its entries are missing from the bundle",
        )
    want = node_pb(node)
    for what in ("type", "kind", "label", "introduced_seq"):
        found, recomputed = getattr(n, what), getattr(want, what)
        if found != recomputed:
            _fail(
                4,
                place,
                VerificationFailed,
                expected_found(what, f"{recomputed!r} (recomputed from the entries)", repr(found)),
            )
    if _load_attributes(n.attributes_json, place) != node.attributes:
        wrong = expected_found("attributes_json", f"{want.attributes_json[:200]} (recomputed)", n.attributes_json[:200])
        _fail(4, place, VerificationFailed, wrong)


def _compare_edge(e: query_pb2.Edge, graph: Graph, node_ids: set[str], place: str) -> None:
    relation = RELATION_NAMES.get(e.relation)
    stated = graph.edges.get((relation or "", e.from_id, e.to_id, e.seq))
    if relation is None or stated is None:
        what = relation or f"relation {e.relation}"
        _fail(4, place, VerificationFailed, f"the entry at seq {e.seq} states no {what} edge between these nodes")
    if _load_attributes(e.attributes_json, place) not in stated:
        recomputed = " or ".join(attributes_json(a) for a in stated)[:200]
        _fail(4, place, VerificationFailed, expected_found("attributes_json", recomputed, e.attributes_json[:200]))
    for end in (e.from_id, e.to_id):
        if end not in node_ids:
            _fail(4, place, VerificationFailed, f"edge end {end[:120]!r} is not among the bundle's nodes")


__all__ = [
    "BUNDLE_FORMAT",
    "BundleReport",
    "Graph",
    "GraphNode",
    "MalformedBundle",
    "STEPS",
    "decode_bundle",
    "edge_pb",
    "encode_bundle",
    "node_pb",
    "printable",
    "read_bundle",
    "recompute_graph",
    "verify_bundle",
    "write_bundle",
]
