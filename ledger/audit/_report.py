"""What an audit finds: problems, where they are, and the report that counts them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_DETAILS = 20
"""Problems kept in full; later ones are only counted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One divergence between what is stored and what the envelopes prove."""

    kind: str
    """Stable name: seq, leaf_hash, entry_refused, authorization, key_event, column,
    merkle_node, merkle_node_missing, merkle_node_extra, checkpoint_malformed,
    checkpoint_origin, checkpoint_signature, checkpoint_row, checkpoint_root,
    checkpoint_consistency, checkpoint_beyond_log, log_state_size,
    log_state_frontier, trust_root, trust_root_mismatch (the admin keys stored are
    not the ones the auditor pinned), key_table."""
    where: str
    """``seq 12``, ``merkle node (level 1, idx 3)``, ``checkpoint at size 7``, ..."""
    message: str
    expected: str | None = None
    found: str | None = None
    seq: int | None = None
    tree_size: int | None = None
    node: tuple[int, int] | None = None

    def describe(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.expected is not None or self.found is not None:
            text += f": expected {self.expected}, found {self.found}"
        return text

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "where": self.where, "message": self.message, "text": self.describe()}
        for name in ("expected", "found", "seq", "tree_size"):
            if (value := getattr(self, name)) is not None:
                doc[name] = value
        if self.node is not None:
            doc["node"] = {"level": self.node[0], "idx": self.node[1]}
        return doc


def problem(
    kind: str, where: str, message: str, expected: object = None, found: object = None, **location: Any
) -> Problem:
    """A problem whose expected and found values are shown as text."""
    return Problem(kind=kind, where=where, message=message, expected=_text(expected), found=_text(found), **location)


def at_seq(seq: int, kind: str, message: str, expected: object = None, found: object = None) -> Problem:
    return problem(kind, f"seq {seq}", message, expected, found, seq=seq)


def at_node(level: int, idx: int, kind: str, message: str, expected: object = None, found: object = None) -> Problem:
    return problem(kind, f"merkle node (level {level}, idx {idx})", message, expected, found, node=(level, idx))


def at_checkpoint(size: int, kind: str, message: str, expected: object = None, found: object = None) -> Problem:
    return problem(kind, f"checkpoint at size {size}", message, expected, found, tree_size=size)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass
class Findings:
    """Every problem counted by kind; the first ``limit`` kept in full."""

    limit: int = MAX_DETAILS
    count: int = 0
    details: list[Problem] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, problem: Problem | None) -> None:
        if problem is None:
            return
        self.count += 1
        self.kinds[problem.kind] += 1
        if len(self.details) < self.limit:
            self.details.append(problem)

    def extend(self, problems: Iterable[Problem | None]) -> None:
        for p in problems:
            self.add(p)

    def count_more(self, kind: str, n: int) -> None:
        """Problems counted but not described (past the detail limit)."""
        if n <= 0:
            return
        self.count += n
        self.kinds[kind] += n


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    origin: str | None
    log_size: int
    """``ledger.log_state.size`` as stored."""
    entries_checked: int
    nodes_checked: int
    checkpoints_checked: int
    root_hash: bytes
    """Root recomputed from every stored envelope."""
    key_source: str
    """Where the checkpoint key came from: ``trust_root`` or ``given``."""
    admin_keys_pinned: bool
    """Whether the replay started from admin keys the auditor pinned (else from ``ledger.trust_root``)."""
    admin_keyids: tuple[str, ...]
    """The admin (root) keys the replay started from."""
    problem_count: int
    problems: tuple[Problem, ...]
    """The first :data:`MAX_DETAILS` problems, in the order they were found."""
    problem_kinds: tuple[tuple[str, int], ...] = ()
    """(kind, count) of every problem found, most frequent first."""

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_json(self) -> dict[str, Any]:
        first = self.first_problem
        return {
            "ok": self.ok,
            "origin": self.origin,
            "log_size": self.log_size,
            "entries_checked": self.entries_checked,
            "nodes_checked": self.nodes_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "root_hash": self.root_hash.hex(),
            "checkpoint_key_source": self.key_source,
            "admin_keys_pinned": self.admin_keys_pinned,
            "admin_keyids": list(self.admin_keyids),
            "problem_count": self.problem_count,
            "problem_kinds": dict(self.problem_kinds),
            "first_problem": first.to_json() if first else None,
            "problems": [p.to_json() for p in self.problems],
        }
