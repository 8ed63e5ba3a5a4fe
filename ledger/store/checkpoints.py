"""Signed checkpoints and the trust root in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from ledger.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint, sign_checkpoint
from ledger.core.errors import ProvaultError, StorageUnavailable
from ledger.core.frontier import frontier_root
from ledger.core.keys import Ed25519Signer, Ed25519Verifier, keyid_of
from ledger.db import translate_errors


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    signed_at: datetime


class NotInitialized(StorageUnavailable):
    reason = "not_initialized"


class TrustConflict(ProvaultError):
    reason = "trust_conflict"


@translate_errors
def initialize(
    conn: psycopg.Connection, *, checkpoint_signer: Ed25519Signer, origin: str, admins: list[tuple[bytes, str]]
) -> list[str]:
    """Record the trust root and sign the empty tree; idempotent.

    Returns what was added.  Refuses a different checkpoint key than the one
    already recorded: a log has one checkpoint identity for its whole life.
    """
    added: list[str] = []
    with conn.transaction():
        row = conn.execute("SELECT keyid, name FROM ledger.trust_root WHERE purpose = 'checkpoint'").fetchone()
        if row and row[0] != checkpoint_signer.keyid:
            raise TrustConflict(
                f"this ledger's checkpoints are signed by key {row[0]} ({row[1]}); refusing another key {checkpoint_signer.keyid}",
                hint="use the original checkpoint key file (signing.checkpoint_key), or start a new ledger",
            )
        if row and row[1] != origin:
            raise TrustConflict(
                f"this ledger's origin is {row[1]!r}; refusing to sign checkpoints as {origin!r}",
                hint="set signing.origin back to the origin the ledger was initialised with",
            )
        if not row:
            conn.execute(
                "INSERT INTO ledger.trust_root (keyid, public_key, purpose, name) VALUES (%s, %s, 'checkpoint', %s)",
                (checkpoint_signer.keyid, checkpoint_signer.public_key, origin),
            )
            added.append(f"checkpoint key {checkpoint_signer.keyid} for origin {origin}")
        for public_key, name in admins:
            res = conn.execute(
                "INSERT INTO ledger.trust_root (keyid, public_key, purpose, name) VALUES (%s, %s, 'admin', %s)"
                " ON CONFLICT (keyid) DO NOTHING",
                (keyid_of(public_key), public_key, name),
            )
            if res.rowcount:
                added.append(f"admin key {keyid_of(public_key)} ({name})")
    sign_latest(conn, checkpoint_signer, origin)
    return added


@translate_errors
def checkpoint_verifier(conn: psycopg.Connection) -> NoteVerifier:
    row = conn.execute("SELECT public_key, name FROM ledger.trust_root WHERE purpose = 'checkpoint'").fetchone()
    if not row:
        raise NotInitialized("this ledger has no checkpoint key yet", hint="run `provault ledger init`")
    return NoteVerifier(name=row[1], verifier=Ed25519Verifier(bytes(row[0])))


@translate_errors
def sign_latest(conn: psycopg.Connection, signer: Ed25519Signer, origin: str) -> StoredCheckpoint | None:
    """Sign the current tree if no checkpoint covers its size yet; return the new one."""
    with conn.transaction():
        size, frontier = conn.execute("SELECT size, frontier FROM ledger.log_state").fetchone()
        if conn.execute("SELECT 1 FROM ledger.checkpoints WHERE tree_size = %s", (size,)).fetchone():
            return None
        root = frontier_root(int(size), [bytes(h) for h in frontier])
        note = sign_checkpoint(Checkpoint(origin=origin, size=int(size), root_hash=root), origin, signer)
        row = conn.execute(
            "INSERT INTO ledger.checkpoints (tree_size, root_hash, note) VALUES (%s, %s, %s)"
            " ON CONFLICT (tree_size) DO NOTHING RETURNING signed_at",
            (size, root, note),
        ).fetchone()
    return StoredCheckpoint(tree_size=int(size), root_hash=root, note=note, signed_at=row[0]) if row else None


def _row(r: tuple | None) -> StoredCheckpoint | None:
    return StoredCheckpoint(tree_size=r[0], root_hash=bytes(r[1]), note=r[2], signed_at=r[3]) if r else None


@translate_errors
def latest(conn: psycopg.Connection) -> StoredCheckpoint | None:
    return _row(
        conn.execute(
            "SELECT tree_size, root_hash, note, signed_at FROM ledger.checkpoints ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
    )


@translate_errors
def at_size(conn: psycopg.Connection, tree_size: int) -> StoredCheckpoint | None:
    return _row(
        conn.execute(
            "SELECT tree_size, root_hash, note, signed_at FROM ledger.checkpoints WHERE tree_size = %s", (tree_size,)
        ).fetchone()
    )


@translate_errors
def iter_all(conn: psycopg.Connection) -> list[StoredCheckpoint]:
    rows = conn.execute("SELECT tree_size, root_hash, note, signed_at FROM ledger.checkpoints ORDER BY tree_size")
    return [c for c in map(_row, rows) if c is not None]


def open_stored(cp: StoredCheckpoint, verifier: NoteVerifier) -> Checkpoint:
    return open_checkpoint(cp.note, [verifier])
