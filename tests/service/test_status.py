"""The one table from errors to gRPC status codes and rejection reasons (no server)."""

from __future__ import annotations

import importlib
import pkgutil

import grpc
import psycopg
import pytest

import ledger.core
from ledger.core import admission
from ledger.core import errors as e
from ledger.grpckit.status import NotCovered, NotFound, TooManyMessages, status_for
from ledger.service.rejections import REJECTION_REASONS, rejection_reason
from provault.v1 import ledger_pb2

UNSPECIFIED = ledger_pb2.REJECTION_REASON_UNSPECIFIED


def _core_reasons() -> set[str]:
    """Every ``reason`` a core error class carries, plus admission's own reason constants."""
    for mod in pkgutil.iter_modules(ledger.core.__path__):
        importlib.import_module(f"ledger.core.{mod.name}")
    found: set[str] = set()
    todo = [e.ProvaultError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("ledger.core"):
            found.add(cls.reason)
    return found | {
        admission.EVENT_ID_CONFLICT,
        admission.PRODUCER_CHAIN_BROKEN,
        admission.CLOCK_SKEW,
        admission.TOO_LARGE,
    }


def test_every_core_reason_has_an_explicit_rejection_reason() -> None:
    reasons = _core_reasons()
    assert {"malformed_envelope", "invalid_identifier", "clock_skew", "envelope_too_large"} <= reasons
    missing = sorted(r for r in reasons if r not in REJECTION_REASONS)
    assert missing == [], f"add these reasons to rejections.REJECTION_REASONS: {missing}"
    assert all(rejection_reason(r) != UNSPECIFIED for r in reasons)


def test_proto_named_reasons_map_one_to_one() -> None:
    """The proto enum's comments name the reason string of each value; the table agrees."""
    for value in ledger_pb2.RejectionReason.values():
        if value == UNSPECIFIED:
            continue
        name = ledger_pb2.RejectionReason.Name(value).removeprefix("REJECTION_REASON_").lower()
        reason = {"too_large": admission.TOO_LARGE}.get(name, name)
        assert REJECTION_REASONS[reason] == value


def test_an_unmapped_reason_still_is_a_rejection() -> None:
    assert rejection_reason("some_future_reason") == ledger_pb2.REJECTION_REASON_CANNOT_VERIFY


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (e.InvalidArgument("tree size: expected 1..3, found 9"), grpc.StatusCode.INVALID_ARGUMENT),
        (e.InvalidIdentifier("UUIDv7: expected ..., found 'x'"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("no entry with seq 9"), grpc.StatusCode.NOT_FOUND),
        (NotCovered("entry 9 is newer"), grpc.StatusCode.FAILED_PRECONDITION),
        (TooManyMessages("too many"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (e.ProofInvalid("root mismatch"), grpc.StatusCode.FAILED_PRECONDITION),
        (e.UnknownKey("who?"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_request_errors_keep_their_message(error: e.ProvaultError, code: grpc.StatusCode) -> None:
    assert status_for(error) == (code, error.diagnostics())


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            e.StorageUnavailable('cannot connect: connection refused (psycopg) password="x"'),
            grpc.StatusCode.UNAVAILABLE,
        ),
        (psycopg.OperationalError("server closed the connection unexpectedly"), grpc.StatusCode.UNAVAILABLE),
        (psycopg.errors.UndefinedTable('relation "ledger.entries" does not exist'), grpc.StatusCode.INTERNAL),
        (e.KeyMaterialError("/secret/path/checkpoint.key is unreadable"), grpc.StatusCode.INTERNAL),
        (e.ProvaultError("something internal"), grpc.StatusCode.INTERNAL),
        (RuntimeError("boom at 0xdeadbeef"), grpc.StatusCode.INTERNAL),
    ],
)
def test_infrastructure_errors_get_a_generic_message(error: BaseException, code: grpc.StatusCode) -> None:
    got_code, message = status_for(error)
    assert got_code == code
    for leak in ("psycopg", "refused", "password", "relation", "/secret", 'internal"', "0xdeadbeef", "closed the"):
        assert leak not in message
