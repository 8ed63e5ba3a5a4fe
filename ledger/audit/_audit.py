"""The audit itself: one pass over the entries in seq order, feeding the replay,
the recomputed tree and the stored checkpoints in step, inside one snapshot."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg

from ledger.core.checkpoint import NoteVerifier
from ledger.core.keys import pinned_keys
from ledger.db import translate_errors
from ledger.store.entries import StoredEntry, read_entries

from ._checkpoints import StoredCheckpoints
from ._replay import Replay
from ._report import AuditReport, Findings
from ._snapshot import snapshot
from ._tree import RecomputedTree, StoredNodes, frontier_problems, nodes_beyond, stored_nodes
from ._trust import Trust, load_trust

CHUNK = 500
"""Entries read per query (and the Merkle nodes they complete)."""

Progress = Callable[[int, int], None]
"""``progress(entries_done, entries_expected)``, called after every chunk."""


class _Auditor:
    def __init__(self, conn: psycopg.Connection, trust: Trust, chunk: int, progress: Progress | None) -> None:
        self.conn, self.trust, self.chunk, self.progress = conn, trust, chunk, progress
        self.findings = Findings()
        self.findings.extend(trust.problems)
        self.replay = Replay(trust.admins)
        self.tree = RecomputedTree()
        self.checkpoints = StoredCheckpoints(conn, chunk, trust.checkpoint_key, trust.origin)

    def run(self, expected_size: int) -> None:
        self._checkpoint_if_due()
        after = -1
        while rows := read_entries(self.conn, after=after, limit=self.chunk):
            after = rows[-1].seq
            self._chunk(rows)
            if self.progress:
                self.progress(self.tree.size, expected_size)
        self.findings.extend(self.checkpoints.beyond(self.tree.size))
        count, shown = nodes_beyond(self.conn, self.tree.size)
        self.findings.extend(shown)
        self.findings.count_more("merkle_node_extra", count - len(shown))

    def _chunk(self, rows: list[StoredEntry]) -> None:
        """Replay a chunk of entries; the tree catches up at every stored checkpoint and at the chunk's end."""
        stored = stored_nodes(self.conn, self.tree.size, self.tree.size + len(rows))
        pending: list[bytes] = []
        for row in rows:
            leaf, problems = self.replay.entry(self.tree.size + len(pending), row)
            self.findings.extend(problems)
            pending.append(leaf)
            if self.checkpoints.due(self.tree.size + len(pending)):
                self._append(pending, stored)
                pending = []
                self._checkpoint_if_due()
        self._append(pending, stored)

    def _append(self, leaves: list[bytes], stored: StoredNodes) -> None:
        self.findings.extend(self.tree.append(leaves, stored))

    def _checkpoint_if_due(self) -> None:
        if self.checkpoints.due(self.tree.size):
            self.findings.extend(self.checkpoints.check_next(self.tree.root()))

    def finish(self, stored_size: int, stored_frontier: list[bytes]) -> None:
        """The derived state: ledger.log_state and ledger.keys."""
        self.findings.extend(frontier_problems(stored_size, stored_frontier, self.tree.size, self.tree.frontier))
        self.findings.extend(self.replay.check_key_table(self.conn))

    def report(self, stored_size: int) -> AuditReport:
        f = self.findings
        return AuditReport(
            origin=self.trust.origin,
            log_size=stored_size,
            entries_checked=self.tree.size,
            nodes_checked=self.tree.nodes_checked,
            checkpoints_checked=self.checkpoints.checked,
            root_hash=self.tree.root(),
            key_source=self.trust.key_source,
            admin_keys_pinned=self.trust.admins_pinned,
            admin_keyids=tuple(r.keyid for r in self.trust.admins),
            problem_count=f.count,
            problems=tuple(f.details),
            problem_kinds=tuple(f.kinds.most_common()),
        )


@translate_errors
def audit(
    conn: psycopg.Connection,
    *,
    progress: Progress | None = None,
    checkpoint_key: NoteVerifier | None = None,
    admin_keys: Sequence[bytes] | None = None,
    chunk: int = CHUNK,
) -> AuditReport:
    """Re-derive the whole log from its envelopes and the trust root; report every divergence.

    ``checkpoint_key`` replaces the checkpoint key stored in ledger.trust_root
    (an auditor need not trust the database for it).  ``admin_keys`` (raw
    32-byte public keys) likewise replace the stored admin keys: the key
    registry is replayed from them, and unless the trust root holds exactly
    these admin keys the report has a ``trust_root_mismatch`` problem naming
    the keyids missing and unexpected.  Never raises for what it finds --
    findings are in the report -- only for storage errors and for pins that
    are not keys (``KeyMaterialError``).
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    pins = pinned_keys(admin_keys)
    with snapshot(conn):
        stored_size, stored_frontier = conn.execute("SELECT size, frontier FROM ledger.log_state").fetchone()  # type: ignore[misc]
        auditor = _Auditor(conn, load_trust(conn, checkpoint_key, pins), chunk, progress)
        auditor.run(int(stored_size))
        auditor.finish(int(stored_size), [bytes(h) for h in stored_frontier])
    return auditor.report(int(stored_size))
