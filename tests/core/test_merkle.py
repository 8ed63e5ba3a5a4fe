"""ledger.core.merkle: RFC 9162 known answers, properties and edge cases."""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core import merkle
from ledger.core.errors import InvalidArgument, MalformedProof, ProofInvalid
from ledger.core.merkle import (
    consistency_proof,
    consistency_proof_ranges,
    fold_subtrees,
    inclusion_proof,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

# --- known answers ------------------------------------------------------------
# The RFC 6962 reference tree used by Certificate Transparency implementations,
# from github.com/transparency-dev/merkle: testonly/constants.go (LeafInputs,
# NodeHashes, RootHashes) and testonly/reference_test.go / proof/verify_test.go
# (inclusion and consistency proofs; indices there are 0-based in
# reference_test.go, 1-based in verify_test.go).

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAVES = [leaf_hash(d) for d in LEAF_INPUTS]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
NODES = {  # (level, index) -> hash, testonly.NodeHashes()
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 2): "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    (0, 3): "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 5): "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    (0, 6): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 0): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
N = {k: bytes.fromhex(v) for k, v in NODES.items()}
INCLUSION_VECTORS = [  # (index, size, proof)
    (0, 1, []),
    (0, 2, [N[0, 1]]),
    (1, 2, [N[0, 0]]),
    (2, 3, [N[1, 0]]),
    (1, 5, [N[0, 0], N[1, 1], N[0, 4]]),
    (0, 8, [N[0, 1], N[1, 1], N[2, 1]]),
    (5, 8, [N[0, 4], N[1, 3], N[2, 0]]),
]
CONSISTENCY_VECTORS = [  # (old_size, new_size, proof)
    (1, 1, []),
    (1, 8, [N[0, 1], N[1, 1], N[2, 1]]),
    (2, 5, [N[1, 1], N[0, 4]]),
    (6, 7, [N[1, 2], N[0, 6], N[2, 0]]),
    (6, 8, [N[1, 2], N[1, 3], N[2, 0]]),
]


def test_leaf_and_node_hash_known_answers() -> None:
    assert [leaf_hash(d) for d in LEAF_INPUTS] == [N[0, i] for i in range(8)]
    assert node_hash(N[0, 0], N[0, 1]) == N[1, 0]
    assert node_hash(N[2, 0], N[2, 1]) == N[3, 0]


