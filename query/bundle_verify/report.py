"""What a bundle that verified proves, and on whose keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
