"""Errors to gRPC status codes: one table, shared by LedgerService and QueryService.

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

from ledger.core import errors as e
from ledger.store.checkpoints import NotInitialized, TrustConflict

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
        grpc.StatusCode.FAILED_PRECONDITION,
        "the ledger is not initialised; an operator must run `provault ledger init`",
    ),
    # Stored data is damaged: retrying will not help; an operator must run `provault verify`.
    e.LedgerCorrupted: StatusRule(
        grpc.StatusCode.DATA_LOSS, "the ledger's stored data is damaged; an operator must run `provault verify`"
    ),
    # Infrastructure: the text may quote the driver or name hosts, so it stays in the log.
    e.StorageUnavailable: StatusRule(grpc.StatusCode.UNAVAILABLE, _UNAVAILABLE),
    e.TransportUnavailable: StatusRule(
        grpc.StatusCode.UNAVAILABLE, "a ledger dependency is unavailable; retry with backoff"
    ),
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