@pytest.mark.parametrize("size", range(9))
def test_root_hash_known_answers(size: int) -> None:
    assert root_hash(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_known_answers(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(LEAVES[:size], index) == proof
    verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_known_answers(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAVES[:new], old) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize("size", range(1, 9))
def test_perfect_subtrees_known_answers(size: int) -> None:
    assert fold_subtrees([N[node] for node in perfect_subtrees(0, size)]) == ROOTS[size]


# --- a direct RFC 9162 transcription to cross-check against -------------------


def _ref_mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 0:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_ref_mth(leaves[:k]), _ref_mth(leaves[k:]))


def _ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return _ref_path(m, leaves[:k]) + [_ref_mth(leaves[k:])]
    return _ref_path(m - k, leaves[k:]) + [_ref_mth(leaves[:k])]


def _ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [_ref_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return _ref_subproof(m, leaves[:k], b) + [_ref_mth(leaves[k:])]
    return _ref_subproof(m - k, leaves[k:], False) + [_ref_mth(leaves[:k])]


MAX = 70
TREE = [leaf_hash(i.to_bytes(4, "big")) for i in range(2 * MAX + 2)]
ROOT = [root_hash(TREE[:n]) for n in range(len(TREE) + 1)]
STORED = {  # what the storage layer keeps: every perfect aligned node
    (level, i): root_hash(TREE[i << level : (i + 1) << level]) for level in range(8) for i in range(len(TREE) >> level)
}


def _range_hash(start: int, end: int) -> bytes:
    return fold_subtrees([STORED[node] for node in perfect_subtrees(start, end)])


def test_every_proof_up_to_max_agrees_with_rfc_and_verifies() -> None:
    for n in range(1, MAX + 1):
        assert ROOT[n] == _ref_mth(TREE[:n]) == _range_hash(0, n)
        for i in range(n):
            proof = inclusion_proof(TREE[:n], i)
            assert proof == _ref_path(i, TREE[:n])
            assert proof == [_range_hash(a, b) for a, b in inclusion_proof_ranges(i, n)]
            verify_inclusion(TREE[i], i, n, proof, ROOT[n])
        for m in range(1, n + 1):
            proof = consistency_proof(TREE[:n], m)
            assert proof == _ref_subproof(m, TREE[:n], True)
            assert proof == [_range_hash(a, b) for a, b in consistency_proof_ranges(m, n)]
            verify_consistency(m, n, ROOT[m], ROOT[n], proof)


def test_root_hash_of_a_million_leaves_is_iterative_and_matches_stored_nodes() -> None:
    leaves = [i.to_bytes(32, "big") for i in range(1_000_000)]
    nodes = perfect_subtrees(0, len(leaves))
    assert len(nodes) == bin(len(leaves)).count("1")
    hashes = [root_hash(leaves[i << lv : (i + 1) << lv]) for lv, i in nodes]
    assert root_hash(leaves) == fold_subtrees(hashes)


# --- properties: every corruption is caught -----------------------------------


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def _inclusion_case(draw: st.DrawFn) -> tuple[int, int, list[bytes]]:
    n = draw(st.integers(1, MAX))
    i = draw(st.integers(0, n - 1))
    return i, n, inclusion_proof(TREE[:n], i)


@st.composite
def _consistency_case(draw: st.DrawFn) -> tuple[int, int, list[bytes]]:
    n = draw(st.integers(2, MAX))
    m = draw(st.integers(1, n - 1))
    return m, n, consistency_proof(TREE[:n], m)


BITS = st.integers(0, 255)
FAILS = (ProofInvalid, MalformedProof)


@settings(max_examples=300)
@given(_inclusion_case(), st.data())
def test_inclusion_bit_flip_anywhere_is_proof_invalid(case, data) -> None:
    i, n, proof = case
    target = data.draw(st.sampled_from(["leaf", "root", *range(len(proof))]))
    bit = data.draw(BITS)
    leaf, root, bad = TREE[i], ROOT[n], list(proof)
    if target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    else:
        bad[target] = _flip(bad[target], bit)
    with pytest.raises(ProofInvalid, match="computes root"):
        verify_inclusion(leaf, i, n, bad, root)


@settings(max_examples=200)
@given(_inclusion_case(), st.data())
def test_inclusion_extra_or_missing_element_is_malformed(case, data) -> None:
    i, n, proof = case
    if proof and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = proof[:at] + proof[at + 1 :]
    else:
        at = data.draw(st.integers(0, len(proof)))
        bad = proof[:at] + [data.draw(st.sampled_from([ROOT[n], TREE[0], bytes(32)]))] + proof[at:]
    with pytest.raises(MalformedProof, match=f"expected {len(proof)}, found {len(bad)}"):
        verify_inclusion(TREE[i], i, n, bad, ROOT[n])


def _inclusion_shape(i: int, n: int) -> tuple[bool, ...]:
    """What the verifier computes: on which side each proof element goes."""
    return tuple(start > i for start, _ in inclusion_proof_ranges(i, n))


@settings(max_examples=300)
@given(_inclusion_case(), st.integers(0, 2 * MAX), st.integers(0, 2 * MAX))
def test_inclusion_wrong_index_or_size_fails(case, other_index, other_size) -> None:
    i, n, proof = case
    if other_index != i:  # another leaf of the same tree: never verifies
        with pytest.raises(FAILS):
            verify_inclusion(TREE[i], other_index, n, proof, ROOT[n])
    if other_size != n:
        # Proofs do not commit to the size (the signed checkpoint does): a claim
        # verifies only when the verifier's computation is exactly the same.
        same = 0 <= i < other_size and _inclusion_shape(i, other_size) == _inclusion_shape(i, n)
        if same:
            verify_inclusion(TREE[i], i, other_size, proof, ROOT[n])
        else:
            with pytest.raises(FAILS):
                verify_inclusion(TREE[i], i, other_size, proof, ROOT[n])


@settings(max_examples=300)
@given(_consistency_case(), st.data())
def test_consistency_bit_flip_anywhere_is_proof_invalid(case, data) -> None:
    m, n, proof = case
    target = data.draw(st.sampled_from(["old", "new", *range(len(proof))]))
    bit = data.draw(BITS)
    old, new, bad = ROOT[m], ROOT[n], list(proof)
    if target == "old":
        old = _flip(old, bit)
    elif target == "new":
        new = _flip(new, bit)
    else:
        bad[target] = _flip(bad[target], bit)
    with pytest.raises(ProofInvalid, match="computes (old|new) root"):
        verify_consistency(m, n, old, new, bad)


@settings(max_examples=200)
@given(_consistency_case(), st.data())
def test_consistency_extra_or_missing_element_is_malformed(case, data) -> None:
    m, n, proof = case
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = proof[:at] + proof[at + 1 :]
    else:
        at = data.draw(st.integers(0, len(proof)))
        bad = proof[:at] + [data.draw(st.sampled_from([ROOT[m], ROOT[n], proof[0]]))] + proof[at:]
    with pytest.raises(MalformedProof, match=f"expected {len(proof)}, found {len(bad)}"):
        verify_consistency(m, n, ROOT[m], ROOT[n], bad)


def _consistency_shape(m: int, n: int) -> tuple[bool, tuple[bool, ...]]:
    """What the verifier computes: old root prepended?, which elements are old."""
    return m & (m - 1) == 0, tuple(start < m for start, _ in consistency_proof_ranges(m, n))


@settings(max_examples=300)
@given(_consistency_case(), st.integers(0, 2 * MAX), st.integers(0, 2 * MAX))
def test_consistency_wrong_sizes_fail(case, other_old, other_new) -> None:
    m, n, proof = case
    claims = {(other_old, n), (m, other_new), (other_old, other_new), (n, m)} - {(m, n)}
    for old, new in claims:
        same = 1 <= old < new and _consistency_shape(old, new) == _consistency_shape(m, n)
        if same:
            verify_consistency(old, new, ROOT[m], ROOT[n], proof)
        else:
            with pytest.raises(FAILS):
                verify_consistency(old, new, ROOT[m], ROOT[n], proof)


@settings(max_examples=100)
@given(_consistency_case())
def test_consistency_swapped_roots_fail(case) -> None:
    m, n, proof = case
    with pytest.raises(ProofInvalid):
        verify_consistency(m, n, ROOT[n], ROOT[m], proof)


@given(st.integers(1, 4 * MAX).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_perfect_subtrees_of_proof_ranges_are_aligned_and_tile(case) -> None:
    i, n = case[1], case[0]
    for start, end in [(0, n), *inclusion_proof_ranges(i, n), *consistency_proof_ranges(i + 1, n)]:
        nodes = perfect_subtrees(start, end)
        spans = [(idx << lv, (idx + 1) << lv) for lv, idx in nodes]
        assert spans[0][0] == start and spans[-1][1] == end
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        assert [lv for lv, _ in nodes] == sorted({lv for lv, _ in nodes}, reverse=True)
        assert len(nodes) <= end.bit_length()


# --- edge cases, each with its own reason ---------------------------------------

H = bytes(32)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: inclusion_proof(LEAVES[:5], 5), "0 <= index < 5, found 5"),
        (lambda: inclusion_proof(LEAVES[:5], -1), "0 <= index < 5, found -1"),
        (lambda: inclusion_proof([], 0), "tree size for an inclusion proof: expected at least 1, found 0"),
        (lambda: inclusion_proof(LEAVES, True), "expected integers, found bool"),
        (lambda: inclusion_proof(LEAVES[:1] + [b"short"], 0), "leaf hash [1] length: expected 32 bytes, found 5 bytes"),
        (lambda: consistency_proof(LEAVES, 0), "old tree size of a consistency proof: expected at least 1, found 0"),
        (lambda: consistency_proof(LEAVES, 9), "expected old size <= new size 8, found old size 9"),
        (lambda: inclusion_proof_ranges(3, 3), "0 <= index < 3, found 3"),
        (lambda: consistency_proof_ranges(5, 4), "old size <= new size 4"),
        (lambda: root_hash([H, "x" * 32]), "leaf hash [1]: expected 32 bytes, found str"),
        (lambda: root_hash(H), "leaf hashes: expected a sequence of 32-byte hashes, found bytes"),
        (lambda: leaf_hash("text"), "leaf data: expected bytes, found str"),
        (lambda: node_hash(H, H[:31]), "right child hash length: expected 32 bytes, found 31 bytes"),
        (lambda: perfect_subtrees(3, 5), "start of leaf range [3, 5): expected a multiple of 2, found 3"),
        (lambda: perfect_subtrees(4, 9), "expected a multiple of 8, found 4"),
        (lambda: perfect_subtrees(5, 5), "expected 0 <= start < end, found [5, 5)"),
        (lambda: fold_subtrees([]), "subtree hashes to fold: expected at least one, found none"),
        (lambda: fold_subtrees([H, b""]), "subtree hash [1] length"),
    ],
)
def test_impossible_requests_are_invalid_arguments(call, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)


