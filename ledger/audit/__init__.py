"""``provault verify``: an independent audit of the ledger database.

The audit trusts nothing the database derived; it trusts only the trust root
(``ledger.trust_root``: admin keys and the checkpoint key, or the checkpoint
key and admin keys the auditor pins instead, which the stored ones must then
equal) and re-derives everything else from the stored envelope bytes, in seq
order:

1. seqs run 0, 1, 2, ... without gaps and their count is ``log_state.size``;
2. every stored leaf hash is SHA-256(0x00 || the stored envelope bytes);
3. every entry passes the stateless admission checks again (envelope, payload
   type, event contract, signature) against the key registry *as it stood at
   that seq* -- rebuilt by replaying key.registered / key.revoked entries from
   the trust root -- and is authorised by it; the event id, keyid, producer,
   kind, time and payload-hash columns agree with the signed content;
4. every stored Merkle node equals the node recomputed from the envelopes,
   none is missing, none lies beyond the log; ``log_state.frontier`` equals
   the recomputed frontier;
5. every stored checkpoint is a signed note from the checkpoint key, names the
   log's origin, and signs the recomputed root at its size; consecutive
   checkpoints are linked by a consistency proof built from the stored nodes
   (step 4 has compared each of those nodes to the recomputed tree, so the
   proof is the recomputed tree's proof whenever step 4 found nothing);
6. the derived key table ``ledger.keys`` equals the replayed registry.

Memory stays flat as the log grows: entries and the nodes they complete are
read in chunks of ``chunk`` rows by key range, and only the Merkle frontier
(one hash per set bit of the size) is carried between chunks.  The key
registry is the one state kept whole (it is what authorises entries).

Everything runs in one REPEATABLE READ, READ ONLY transaction, so a ledger
that keeps appending meanwhile is audited as one consistent snapshot.

:func:`verify_against_checkpoint` is the other half of an audit: it proves
that the log today extends a checkpoint the auditor saved earlier, which
catches a rewrite even by someone who holds the checkpoint key and rebuilt
every table consistently.

Decisions are small pure functions (``*_problem(s)``) beside the few readers
that fetch their rows; the auditor feeds one into the other.  Modules:
``_report`` (problems and the report), ``_trust`` (the trust root),
``_replay`` (steps 1-3 and 6), ``_tree`` (step 4 and ``log_state``),
``_checkpoints`` (step 5), ``_audit`` (the pass that runs them), ``_saved``
(a saved checkpoint against today's log) and ``_snapshot`` (the transaction
both run in).
"""

from ._audit import CHUNK, Progress, audit
from ._report import MAX_DETAILS, AuditReport, Problem
from ._saved import (
    CheckpointBeyondLog,
    CheckpointProof,
    LogRewritten,
    OriginMismatch,
    StoredTreeDamaged,
    verify_against_checkpoint,
)
from ._trust import KEY_FROM_TRUST_ROOT, KEY_GIVEN

__all__ = [
    "CHUNK",
    "KEY_FROM_TRUST_ROOT",
    "KEY_GIVEN",
    "MAX_DETAILS",
    "AuditReport",
    "CheckpointBeyondLog",
    "CheckpointProof",
    "LogRewritten",
    "OriginMismatch",
    "Problem",
    "Progress",
    "StoredTreeDamaged",
    "audit",
    "verify_against_checkpoint",
]
