"""Refusal reasons to the proto's ``RejectionReason``: what an Append answers for an envelope it refused.

A refusal is a result with status OK, not a gRPC error (those are in :mod:`ledger.grpckit.status`): the
``reason`` strings of :mod:`ledger.core.errors` and :mod:`ledger.core.admission` map onto the enum here.
"""

from __future__ import annotations

import logging

from ledger.core import admission
from ledger.core import errors as e
from ledger.transport import WRONG_SUBJECT
from provault.v1 import ledger_pb2

logger = logging.getLogger("provault.grpc")


R = ledger_pb2.RejectionReason

REJECTION_REASONS: dict[str, int] = {
    # The reasons the proto names, one to one.
    e.MalformedEnvelope.reason: R.REJECTION_REASON_MALFORMED_ENVELOPE,
    e.UnsupportedPayloadType.reason: R.REJECTION_REASON_UNSUPPORTED_PAYLOAD_TYPE,
    e.InvalidEvent.reason: R.REJECTION_REASON_INVALID_EVENT,
    e.InvalidProvDocument.reason: R.REJECTION_REASON_INVALID_PROV,
    e.UnknownKey.reason: R.REJECTION_REASON_UNKNOWN_KEY,
    e.SignatureInvalid.reason: R.REJECTION_REASON_BAD_SIGNATURE,
    e.KeyRevoked.reason: R.REJECTION_REASON_KEY_REVOKED,
    e.KeyNotPermitted.reason: R.REJECTION_REASON_KEY_NOT_PERMITTED,
    admission.EVENT_ID_CONFLICT: R.REJECTION_REASON_EVENT_ID_CONFLICT,
    admission.PRODUCER_CHAIN_BROKEN: R.REJECTION_REASON_PRODUCER_CHAIN_BROKEN,
    admission.TOO_LARGE: R.REJECTION_REASON_TOO_LARGE,
    e.CannotVerify.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    admission.CLOCK_SKEW: R.REJECTION_REASON_CLOCK_SKEW,
    WRONG_SUBJECT: R.REJECTION_REASON_WRONG_SUBJECT,
    # Closest values for the reasons the proto does not name.
    # A generic decode failure happens while reading the envelope bytes.
    e.DecodeError.reason: R.REJECTION_REASON_MALFORMED_ENVELOPE,
    # An event id or content id in the payload is malformed: the event contract is violated.
    e.InvalidIdentifier.reason: R.REJECTION_REASON_INVALID_EVENT,
    # A checkpoint, proof or out-of-range value inside an event: the payload breaks its contract.
    e.MalformedCheckpoint.reason: R.REJECTION_REASON_INVALID_EVENT,
    e.MalformedProof.reason: R.REJECTION_REASON_INVALID_EVENT,
    e.InvalidArgument.reason: R.REJECTION_REASON_INVALID_EVENT,
    # Evidence checked and wrong: the only evidence in an envelope is its signatures.
    e.VerificationFailed.reason: R.REJECTION_REASON_BAD_SIGNATURE,
    e.ProofInvalid.reason: R.REJECTION_REASON_BAD_SIGNATURE,
    # Everything else means the ledger could not check the envelope: a gap, not a verdict.
    e.VerificationError.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.KeyMaterialError.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.InsecureKeyFile.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.ProvaultError.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.ConfigError.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.StorageUnavailable.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.LedgerCorrupted.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.TransportUnavailable.reason: R.REJECTION_REASON_CANNOT_VERIFY,
    e.ServerStartError.reason: R.REJECTION_REASON_CANNOT_VERIFY,
}


def rejection_reason(reason: str) -> int:
    """The ``RejectionReason`` value for a refusal's ``reason`` string.

    Never UNSPECIFIED: a reason missing from the table (a new error class
    nobody mapped yet) is logged and answered CANNOT_VERIFY, the value that
    claims least; the refusal's message still says what happened.
    """
    value = REJECTION_REASONS.get(reason)
    if value is None:
        logger.warning("rejection reason %r has no RejectionReason value; sending CANNOT_VERIFY", reason)
        return R.REJECTION_REASON_CANNOT_VERIFY
    return value