def test_consistency_proof_hint_says_nothing_to_prove() -> None:
    with pytest.raises(InvalidArgument) as info:
        consistency_proof(LEAVES, 0)
    assert "nothing to prove" in info.value.diagnostics()


def test_equal_sizes_and_empty_tree() -> None:
    assert root_hash([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert consistency_proof(LEAVES, 8) == [] and consistency_proof_ranges(8, 8) == []
    verify_consistency(8, 8, ROOTS[8], ROOTS[8], [])


P8 = inclusion_proof(LEAVES, 5)
C68 = consistency_proof(LEAVES, 6)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((LEAVES[5], 8, 8, P8, ROOTS[8]), "0 <= index < 8, found 8"),
        ((LEAVES[5], 0, 0, [], ROOTS[0]), "tree size for an inclusion proof: expected at least 1, found 0"),
        ((LEAVES[5], 5.0, 8, P8, ROOTS[8]), "expected integers, found float, int"),
        ((LEAVES[5][:31], 5, 8, P8, ROOTS[8]), "leaf hash length: expected 32 bytes, found 31 bytes"),
        ((LEAVES[5], 5, 8, P8, ROOTS[8].hex()), "root hash: expected 32 bytes, found str"),
        (
            (LEAVES[5], 5, 8, [P8[0], bytearray(P8[1]), P8[2]], ROOTS[8]),
            "proof element [1]: expected 32 bytes, found bytearray",
        ),
        (
            (LEAVES[5], 5, 8, [P8[0], P8[1] + b"\0", P8[2]], ROOTS[8]),
            "proof element [1] length: expected 32 bytes, found 33",
        ),
        ((LEAVES[5], 5, 8, b"".join(P8), ROOTS[8]), "proof: expected a sequence of 32-byte hashes, found bytes"),
        ((LEAVES[5], 5, 8, P8 + [H], ROOTS[8]), "number of inclusion proof hashes: expected 3, found 4"),
        ((LEAVES[5], 5, 8, P8[:2], ROOTS[8]), "number of inclusion proof hashes: expected 3, found 2"),
        ((LEAVES[0], 0, 1, [H], ROOTS[1]), "number of inclusion proof hashes: expected 0, found 1"),
    ],
)
def test_verify_inclusion_malformed(args, fragment: str) -> None:
    with pytest.raises(MalformedProof) as info:
        verify_inclusion(*args)
    assert fragment in str(info.value)


