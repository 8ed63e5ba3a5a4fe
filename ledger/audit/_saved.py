"""A checkpoint the auditor saved earlier, proven to be extended by the log today.

This catches a rewrite even by someone who holds the checkpoint key and
rebuilt every table consistently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint, parse_checkpoint, parse_note
from ledger.core.errors import CannotVerify, DecodeError, VerificationError, VerificationFailed, expected_found
from ledger.db import translate_errors
from ledger.store import checkpoints as store_checkpoints
from ledger.store import log as store_log

from ._snapshot import snapshot
from ._trust import checkpoint_key, ledger_origin, source_text


class OriginMismatch(VerificationFailed):
    reason = "origin_mismatch"


class CheckpointBeyondLog(VerificationFailed):
    reason = "checkpoint_beyond_log"


class StoredTreeDamaged(VerificationFailed):
    reason = "stored_tree_damaged"


class LogRewritten(VerificationFailed):
    reason = "log_rewritten"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointProof:
    """A saved checkpoint proven consistent with the ledger's latest checkpoint."""

    saved: Checkpoint
    latest: Checkpoint
    proof: tuple[bytes, ...]
    key_source: str
    key: str
    """The verifier key (C2SP vkey) both checkpoints verified with."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "origin": self.saved.origin,
            "saved": {"size": self.saved.size, "root_hash": self.saved.root_hash.hex()},
            "latest": {"size": self.latest.size, "root_hash": self.latest.root_hash.hex()},
            "proof": [h.hex() for h in self.proof],
            "key_source": self.key_source,
            "key": self.key,
        }


@translate_errors
def verify_against_checkpoint(
    conn: psycopg.Connection, note_text: str, *, key: NoteVerifier | None = None
) -> CheckpointProof:
    """Prove that today's log extends a checkpoint saved earlier; raise naming the first failure.

    1. the key: ``key`` when the auditor gives one, else the checkpoint key in ledger.trust_root;
    2. the saved note is a checkpoint of this ledger's origin (OriginMismatch);
    3. and verifies with the key (SignatureInvalid / UnknownKey);
    4. the log is at least as long as the saved checkpoint (CheckpointBeyondLog);
    5. the ledger's latest checkpoint verifies with the same key;
    6. the stored tree reproduces the latest checkpoint's root (StoredTreeDamaged);
    7. a consistency proof from the stored tree links the saved root to the latest (LogRewritten).
    """
    with snapshot(conn):
        verifier, source = checkpoint_key(conn, key)
        saved = _open_saved(note_text, verifier, ledger_origin(conn), source)
        _check_within_log(conn, saved)
        latest = _open_latest(conn, verifier, saved, source)
        proof = _prove(conn, saved, latest)
    return CheckpointProof(saved=saved, latest=latest, proof=proof, key_source=source, key=verifier.vkey())


def _open_saved(note_text: str, verifier: NoteVerifier, ledger_origin: str | None, source: str) -> Checkpoint:
    """Steps 2-3: the saved note is a checkpoint of this log, signed by its key."""
    try:
        body = parse_checkpoint(parse_note(note_text).text)
    except DecodeError as e:
        raise type(e)(f"the saved checkpoint is not a signed checkpoint note: {e.message}", hint=e.hint) from e
    for origin, whose in ((ledger_origin, "this ledger's"), (verifier.name, "the checkpoint key's")):
        if origin is not None and body.origin != origin:
            raise OriginMismatch(
                expected_found("origin of the saved checkpoint", f"{origin!r} ({whose} origin)", repr(body.origin)),
                hint="the saved checkpoint belongs to another log; compare it with that log",
            )
    try:
        return open_checkpoint(note_text, [verifier])
    except VerificationError as e:
        raise type(e)(
            f"the saved checkpoint (size {body.size}) does not verify with the {source_text(source)} checkpoint key "
            f"{verifier.vkey()}: {e.message}",
            hint="the saved note was altered, or it was not signed by this log's checkpoint key; it proves nothing",
        ) from e


def _check_within_log(conn: psycopg.Connection, saved: Checkpoint) -> None:
    """Step 4: a log never shrinks."""
    size = store_log.log_size(conn)
    if saved.size > size:
        raise CheckpointBeyondLog(
            f"the saved checkpoint is for {saved.size} entries, larger than the log, which holds {size}: "
            "the log was truncated or rolled back since you saved it",
            hint="a log never shrinks; keep the saved checkpoint as evidence",
        )


def _open_latest(conn: psycopg.Connection, verifier: NoteVerifier, saved: Checkpoint, source: str) -> Checkpoint:
    """Step 5: the ledger's newest checkpoint, which must verify with the same key."""
    stored = store_checkpoints.latest(conn)
    if stored is None:
        raise CannotVerify(
            "the ledger holds no checkpoint to compare with",
            hint="run `provault ledger init` and let the service sign one",
        )
    try:
        latest = open_checkpoint(stored.note, [verifier])
    except (VerificationError, DecodeError) as e:
        raise VerificationFailed(
            f"the ledger's latest checkpoint (size {stored.tree_size}) does not verify with the {source_text(source)} "
            f"checkpoint key {verifier.vkey()}: [{e.reason}] {e.message}",
            hint="the database's checkpoints were not signed by that key: do not trust this log until this is explained",
        ) from e
    if latest.origin != saved.origin:
        raise OriginMismatch(
            expected_found("origin of the ledger's latest checkpoint", repr(saved.origin), repr(latest.origin))
        )
    if latest.size < saved.size:
        raise CannotVerify(
            expected_found(
                "a signed checkpoint at or beyond the saved size", f"size >= {saved.size}", f"latest size {latest.size}"
            ),
            hint="wait for the ledger to sign a newer checkpoint, then verify again",
        )
    return latest


def _prove(conn: psycopg.Connection, saved: Checkpoint, latest: Checkpoint) -> tuple[bytes, ...]:
    """Steps 6-7: the stored tree reproduces the latest root and extends the saved one."""
    if saved.size == 0:
        if saved.root_hash != merkle.EMPTY_ROOT:
            raise LogRewritten(
                expected_found("root of the saved empty checkpoint", merkle.EMPTY_ROOT.hex(), saved.root_hash.hex())
            )
        return ()
    _check_stored_root(conn, latest)
    proof = store_log.consistency_proof(conn, saved.size, latest.size)
    try:
        merkle.verify_consistency(saved.size, latest.size, saved.root_hash, latest.root_hash, proof)
    except (VerificationError, DecodeError) as e:
        raise LogRewritten(
            f"THE LOG WAS REWRITTEN: the ledger is NOT consistent with your saved checkpoint "
            f"(size {saved.size}, root {saved.root_hash.hex()}); its latest checkpoint (size {latest.size}, "
            f"root {latest.root_hash.hex()}) does not extend it: {e.message}",
            hint="entries that existed when you saved the checkpoint were changed or removed; keep both checkpoints as evidence",
        ) from e
    return tuple(proof)


def _check_stored_root(conn: psycopg.Connection, latest: Checkpoint) -> None:
    """Step 6: the stored tree reproduces the ledger's own latest checkpoint."""
    stored_root = store_log.root_at(conn, latest.size)
    if stored_root != latest.root_hash:
        raise StoredTreeDamaged(
            expected_found(
                f"root of the stored Merkle tree at size {latest.size}",
                f"{latest.root_hash.hex()} (signed)",
                stored_root.hex(),
            ),
            hint="ledger.merkle_nodes does not reproduce the ledger's own latest checkpoint; run `provault verify` to locate the damage",
        )
