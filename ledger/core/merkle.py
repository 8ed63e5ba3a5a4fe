"""RFC 9162 section 2.1 Merkle tree hashing, proofs and proof verification.

Pure functions over plain lists of 32-byte leaf hashes; the storage-backed
tree must agree with them.

* ``leaf_hash(d) = SHA-256(0x00 || d)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``,
  the empty tree's root is ``SHA-256("")``.
* Proofs are lists of 32-byte hashes in the order RFC 9162 gives them.

Helpers for a store that keeps the hashes of perfect, aligned subtrees keyed by
``(level, index)`` -- level-L node i covers leaves ``[i * 2**L, (i + 1) * 2**L)``:

* :func:`inclusion_proof_ranges` / :func:`consistency_proof_ranges` name the
  leaf ranges ``[start, end)`` whose subtree hashes are the proof elements;
* :func:`perfect_subtrees` splits such a range (or ``[0, size)``) into
  O(log n) stored nodes, and :func:`fold_subtrees` combines their hashes into
  the range's hash.

Errors: a caller asking for something impossible (index >= size, a
consistency proof from the empty tree) gets :class:`InvalidArgument`; a
verifier given structurally impossible input gets :class:`MalformedProof`;
well-formed evidence that does not hash to the root gets :class:`ProofInvalid`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .errors import InvalidArgument, MalformedProof, ProofInvalid, expected_found

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

Range = tuple[int, int]


# --- hashing ----------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one log entry."""
    if not isinstance(data, bytes):
        raise InvalidArgument(expected_found("leaf data", "bytes", type(data).__name__))
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    _require_hash(left, "left child hash", InvalidArgument)
    _require_hash(right, "right child hash", InvalidArgument)
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves: pair level by level, carrying an odd last node up."""
    _require_leaves(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes)


def _mth(level: Sequence[bytes]) -> bytes:
    """RFC 9162 MTH of a non-empty, already validated list of leaf hashes."""
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of :func:`perfect_subtrees` nodes into the range's MTH.

    RFC 9162 hashes an unbalanced right edge as ``node(P1, node(P2, ... Pk))``,
    so the fold runs right to left.
    """
    if len(hashes) == 0:
        raise InvalidArgument(
            expected_found("subtree hashes to fold", "at least one", "none"),
            hint="the empty tree has no nodes; its root is root_hash([])",
        )
    for i, h in enumerate(hashes):
        _require_hash(h, f"subtree hash [{i}]", InvalidArgument)
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = hashlib.sha256(_NODE_PREFIX + h + acc).digest()
    return acc


# --- proof shapes (which leaf ranges make up a proof) --------------------------


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof_ranges(index: int, size: int) -> list[Range]:
    """Leaf ranges whose MTHs form the inclusion proof of ``index`` in ``size``.

    Iterative form of RFC 9162 PATH(m, D[n]); the nearest sibling comes first.
    """
    _require_index(index, size, InvalidArgument)
    ranges: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def consistency_proof_ranges(old_size: int, new_size: int) -> list[Range]:
    """Leaf ranges whose MTHs form the consistency proof from ``old_size`` to ``new_size``.

    Iterative form of RFC 9162 SUBPROOF(m, D[n], true).  Equal sizes give an
    empty proof; ``old_size == 0`` is refused because there is nothing to prove
    (every tree extends the empty tree).
    """
    _require_sizes(old_size, new_size, InvalidArgument)
    ranges: list[Range] = []
    lo, hi, is_old_root = 0, new_size, True
    while hi != old_size:  # the node [lo, hi) still holds leaves past old_size
        mid = lo + _split(hi - lo)
        if old_size <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo, is_old_root = mid, False
    if not is_old_root:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split a tree node's range ``[start, end)`` into perfect aligned ``(level, index)`` nodes.

    Valid for every range that occurs in a proof and for ``[0, size)``: those
    start on a multiple of the smallest power of two >= their length.  Nodes
    come left to right, largest first.
    """
    _require_node_range(start, end)
    nodes: list[tuple[int, int]] = []
    pos, length = start, end - start
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


# --- proof generation ---------------------------------------------------------


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 9162 section 2.1.3.1 inclusion proof for ``leaf_hashes[index]``."""
    _require_leaves(leaf_hashes)
    ranges = inclusion_proof_ranges(index, len(leaf_hashes))
    return [_mth(leaf_hashes[a:b]) for a, b in ranges]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """RFC 9162 section 2.1.4.1 proof that the first ``old_size`` leaves are a prefix.

    ``old_size == len(leaf_hashes)`` gives ``[]``; ``old_size == 0`` raises
    :class:`InvalidArgument` (no proof exists or is needed for the empty tree).
    """
    _require_leaves(leaf_hashes)
    ranges = consistency_proof_ranges(old_size, len(leaf_hashes))
    return [_mth(leaf_hashes[a:b]) for a, b in ranges]


