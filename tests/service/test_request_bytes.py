"""Request bytes that are not the method's protobuf message: INVALID_ARGUMENT on every RPC, after authentication.

Garbage is sent through raw channel calls (no request serializer), so the
bytes reach the server exactly as written.  Which code wins: authentication
runs first, so a caller without credentials gets UNAUTHENTICATED and one
without the method's role PERMISSION_DENIED, whatever bytes it sent; only an
admitted caller learns that its bytes do not parse (INVALID_ARGUMENT).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import pytest

from ledger.grpckit.auth import LEDGER_METHOD_ROLES, AuthInterceptor, Identity
from ledger.service.appender import Appender
from ledger.service.grpc_ledger import build_ledger_server
from ledger.store import log
from provault.v1 import ledger_pb2, query_pb2
from query.projector import migrate_prov
from query.service import QUERY_METHOD_ROLES, build_query_server
from tests.ledgerkit import Ledger

pytestmark = pytest.mark.postgres

TIMEOUT = 10
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
CORRUPT = b"\xff" * 16
"""Not a protobuf encoding of anything: a varint tag longer than ten bytes."""
TRUNCATED = b"\x0a\x05ab"
"""Field 1, length-delimited, five bytes announced, two sent."""
NO_CREDENTIALS = "no valid credentials in the call (a bearer token or a client certificate)"
GARBAGE = {"corrupt": (CORRUPT, "wire format was corrupt"), "truncated": (TRUNCATED, "wire format was corrupt")}


@dataclass(frozen=True)
class Rpc:
    path: str
    kind: str
    request: str
    """The request message's full name, as the error names it."""


def _rpcs(pb2, name: str) -> list[Rpc]:
    service = pb2.DESCRIPTOR.services_by_name[name]
    return [
        Rpc(
            path=f"/{service.full_name}/{m.name}",
            request=m.input_type.full_name,
            kind=("stream" if m.client_streaming else "unary") + "_" + ("stream" if m.server_streaming else "unary"),
        )
        for m in service.methods
    ]


LEDGER_RPCS = _rpcs(ledger_pb2, "LedgerService")
QUERY_RPCS = _rpcs(query_pb2, "QueryService")


def test_both_services_have_the_fourteen_rpcs_and_their_streaming_kinds() -> None:
    assert len(LEDGER_RPCS) + len(QUERY_RPCS) == 14
    kinds = {r.path.rsplit("/", 1)[1]: r.kind for r in LEDGER_RPCS + QUERY_RPCS}
    assert (kinds["AppendStream"], kinds["Export"]) == ("stream_unary", "unary_stream")


class _RoleAuth:
    """Test authenticator: the ``x-test-role`` metadata value is the caller's one role; none: nobody."""

    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Identity | None:
        role = dict(metadata).get("x-test-role")
        return Identity(subject=f"tester-{role}", roles=frozenset({role})) if role else None


def _role(name: str) -> tuple[tuple[str, str]]:
    return (("x-test-role", name),)


@dataclass
class Channels:
    ledger: grpc.Channel
    query: grpc.Channel

    def of(self, rpc: Rpc) -> grpc.Channel:
        return self.ledger if rpc in LEDGER_RPCS else self.query


@contextlib.contextmanager
def _serving(ledger: Ledger) -> Iterator[Channels]:
    migrate_prov(ledger.dsn)
    appender = Appender(ledger.dsn, limits=ledger.limits)
    servers, channels = [], []
    try:
        builds = (
            (build_ledger_server, LEDGER_METHOD_ROLES, {"appender": appender}),
            (build_query_server, QUERY_METHOD_ROLES, {}),
        )
        for build, roles, kw in builds:
            server, port = build(
                dsn=ledger.dsn,
                listen="127.0.0.1:0",
                max_message_bytes=4 << 20,
                max_workers=4,
                interceptors=(AuthInterceptor(_RoleAuth(), roles),),
                **kw,
            )
            server.start()
            servers.append(server)
            channels.append(grpc.insecure_channel(f"127.0.0.1:{port}"))
        yield Channels(ledger=channels[0], query=channels[1])
    finally:
        for channel in channels:
            channel.close()
        for server in servers:
            assert server.stop(None).wait(10)
        appender.close()


