"""Offline verification of audit bundles (``provault.v1.AuditBundle``), pure.

A bundle carries what a trace rests on: the exact envelope bytes of every entry behind the answer, an
inclusion proof for each against one signed checkpoint, the key history that makes every signing key
valid, and the answer's nodes and edges.  :func:`verify_bundle` checks it with no database and no network
(the pure core, the generated messages and the projection's own entry-to-rows mapping; a test keeps it
so), in five steps, raising at the first failure with the step and the place (``entries[2] (seq 5)``):

0. format (``_format``): format identifier, enums, order, uniqueness;
1. checkpoint (``_format``): the signed note verifies under the pinned key, or the one the bundle names;
2. inclusion (``_format``): every leaf hash and inclusion proof leads to the checkpoint's root;
3. signatures and keys (``_keys``): every signature verifies with a key valid for its entry at its seq,
   replayed through the ledger's own ``KeyRegistry`` from the bundle's root keys and key entries;
4. events and graph (``_graph_check``): the nodes and edges recompute from the events exactly.

Serialization (``codec``) accepts only the canonical encoding of what a file parses to, so every byte of a
bundle file matters.  Text quoted from a bundle is made :func:`printable` first (docs/security.md, D7).
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.core.checkpoint import Checkpoint, NoteVerifier
from ledger.core.errors import expected_found
from ledger.core.keys import pinned_keys
from provault.v1 import query_pb2
from query.wire import DIRECTIONS

from ._errors import STEPS, MalformedBundle, printable
from ._format import _check_checkpoint, _check_format, _check_inclusion
from ._graph_check import _check_graph
from ._keys import _check_signatures, _KeyCheck
from .codec import BUNDLE_FORMAT, decode_bundle, encode_bundle, read_bundle, write_bundle
from .graph import Graph, GraphNode, edge_pb, node_pb, recompute_graph
from .report import KEY_GIVEN, BundleReport

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
