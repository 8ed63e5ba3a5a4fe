"""A small gRPC client for LedgerService, used by the CLI and the agents' fallback."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from provault.v1 import ledger_pb2, ledger_pb2_grpc

from ledger.core.errors import ProvaultError, TransportUnavailable

DEFAULT_TIMEOUT_S = 15.0


class RemoteError(ProvaultError):
    """The ledger answered with an error status."""

    reason = "remote_error"

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"ledger answered {code.name}: {details}")
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendOutcome:
    status: str  # accepted | duplicate | rejected
    seq: int
    event_id: str
    reason: str
    message: str


def _status_name(value: int) -> str:
    return ledger_pb2.AppendStatus.Name(value).removeprefix("APPEND_STATUS_").lower()


def _reason_name(value: int) -> str:
    name = ledger_pb2.RejectionReason.Name(value).removeprefix("REJECTION_REASON_").lower()
    return "" if name == "unspecified" else name


def outcome_of(result: ledger_pb2.AppendResult) -> AppendOutcome:
    return AppendOutcome(
        status=_status_name(result.status), seq=result.seq, event_id=result.event_id,
        reason=_reason_name(result.rejection_reason), message=result.rejection_message,
    )  # fmt: skip


class LedgerClient:
    def __init__(self, target: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, channel: grpc.Channel | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = ledger_pb2_grpc.LedgerServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise TransportUnavailable(
                    f"ledger at {self.target} is not reachable ({code.name})",
                    hint="is `provault up` or `provault ledger serve` running? check grpc.ledger_listen",
                ) from None
            raise RemoteError(code, details) from None

    def append(self, envelope: bytes) -> AppendOutcome:
        res = self._call(self._stub.Append, ledger_pb2.AppendRequest(envelope_json=envelope))
        return outcome_of(res.result)

    def append_many(self, envelopes: list[bytes]) -> list[AppendOutcome]:
        requests = iter([ledger_pb2.AppendStreamRequest(envelope_json=e) for e in envelopes])
        res = self._call(self._stub.AppendStream, requests)
        return [outcome_of(r) for r in res.results]

    def latest_checkpoint(self) -> ledger_pb2.GetCheckpointResponse:
        return self._call(self._stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest())