# --- verification ---------------------------------------------------------------


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: check that ``leaf_hash`` is at ``index`` in the tree ``root``.

    Returns None or raises :class:`MalformedProof` / :class:`ProofInvalid`.
    """
    # 1. Every input has the shape the statement needs.
    _require_index(index, size, MalformedProof)
    _require_hash(leaf_hash, "leaf hash", MalformedProof)
    _require_hash(root, "root hash", MalformedProof)
    _require_proof(proof)
    # 2. Walk up from the leaf; the index bits say on which side each sibling is.
    r, sn = _inclusion_walk(leaf_hash, index, size, proof)
    # 3. The path reached the top and ended at the claimed root.
    if sn != 0:
        raise _wrong_length("inclusion", len(proof), len(inclusion_proof_ranges(index, size)))
    if r != root:
        raise ProofInvalid(
            f"inclusion proof for leaf {index} in a tree of size {size} computes root {r.hex()}, expected {root.hex()}",
            hint="the leaf, the proof or the root is not from this log at this size",
        )


def _inclusion_walk(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> tuple[bytes, int]:
    """Steps 2-4 of RFC 9162 section 2.1.3.2: (computed root, remaining sn)."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise _wrong_length("inclusion", len(proof), len(inclusion_proof_ranges(index, size)))
        if fn & 1 or fn == sn:
            r = _h(p, r)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _h(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r, sn


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: check that the tree ``new_root`` extends ``old_root``.

    Equal sizes need an empty proof and equal roots.  ``old_size == 0`` is
    refused as :class:`MalformedProof`: there is no proof from the empty tree.
    """
    # 1. Every input has the shape the statement needs.
    _require_sizes(old_size, new_size, MalformedProof)
    _require_hash(old_root, "old root hash", MalformedProof)
    _require_hash(new_root, "new root hash", MalformedProof)
    _require_proof(proof)
    if old_size == new_size:
        _verify_same_size(old_size, old_root, new_root, proof)
        return
    # 2. Recompute both roots from the proof.
    fr, sr, sn = _consistency_walk(old_size, new_size, old_root, proof)
    # 3. Both roots match and the walk reached the top of the new tree.
    if sn != 0:
        raise _wrong_length("consistency", len(proof), len(consistency_proof_ranges(old_size, new_size)))
    for which, got, want in (("old", fr, old_root), ("new", sr, new_root)):
        if got != want:
            raise ProofInvalid(
                f"consistency proof {old_size} -> {new_size} computes {which} root {got.hex()}, expected {want.hex()}",
                hint="the log may have rewritten history, or the roots and sizes do not belong together",
            )


def _consistency_walk(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes, int]:
    """Steps 1-6 of RFC 9162 section 2.1.4.2: (old root, new root, remaining sn)."""
    expected = len(consistency_proof_ranges(old_size, new_size))
    path = list(proof)
    if not path:
        raise _wrong_length("consistency", 0, expected)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _wrong_length("consistency", len(proof), expected)
        if fn & 1 or fn == sn:
            fr, sr = _h(c, fr), _h(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _h(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr, sr, sn


def _verify_same_size(size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    if len(proof) != 0:
        raise _wrong_length("consistency", len(proof), 0)
    if old_root != new_root:
        raise ProofInvalid(
            f"two different roots for the same tree size {size}: {old_root.hex()} and {new_root.hex()}",
            hint="a log showing two roots for one size has forked; keep both checkpoints as evidence",
        )


def _h(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


# --- argument checks ------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_hash(value: object, what: str, error: type[Exception]) -> None:
    if not isinstance(value, bytes):
        raise error(expected_found(what, f"{HASH_SIZE} bytes", type(value).__name__))
    if len(value) != HASH_SIZE:
        raise error(expected_found(f"{what} length", f"{HASH_SIZE} bytes", f"{len(value)} bytes"))


def _require_leaves(leaf_hashes: Sequence[bytes]) -> None:
    if isinstance(leaf_hashes, (bytes, str)) or not isinstance(leaf_hashes, Sequence):
        raise InvalidArgument(expected_found("leaf hashes", "a sequence of 32-byte hashes", type(leaf_hashes).__name__))
    for i, h in enumerate(leaf_hashes):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            _require_hash(h, f"leaf hash [{i}]", InvalidArgument)


def _require_proof(proof: Sequence[bytes]) -> None:
    if isinstance(proof, (bytes, str)) or not isinstance(proof, Sequence):
        raise MalformedProof(expected_found("proof", "a sequence of 32-byte hashes", type(proof).__name__))
    for i, p in enumerate(proof):
        _require_hash(p, f"proof element [{i}]", MalformedProof)


def _require_index(index: int, size: int, error: type[Exception]) -> None:
    if not _is_int(index) or not _is_int(size):
        raise error(
            expected_found("leaf index and tree size", "integers", f"{type(index).__name__}, {type(size).__name__}")
        )
    if size <= 0:
        raise error(
            expected_found("tree size for an inclusion proof", "at least 1", size),
            hint="the empty tree contains no leaf",
        )
    if not 0 <= index < size:
        raise error(expected_found(f"leaf index in a tree of size {size}", f"0 <= index < {size}", index))


def _require_sizes(old_size: int, new_size: int, error: type[Exception]) -> None:
    if not _is_int(old_size) or not _is_int(new_size):
        raise error(expected_found("tree sizes", "integers", f"{type(old_size).__name__}, {type(new_size).__name__}"))
    if old_size <= 0:
        raise error(
            expected_found("old tree size of a consistency proof", "at least 1", old_size),
            hint="every tree extends the empty tree, so there is nothing to prove; skip the check",
        )
    if old_size > new_size:
        raise error(
            expected_found(
                "tree sizes of a consistency proof", f"old size <= new size {new_size}", f"old size {old_size}"
            ),
            hint="swap the arguments, or the newer checkpoint is older than the one you hold",
        )


def _require_node_range(start: int, end: int) -> None:
    if not _is_int(start) or not _is_int(end):
        raise InvalidArgument(
            expected_found("leaf range bounds", "integers", f"{type(start).__name__}, {type(end).__name__}")
        )
    if not 0 <= start < end:
        raise InvalidArgument(expected_found("leaf range [start, end)", "0 <= start < end", f"[{start}, {end})"))
    width = 1 << (end - start - 1).bit_length()  # smallest power of two >= the length
    if start % width:
        raise InvalidArgument(
            expected_found(f"start of leaf range [{start}, {end})", f"a multiple of {width}", start),
            hint="only ranges that are nodes of an RFC 9162 tree (as in proofs) split into stored subtrees",
        )


def _wrong_length(kind: str, found: int, expected: int) -> MalformedProof:
    return MalformedProof(
        expected_found(f"number of {kind} proof hashes", expected, found),
        hint="the proof is truncated, padded, or was made for a different index or tree size",
    )
