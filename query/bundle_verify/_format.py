"""Steps 0 to 2: the bundle's format, its checkpoint, and the inclusion of every entry."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint, parse_vkey
from ledger.core.errors import (
    KeyMaterialError,
    MalformedProof,
    ProofInvalid,
    VerificationFailed,
    expected_found,
)
from provault.v1 import query_pb2
from query.wire import DIRECTIONS

from ._errors import MalformedBundle, _at, _fail
from .codec import BUNDLE_FORMAT
from .report import KEY_FROM_BUNDLE, KEY_GIVEN

_KEYID = re.compile(r"[0-9a-f]{64}")


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
