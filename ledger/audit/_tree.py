"""The Merkle tree recomputed from the envelopes against the stored nodes and frontier."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg

from ledger.core.frontier import Node, append_leaves, frontier_root

from ._report import MAX_DETAILS, Problem, at_node, problem

MAX_LEVEL = 64

StoredNodes = dict[tuple[int, int], bytes]
"""(level, idx) -> hash of stored Merkle nodes."""

_NODES_SQL = (
    "SELECT n.level, n.idx, n.hash FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[]) AS w(l, lo, hi)"
    " JOIN ledger.merkle_nodes n ON n.level = w.l AND n.idx >= w.lo AND n.idx < w.hi"
)
_BEYOND_SQL = "FROM unnest(%s::smallint[], %s::bigint[]) AS w(l, lo) JOIN ledger.merkle_nodes n ON n.level = w.l AND n.idx >= w.lo"


def node_range(start: int, end: int) -> list[tuple[int, int, int]]:
    """(level, lo, hi): the nodes completed by appending leaves ``[start, end)``, idx in [lo, hi)."""
    return [(lv, start >> lv, end >> lv) for lv in range(MAX_LEVEL) if start >> lv < end >> lv]


def stored_nodes(conn: psycopg.Connection, start: int, end: int) -> StoredNodes:
    """The stored nodes that appending leaves ``[start, end)`` completes."""
    levels, los, his = zip(*node_range(start, end), strict=True)
    rows = conn.execute(_NODES_SQL, (list(levels), list(los), list(his)))
    return {(lv, ix): bytes(h) for lv, ix, h in rows}


def node_problems(recomputed: Sequence[Node], stored: StoredNodes) -> Iterator[Problem]:
    """Compare each recomputed node to the stored one (removing it from ``stored``)."""
    for n in recomputed:
        got = stored.pop((n.level, n.index), None)
        span = f"leaves [{n.index << n.level}, {(n.index + 1) << n.level})"
        if got is None:
            yield at_node(
                n.level,
                n.index,
                "merkle_node_missing",
                f"the node over {span} is missing from ledger.merkle_nodes",
                expected=n.hash.hex(),
                found="no row",
            )
        elif got != n.hash:
            yield at_node(
                n.level,
                n.index,
                "merkle_node",
                f"merkle node mismatch: the stored hash over {span} is not the one recomputed from the envelopes",
                expected=n.hash.hex(),
                found=got.hex(),
            )


def frontier_problems(
    stored_size: int, stored: Sequence[bytes], size: int, recomputed: Sequence[bytes]
) -> list[Problem]:
    if stored_size != size:
        return [
            problem(
                "log_state_size",
                "ledger.log_state",
                "size is not the number of entries",
                expected=f"{size} (entries found)",
                found=str(stored_size),
            )
        ]
    if list(stored) != list(recomputed):
        return [
            problem(
                "log_state_frontier",
                "ledger.log_state",
                "the stored frontier is not the frontier recomputed from the envelopes",
                expected=_hashes(recomputed),
                found=_hashes(stored),
            )
        ]
    return []


def _hashes(hashes: Sequence[bytes]) -> str:
    return "[" + ", ".join(h.hex() for h in hashes) + "]"


def nodes_beyond(conn: psycopg.Connection, size: int) -> tuple[int, list[Problem]]:
    """Stored nodes that no entry of a log of ``size`` completes: their count, and the first few described."""
    levels = list(range(MAX_LEVEL))
    los = [size >> lv for lv in levels]
    count = conn.execute("SELECT count(*) " + _BEYOND_SQL, (levels, los)).fetchone()[0]  # type: ignore[operator]
    if not count:
        return 0, []
    shown = conn.execute(
        "SELECT n.level, n.idx " + _BEYOND_SQL + " ORDER BY n.level, n.idx LIMIT %s",  # type: ignore[operator]
        (levels, los, MAX_DETAILS),
    ).fetchall()
    message = f"the node lies beyond the log of {size} entries: no entry completes it"
    return count, [at_node(lv, ix, "merkle_node_extra", message) for lv, ix in shown]


class RecomputedTree:
    """The tree of the envelopes replayed so far; only its frontier is kept."""

    def __init__(self) -> None:
        self.size = 0
        self.frontier: list[bytes] = []
        self.nodes_checked = 0

    def append(self, leaves: Sequence[bytes], stored: StoredNodes) -> list[Problem]:
        """Append leaf hashes; compare the nodes they complete with ``stored`` (removing them from it)."""
        if not leaves:
            return []
        self.frontier, nodes = append_leaves(self.size, self.frontier, leaves)
        self.size += len(leaves)
        self.nodes_checked += len(nodes)
        return list(node_problems(nodes, stored))

    def root(self) -> bytes:
        return frontier_root(self.size, self.frontier)
