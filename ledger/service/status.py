"""Errors to gRPC: one table for status codes, one for rejection reasons.

Two different things leave the ledger over gRPC and must not be confused:

* **Status codes** (:data:`STATUS_TABLE`, :func:`abort_with`): the request
  could not be handled at all.  Looked up by the error's class (most specific
  first, along its MRO).  Only errors whose text the ledger wrote itself about
  the request (bad argument, not found, not yet checkpointed) reach the client
  as they are; infrastructure errors get a fixed, generic message because
  their text may quote the database driver or name hosts, and the full text
  goes to the log with an incident id the client can quote.
* **Rejection reasons** (:data:`REJECTION_REASONS`, :func:`rejection_reason`):
  an envelope was handled and refused.  That is a result with status OK; the
  ``reason`` strings of :mod:`ledger.core.errors` and
  :mod:`ledger.core.admission` map onto the proto ``RejectionReason`` enum.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import NoReturn

import grpc
import psycopg
from provault.v1 import ledger_pb2

from ledger.core import admission
from ledger.core import errors as e
from ledger.store.checkpoints import NotInitialized, TrustConflict
from ledger.transport import WRONG_SUBJECT

logger = logging.getLogger("provault.grpc")

# --- service-level errors the servicers raise -------------------------------------


class NotFound(e.ProvaultError):
    """No entry or checkpoint matches the request."""

    reason = "not_found"


class NotCovered(e.ProvaultError):
    """The entry exists but no signed checkpoint covers it yet (retry shortly)."""

    reason = "not_covered"


class MalformedRequest(e.InvalidArgument):
    """The request bytes of a call do not parse as its protobuf request message (INVALID_ARGUMENT)."""


class TooManyMessages(e.ProvaultError):
    """A stream carried more messages than one response can answer."""

    reason = "too_many_messages"


# --- status codes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusRule:
    code: grpc.StatusCode
    public: str | None
    """A fixed message for the client; None sends the error's own diagnostics."""


_UNAVAILABLE = "storage is unavailable; retry with backoff (appends are idempotent by event id)"
_INTERNAL = "internal error in the ledger service"

STATUS_TABLE: dict[type[BaseException], StatusRule] = {
    # The request is wrong: the text was written about the request, so it goes out.
    e.InvalidArgument: StatusRule(grpc.StatusCode.INVALID_ARGUMENT, None),
    e.DecodeError: StatusRule(grpc.StatusCode.INVALID_ARGUMENT, None),
    NotFound: StatusRule(grpc.StatusCode.NOT_FOUND, None),
    NotCovered: StatusRule(grpc.StatusCode.FAILED_PRECONDITION, None),
    TooManyMessages: StatusRule(grpc.StatusCode.RESOURCE_EXHAUSTED, None),
    # Evidence checked and wrong, or not checkable, in the ledger's current state:
    # the request is fine but the system is not in a state to answer it.
    e.VerificationFailed: StatusRule(grpc.StatusCode.FAILED_PRECONDITION, None),
    e.CannotVerify: StatusRule(grpc.StatusCode.FAILED_PRECONDITION, None),
    e.VerificationError: StatusRule(grpc.StatusCode.FAILED_PRECONDITION, None),
    # The ledger database was never initialised: retrying will not help.
    NotInitialized: StatusRule(
        grpc.StatusCode.FAILED_PRECONDITION, "the ledger is not initialised; an operator must run `provault ledger init`"
    ),
    # Stored data is damaged: retrying will not help; an operator must run `provault verify`.
    e.LedgerCorrupted: StatusRule(
        grpc.StatusCode.DATA_LOSS, "the ledger's stored data is damaged; an operator must run `provault verify`"
    ),
    # Infrastructure: the text may quote the driver or name hosts, so it stays in the log.
    e.StorageUnavailable: StatusRule(grpc.StatusCode.UNAVAILABLE, _UNAVAILABLE),
    e.TransportUnavailable: StatusRule(grpc.StatusCode.UNAVAILABLE, "a ledger dependency is unavailable; retry with backoff"),
    psycopg.OperationalError: StatusRule(grpc.StatusCode.UNAVAILABLE, _UNAVAILABLE),
    # Server-side faults: configuration, keys, trust root, anything unforeseen.
    e.ConfigError: StatusRule(grpc.StatusCode.INTERNAL, _INTERNAL),
    e.KeyMaterialError: StatusRule(grpc.StatusCode.INTERNAL, _INTERNAL),
    e.ServerStartError: StatusRule(grpc.StatusCode.INTERNAL, _INTERNAL),
    TrustConflict: StatusRule(grpc.StatusCode.INTERNAL, _INTERNAL),
    psycopg.Error: StatusRule(grpc.StatusCode.INTERNAL, _INTERNAL),
    e.ProvaultError: StatusRule(grpc.StatusCode.INTERNAL, _INTERNAL),
    BaseException: StatusRule(grpc.StatusCode.INTERNAL, _INTERNAL),
}


def _rule_for(error: BaseException) -> StatusRule:
    return next(STATUS_TABLE[c] for c in type(error).__mro__ if c in STATUS_TABLE)


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the client-safe message for ``error``."""
    rule = _rule_for(error)
    if rule.public is not None:
        return rule.code, rule.public
    return rule.code, error.diagnostics() if isinstance(error, e.ProvaultError) else _INTERNAL


def abort_with(context: grpc.ServicerContext, error: BaseException) -> NoReturn:
    """Log ``error`` and end the RPC with its status; never returns.

    An error sent with a fixed message is logged in full under an incident id
    that is appended to the client's message, so an operator can find it.
    """
    code, message = status_for(error)
    if _rule_for(error).public is not None:
        incident = uuid.uuid4().hex[:12]
        level = logging.ERROR if code is grpc.StatusCode.INTERNAL else logging.WARNING
        trace = error if _wants_trace(error) else None
        logger.log(level, "request failed [incident %s]: %s", incident, _describe(error), exc_info=trace)
        message = f"{message} [incident {incident}]"
    else:
        logger.info("request refused with %s: %s", code.name, message)
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # pragma: no cover - grpc always raises


def _describe(error: BaseException) -> str:
    text = error.diagnostics() if isinstance(error, e.ProvaultError) else f"{type(error).__name__}: {error}"
    cause = error.__cause__ or error.__context__
    return f"{text} (caused by {type(cause).__name__}: {cause})" if cause else text


def _wants_trace(error: BaseException) -> bool:
    """A traceback helps for bugs, not for a database that is down."""
    return not isinstance(error, e.StorageUnavailable | e.TransportUnavailable | psycopg.OperationalError)


# --- rejection reasons --------------------------------------------------------------

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
