"""Appending to a Merkle tree that is stored as perfect subtrees.

A tree of ``size`` leaves is summarised by its *frontier*: the hashes of the
perfect, aligned subtrees that ``merkle.perfect_subtrees(0, size)`` names,
left to right (one per set bit of ``size``).  Appending leaves only combines
the frontier's right end, and yields every newly completed node so a store
can keep all of them; the root is the right-to-left fold of the frontier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import MalformedProof, expected_found
from .merkle import fold_subtrees, node_hash, root_hash


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    level: int
    index: int
    hash: bytes


def frontier_levels(size: int) -> list[int]:
    """Levels of the frontier's subtrees, left to right (the set bits of size)."""
    return [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]


def check_frontier(size: int, frontier: Sequence[bytes]) -> None:
    if len(frontier) != size.bit_count():
        raise MalformedProof(expected_found(f"frontier length for tree size {size}", size.bit_count(), len(frontier)))


def append_leaves(size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes]) -> tuple[list[bytes], list[Node]]:
    """Append ``leaf_hashes`` to a tree; return (new frontier, completed nodes)."""
    check_frontier(size, frontier)
    stack: list[tuple[int, bytes]] = list(zip(frontier_levels(size), frontier, strict=True))
    nodes: list[Node] = []
    for i, leaf in enumerate(leaf_hashes, start=size):
        stack.append((0, leaf))
        nodes.append(Node(level=0, index=i, hash=leaf))
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            level, right = stack.pop()
            _, left = stack.pop()
            combined = node_hash(left, right)
            stack.append((level + 1, combined))
            nodes.append(Node(level=level + 1, index=i >> (level + 1), hash=combined))
    return [h for _, h in stack], nodes


def frontier_root(size: int, frontier: Sequence[bytes]) -> bytes:
    check_frontier(size, frontier)
    return fold_subtrees(list(frontier)) if frontier else root_hash([])
