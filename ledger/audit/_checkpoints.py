"""The stored checkpoints: each signed by the checkpoint key, for the log's origin,
over the recomputed root at its size, and consistent with the one before."""

from __future__ import annotations

from typing import NamedTuple

import psycopg

from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint, parse_checkpoint, parse_note
from ledger.core.errors import DecodeError, ProvaultError, VerificationError
from ledger.store import log as store_log

from ._report import Problem, at_checkpoint

_CHECKPOINTS_SQL = (
    "SELECT tree_size, root_hash, note FROM ledger.checkpoints WHERE tree_size > %s ORDER BY tree_size LIMIT %s"
)


class CheckpointRow(NamedTuple):
    tree_size: int
    root_hash: bytes
    note: str


# --- pure decisions ---------------------------------------------------------------


def open_checkpoint_row(
    row: CheckpointRow, verifier: NoteVerifier | None, origin: str | None
) -> tuple[Checkpoint | None, list[Problem]]:
    """Parse and verify a stored checkpoint note; the checkpoint is returned only when its signature verified."""
    size = row.tree_size
    try:
        body = parse_checkpoint(parse_note(row.note).text)
    except DecodeError as e:
        return None, [
            at_checkpoint(size, "checkpoint_malformed", f"the stored note is not a signed checkpoint: {e.message}")
        ]
    if origin is not None and body.origin != origin:
        return None, [
            at_checkpoint(
                size,
                "checkpoint_origin",
                "the checkpoint names another log",
                expected=repr(origin),
                found=repr(body.origin),
            )
        ]
    if verifier is None:
        return None, [
            at_checkpoint(
                size, "checkpoint_signature", "cannot verify: no checkpoint key is known (ledger.trust_root has none)"
            )
        ]
    try:
        cp = open_checkpoint(row.note, [verifier])
    except (VerificationError, DecodeError) as e:
        return None, [
            at_checkpoint(
                size,
                "checkpoint_signature",
                f"the signed note does not verify with checkpoint key {verifier.vkey()}: [{e.reason}] {e.message}",
            )
        ]
    return cp, row_problems(row, cp)


def row_problems(row: CheckpointRow, cp: Checkpoint) -> list[Problem]:
    """The tree_size and root_hash columns must say what the signed note says."""
    size = row.tree_size
    problems = []
    if cp.size != size:
        problems.append(
            at_checkpoint(
                size,
                "checkpoint_row",
                "the tree_size column differs from the signed size",
                expected=cp.size,
                found=size,
            )
        )
    if cp.root_hash != row.root_hash:
        problems.append(
            at_checkpoint(
                size,
                "checkpoint_row",
                "the root_hash column differs from the signed root",
                expected=cp.root_hash.hex(),
                found=row.root_hash.hex(),
            )
        )
    return problems


def checkpoint_root_problem(cp: Checkpoint, size: int, recomputed_root: bytes) -> Problem | None:
    if cp.root_hash == recomputed_root:
        return None
    return at_checkpoint(
        size,
        "checkpoint_root",
        f"checkpoint root mismatch: the signed root is not the root of the first {size} stored envelopes",
        expected=f"{recomputed_root.hex()} (recomputed)",
        found=f"{cp.root_hash.hex()} (signed)",
    )


def consistency_problem(conn: psycopg.Connection, prev: Checkpoint | None, cp: Checkpoint) -> Problem | None:
    """The stored tree proves that this checkpoint extends the previous one."""
    if prev is None or prev.size == 0:
        return None
    try:
        proof = store_log.consistency_proof(conn, prev.size, cp.size)
        merkle.verify_consistency(prev.size, cp.size, prev.root_hash, cp.root_hash, proof)
    except ProvaultError as e:
        return at_checkpoint(
            cp.size,
            "checkpoint_consistency",
            f"no valid consistency proof from the previous checkpoint (size {prev.size}) out of the stored nodes: [{e.reason}] {e.message}",
        )
    return None


def beyond_log_problem(row: CheckpointRow, size: int) -> Problem:
    return at_checkpoint(
        row.tree_size,
        "checkpoint_beyond_log",
        "a checkpoint for more entries than the log holds",
        expected=f"at most {size} entries",
        found=f"{row.tree_size}",
    )


# --- reading them in step with the replay -------------------------------------------


class StoredCheckpoints:
    """Stored checkpoints in tree-size order, read a chunk at a time and checked as the replay reaches their size."""

    def __init__(self, conn: psycopg.Connection, chunk: int, verifier: NoteVerifier | None, origin: str | None) -> None:
        self.conn, self.chunk, self.verifier, self.origin = conn, chunk, verifier, origin
        self.after = -1
        self.buffer: list[CheckpointRow] = []
        self.checked = 0
        self.last: Checkpoint | None = None
        """The last checkpoint whose signature verified."""

    def _peek(self) -> CheckpointRow | None:
        if not self.buffer:
            rows = self.conn.execute(_CHECKPOINTS_SQL, (self.after, self.chunk)).fetchall()
            self.buffer = [CheckpointRow(int(s), bytes(r), n) for s, r, n in reversed(rows)]
            if rows:
                self.after = rows[-1][0]
        return self.buffer[-1] if self.buffer else None

    def _take(self) -> CheckpointRow:
        self.checked += 1
        return self.buffer.pop()

    def due(self, size: int) -> bool:
        """Is the next stored checkpoint the one at ``size``?"""
        row = self._peek()
        return row is not None and row.tree_size == size

    def check_next(self, root: bytes) -> list[Problem]:
        """Check the next stored checkpoint against ``root``, recomputed at its size (the caller saw it :meth:`due`)."""
        row = self._take()
        opened, problems = open_checkpoint_row(row, self.verifier, self.origin)
        if opened is None:
            return problems
        root_problem = checkpoint_root_problem(opened, row.tree_size, root)
        consistency = consistency_problem(self.conn, self.last, opened)
        self.last = opened
        return problems + [p for p in (root_problem, consistency) if p is not None]

    def beyond(self, size: int) -> list[Problem]:
        """Every checkpoint left once the replay has reached the end of a log of ``size`` entries."""
        problems = []
        while self._peek() is not None:
            problems.append(beyond_log_problem(self._take(), size))
        return problems