@pytest.fixture
def channels(ledger: Ledger) -> Iterator[Channels]:
    with _serving(ledger) as c:
        yield c


def raw_call(
    channel: grpc.Channel, rpc: Rpc, messages: Sequence[bytes], metadata: Sequence[tuple[str, str]] = ()
) -> tuple[grpc.StatusCode, str]:
    """Send ``messages`` (one for a unary request) as they are; the status code and details."""
    method = getattr(channel, rpc.kind)(rpc.path, request_serializer=None, response_deserializer=None)
    request = iter(messages) if rpc.kind.startswith("stream") else messages[0]
    try:
        result = method(request, metadata=tuple(metadata), timeout=TIMEOUT)
        if rpc.kind.endswith("stream"):
            list(result)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_garbage_request_bytes_are_invalid_argument_naming_the_method_and_message(
    channels: Channels, ledger: Ledger, garbage: str
) -> None:
    data, detail = GARBAGE[garbage]
    size, rejected = log.log_size(ledger.conn), ledger.rejections()
    for rpc in LEDGER_RPCS + QUERY_RPCS:
        code, details = raw_call(channels.of(rpc), rpc, [data], _role("admin"))
        where = f"{rpc.path}: stream message 0: " if rpc.kind.startswith("stream") else f"{rpc.path}: "
        expected = f"{where}the request bytes are not a valid {rpc.request} ({detail})"
        assert (code, details.split("\n")[0]) == (INVALID, expected), rpc.path
        assert f"hint: send a serialized {rpc.request}" in details
    assert (log.log_size(ledger.conn), ledger.rejections()) == (size, rejected)  # nothing appended, nothing recorded


def test_a_string_field_that_is_not_utf8_is_invalid_argument(channels: Channels) -> None:
    bad_utf8 = b"\x12\x02\xff\xfe"  # GetEntryRequest.event_id (field 2) holding two bytes that are not UTF-8
    get_entry = next(r for r in LEDGER_RPCS if r.path.endswith("/GetEntry"))
    code, details = raw_call(channels.ledger, get_entry, [bad_utf8], _role("auditor"))
    assert (code, details.split("\n")[0]) == (
        INVALID,
        "/provault.v1.LedgerService/GetEntry: the request bytes are not a valid provault.v1.GetEntryRequest "
        "(string field had bad UTF-8)",
    )
    get_node = next(r for r in QUERY_RPCS if r.path.endswith("/GetNode"))
    code, details = raw_call(channels.query, get_node, [b"\x0a\x01\x80"], _role("auditor"))  # node_id = b"\x80"
    assert (code, "(string field had bad UTF-8)" in details) == (INVALID, True)


def test_append_stream_names_the_message_that_does_not_parse_and_appends_nothing_of_its_batch(
    channels: Channels, ledger: Ledger
) -> None:
    stream = next(r for r in LEDGER_RPCS if r.path.endswith("/AppendStream"))
    good = ledger_pb2.AppendStreamRequest(envelope_json=b"{}").SerializeToString()
    size, rejected = log.log_size(ledger.conn), ledger.rejections()
    code, details = raw_call(channels.ledger, stream, [good, good, CORRUPT, good], _role("producer"))
    where = "/provault.v1.LedgerService/AppendStream: stream message 2"
    assert (code, details.split(": the request bytes")[0]) == (INVALID, where)
    assert (log.log_size(ledger.conn), ledger.rejections()) == (size, rejected)  # its batch was still open


def test_authentication_wins_over_garbage_bytes(channels: Channels) -> None:
    """No credentials: UNAUTHENTICATED; the wrong role: PERMISSION_DENIED; the bytes are only looked at after that."""
    for rpc in LEDGER_RPCS + QUERY_RPCS:
        code, details = raw_call(channels.of(rpc), rpc, [CORRUPT])
        assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, NO_CREDENTIALS), rpc.path
        append = rpc.path.endswith(("/Append", "/AppendStream"))
        wrong, need = ("auditor", "admin or producer") if append else ("producer", "admin or auditor")
        code, details = raw_call(channels.of(rpc), rpc, [CORRUPT], _role(wrong))
        assert (code, details.split(";")[0]) == (DENIED, f"{rpc.path} needs role {need}"), rpc.path