def test_verify_inclusion_wrong_root_is_proof_invalid() -> None:
    with pytest.raises(ProofInvalid, match="inclusion proof for leaf 5 in a tree of size 8 computes root"):
        verify_inclusion(LEAVES[5], 5, 8, P8, ROOTS[7])
    with pytest.raises(ProofInvalid, match="computes root"):
        verify_inclusion(LEAVES[0], 0, 1, [], ROOTS[2])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((0, 8, ROOTS[0], ROOTS[8], []), "old tree size of a consistency proof: expected at least 1, found 0"),
        ((8, 6, ROOTS[8], ROOTS[6], C68), "expected old size <= new size 6, found old size 8"),
        ((6, 8, ROOTS[6], ROOTS[8], []), "number of consistency proof hashes: expected 3, found 0"),
        ((6, 8, ROOTS[6], ROOTS[8], C68 + [H]), "expected 3, found 4"),
        ((6, 8, ROOTS[6], ROOTS[8], C68[1:]), "expected 3, found 2"),
        ((8, 8, ROOTS[8], ROOTS[8], [H]), "number of consistency proof hashes: expected 0, found 1"),
        ((6, 8, ROOTS[6][:16], ROOTS[8], C68), "old root hash length: expected 32 bytes, found 16 bytes"),
        ((6, 8, ROOTS[6], None, C68), "new root hash: expected 32 bytes, found NoneType"),
        ((6, 8, ROOTS[6], ROOTS[8], [C68[0], 7, C68[2]]), "proof element [1]: expected 32 bytes, found int"),
        ((6, "8", ROOTS[6], ROOTS[8], C68), "tree sizes: expected integers, found int, str"),
    ],
)
def test_verify_consistency_malformed(args, fragment: str) -> None:
    with pytest.raises(MalformedProof) as info:
        verify_consistency(*args)
    assert fragment in str(info.value)


def test_verify_consistency_forked_same_size_is_proof_invalid() -> None:
    with pytest.raises(ProofInvalid, match="two different roots for the same tree size 8"):
        verify_consistency(8, 8, ROOTS[8], ROOTS[7], [])


def test_verify_consistency_wrong_new_root_is_proof_invalid() -> None:
    with pytest.raises(ProofInvalid, match="consistency proof 6 -> 8 computes new root"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[7], C68)


def test_core_module_imports_only_stdlib_cryptography_and_core() -> None:
    tree = ast.parse(Path(merkle.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in {"cryptography", "__future__"}, name
